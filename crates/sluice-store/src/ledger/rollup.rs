//! Hourly rollups of the ledger, so analytics over months answer from a few thousand rows
//! rather than millions.
//!
//! `ledger_hourly` holds, per hour, per dimension (key, team, tenant, model, route,
//! deployment, error class, guardrail, all) and per value of it within each tenant: requests,
//! cost, tokens, errors, cache hits and lookups, guardrail triggers, and the latency and
//! time-to-first-byte histograms as bins (so percentiles still merge across hours and groups).
//!
//! Every write to a ledger row marks it `rolled = 0` (an insert by default, a settlement or an
//! unsettled close explicitly). A pass ([`LedgerDb::roll_up`]) takes the hours that hold such
//! rows and, one hour per transaction, marks them rolled, reads the hour's finished rows and
//! replaces the hour's rollup rows with what they add up to: idempotent, so a pass that fails
//! half-way or runs twice (two instances on one PostgreSQL; each hour is also taken under an
//! advisory lock there) leaves the right numbers. A row written after its hour was claimed is
//! marked again and redone by the next pass. Queries answer dirty hours from the raw rows
//! (`plan.rs`), so they are right before a pass has run.

use std::collections::HashMap;

use sqlx::Row;

use super::analytics::{Acc, Accs, Dim, LatencyHistogram, Query, Shape};
use super::{LedgerDb, SqliteLedger, numbered};
use crate::StoreError;

pub(crate) const HOUR_MS: i64 = 3_600_000;

/// Which rollup a query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grain {
    Hour,
    Day,
}

/// The columns of a rollup row after its unit (`hour` or `day`).
macro_rules! rollup_table {
    ($table:literal, $unit:literal) => {
        concat!(
            "CREATE TABLE IF NOT EXISTS ",
            $table,
            " (
    dim TEXT NOT NULL,
    ",
            $unit,
            " BIGINT NOT NULL,
    grp TEXT NOT NULL,
    tenant TEXT NOT NULL,
    requests BIGINT NOT NULL,
    cost BIGINT NOT NULL,
    tokens BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    hits BIGINT NOT NULL,
    lookups BIGINT NOT NULL,
    guarded BIGINT NOT NULL,
    latency TEXT NOT NULL,
    ttfb TEXT NOT NULL,
    ttft TEXT NOT NULL,
    PRIMARY KEY (dim, ",
            $unit,
            ", grp, tenant)
)"
        )
    };
}

pub(crate) const TABLE: &str = rollup_table!("ledger_hourly", "hour");
/// Whole days (UTC), made from their hours: what day and month buckets read in UTC.
pub(crate) const DAILY_TABLE: &str = rollup_table!("ledger_daily", "day");

/// Rows not yet in the rollup (written since their hour was last rolled up).
pub(crate) const DIRTY_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS spend_ledger_dirty ON spend_ledger (started_at) WHERE rolled = 0";

/// The advisory lock an hour's rollup is made under on PostgreSQL (with the hour as the second
/// key).
const LOCK: i32 = 0x51_1C_E0_02;

/// Every dimension a rollup row is kept for.
pub(crate) const DIMS: [Dim; 9] = Dim::ALL;

/// What one group adds up to in one hour or day: the sums and the latency histogram, and the
/// time-to-first-byte histogram beside them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cell {
    pub acc: Acc,
    pub ttfb: LatencyHistogram,
    pub ttft: LatencyHistogram,
}

/// A histogram as stored: `bin:count` pairs of the bins that hold any, space-separated.
pub(crate) fn encode(h: &LatencyHistogram) -> String {
    let mut out = String::new();
    for (i, n) in h.0.iter().enumerate().filter(|(_, n)| **n > 0) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&format!("{i}:{n}"));
    }
    out
}

/// A stored histogram read back (pairs that do not parse are skipped).
pub(crate) fn decode(s: &str, into: &mut LatencyHistogram) {
    for pair in s.split_ascii_whitespace() {
        if let Some((i, n)) = pair.split_once(':')
            && let (Ok(i), Ok(n)) = (i.parse::<usize>(), n.parse::<u64>())
            && i < into.0.len()
        {
            into.0[i] += n;
        }
    }
}

