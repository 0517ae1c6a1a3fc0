//! Usage queries over the spend ledger: spend and tokens by key, team, tenant or model, per
//! hour, day or month. Served by the admin API (`GET /admin/usage`) and `sluice usage`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sluice_store::ledger::{LedgerDb, Per, UsageBy, UsageRow};
use utoipa::{IntoParams, ToSchema};

use sluice_gateway::Gateway;

use crate::auth::Principal;
use crate::error::ErrorBody;
use crate::extract::Q;

/// What usage is grouped by.
#[derive(ToSchema, Serialize)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // the query parameter's schema
pub enum UsageByName {
    Key,
    Team,
    Tenant,
    Model,
}

/// The length of a usage bucket.
#[derive(ToSchema, Serialize)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // the query parameter's schema
pub enum PerName {
    Hour,
    Day,
    Month,
}

/// A usage query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// `key` (default), `team`, `tenant` or `model`.
    #[param(value_type = Option<UsageByName>, inline)]
    pub by: Option<String>,
    /// `hour`, `day` (default) or `month`.
    #[param(value_type = Option<PerName>, inline)]
    pub per: Option<String>,
    /// From: unix milliseconds, RFC 3339 or `YYYY-MM-DD` (default: 31 days ago).
    pub since: Option<String>,
    /// Until (default: now).
    pub until: Option<String>,
}

/// Usage of one group in one time bucket.
#[derive(ToSchema)]
#[schema(as = UsageRow)]
#[allow(dead_code)] // the schema of `sluice_store::ledger::UsageRow`
struct UsageRowSchema {
    group: String,
    /// `2026-11-22T09` (hour), `2026-11-22` (day) or `2026-11` (month), in the configured zone.
    bucket: String,
    requests: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    total_tokens: i64,
    cost_micros: i64,
    estimated: i64,
    unsettled: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReport {
    pub by: String,
    pub per: String,
    pub currency: String,
    #[schema(value_type = Vec<UsageRowSchema>)]
    pub rows: Vec<UsageRow>,
}

/// A bound: unix milliseconds, an RFC 3339 time, or a date (`2026-11-01`, midnight in the
/// configured zone).
pub fn parse_time(s: &str, tz_offset_s: i32) -> Option<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Some(ms);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    let midnight = d.and_hms_opt(0, 0, 0)?.and_utc().timestamp();
    Some((midnight - i64::from(tz_offset_s)) * 1000)
}

/// A query's `since` and `until` (unix ms, RFC 3339 or a date; default: the last 31 days, up to
/// a minute from now), or a message naming the bad one.
pub(crate) fn time_range(
    since: &Option<String>,
    until: &Option<String>,
    tz_offset_s: i32,
) -> Result<(i64, i64), String> {
    let now = chrono::Utc::now().timestamp_millis();
    let bound = |v: &Option<String>, default: i64, name: &str| match v {
        None => Ok(default),
        Some(s) => parse_time(s, tz_offset_s)
            .ok_or_else(|| format!("{name}={s:?}: unix milliseconds, RFC 3339, or YYYY-MM-DD")),
    };
    Ok((
        bound(since, now - 31 * 86_400_000, "since")?,
        bound(until, now + 60_000, "until")?,
    ))
}

/// The rows for a query, or a message naming what is wrong with it.
/// `tenant`: only that tenant's rows.
pub async fn query(
    db: &LedgerDb,
    q: &UsageQuery,
    tz_offset_s: i32,
    tenant: Option<&str>,
) -> Result<Vec<UsageRow>, (StatusCode, String)> {
    let bad = |m: String| (StatusCode::BAD_REQUEST, m);
    let by = q.by.as_deref().unwrap_or("key");
    let by = UsageBy::parse(by).ok_or_else(|| bad(format!("by={by:?}: key, team, tenant or model")))?;
    let per = q.per.as_deref().unwrap_or("day");
    let per = Per::parse(per).ok_or_else(|| bad(format!("per={per:?}: hour, day or month")))?;
    let (since, until) = time_range(&q.since, &q.until, tz_offset_s).map_err(bad)?;
    db.usage(by, per, since, until, tz_offset_s, tenant)
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
}

/// `GET /admin/usage?by=key&per=day&since=2026-11-01`: ships the ledger first, so the answer
/// includes every request finished so far.
#[utoipa::path(get, path = "/admin/usage", tag = "usage", params(UsageQuery),
    responses(
        (status = 200, description = "Spend and tokens per group and bucket", body = UsageReport),
        (status = 400, description = "A bad query", body = ErrorBody),
        (status = 401, description = "No valid admin token", body = ErrorBody),
        (status = 403, description = "The role or the tenant may not", body = ErrorBody),
        (status = 404, description = "The ledger is disabled", body = ErrorBody),
        (status = 503, description = "The ledger database did not answer", body = ErrorBody),
    ))]
pub(crate) async fn handler(
    State(gw): State<Arc<Gateway>>,
    Extension(who): Extension<Principal>,
    Q(q): Q<UsageQuery>,
) -> Response {
    let Some(ledger) = &gw.ledger else {
        return crate::error::ledger_disabled();
    };
    ledger.ship().await;
    let snap = gw.snapshot();
    match query(ledger.db(), &q, snap.config.time_zone_offset_s, who.tenant.as_deref()).await {
        Ok(rows) => Json(UsageReport {
            by: q.by.unwrap_or_else(|| "key".to_owned()),
            per: q.per.unwrap_or_else(|| "day".to_owned()),
            currency: snap.currency.to_string(),
            rows,
        })
        .into_response(),
        Err((status, message)) => {
            let code = if status == StatusCode::BAD_REQUEST {
                "invalid_usage_query"
            } else {
                "ledger_unavailable"
            };
            crate::error::error(status, code, message)
        }
    }
}
