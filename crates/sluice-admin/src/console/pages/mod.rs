//! The console's pages, one file each. A page asks the admin API (as the signed-in principal)
//! and renders what it answered; a refusal is shown, never hidden.

pub(crate) mod audit;
pub(crate) mod budgets;
pub(crate) mod deployments;
pub(crate) mod keys;
pub(crate) mod overview;
pub(crate) mod requests;
pub(crate) mod routes;
pub(crate) mod usage;

use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::Console;
use super::api::{escape, query};
use super::chart::Series;
use super::layout;
use crate::auth::Principal;

pub(crate) async fn not_found() -> Response {
    layout::problem(StatusCode::NOT_FOUND, "There is no such console page.")
}

/// The time range a page shows, and the bucket its charts use.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Range {
    pub name: &'static str,
    pub per: &'static str,
    pub since_ms: i64,
    pub until_ms: i64,
}

/// The ranges offered: name, bucket, length.
const RANGES: [(&str, &str, i64); 4] = [
    ("1h", "minute", 3_600_000),
    ("24h", "hour", 86_400_000),
    ("7d", "hour", 7 * 86_400_000),
    ("30d", "day", 30 * 86_400_000),
];

impl Range {
    /// `1h` (per minute, the default), `24h`, `7d` (per hour) or `30d` (per day), ending now.
    pub fn parse(name: Option<&str>) -> Range {
        let (name, per, len) = RANGES
            .iter()
            .copied()
            .find(|(n, _, _)| Some(*n) == name)
            .unwrap_or(RANGES[0]);
        let now = chrono::Utc::now().timestamp_millis();
        Range {
            name,
            per,
            since_ms: now - len,
            until_ms: now + 1,
        }
    }

    fn seconds(&self) -> i64 {
        match self.per {
            "minute" => 60,
            "hour" => 3_600,
            _ => 86_400,
        }
    }

    /// Every bucket's label in the range, as the analytics API writes them (local time in the
    /// configured zone).
    pub fn labels(&self, tz_offset_s: i32) -> Vec<String> {
        let g = self.seconds();
        let first = (self.since_ms / 1000 + i64::from(tz_offset_s)).div_euclid(g);
        let last = (self.until_ms / 1000 + i64::from(tz_offset_s)).div_euclid(g);
        let fmt = match self.per {
            "minute" => "%Y-%m-%dT%H:%M",
            "hour" => "%Y-%m-%dT%H",
            _ => "%Y-%m-%d",
        };
        (first..=last)
            .filter_map(|n| chrono::DateTime::from_timestamp(n * g, 0))
            .map(|t| t.format(fmt).to_string())
            .collect()
    }

    /// The range's query parameters for the analytics API.
    pub fn params(&self) -> [(&'static str, String); 3] {
        [
            ("per", self.per.to_owned()),
            ("since", self.since_ms.to_string()),
            ("until", self.until_ms.to_string()),
        ]
    }

    /// Links to the other ranges of `path` (keeping `keep`'s parameters).
    pub fn picker(&self, path: &str, keep: &[(&str, &str)]) -> Markup {
        let href = |name: &str| {
            let mut pairs = keep.to_vec();
            pairs.push(("range", name));
            format!("{path}{}", query(&pairs))
        };
        html! {
            nav class="ranges" aria-label="Range" {
                @for (name, _, _) in RANGES {
                    a href=(href(name)) aria-current=[(name == self.name).then_some("page")] { (name) }
                }
            }
        }
    }
}

/// One point of `GET /admin/analytics`.
#[derive(Debug, Deserialize)]
pub(crate) struct Point {
    pub group: String,
    pub bucket: String,
    pub value: Option<f64>,
}

#[derive(Deserialize)]
struct Report {
    points: Vec<Point>,
}

/// `metric` by `by` over `range` (and `filters`), from the analytics API.
pub(crate) async fn points(
    c: &Console,
    who: &Principal,
    metric: &str,
    by: &str,
    range: &Range,
    filters: &[(&str, &str)],
) -> Result<Vec<Point>, String> {
    let p = range.params();
    let mut pairs: Vec<(&str, &str)> = vec![("metric", metric), ("by", by)];
    pairs.extend(p.iter().map(|(k, v)| (*k, v.as_str())));
    pairs.extend_from_slice(filters);
    let a = c.api.get(who, &format!("/admin/analytics{}", query(&pairs))).await;
    a.parse::<Report>().map(|r| r.points).ok_or_else(|| a.message())
}

/// The points as one series per group over `labels`; counts fill empty buckets with 0, rates
/// and percentiles leave them unknown. Groups named `''` (no value) are left out when `skip_none`.
pub(crate) fn by_group(points: &[Point], labels: &[String], zero: bool, skip_none: bool) -> Vec<Series> {
    let at: std::collections::HashMap<(&str, &str), Option<f64>> = points
        .iter()
        .map(|p| ((p.group.as_str(), p.bucket.as_str()), p.value))
        .collect();
    let mut groups: Vec<&str> = points.iter().map(|p| p.group.as_str()).collect();
    groups.sort_unstable();
    groups.dedup();
    groups
        .into_iter()
        .filter(|g| !(skip_none && g.is_empty()))
        .map(|g| Series {
            name: if g.is_empty() {
                "(none)".to_owned()
            } else {
                g.to_owned()
            },
            values: labels
                .iter()
                .map(|l| at.get(&(g, l.as_str())).copied().flatten().or(zero.then_some(0.0)))
                .collect(),
        })
        .collect()
}

/// A path with one escaped segment appended.
pub(crate) fn path(base: &str, segment: &str) -> String {
    format!("{base}/{}", escape(segment))
}

/// What to show where the API refused or failed.
pub(crate) fn refused(message: &str) -> Markup {
    layout::notice(false, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(group: &str, bucket: &str, value: Option<f64>) -> Point {
        Point {
            group: group.into(),
            bucket: bucket.into(),
            value,
        }
    }

    #[test]
    fn ranges_label_every_bucket_as_the_analytics_api_does() {
        let r = Range {
            name: "1h",
            per: "minute",
            since_ms: 1_796_479_200_000, // 2026-12-05T14:00:00Z
            until_ms: 1_796_479_200_000 + 3_600_001,
        };
        let l = r.labels(0);
        assert_eq!(
            (l.len(), l[0].as_str(), l[60].as_str()),
            (61, "2026-12-05T14:00", "2026-12-05T15:00")
        );
        let east = r.labels(3_600);
        assert_eq!(east[0], "2026-12-05T15:00", "local time in the configured zone");
        let day = Range { per: "day", ..r };
        assert_eq!(day.labels(0), ["2026-12-05"]);
        assert_eq!(Range::parse(Some("nonsense")).name, "1h");
        assert_eq!(Range::parse(Some("30d")).per, "day");
    }

    #[test]
    fn groups_become_series_with_counts_filled_and_rates_left_unknown() {
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let points = [
            point("k1", "a", Some(2.0)),
            point("k1", "c", Some(5.0)),
            point("", "b", Some(1.0)),
        ];
        let counts = by_group(&points, &labels, true, true);
        assert_eq!(counts.len(), 1, "the group without a value is left out");
        assert_eq!(counts[0].values, [Some(2.0), Some(0.0), Some(5.0)]);
        let rates = by_group(&points, &labels, false, false);
        assert_eq!(rates[0].name, "(none)");
        assert_eq!(rates[1].values, [Some(2.0), None, Some(5.0)]);
    }
}
