//! The overview: the gateway's traffic over time — requests, errors by class, latency, time to
//! first token and time to first byte percentiles, spend, tokens, cache hit rate, guardrail triggers — each chart
//! with its table. A tenant-confined principal sees its tenant's requests only (the API's
//! confinement).

use axum::extract::{Extension, Query, State};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::{Range, by_group, points, refused};
use crate::console::Console;
use crate::console::chart::{self, Series};
use crate::console::layout;
use crate::console::signed::Session;

#[derive(Deserialize)]
pub(crate) struct OverviewQuery {
    range: Option<String>,
}

/// One chart of a single total (`by=all`) or of groups, or its refusal.
async fn chart_of(
    c: &Console,
    s: &Session,
    range: &Range,
    labels: &[String],
    (id, title, unit): (&str, &str, &str),
    metric: &str,
    by: &str,
) -> Markup {
    let counts = matches!(metric, "requests" | "errors" | "tokens" | "cost" | "guardrail_triggers");
    match points(c, &s.principal, metric, by, range, &[]).await {
        Ok(p) => {
            let mut series = by_group(&p, labels, counts, by != "all");
            if by == "all" {
                if series.is_empty() {
                    series.push(Series {
                        name: "all".to_owned(),
                        values: labels.iter().map(|_| counts.then_some(0.0)).collect(),
                    });
                }
                series[0].name = title.to_owned();
            }
            if metric == "cost" {
                for v in series.iter_mut().flat_map(|s| s.values.iter_mut()).flatten() {
                    *v /= 1e6;
                }
            }
            chart::line(id, title, unit, labels, &series)
        }
        Err(m) => html! { figure class="chart" id=(id) { figcaption { (title) } (refused(&m)) } },
    }
}

/// Percentile lines (p50, p95, p99) of `prefix` in one chart.
async fn percentiles(
    c: &Console,
    s: &Session,
    range: &Range,
    labels: &[String],
    id: &str,
    title: &str,
    prefix: &str,
) -> Markup {
    let mut series = Vec::new();
    for q in ["p50", "p95", "p99"] {
        match points(c, &s.principal, &format!("{prefix}_{q}"), "all", range, &[]).await {
            Ok(p) => {
                let mut one = by_group(&p, labels, false, false);
                series.push(Series {
                    name: q.to_owned(),
                    values: one.pop().map_or_else(|| vec![None; labels.len()], |s| s.values),
                });
            }
            Err(m) => return html! { figure class="chart" id=(id) { figcaption { (title) } (refused(&m)) } },
        }
    }
    chart::line(id, title, "ms", labels, &series)
}

pub(crate) async fn page(
    State(c): State<Console>,
    Extension(s): Extension<Session>,
    Query(q): Query<OverviewQuery>,
) -> Response {
    let range = Range::parse(q.range.as_deref());
    let tz = c.gw.snapshot().config.time_zone_offset_s;
    let currency = c.gw.snapshot().currency.to_string();
    let labels = range.labels(tz);
    let body = html! {
        (range.picker("/console", &[]))
        div class="charts" {
            (chart_of(&c, &s, &range, &labels, ("requests", "Requests", ""), "requests", "all").await)
            (chart_of(&c, &s, &range, &labels, ("errors", "Errors by class", ""), "errors", "error_class").await)
            (percentiles(&c, &s, &range, &labels, "latency", "Latency", "latency").await)
            (percentiles(&c, &s, &range, &labels, "ttft", "Time to first token (streams)", "ttft").await)
            (percentiles(&c, &s, &range, &labels, "ttfb", "Time to first byte (a stream's first chunk)", "ttfb").await)
            (chart_of(&c, &s, &range, &labels, ("spend", "Spend", &currency), "cost", "all").await)
            (chart_of(&c, &s, &range, &labels, ("tokens", "Tokens", ""), "tokens", "all").await)
            (chart_of(&c, &s, &range, &labels, ("cache", "Cache hit rate", "hits per lookup"), "cache_hit_rate", "all").await)
            (chart_of(&c, &s, &range, &labels, ("guardrails", "Guardrail triggers", ""), "guardrail_triggers", "guardrail").await)
        }
        p class="hint" { "Buckets are " (range.per) "s in the configured time zone; in-flight requests count once they finish." }
    };
    layout::page(&s, "/console", "Overview", body)
}
