//! Usage by key, team or model over a range: totals per group (requests, tokens, spend), the
//! top groups over time, drill-down (a key → its models, a team → its keys, a model → the keys
//! using it) and the same as CSV.

use std::collections::BTreeMap;

use axum::extract::{Extension, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::{Range, by_group, points, refused};
use crate::console::Console;
use crate::console::api::query;
use crate::console::chart;
use crate::console::layout::{self, money, number};
use crate::console::signed::Session;

#[derive(Deserialize, Default)]
pub(crate) struct UsageQuery {
    by: Option<String>,
    metric: Option<String>,
    range: Option<String>,
    key: Option<String>,
    team: Option<String>,
    model: Option<String>,
}

impl UsageQuery {
    fn by(&self) -> &'static str {
        match self.by.as_deref() {
            Some("team") => "team",
            Some("model") => "model",
            _ => "key",
        }
    }

    fn metric(&self) -> &'static str {
        match self.metric.as_deref() {
            Some("tokens") => "tokens",
            Some("cost") => "cost",
            _ => "requests",
        }
    }

    fn filters(&self) -> Vec<(&'static str, &str)> {
        [("key", &self.key), ("team", &self.team), ("model", &self.model)]
            .into_iter()
            .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
            .collect()
    }

    /// Where a group's row leads: the next dimension, filtered to that group.
    fn drill(&self, group: &str, range: &str) -> String {
        let (next, filter) = match self.by() {
            "key" => ("model", "key"),
            "team" => ("key", "team"),
            _ => ("key", "model"),
        };
        let mut pairs = self.filters();
        pairs.retain(|(k, _)| *k != filter);
        pairs.extend([
            ("by", next),
            (filter, group),
            ("metric", self.metric()),
            ("range", range),
        ]);
        format!("/console/usage{}", query(&pairs))
    }
}

pub(crate) async fn page(
    State(c): State<Console>,
    Extension(s): Extension<Session>,
    Query(q): Query<UsageQuery>,
) -> Response {
    let range = Range::parse(q.range.as_deref());
    let (by, metric) = (q.by(), q.metric());
    let filters = q.filters();
    let snap = c.gw.snapshot();
    let currency = snap.currency.to_string();
    let labels = range.labels(snap.config.time_zone_offset_s);
    // Totals per group: each metric summed over the range's buckets.
    let mut totals: BTreeMap<String, [f64; 3]> = BTreeMap::new();
    let mut problem = None;
    for (i, m) in ["requests", "tokens", "cost"].into_iter().enumerate() {
        match points(&c, &s.principal, m, by, &range, &filters).await {
            Ok(points) => {
                for p in points {
                    totals.entry(p.group).or_default()[i] += p.value.unwrap_or(0.0);
                }
            }
            Err(e) => problem = Some(e),
        }
    }
    let mut top = vec![("top", "5")];
    top.extend_from_slice(&filters);
    let chart = match points(&c, &s.principal, metric, by, &range, &top).await {
        Ok(p) => {
            let mut series = by_group(&p, &labels, true, false);
            if metric == "cost" {
                for v in series.iter_mut().flat_map(|s| s.values.iter_mut()).flatten() {
                    *v /= 1e6;
                }
            }
            let unit = if metric == "cost" { currency.as_str() } else { "" };
            chart::line(
                "usage-chart",
                &format!("{metric} by {by}, top 5"),
                unit,
                &labels,
                &series,
            )
        }
        Err(e) => refused(&e),
    };
    let mut keep: Vec<(&str, &str)> = vec![("by", by), ("metric", metric)];
    keep.extend_from_slice(&filters);
    let csv = {
        let mut pairs = keep.clone();
        pairs.push(("range", range.name));
        format!("/console/usage.csv{}", query(&pairs))
    };
    let link = |pairs: &[(&str, &str)]| {
        let mut all = filters.clone();
        all.push(("range", range.name));
        all.extend_from_slice(pairs);
        format!("/console/usage{}", query(&all))
    };
    let body = html! {
        (range.picker("/console/usage", &keep))
        nav class="ranges" aria-label="Group by" {
            "By: "
            @for b in ["key", "team", "model"] {
                a href=(link(&[("by", b), ("metric", metric)])) aria-current=[(b == by).then_some("page")] { (b) }
            }
            " · Chart: "
            @for m in ["requests", "tokens", "cost"] {
                a href=(link(&[("by", by), ("metric", m)])) aria-current=[(m == metric).then_some("page")] { (m) }
            }
        }
        @if !filters.is_empty() {
            p class="filters" {
                "Only "
                @for (k, v) in &filters { span class="chip" { (k) " = " (v) } " " }
                a href={"/console/usage" (query(&[("by", by), ("metric", metric), ("range", range.name)]))} { "show all" }
            }
        }
        @if let Some(p) = &problem { (refused(p)) }
        table class="data" id="usage-table" {
            caption { "Usage by " (by) " over the last " (range.name) }
            thead { tr {
                th scope="col" { (by) } th scope="col" { "Requests" } th scope="col" { "Tokens" } th scope="col" { "Spend" }
            } }
            tbody {
                @for (group, [requests, tokens, cost]) in &totals {
                    tr {
                        th scope="row" {
                            @if group.is_empty() { "(none)" }
                            @else { a href=(q.drill(group, range.name)) { (group) } }
                        }
                        td { (number(*requests)) } td { (number(*tokens)) } td { (money(*cost, &currency)) }
                    }
                }
                @if totals.is_empty() { tr { td colspan="4" { "No requests in this range." } } }
            }
        }
        p { a id="csv" href=(csv) download { "Export as CSV" } " (" (metric) " by " (by) " per " (range.per) ")" }
        (chart)
    };
    layout::page(&s, "/console/usage", "Usage", body)
}

/// The chosen metric by group and bucket as CSV, from the analytics API.
pub(crate) async fn csv(
    State(c): State<Console>,
    Extension(s): Extension<Session>,
    Query(q): Query<UsageQuery>,
) -> Response {
    let range = Range::parse(q.range.as_deref());
    let p = range.params();
    let mut pairs: Vec<(&str, &str)> = vec![("metric", q.metric()), ("by", q.by()), ("format", "csv")];
    pairs.extend(p.iter().map(|(k, v)| (*k, v.as_str())));
    pairs.extend(q.filters());
    let a = c
        .api
        .get(&s.principal, &format!("/admin/analytics{}", query(&pairs)))
        .await;
    if !a.ok() {
        return layout::page_with_status(&s, "/console/usage", "Usage", a.status, refused(&a.message()));
    }
    let mut r = a.body.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    let name = format!("attachment; filename=\"sluice-{}-by-{}.csv\"", q.metric(), q.by());
    if let Ok(v) = HeaderValue::from_str(&name) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}
