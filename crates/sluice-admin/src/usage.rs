//! Usage queries over the spend ledger: spend and tokens by key, team, tenant or model, per
//! hour, day or month. Served by the admin API (`GET /admin/usage`) and `sluice usage`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use sluice_store::ledger::{LedgerDb, Per, UsageBy, UsageRow};

use sluice_gateway::Gateway;

#[derive(Debug, Deserialize)]
pub struct UsageQuery {
    pub by: Option<String>,
    pub per: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
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

/// The rows for a query, or a message naming what is wrong with it.
pub async fn query(db: &LedgerDb, q: &UsageQuery, tz_offset_s: i32) -> Result<Vec<UsageRow>, (StatusCode, String)> {
    let bad = |m: String| (StatusCode::BAD_REQUEST, m);
    let by = q.by.as_deref().unwrap_or("key");
    let by = UsageBy::parse(by).ok_or_else(|| bad(format!("by={by:?}: key, team, tenant or model")))?;
    let per = q.per.as_deref().unwrap_or("day");
    let per = Per::parse(per).ok_or_else(|| bad(format!("per={per:?}: hour, day or month")))?;
    let now = chrono::Utc::now().timestamp_millis();
    let bound = |v: &Option<String>, default: i64, name: &str| match v {
        None => Ok(default),
        Some(s) => parse_time(s, tz_offset_s)
            .ok_or_else(|| bad(format!("{name}={s:?}: unix milliseconds, RFC 3339, or YYYY-MM-DD"))),
    };
    let since = bound(&q.since, now - 31 * 86_400_000, "since")?;
    let until = bound(&q.until, now + 60_000, "until")?;
    db.usage(by, per, since, until, tz_offset_s)
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
}

/// `GET /admin/usage?by=key&per=day&since=2026-11-01`: ships the ledger first, so the answer
/// includes every request finished so far.
pub async fn handler(State(gw): State<Arc<Gateway>>, Query(q): Query<UsageQuery>) -> Response {
    let Some(ledger) = &gw.ledger else {
        return crate::error::error(
            StatusCode::NOT_FOUND,
            "ledger_disabled",
            "The spend ledger is disabled.",
        );
    };
    ledger.ship().await;
    let snap = gw.snapshot();
    match query(ledger.db(), &q, snap.config.time_zone_offset_s).await {
        Ok(rows) => Json(json!({
            "by": q.by.as_deref().unwrap_or("key"),
            "per": q.per.as_deref().unwrap_or("day"),
            "currency": snap.currency.as_ref(),
            "rows": rows,
        }))
        .into_response(),
        Err((status, message)) => crate::error::error(status, "invalid_usage_query", message),
    }
}
