//! `GET /admin/analytics`: one metric by one dimension per time bucket from the ledger, as
//! JSON or CSV, optionally only the top N groups.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sluice_gateway::Gateway;
use sluice_store::ledger::analytics::{self, Dim, Metric, Point, Span};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::error::{ErrorBody, error};
use crate::extract::Q;

#[derive(ToSchema, Serialize)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // the query parameter's schema
pub enum MetricName {
    Requests,
    Cost,
    Tokens,
    Errors,
    LatencyP50,
    LatencyP95,
    LatencyP99,
    CacheHitRate,
    TtfbP50,
    TtfbP95,
    TtfbP99,
    TtftP50,
    TtftP95,
    TtftP99,
    GuardrailTriggers,
}

#[derive(ToSchema, Serialize)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // the query parameter's schema
pub enum DimName {
    All,
    Key,
    Team,
    Tenant,
    Model,
    Route,
    Deployment,
    ErrorClass,
    Guardrail,
}

#[derive(ToSchema, Serialize)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // the query parameter's schema
pub enum SpanName {
    Minute,
    Hour,
    Day,
    Month,
}

#[derive(ToSchema, Serialize)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // the query parameter's schema
pub enum FormatName {
    Json,
    Csv,
}

/// An analytics query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AnalyticsQuery {
    /// `requests` (default), `cost` (micro-units), `tokens`, `errors`, `latency_p50`,
    /// `latency_p95`, `latency_p99` (ms), `cache_hit_rate`, `ttfb_p50`, `ttfb_p95`,
    /// `ttfb_p99` (ms to the answer's first byte), `ttft_p50`, `ttft_p95`, `ttft_p99` (ms to a
    /// stream's first content token), `guardrail_triggers`.
    #[param(value_type = Option<MetricName>, inline)]
    pub metric: Option<String>,
    /// `key` (default), `team`, `tenant`, `model`, `route`, `deployment`, `error_class`,
    /// `guardrail` (what the strongest guardrail did), `all` (one group: totals).
    #[param(value_type = Option<DimName>, inline)]
    pub by: Option<String>,
    /// `minute`, `hour`, `day` (default), `month` — in the configured time zone.
    #[param(value_type = Option<SpanName>, inline)]
    pub per: Option<String>,
    /// From: unix milliseconds, RFC 3339 or `YYYY-MM-DD` (default: 31 days ago).
    pub since: Option<String>,
    /// Until (default: now).
    pub until: Option<String>,
    /// Only the N groups with the largest value over the range (1–1000).
    pub top: Option<u32>,
    /// Only this key's requests (drilling down; with `team`, `model`, `route`: all must hold).
    pub key: Option<String>,
    /// Only this team's requests.
    pub team: Option<String>,
    /// Only this model alias's requests.
    pub model: Option<String>,
    /// Only this route's requests.
    pub route: Option<String>,
    /// `json` (default) or `csv` (`group,bucket,value,requests`).
    #[param(value_type = Option<FormatName>, inline)]
    pub format: Option<String>,
}

/// One group's value in one bucket.
#[derive(ToSchema)]
#[schema(as = AnalyticsPoint)]
#[allow(dead_code)] // the schema of `sluice_store::ledger::analytics::Point`
struct PointSchema {
    group: String,
    bucket: String,
    /// Null when there is nothing to tell (no latency recorded, no cache lookup).
    value: Option<f64>,
    requests: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AnalyticsReport {
    pub metric: String,
    pub by: String,
    pub per: String,
    pub currency: String,
    #[schema(value_type = Vec<PointSchema>)]
    pub points: Vec<Point>,
}

/// A metric by group and time bucket, from the ledger (a tenant-confined principal: its
/// tenant's requests).
#[utoipa::path(get, path = "/admin/analytics", tag = "usage", params(AnalyticsQuery),
    responses(
        (status = 200, description = "Points in bucket then group order",
            content((AnalyticsReport = "application/json"), (String = "text/csv"))),
        (status = 400, description = "A bad query", body = ErrorBody),
        (status = 401, description = "No valid admin token", body = ErrorBody),
        (status = 403, description = "The role or the tenant may not", body = ErrorBody),
        (status = 404, description = "The ledger is disabled", body = ErrorBody),
        (status = 503, description = "The ledger database did not answer", body = ErrorBody),
    ))]