/// One finished ledger row, as far as the rollup reads it.
struct Finished {
    values: [String; 9],
    tenant: String,
    cost: i64,
    tokens: i64,
    error: bool,
    cache: Option<String>,
    guarded: bool,
    latency_us: Option<i64>,
    ttfb_us: Option<i64>,
    ttft_us: Option<i64>,
}

/// The hour's rows added up per dimension, value and tenant.
fn add_up(rows: &[Finished]) -> HashMap<(usize, &str, &str), Cell> {
    let mut cells: HashMap<(usize, &str, &str), Cell> = HashMap::new();
    for r in rows {
        for d in 0..DIMS.len() {
            let cell = cells.entry((d, r.values[d].as_str(), r.tenant.as_str())).or_default();
            let c = &mut cell.acc;
            c.requests += 1;
            c.cost += r.cost;
            c.tokens += r.tokens;
            c.errors += i64::from(r.error);
            if let Some(cache) = &r.cache {
                c.lookups += 1;
                c.hits += i64::from(matches!(cache.as_str(), "hit" | "semantic" | "stale"));
            }
            c.guarded += i64::from(r.guarded);
            if let Some(us) = r.latency_us {
                c.latency.add(us.max(0) as u64);
            }
            if let Some(us) = r.ttfb_us {
                cell.ttfb.add(us.max(0) as u64);
            }
            if let Some(us) = r.ttft_us {
                cell.ttft.add(us.max(0) as u64);
            }
        }
    }
    cells
}

/// A ledger row read for the rollup.
fn finished<R>(r: &R) -> Result<Finished, StoreError>
where
    R: Row,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let text =
        |name: &str| -> Result<String, StoreError> { Ok(r.try_get::<Option<String>, _>(name)?.unwrap_or_default()) };
    let guardrail: Option<String> = r.try_get("guardrail")?;
    let error: Option<String> = r.try_get("error_class")?;
    Ok(Finished {
        values: [
            text("key_id")?,
            text("team")?,
            text("tenant")?,
            text("model")?,
            text("route")?,
            text("deployment")?,
            error.clone().unwrap_or_default(),
            guardrail.clone().unwrap_or_default(),
            "all".to_owned(),
        ],
        tenant: text("tenant")?,
        cost: r.try_get("cost_micros")?,
        tokens: r.try_get("total_tokens")?,
        error: error.is_some(),
        cache: r.try_get("cache")?,
        guarded: guardrail.is_some(),
        latency_us: r.try_get("latency_us")?,
        ttfb_us: r.try_get("ttfb_us")?,
        ttft_us: r.try_get("ttft_us")?,
    })
}

/// A day's hourly rows (what its daily rows are made of).
const DAY_HOURS: &str =
    "SELECT dim, grp, tenant, requests, cost, tokens, errors, hits, lookups, guarded, latency, ttfb, ttft
    FROM ledger_hourly WHERE hour >= ? AND hour < ?";

const HOUR_ROWS: &str = "SELECT key_id, team, tenant, route, model, deployment, error_class, guardrail,
        cost_micros, total_tokens, cache, latency_us, ttfb_us, ttft_us
    FROM spend_ledger WHERE started_at >= ? AND started_at < ? AND state <> 'open'";

const CLAIM: &str = "UPDATE spend_ledger SET rolled = 1 WHERE rolled = 0 AND started_at >= ? AND started_at < ?";

/// A pass of at least this many hours is a catch-up (after which PostgreSQL's statistics are
/// brought up to date).
const CATCH_UP_HOURS: usize = 12;

/// Hours rolled up in one transaction at most (with their day made again after them): about
/// a second at 14 000 rows an hour on SQLite.
const HOURS_PER_TRANSACTION: usize = 6;

/// Rollup rows per insert statement (14 values each: well under both databases' limits).
const INSERT_ROWS: usize = 100;

fn insert_sql(table: &str, unit: &str, rows: usize) -> String {
    let one = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    format!(
        "INSERT INTO {table} (dim, {unit}, grp, tenant, requests, cost, tokens, errors, hits, lookups, guarded, latency, ttfb, ttft) VALUES {}",
        vec![one; rows].join(", ")
    )
}

/// What a pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RollupPass {
    /// Hours rolled up.
    pub hours: usize,
    /// Ledger rows read.
    pub rows: u64,
}

