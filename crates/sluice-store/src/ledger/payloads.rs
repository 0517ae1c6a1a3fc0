//! The payload log: a route's prompts and answers, stored after its redaction rules ran, in
//! the ledger's database, each row with the time it expires (the route's retention).

use serde::Serialize;
use sqlx::Row;

use super::{LedgerDb, SqliteLedger, numbered};
use crate::StoreError;

pub(super) const TABLE: &str = "CREATE TABLE IF NOT EXISTS payload_log (
    request_id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    route TEXT,
    tenant TEXT,
    key_id TEXT,
    endpoint TEXT NOT NULL,
    redacted INTEGER NOT NULL,
    request TEXT NOT NULL,
    response TEXT NOT NULL
)";
pub(super) const INDEX: &str = "CREATE INDEX IF NOT EXISTS payload_log_expires ON payload_log (expires_at)";

/// One request's prompt and answer as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PayloadRow {
    pub request_id: String,
    /// Unix milliseconds.
    pub at: i64,
    pub expires_at: i64,
    pub route: Option<String>,
    pub tenant: Option<String>,
    pub key_id: Option<String>,
    pub endpoint: String,
    /// The route's redaction rules ran over both (else the operator allowed unredacted rows).
    pub redacted: bool,
    /// The request body as the guardrails let it through.
    pub request: String,
    /// The answer's text (and tool-call arguments), as it left the output guardrails.
    pub response: String,
}

const INSERT: &str =
    "INSERT INTO payload_log (request_id, at, expires_at, route, tenant, key_id, endpoint, redacted, request, response)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (request_id) DO NOTHING";

impl LedgerDb {
    /// Stores a batch of payload rows in one transaction (a row stored twice stays one).
    pub async fn insert_payloads(&self, rows: &[PayloadRow]) -> Result<(), StoreError> {
        macro_rules! insert {
            ($pool:expr, $sql:expr) => {{
                let mut tx = $pool.begin().await?;
                for r in rows {
                    sqlx::query(sqlx::AssertSqlSafe($sql))
                        .bind(&r.request_id)
                        .bind(r.at)
                        .bind(r.expires_at)
                        .bind(&r.route)
                        .bind(&r.tenant)
                        .bind(&r.key_id)
                        .bind(&r.endpoint)
                        .bind(i32::from(r.redacted))
                        .bind(&r.request)
                        .bind(&r.response)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }};
        }
        match self {
            LedgerDb::Sqlite(SqliteLedger { pool, .. }) => insert!(pool, INSERT.to_owned()),
            LedgerDb::Pg(pool) => insert!(pool, numbered(INSERT)),
        }
        Ok(())
    }

    /// The newest rows first, at most `limit` (only `tenant`'s when given).
    pub async fn payloads(&self, tenant: Option<&str>, limit: i64) -> Result<Vec<PayloadRow>, StoreError> {
        let only = if tenant.is_some() { "WHERE tenant = ?" } else { "" };
        let sql = format!("SELECT * FROM payload_log {only} ORDER BY at DESC, request_id LIMIT ?");
        macro_rules! rows {
            ($pool:expr, $sql:expr) => {{
                let q = sqlx::query(sqlx::AssertSqlSafe($sql));
                let q = match tenant {
                    Some(t) => q.bind(t),
                    None => q,
                };
                q.bind(limit)
                    .fetch_all($pool)
                    .await?
                    .iter()
                    .map(|r| {
                        Ok(PayloadRow {
                            request_id: r.try_get("request_id")?,
                            at: r.try_get("at")?,
                            expires_at: r.try_get("expires_at")?,
                            route: r.try_get("route")?,
                            tenant: r.try_get("tenant")?,
                            key_id: r.try_get("key_id")?,
                            endpoint: r.try_get("endpoint")?,
                            redacted: r.try_get::<i32, _>("redacted")? != 0,
                            request: r.try_get("request")?,
                            response: r.try_get("response")?,
                        })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()
            }};
        }
        match self {
            LedgerDb::Sqlite(SqliteLedger { pool, .. }) => rows!(pool, sql),
            LedgerDb::Pg(pool) => rows!(pool, numbered(&sql)),
        }
    }

    /// Deletes ledger rows that started before `before_ms` (open ones stay: their request may
    /// still settle), and the rollup's hours before it; returns how many rows.
    pub async fn prune_ledger(&self, before_ms: i64) -> Result<u64, StoreError> {
        const PRUNE: &str = "DELETE FROM spend_ledger WHERE started_at < ? AND state <> 'open'";
        let done = match self {
            LedgerDb::Sqlite(SqliteLedger { pool, .. }) => {
                sqlx::query(PRUNE).bind(before_ms).execute(pool).await?.rows_affected()
            }
            LedgerDb::Pg(pool) => sqlx::query(sqlx::AssertSqlSafe(numbered(PRUNE)))
                .bind(before_ms)
                .execute(pool)
                .await?
                .rows_affected(),
        };
        self.prune_rollup(before_ms).await?;
        Ok(done)
    }

    /// Deletes the payload rows past their retention; returns how many.
    pub async fn prune_payloads(&self, now_ms: i64) -> Result<u64, StoreError> {
        const PRUNE: &str = "DELETE FROM payload_log WHERE expires_at <= ?";
        let done = match self {
            LedgerDb::Sqlite(SqliteLedger { pool, .. }) => {
                sqlx::query(PRUNE).bind(now_ms).execute(pool).await?.rows_affected()
            }
            LedgerDb::Pg(pool) => sqlx::query(sqlx::AssertSqlSafe(numbered(PRUNE)))
                .bind(now_ms)
                .execute(pool)
                .await?
                .rows_affected(),
        };
        Ok(done)
    }
}