pub(crate) async fn handler(
    State(gw): State<Arc<Gateway>>,
    Extension(who): Extension<Principal>,
    Q(q): Q<AnalyticsQuery>,
) -> Response {
    let bad = |m: String| error(StatusCode::BAD_REQUEST, "invalid_analytics_query", m);
    let metric_name = q.metric.as_deref().unwrap_or("requests");
    let Some(metric) = Metric::parse(metric_name) else {
        let names: Vec<&str> = Metric::ALL.map(Metric::name).to_vec();
        return bad(format!("metric={metric_name:?}: one of {}", names.join(", ")));
    };
    let by_name = q.by.as_deref().unwrap_or("key");
    let Some(by) = Dim::parse(by_name) else {
        let names: Vec<&str> = Dim::ALL.map(Dim::name).to_vec();
        return bad(format!("by={by_name:?}: one of {}", names.join(", ")));
    };
    let per_name = q.per.as_deref().unwrap_or("day");
    let Some(per) = Span::parse(per_name) else {
        return bad(format!("per={per_name:?}: minute, hour, day or month"));
    };
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(f) => return bad(format!("format={f:?}: json or csv")),
    };
    if q.top.is_some_and(|n| !(1..=1000).contains(&n)) {
        return bad("top is 1–1000.".to_owned());
    }
    let Some(ledger) = &gw.ledger else {
        return crate::error::ledger_disabled();
    };
    ledger.ship().await;
    let snap = gw.snapshot();
    let tz = snap.config.time_zone_offset_s;
    let (since, until) = match crate::usage::time_range(&q.since, &q.until, tz) {
        Ok(range) => range,
        Err(m) => return bad(m),
    };
    let query = analytics::Query {
        metric,
        by,
        per,
        since_ms: since,
        until_ms: until,
        tz_offset_s: tz,
        top: q.top.map(|n| n as usize),
        tenant: who.tenant.as_deref(),
        only: [
            (Dim::Key, &q.key),
            (Dim::Team, &q.team),
            (Dim::Model, &q.model),
            (Dim::Route, &q.route),
        ]
        .into_iter()
        .filter_map(|(d, v)| v.as_deref().map(|v| (d, v)))
        .collect(),
    };
    let points = match ledger.db().analytics(&query).await {
        Ok(p) => p,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, "ledger_unavailable", e.to_string()),
    };
    if csv {
        let mut out = String::from("group,bucket,value,requests\n");
        for p in &points {
            let value = p.value.map_or_else(String::new, |v| v.to_string());
            out.push_str(&format!(
                "{},{},{value},{}\n",
                csv_field(&p.group),
                p.bucket,
                p.requests
            ));
        }
        let mut r = out.into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        return r;
    }
    Json(AnalyticsReport {
        metric: metric_name.to_owned(),
        by: by_name.to_owned(),
        per: per_name.to_owned(),
        currency: snap.currency.to_string(),
        points,
    })
    .into_response()
}

/// A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values the OpenAPI document offers for a query parameter of `/admin/analytics`.
    fn offered(param: &str) -> Vec<String> {
        let doc = serde_json::to_value(crate::openapi()).unwrap_or_default();
        let params = doc["paths"]["/admin/analytics"]["get"]["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let p = params.iter().find(|p| p["name"] == param).cloned().unwrap_or_default();
        let values = p["schema"]["enum"]
            .as_array()
            .or_else(|| p["schema"]["oneOf"][0]["enum"].as_array())
            .or_else(|| p["schema"]["anyOf"][0]["enum"].as_array())
            .cloned()
            .unwrap_or_default();
        values.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
    }

    #[test]
    fn the_document_offers_exactly_the_metrics_and_dimensions_the_ledger_answers() {
        let metrics: Vec<String> = Metric::ALL.iter().map(|m| m.name().to_owned()).collect();
        let dims: Vec<String> = Dim::ALL.iter().map(|d| d.name().to_owned()).collect();
        let (mut doc_metrics, mut doc_dims) = (offered("metric"), offered("by"));
        let (mut metrics, mut dims) = (metrics, dims);
        for v in [&mut doc_metrics, &mut doc_dims, &mut metrics, &mut dims] {
            v.sort();
        }
        assert_eq!(doc_metrics, metrics);
        assert_eq!(doc_dims, dims);
    }
}