impl LedgerDb {
    /// Hours (numbered from the epoch) in `[from, to)` with rows not yet rolled up, oldest
    /// first, at most `limit`.
    pub async fn dirty_hours(&self, from_hour: i64, to_hour: i64, limit: i64) -> Result<Vec<i64>, StoreError> {
        const SQL: &str = "SELECT DISTINCT started_at / 3600000 AS h FROM spend_ledger
            WHERE rolled = 0 AND started_at >= ? AND started_at < ? ORDER BY h LIMIT ?";
        let (from, to) = (from_hour.saturating_mul(HOUR_MS), to_hour.saturating_mul(HOUR_MS));
        macro_rules! hours {
            ($pool:expr, $sql:expr) => {
                sqlx::query(sqlx::AssertSqlSafe($sql))
                    .bind(from)
                    .bind(to)
                    .bind(limit)
                    .fetch_all($pool)
                    .await?
                    .iter()
                    .map(|r| r.try_get::<i64, _>(0))
                    .collect::<Result<Vec<_>, _>>()?
            };
        }
        let rows = match self {
            LedgerDb::Sqlite(SqliteLedger { pool, .. }) => hours!(pool, SQL),
            LedgerDb::Pg(pool) => hours!(pool, numbered(SQL)),
        };
        Ok(rows)
    }

    /// Rolls up at most `max_hours` hours that have rows not yet in the rollup, oldest first,
    /// and the days they fall in.
    pub async fn roll_up(&self, max_hours: usize) -> Result<RollupPass, StoreError> {
        let hours = self.dirty_hours(0, i64::MAX / HOUR_MS, max_hours as i64).await?;
        let mut pass = RollupPass::default();
        let mut rest = hours.as_slice();
        while let Some(first) = rest.first() {
            let day = first.div_euclid(24);
            // A few hours per transaction: a database-wide writer (SQLite) is never held long.
            let n = rest
                .iter()
                .take(HOURS_PER_TRANSACTION)
                .take_while(|h| h.div_euclid(24) == day)
                .count();
            pass.rows += self.roll_up_day(day, &rest[..n]).await?;
            pass.hours += n;
            rest = &rest[n..];
        }
        // A catch-up changed most rows' `rolled`: PostgreSQL's planner would otherwise go on
        // believing most rows dirty (and scan them all to find the dirty hours) until its
        // autovacuum samples the table again.
        if let LedgerDb::Pg(pool) = self
            && pass.hours >= CATCH_UP_HOURS
        {
            sqlx::query("ANALYZE spend_ledger, ledger_hourly, ledger_daily")
                .execute(pool)
                .await?;
        }
        Ok(pass)
    }

