//! Charts drawn on the server as SVG (no script), each with its data table beside it: the
//! table is the chart's accessible form and what the browser tests read.

use maud::{Markup, PreEscaped, html};

use super::layout::number;

/// One line of a chart: a value per bucket (`None`: nothing to tell there).
pub(crate) struct Series {
    pub name: String,
    pub values: Vec<Option<f64>>,
}

const W: f64 = 640.0;
const H: f64 = 220.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 30.0;
/// Series beyond this many are left out of the drawing (the table has them all).
const MAX_LINES: usize = 6;

/// A bucket label shortened for the x axis: the time of day for minutes and hours, the date
/// otherwise.
fn short(label: &str) -> &str {
    match label.split_once('T') {
        Some((_, t)) => t,
        None => label.get(5..).unwrap_or(label),
    }
}

fn x_of(i: usize, n: usize) -> f64 {
    let span = W - LEFT - RIGHT;
    if n <= 1 {
        LEFT + span / 2.0
    } else {
        LEFT + span * i as f64 / (n - 1) as f64
    }
}

/// A line chart over `labels` (time buckets) with its table; `id` names both (`{id}-table`).
pub(crate) fn line(id: &str, title: &str, unit: &str, labels: &[String], series: &[Series]) -> Markup {
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .fold(0.0f64, |m, v| m.max(*v));
    let top = if max > 0.0 { max * 1.1 } else { 1.0 };
    let y_of = |v: f64| TOP + (H - TOP - BOTTOM) * (1.0 - v / top);
    let n = labels.len();
    let mut svg = String::new();
    for k in 0..=2 {
        let v = top * f64::from(k) / 2.0;
        let y = y_of(v);
        svg.push_str(&format!(
            r#"<line class="grid" x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}"/><text class="tick" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            escape(&number((v * 1000.0).round() / 1000.0)),
        ));
    }
    if n > 0 {
        for (i, anchor) in [(0, "start"), (n / 2, "middle"), (n - 1, "end")] {
            svg.push_str(&format!(
                r#"<text class="tick" x="{:.1}" y="{}" text-anchor="{anchor}">{}</text>"#,
                x_of(i, n),
                H - 10.0,
                escape(short(&labels[i])),
            ));
        }
    }
    for (k, s) in series.iter().take(MAX_LINES).enumerate() {
        // One polyline per run of known values; a lone point is a dot.
        let mut run: Vec<(f64, f64)> = Vec::new();
        let flush = |run: &mut Vec<(f64, f64)>, svg: &mut String| {
            match run.len() {
                0 => {}
                1 => svg.push_str(&format!(
                    r#"<circle class="s{k}" cx="{:.1}" cy="{:.1}" r="3"/>"#,
                    run[0].0, run[0].1
                )),
                _ => {
                    let pts: Vec<String> = run.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
                    svg.push_str(&format!(r#"<polyline class="s{k}" points="{}"/>"#, pts.join(" ")));
                }
            }
            run.clear();
        };
        for (i, v) in s.values.iter().enumerate() {
            match v {
                Some(v) => run.push((x_of(i, n), y_of(*v))),
                None => flush(&mut run, &mut svg),
            }
        }
        flush(&mut run, &mut svg);
    }
    let rows: Vec<usize> = (0..n)
        .filter(|&i| {
            series
                .iter()
                .any(|s| s.values.get(i).copied().flatten().is_some_and(|v| v != 0.0))
        })
        .collect();
    html! {
        figure class="chart" id=(id) {
            figcaption { (title) @if !unit.is_empty() { " (" (unit) ")" } }
            div class="pair" {
                svg viewBox={"0 0 " (W) " " (H)} role="img" aria-label=(title) xmlns="http://www.w3.org/2000/svg" {
                    (PreEscaped(svg))
                }
                div class="legend-table" {
                    ul class="legend" {
                        @for (k, s) in series.iter().take(MAX_LINES).enumerate() {
                            li class={"k" (k)} { (s.name) }
                        }
                    }
                    table class="data" id={(id) "-table"} {
                        caption { (title) ": buckets with data" }
                        thead { tr { th scope="col" { "Bucket" } @for s in series { th scope="col" { (s.name) } } } }
                        tbody {
                            @for i in &rows {
                                tr {
                                    th scope="row" { (labels[*i]) }
                                    @for s in series {
                                        td { @if let Some(v) = s.values.get(*i).copied().flatten() { (number(v)) } }
                                    }
                                }
                            }
                            @if rows.is_empty() { tr { td colspan=(series.len() + 1) { "No data in this range." } } }
                        }
                    }
                }
            }
        }
    }
}

fn escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("2026-12-05T10:{i:02}")).collect()
    }

    #[test]
    fn a_chart_draws_runs_of_known_values_and_tables_the_buckets_with_data() {
        let series = [
            Series {
                name: "p50".into(),
                values: vec![Some(1.0), Some(2.0), None, Some(4.0)],
            },
            Series {
                name: "<p99>".into(),
                values: vec![None, None, None, None],
            },
        ];
        let html = line("lat", "Latency", "ms", &labels(4), &series).into_string();
        assert_eq!(html.matches("<polyline class=\"s0\"").count(), 1, "{html}");
        assert_eq!(
            html.matches("<circle class=\"s0\"").count(),
            1,
            "the lone point after the gap"
        );
        assert!(html.contains("id=\"lat-table\""));
        assert_eq!(
            html.matches("<tr><th scope=\"row\">").count(),
            3,
            "buckets with data only"
        );
        assert!(
            html.contains("&lt;p99&gt;") && !html.contains("<p99>"),
            "names are escaped"
        );
        assert!(html.contains(">4.4<"), "the top tick is 10 % above the largest value");
    }

    #[test]
    fn an_empty_chart_says_so() {
        let html = line("e", "Errors", "", &labels(3), &[]).into_string();
        assert!(html.contains("No data in this range."));
        assert!(!html.contains("polyline"));
    }
}
