//! Usage by key, team, tenant or model per hour, day or month: spend and tokens summed from
//! the ledger's rows (`GET /admin/usage`, `sluice usage`).

use serde::Serialize;
use sqlx::Row;

use super::{LedgerDb, SqliteLedger, numbered};
use crate::StoreError;

/// How usage is grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageBy {
    Key,
    Team,
    Tenant,
    Model,
}

impl UsageBy {
    pub fn parse(s: &str) -> Option<UsageBy> {
        Some(match s {
            "key" => UsageBy::Key,
            "team" => UsageBy::Team,
            "tenant" => UsageBy::Tenant,
            "model" => UsageBy::Model,
            _ => return None,
        })
    }

    fn column(self) -> &'static str {
        match self {
            UsageBy::Key => "key_id",
            UsageBy::Team => "team",
            UsageBy::Tenant => "tenant",
            UsageBy::Model => "model",
        }
    }
}

/// The time buckets usage is summed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Per {
    Hour,
    Day,
    Month,
}

impl Per {
    pub fn parse(s: &str) -> Option<Per> {
        Some(match s {
            "hour" => Per::Hour,
            "day" => Per::Day,
            "month" => Per::Month,
            _ => return None,
        })
    }
}

/// Usage of one group in one time bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRow {
    pub group: String,
    /// `2026-11-22T09` (hour), `2026-11-22` (day) or `2026-11` (month), in the configured zone.
    pub bucket: String,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    pub cost_micros: i64,
    /// Requests whose usage is an estimate (cut short, or closed as unsettled).
    pub estimated: i64,
    pub unsettled: i64,
}

impl LedgerDb {
    /// Spend and tokens by `by` per `per`, for requests started in [since, until) (unix ms),
    /// buckets in the zone `tz_offset_s` seconds east of UTC.
    pub async fn usage(
        &self,
        by: UsageBy,
        per: Per,
        since_ms: i64,
        until_ms: i64,
        tz_offset_s: i32,
        tenant: Option<&str>,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let col = by.column();
        // A tenant's own rows only (an admin principal confined to it).
        let only = if tenant.is_some() { "AND tenant = ?" } else { "" };
        let bucket = match self {
            LedgerDb::Sqlite(_) => {
                let fmt = match per {
                    Per::Hour => "%Y-%m-%dT%H",
                    Per::Day => "%Y-%m-%d",
                    Per::Month => "%Y-%m",
                };
                format!("strftime('{fmt}', started_at / 1000 + {tz_offset_s}, 'unixepoch')")
            }
            LedgerDb::Pg(_) => {
                let fmt = match per {
                    Per::Hour => "YYYY-MM-DD\"T\"HH24",
                    Per::Day => "YYYY-MM-DD",
                    Per::Month => "YYYY-MM",
                };
                format!("to_char(to_timestamp(started_at / 1000 + {tz_offset_s}) AT TIME ZONE 'UTC', '{fmt}')")
            }
        };
        let sql = format!(
            "SELECT coalesce({col}, '') AS grp, {bucket} AS bucket, count(*) AS requests,
                    CAST(sum(prompt_tokens) AS BIGINT) AS prompt, CAST(sum(completion_tokens) AS BIGINT) AS completion,
                    CAST(sum(total_tokens) AS BIGINT) AS total, CAST(sum(cost_micros) AS BIGINT) AS cost,
                    CAST(sum(CASE WHEN estimated = 1 THEN 1 ELSE 0 END) AS BIGINT) AS estimated,
                    CAST(sum(CASE WHEN state = 'unsettled' THEN 1 ELSE 0 END) AS BIGINT) AS unsettled
             FROM spend_ledger WHERE started_at >= ? AND started_at < ? AND state <> 'open' {only}
             GROUP BY 1, 2 ORDER BY 2, 1"
        );
        macro_rules! rows {
            ($pool:expr, $sql:expr) => {{
                let q = sqlx::query(sqlx::AssertSqlSafe($sql))
                    .bind(since_ms)
                    .bind(until_ms);
                match tenant {
                    Some(t) => q.bind(t),
                    None => q,
                }
            }
            .fetch_all($pool)
            .await?
            .iter()
            .map(|r| {
                Ok(UsageRow {
                    group: r.try_get("grp")?,
                    bucket: r.try_get("bucket")?,
                    requests: r.try_get("requests")?,
                    prompt_tokens: r.try_get("prompt")?,
                    completion_tokens: r.try_get("completion")?,
                    total_tokens: r.try_get("total")?,
                    cost_micros: r.try_get("cost")?,
                    estimated: r.try_get("estimated")?,
                    unsettled: r.try_get("unsettled")?,
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