    /// Dirty hours of one day, each claimed, read, added up and replaced, then the day's rows
    /// made again from its hours — in one transaction, so a failure leaves the hours dirty.
    async fn roll_up_day(&self, day: i64, hours: &[i64]) -> Result<u64, StoreError> {
        macro_rules! day {
            ($pool:expr, $fix:expr, $pg:expr) => {{
                let mut tx = $pool.begin().await?;
                if $pg {
                    // One instance at a time per day (SQLite's writes are serialised anyway).
                    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
                        .bind(LOCK)
                        .bind(day as i32)
                        .execute(&mut *tx)
                        .await?;
                }
                let mut read = 0u64;
                let mut any = false;
                for &hour in hours {
                    let (from, to) = (hour * HOUR_MS, (hour + 1) * HOUR_MS);
                    let claimed = sqlx::query(sqlx::AssertSqlSafe($fix(CLAIM)))
                        .bind(from)
                        .bind(to)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if claimed == 0 {
                        continue; // another pass (another instance) did it meanwhile
                    }
                    any = true;
                    let mut rows = Vec::new();
                    for r in sqlx::query(sqlx::AssertSqlSafe($fix(HOUR_ROWS)))
                        .bind(from)
                        .bind(to)
                        .fetch_all(&mut *tx)
                        .await?
                    {
                        rows.push(finished(&r)?);
                    }
                    read += rows.len() as u64;
                    let cells: Vec<_> = add_up(&rows).into_iter().collect();
                    replace!(tx, $fix, "ledger_hourly", "hour", hour, cells);
                }
                if any {
                    let mut cells: HashMap<(usize, String, String), Cell> = HashMap::new();
                    for r in sqlx::query(sqlx::AssertSqlSafe($fix(DAY_HOURS)))
                        .bind(day * 24)
                        .bind(day * 24 + 24)
                        .fetch_all(&mut *tx)
                        .await?
                    {
                        let dim: String = r.try_get("dim")?;
                        let Some(d) = DIMS.iter().position(|x| x.name() == dim) else {
                            continue;
                        };
                        let c = cells
                            .entry((d, r.try_get("grp")?, r.try_get("tenant")?))
                            .or_default();
                        c.acc.add_sums(&r)?;
                        decode(&r.try_get::<String, _>("latency")?, &mut c.acc.latency);
                        decode(&r.try_get::<String, _>("ttfb")?, &mut c.ttfb);
                        decode(&r.try_get::<String, _>("ttft")?, &mut c.ttft);
                    }
                    let cells: Vec<_> = cells
                        .iter()
                        .map(|((d, g, t), c)| ((*d, g.as_str(), t.as_str()), c.clone()))
                        .collect();
                    replace!(tx, $fix, "ledger_daily", "day", day, cells);
                }
                tx.commit().await?;
                Ok(read)
            }};
        }
        // Replaces one hour's or day's rows with `cells`.
        macro_rules! replace {
            ($tx:ident, $fix:expr, $table:literal, $unit:literal, $n:expr, $cells:expr) => {{
                sqlx::query(sqlx::AssertSqlSafe($fix(concat!(
                    "DELETE FROM ",
                    $table,
                    " WHERE ",
                    $unit,
                    " = ?"
                ))))
                .bind($n)
                .execute(&mut *$tx)
                .await?;
                for chunk in $cells.chunks(INSERT_ROWS) {
                    let mut q = sqlx::query(sqlx::AssertSqlSafe($fix(&insert_sql($table, $unit, chunk.len()))));
                    for ((d, grp, tenant), c) in chunk {
                        q = q
                            .bind(DIMS[*d].name())
                            .bind($n)
                            .bind(*grp)
                            .bind(*tenant)
                            .bind(c.acc.requests)
                            .bind(c.acc.cost)
                            .bind(c.acc.tokens)
                            .bind(c.acc.errors)
                            .bind(c.acc.hits)
                            .bind(c.acc.lookups)
                            .bind(c.acc.guarded)
                            .bind(encode(&c.acc.latency))
                            .bind(encode(&c.ttfb))
                            .bind(encode(&c.ttft));
                    }
                    q.execute(&mut *$tx).await?;
                }
            }};
        }
        match self {
            LedgerDb::Sqlite(SqliteLedger { pool, .. }) => day!(pool, |s: &str| s.to_owned(), false),
            LedgerDb::Pg(pool) => day!(pool, numbered, true),
        }
    }

