//! The most recent requests, one ledger row each, newest first (`GET /admin/requests`, the
//! console's recent requests): who, where, what it cost, how long it took and how it ended —
//! never the prompt or the answer (those are payloads, kept only where a route logs them).

use serde::Serialize;
use sqlx::Row;

use super::{LedgerDb, SqliteLedger, numbered};
use crate::StoreError;

/// One request as the ledger recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecentRow {
    pub request_id: String,
    /// Unix milliseconds.
    pub started_at: i64,
    pub key_id: Option<String>,
    pub team: Option<String>,
    pub tenant: Option<String>,
    pub route: Option<String>,
    pub model: Option<String>,
    pub deployment: Option<String>,
    /// `open` (in flight), `settled`, `unsettled`.
    pub state: String,
    pub http_status: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost_micros: i64,
    pub latency_us: Option<i64>,
    pub ttfb_us: Option<i64>,
    pub error_class: Option<String>,
    pub cache: Option<String>,
    pub guardrail: Option<String>,
}

impl LedgerDb {
    /// At most `limit` requests started before `before_ms` (unix ms), newest first; only
    /// `tenant`'s when given.
    pub async fn recent(&self, limit: i64, before_ms: i64, tenant: Option<&str>) -> Result<Vec<RecentRow>, StoreError> {
        let only = if tenant.is_some() { "AND tenant = ?" } else { "" };
        let sql = format!(
            "SELECT request_id, started_at, key_id, team, tenant, route, model, deployment, state,
                    CAST(http_status AS BIGINT) AS http_status, prompt_tokens, completion_tokens, cost_micros,
                    latency_us, ttfb_us, error_class, cache, guardrail
             FROM spend_ledger WHERE started_at < ? {only} ORDER BY started_at DESC, request_id DESC LIMIT ?"
        );
        macro_rules! rows {
            ($pool:expr, $sql:expr) => {{
                let q = sqlx::query(sqlx::AssertSqlSafe($sql)).bind(before_ms);
                match tenant {
                    Some(t) => q.bind(t),
                    None => q,
                }
                .bind(limit)
            }
            .fetch_all($pool)
            .await?
            .iter()
            .map(|r| {
                Ok(RecentRow {
                    request_id: r.try_get("request_id")?,
                    started_at: r.try_get("started_at")?,
                    key_id: r.try_get("key_id")?,
                    team: r.try_get("team")?,
                    tenant: r.try_get("tenant")?,
                    route: r.try_get("route")?,
                    model: r.try_get("model")?,
                    deployment: r.try_get("deployment")?,
                    state: r.try_get("state")?,
                    http_status: r.try_get("http_status")?,
                    prompt_tokens: r.try_get("prompt_tokens")?,
                    completion_tokens: r.try_get("completion_tokens")?,
                    cost_micros: r.try_get("cost_micros")?,
                    latency_us: r.try_get("latency_us")?,
                    ttfb_us: r.try_get("ttfb_us")?,
                    error_class: r.try_get("error_class")?,
                    cache: r.try_get("cache")?,
                    guardrail: r.try_get("guardrail")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()};
        }
        match self {
            LedgerDb::Sqlite(SqliteLedger { pool, .. }) => rows!(pool, sql),
            LedgerDb::Pg(pool) => rows!(pool, numbered(&sql)),
        }
    }
}