    /// Adds the rollup's `[from, to)` hours or days (but those in `skip`) to `accs` by the
    /// query's dimension, bucketed as the query buckets; the histogram of its timed metric only
    /// when it is a percentile.
    pub(crate) async fn rollup_into(
        &self,
        q: &Query<'_>,
        shape: Shape<'_>,
        grain: Grain,
        (from, to): (i64, i64),
        skip: &[i64],
        accs: &mut Accs,
    ) -> Result<(), StoreError> {
        let (table, unit, seconds) = match grain {
            Grain::Hour => ("ledger_hourly", "hour", 3_600),
            Grain::Day => ("ledger_daily", "day", 86_400),
        };
        let g = q.per.group_seconds();
        let bucket = match shape.totals {
            // A BIGINT like every bucket (PostgreSQL reads a bare 0 as INT4).
            true => "CAST(0 AS BIGINT)".to_owned(),
            false => format!("({unit} * {seconds} + {}) / {g}", q.tz_offset_s),
        };
        let mut filter = format!("dim = ? AND {unit} >= ? AND {unit} < ?");
        if q.tenant.is_some() {
            filter.push_str(" AND tenant = ?");
        }
        if !skip.is_empty() {
            // Whole numbers read from the database: written into the statement as they are.
            let list: Vec<String> = skip.iter().map(i64::to_string).collect();
            filter.push_str(&format!(" AND {unit} NOT IN ({})", list.join(", ")));
        }
        filter.push_str(&shape.in_groups("grp"));
        let sums = format!(
            "SELECT grp, {bucket} AS bucket, CAST(sum(requests) AS BIGINT) AS requests, CAST(sum(cost) AS BIGINT) AS cost,
                    CAST(sum(tokens) AS BIGINT) AS tokens, CAST(sum(errors) AS BIGINT) AS errors,
                    CAST(sum(hits) AS BIGINT) AS hits, CAST(sum(lookups) AS BIGINT) AS lookups,
                    CAST(sum(guarded) AS BIGINT) AS guarded
             FROM {table} WHERE {filter} GROUP BY 1, 2"
        );
        let timed = q.metric.timed_rollup_column();
        let hists = timed.map(|col| format!("SELECT grp, {bucket} AS bucket, {col} AS h FROM {table} WHERE {filter}"));
        macro_rules! run {
            ($pool:expr, $fix:expr) => {{
                let bind = |sql: String| {
                    let q0 = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(q.by.name())
                        .bind(from)
                        .bind(to);
                    let q0 = match q.tenant {
                        Some(t) => q0.bind(t),
                        None => q0,
                    };
                    shape
                        .groups
                        .unwrap_or_default()
                        .iter()
                        .fold(q0, |q0, g| q0.bind(g.as_str()))
                };
                for r in bind($fix(&sums)).fetch_all($pool).await? {
                    accs.entry((r.try_get("grp")?, r.try_get("bucket")?))
                        .or_default()
                        .add_sums(&r)?;
                }
                if let Some(sql) = hists {
                    for r in bind($fix(&sql)).fetch_all($pool).await? {
                        let c = accs.entry((r.try_get("grp")?, r.try_get("bucket")?)).or_default();
                        decode(&r.try_get::<String, _>("h")?, &mut c.latency);
                    }
                }
            }};
        }
        match self {
            LedgerDb::Sqlite(SqliteLedger { pool, .. }) => run!(pool, |s: &String| s.clone()),
            LedgerDb::Pg(pool) => run!(pool, |s: &String| numbered(s)),
        }
        Ok(())
    }

    /// Deletes the rollup's hours and days wholly before `before_ms`, and marks the hour it
    /// falls in to be rolled up again (some of its rows were just pruned; its day is made
    /// again with it).
    pub(crate) async fn prune_rollup(&self, before_ms: i64) -> Result<(), StoreError> {
        let hour = before_ms.div_euclid(HOUR_MS);
        const DELETE: &str = "DELETE FROM ledger_hourly WHERE hour < ?";
        const DELETE_DAYS: &str = "DELETE FROM ledger_daily WHERE day < ?";
        let day = hour.div_euclid(24);
        const REDO: &str = "UPDATE spend_ledger SET rolled = 0 WHERE started_at >= ? AND started_at < ?";
        match self {
            LedgerDb::Sqlite(SqliteLedger { pool, .. }) => {
                sqlx::query(DELETE).bind(hour).execute(pool).await?;
                sqlx::query(DELETE_DAYS).bind(day).execute(pool).await?;
                sqlx::query(REDO)
                    .bind(hour * HOUR_MS)
                    .bind((hour + 1) * HOUR_MS)
                    .execute(pool)
                    .await?;
            }
            LedgerDb::Pg(pool) => {
                sqlx::query(sqlx::AssertSqlSafe(numbered(DELETE)))
                    .bind(hour)
                    .execute(pool)
                    .await?;
                sqlx::query(sqlx::AssertSqlSafe(numbered(DELETE_DAYS)))
                    .bind(day)
                    .execute(pool)
                    .await?;
                sqlx::query(sqlx::AssertSqlSafe(numbered(REDO)))
                    .bind(hour * HOUR_MS)
                    .bind((hour + 1) * HOUR_MS)
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_survive_their_stored_form() {
        let mut h = LatencyHistogram::default();
        for us in [50, 900, 900, 120_000, 9_000_000_000] {
            h.add(us);
        }
        let text = encode(&h);
        let mut back = LatencyHistogram::default();
        decode(&text, &mut back);
        assert_eq!(back, h, "{text}");
        decode("nonsense 999:1 3:x", &mut back);
        assert_eq!(back, h, "what does not parse is skipped");
        assert_eq!(encode(&LatencyHistogram::default()), "");
    }
}
