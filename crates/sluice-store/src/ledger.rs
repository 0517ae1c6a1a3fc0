//! The spend ledger's database side: one row per billable request, written in batches from the
//! gateway's write-ahead file, idempotent by request id; and the usage queries over it.
//!
//! A row starts `open` (the intent, at admission), becomes `settled` (the real usage, at
//! finish), or `unsettled` when its instance restarted without settling it (it then carries
//! its reservation as its usage, marked estimated).

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::SqlitePool;

use crate::StoreError;

/// Text in a record: borrowed from the request's record when written, from the file's bytes
/// when shipped (owned only where JSON escapes it).
pub type Text<'a> = Cow<'a, str>;

/// One write-ahead record, one JSON line: `{"i":{…}}` or `{"s":{…}}` (externally tagged, so
/// reading it back needs no buffering).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Entry<'a> {
    /// At admission, before the request is forwarded.
    #[serde(rename = "i", borrow)]
    Intent(Intent<'a>),
    /// When the request finished, however it ended.
    #[serde(rename = "s", borrow)]
    Settlement(Settlement<'a>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(borrow)]
    pub instance: Cow<'a, str>,
    /// Unix milliseconds.
    pub at: i64,
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub key: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub team: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub tenant: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub route: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub model: Option<Cow<'a, str>>,
    pub reserved_tokens: u64,
    pub reserved_cost: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settlement<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    pub at: i64,
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub deployment: Option<Cow<'a, str>>,
    /// The model alias that answered, when a fallback changed it after the intent.
    #[serde(
        borrow,
        default,
        deserialize_with = "opt_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub model: Option<Cow<'a, str>>,
    pub status: u16,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub cost: u64,
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub currency: Option<Cow<'a, str>>,
    pub estimated: bool,
    /// What the operations issue's analytics add to a row, recorded now (not yet columns):
    /// the request's latency and time to first byte (µs), its error class, the cache's and
    /// guardrails' outcomes, and what a cache hit saved. Only the binary record carries it (JSON lines predate it).
    #[serde(skip)]
    pub detail: Detail<'a>,
}

/// A settlement's detail for analytics (every field optional; absent in older records).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Detail<'a> {
    pub latency_us: Option<u64>,
    pub ttfb_us: Option<u64>,
    pub error_class: Option<Cow<'a, str>>,
    pub cache: Option<Cow<'a, str>>,
    pub guardrail: Option<Cow<'a, str>>,
    /// A cache hit's saving: what the stored answer cost when it was made (micro-units).
    pub saved_cost_micros: Option<u64>,
    /// A stream's time to its first content token (µs; none for whole answers).
    pub ttft_us: Option<u64>,
}

/// An optional text field, borrowed from the line when it has no escapes.
fn opt_text<'de: 'a, 'a, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
    Option::<Borrowed<'a>>::deserialize(d).map(|o| o.map(|b| b.0))
}

/// Where ledger rows live.
#[derive(Debug, Clone)]
pub enum LedgerDb {
    Sqlite(SqliteLedger),
    Pg(PgPool),
}

/// The ledger in SQLite: sqlx's pool for queries, and — for a database on disk — a connection
/// of its own that writes batches on a blocking thread ([`LedgerDb::apply_blocking`]): a row
/// bound through sqlx costs several times what SQLite itself spends inserting it.
#[derive(Debug, Clone)]
pub struct SqliteLedger {
    pool: SqlitePool,
    writer: Option<Arc<Mutex<rusqlite::Connection>>>,
}

const TABLE: &str = "CREATE TABLE IF NOT EXISTS spend_ledger (
    request_id TEXT PRIMARY KEY,
    instance TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    key_id TEXT, team TEXT, tenant TEXT, route TEXT, model TEXT, deployment TEXT,
    state TEXT NOT NULL,
    http_status INTEGER NOT NULL DEFAULT 0,
    prompt_tokens BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    cached_tokens BIGINT NOT NULL DEFAULT 0,
    total_tokens BIGINT NOT NULL DEFAULT 0,
    reserved_tokens BIGINT NOT NULL DEFAULT 0,
    reserved_cost BIGINT NOT NULL DEFAULT 0,
    cost_micros BIGINT NOT NULL DEFAULT 0,
    currency TEXT,
    estimated INTEGER NOT NULL DEFAULT 0,
    settled_at BIGINT
)";
const INDEX: &str = "CREATE INDEX IF NOT EXISTS spend_ledger_started ON spend_ledger (started_at)";

/// Columns added since the table was first released (all nullable, so an instance of the
/// version before, writing only the columns it knows, shares the table during a rolling
/// upgrade): a settlement's detail — latency, time to first byte, error class, the cache's and
/// the guardrails' outcomes, what a cache hit saved.
const ADDED: [(&str, &str); 8] = [
    ("latency_us", "BIGINT"),
    ("ttfb_us", "BIGINT"),
    ("error_class", "TEXT"),
    ("cache", "TEXT"),
    ("guardrail", "TEXT"),
    ("saved_cost_micros", "BIGINT"),
    // Not yet in the hourly rollup (`rollup.rs`): every write sets it; a row an older version
    // inserts gets the default, and is rolled up too.
    ("rolled", "INTEGER NOT NULL DEFAULT 0"),
    ("ttft_us", "BIGINT"),
];

/// Columns of a ledger row as a batch writes it.
const COLUMNS: &str = "request_id, instance, started_at, key_id, team, tenant, route, model, deployment, state,
    http_status, prompt_tokens, completion_tokens, cached_tokens, total_tokens, reserved_tokens, reserved_cost,
    cost_micros, currency, estimated, settled_at, latency_us, ttfb_us, error_class, cache, guardrail, saved_cost_micros,
    ttft_us";
const PER_ROW: usize = 28;
/// Rows per statement, largest first (well under SQLite's and PostgreSQL's bound-parameter
/// limits). A few fixed sizes keep the number of distinct statements — each prepared once and
/// cached per connection — small.
const STATEMENT_ROWS: [usize; 4] = [200, 50, 10, 1];

/// Splits `rows` into chunks of the fixed statement sizes.
fn chunks<T>(mut rows: &[T]) -> Vec<&[T]> {
    let mut out = Vec::new();
    while !rows.is_empty() {
        let n = STATEMENT_ROWS.iter().copied().find(|n| *n <= rows.len()).unwrap_or(1);
        let (head, tail) = rows.split_at(n);
        out.push(head);
        rows = tail;
    }
    out
}

/// An intent inserts its row if absent; a settlement (alone, or folded with its intent when both
/// are in one batch) fills in the outcome, keeping the intent's fields. Replays change nothing.
const UPSERT_TAIL: &str = " ON CONFLICT (request_id) DO UPDATE SET
      model = COALESCE(excluded.model, spend_ledger.model), deployment = excluded.deployment, state = excluded.state, http_status = excluded.http_status,
      prompt_tokens = excluded.prompt_tokens, completion_tokens = excluded.completion_tokens,
      cached_tokens = excluded.cached_tokens, total_tokens = excluded.total_tokens,
      cost_micros = excluded.cost_micros, currency = excluded.currency,
      estimated = excluded.estimated, settled_at = excluded.settled_at,
      latency_us = excluded.latency_us, ttfb_us = excluded.ttfb_us, error_class = excluded.error_class,
      cache = excluded.cache, guardrail = excluded.guardrail, saved_cost_micros = excluded.saved_cost_micros,
      ttft_us = excluded.ttft_us, rolled = 0
    WHERE excluded.state = 'settled'";

/// One row of a batch: an intent, its settlement, or both.
#[derive(Debug, Default)]
struct BatchRow<'e, 'a> {
    intent: Option<&'e Intent<'a>>,
    settlement: Option<&'e Settlement<'a>>,
}

/// Folds a batch into one row per request, in first-seen order.
fn fold<'e, 'a>(entries: &'e [Entry<'a>]) -> Vec<BatchRow<'e, 'a>> {
    let mut index: std::collections::HashMap<&'e str, usize> = std::collections::HashMap::with_capacity(entries.len());
    let mut rows: Vec<BatchRow<'e, 'a>> = Vec::with_capacity(entries.len());
    for e in entries {
        let id: &'e str = match e {
            Entry::Intent(i) => &i.id,
            Entry::Settlement(s) => &s.id,
        };
        let at = *index.entry(id).or_insert_with(|| {
            rows.push(BatchRow::default());
            rows.len() - 1
        });
        match e {
            Entry::Intent(i) => rows[at].intent = Some(i),
            Entry::Settlement(s) => rows[at].settlement = Some(s),
        }
    }
    rows
}

fn upsert_sql(rows: usize) -> String {
    let one = format!("({})", vec!["?"; PER_ROW].join(", "));
    format!(
        "INSERT INTO spend_ledger ({COLUMNS}) VALUES {}{UPSERT_TAIL}",
        vec![one.as_str(); rows].join(", ")
    )
}

/// The statement for `rows` rows (one of [`STATEMENT_ROWS`]) in SQLite's and PostgreSQL's
/// placeholders, written once per process rather than once per batch.
fn statement(rows: usize, pg: bool) -> &'static str {
    static SQL: std::sync::OnceLock<Vec<(usize, String, String)>> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        STATEMENT_ROWS
            .iter()
            .map(|&n| {
                let sql = upsert_sql(n);
                (n, numbered(&sql), sql)
            })
            .collect()
    });
    match all.iter().find(|(n, ..)| *n == rows) {
        Some((_, numbered, plain)) => {
            if pg {
                numbered
            } else {
                plain
            }
        }
        // `chunks` only makes the sizes above.
        None => "",
    }
}

const CLOSE_UNSETTLED: &str = "UPDATE spend_ledger SET state = 'unsettled', total_tokens = reserved_tokens,
    cost_micros = reserved_cost, estimated = 1, settled_at = ?, rolled = 0 WHERE instance = ? AND state = 'open'";

/// `?` placeholders → PostgreSQL's `$1, $2…`.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A batch row's values in [`COLUMNS`] order: what every writer binds.
struct RowValues<'r> {
    id: &'r str,
    instance: &'r str,
    started_at: i64,
    key: Option<&'r str>,
    team: Option<&'r str>,
    tenant: Option<&'r str>,
    route: Option<&'r str>,
    model: Option<&'r str>,
    deployment: Option<&'r str>,
    state: &'static str,
    status: i32,
    prompt_tokens: i64,
    completion_tokens: i64,
    cached_tokens: i64,
    total_tokens: i64,
    reserved_tokens: i64,
    reserved_cost: i64,
    cost: i64,
    currency: Option<&'r str>,
    estimated: i32,
    settled_at: Option<i64>,
    latency_us: Option<i64>,
    ttfb_us: Option<i64>,
    error_class: Option<&'r str>,
    cache: Option<&'r str>,
    guardrail: Option<&'r str>,
    saved_cost_micros: Option<i64>,
    ttft_us: Option<i64>,
}

impl<'r> RowValues<'r> {
    fn of(r: &'r BatchRow<'_, '_>) -> RowValues<'r> {
        let (i, s) = (r.intent, r.settlement);
        RowValues {
            id: i.map_or_else(|| s.map_or("", |s| &*s.id), |i| &*i.id),
            instance: i.map_or("", |i| &*i.instance),
            started_at: i.map_or_else(|| s.map_or(0, |s| s.at), |i| i.at),
            key: i.and_then(|i| i.key.as_deref()),
            team: i.and_then(|i| i.team.as_deref()),
            tenant: i.and_then(|i| i.tenant.as_deref()),
            route: i.and_then(|i| i.route.as_deref()),
            model: s
                .and_then(|s| s.model.as_deref())
                .or(i.and_then(|i| i.model.as_deref())),
            deployment: s.and_then(|s| s.deployment.as_deref()),
            state: if s.is_some() { "settled" } else { "open" },
            status: s.map_or(0, |s| i32::from(s.status)),
            prompt_tokens: int(s.map_or(0, |s| s.prompt_tokens)),
            completion_tokens: int(s.map_or(0, |s| s.completion_tokens)),
            cached_tokens: int(s.map_or(0, |s| s.cached_tokens)),
            total_tokens: int(s.map_or(0, |s| s.prompt_tokens.saturating_add(s.completion_tokens))),
            reserved_tokens: int(i.map_or(0, |i| i.reserved_tokens)),
            reserved_cost: int(i.map_or(0, |i| i.reserved_cost)),
            cost: int(s.map_or(0, |s| s.cost)),
            currency: s.and_then(|s| s.currency.as_deref()),
            estimated: s.map_or(0, |s| i32::from(s.estimated)),
            settled_at: s.map(|s| s.at),
            latency_us: s.and_then(|s| s.detail.latency_us).map(int),
            ttfb_us: s.and_then(|s| s.detail.ttfb_us).map(int),
            error_class: s.and_then(|s| s.detail.error_class.as_deref()),
            cache: s.and_then(|s| s.detail.cache.as_deref()),
            guardrail: s.and_then(|s| s.detail.guardrail.as_deref()),
            saved_cost_micros: s.and_then(|s| s.detail.saved_cost_micros).map(int),
            ttft_us: s.and_then(|s| s.detail.ttft_us).map(int),
        }
    }
}

/// Binds each row's values in [`COLUMNS`] order; the same code for either sqlx database.
macro_rules! bind_rows {
    ($query:expr, $rows:expr) => {{
        let mut q = $query;
        for r in $rows {
            let v = RowValues::of(r);
            q = q
                .bind(v.id)
                .bind(v.instance)
                .bind(v.started_at)
                .bind(v.key)
                .bind(v.team)
                .bind(v.tenant)
                .bind(v.route)
                .bind(v.model)
                .bind(v.deployment)
                .bind(v.state)
                .bind(v.status)
                .bind(v.prompt_tokens)
                .bind(v.completion_tokens)
                .bind(v.cached_tokens)
                .bind(v.total_tokens)
                .bind(v.reserved_tokens)
                .bind(v.reserved_cost)
                .bind(v.cost)
                .bind(v.currency)
                .bind(v.estimated)
                .bind(v.settled_at)
                .bind(v.latency_us)
                .bind(v.ttfb_us)
                .bind(v.error_class)
                .bind(v.cache)
                .bind(v.guardrail)
                .bind(v.saved_cost_micros)
                .bind(v.ttft_us);
        }
        q
    }};
}

impl LedgerDb {
    /// The ledger in the SQLite file at `path` (created if needed).
    pub async fn sqlite(path: &str) -> Result<LedgerDb, StoreError> {
        let store = crate::SqliteStore::open(path).await?;
        Self::sqlite_pool(store.pool().clone()).await
    }

    /// The ledger in the database of an open SQLite pool (the key store's). A database on disk
    /// also gets the batch writer's own connection (an in-memory one is only the pool's).
    pub async fn sqlite_pool(pool: SqlitePool) -> Result<LedgerDb, StoreError> {
        for s in [TABLE, INDEX, payloads::TABLE, payloads::INDEX] {
            sqlx::query(s).execute(&pool).await?;
        }
        crate::sqlite::add_columns(&pool, "spend_ledger", &ADDED).await?;
        for s in [rollup::TABLE, rollup::DAILY_TABLE, rollup::DIRTY_INDEX] {
            sqlx::query(s).execute(&pool).await?;
        }
        let file = pool.connect_options().get_filename().to_owned();
        let writer = if file.is_file() {
            let conn = tokio::task::spawn_blocking(move || -> Result<rusqlite::Connection, rusqlite::Error> {
                let conn = rusqlite::Connection::open(file)?;
                conn.busy_timeout(Duration::from_secs(5))?;
                Ok(conn)
            })
            .await
            .map_err(|e| StoreError::Writer(format!("cannot start: {e}")))??;
            Some(Arc::new(Mutex::new(conn)))
        } else {
            None
        };
        Ok(LedgerDb::Sqlite(SqliteLedger { pool, writer }))
    }

    /// Whether batches go through [`LedgerDb::apply_blocking`] (SQLite on disk) rather than
    /// [`LedgerDb::apply`].
    pub fn writes_blocking(&self) -> bool {
        matches!(self, LedgerDb::Sqlite(SqliteLedger { writer: Some(_), .. }))
    }

    /// Writes a batch as [`LedgerDb::apply`] does, on the calling thread, which must be one
    /// that may block (the rows are bound straight into SQLite). Without a blocking writer it
    /// does nothing and says so.
    pub fn apply_blocking(&self, entries: &[Entry<'_>]) -> Result<(), StoreError> {
        let LedgerDb::Sqlite(SqliteLedger {
            writer: Some(writer), ..
        }) = self
        else {
            return Err(StoreError::Writer("this database has none (in memory)".to_owned()));
        };
        let rows = fold(entries);
        let mut conn = writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let tx = conn.transaction()?;
        // The statement of the last chunk's size, kept for the next chunk of that size: every
        // parameter is bound again (absent values as NULL), so it needs no clearing between.
        let mut held: Option<(usize, rusqlite::CachedStatement<'_>)> = None;
        for chunk in chunks(&rows) {
            // A few hundred rows per statement: SQLite's cost per row halves against one each.
            let stmt = match &mut held {
                Some((size, stmt)) if *size == chunk.len() => stmt,
                slot => {
                    &mut slot
                        .insert((chunk.len(), tx.prepare_cached(statement(chunk.len(), false))?))
                        .1
                }
            };
            let mut n = 0;
            let mut bind = |v: &dyn rusqlite::ToSql| {
                n += 1;
                stmt.raw_bind_parameter(n, v)
            };
            for r in chunk {
                let v = RowValues::of(r);
                bind(&v.id)?;
                bind(&v.instance)?;
                bind(&v.started_at)?;
                bind(&v.key)?;
                bind(&v.team)?;
                bind(&v.tenant)?;
                bind(&v.route)?;
                bind(&v.model)?;
                bind(&v.deployment)?;
                bind(&v.state)?;
                bind(&v.status)?;
                bind(&v.prompt_tokens)?;
                bind(&v.completion_tokens)?;
                bind(&v.cached_tokens)?;
                bind(&v.total_tokens)?;
                bind(&v.reserved_tokens)?;
                bind(&v.reserved_cost)?;
                bind(&v.cost)?;
                bind(&v.currency)?;
                bind(&v.estimated)?;
                bind(&v.settled_at)?;
                bind(&v.latency_us)?;
                bind(&v.ttfb_us)?;
                bind(&v.error_class)?;
                bind(&v.cache)?;
                bind(&v.guardrail)?;
                bind(&v.saved_cost_micros)?;
                bind(&v.ttft_us)?;
            }
            stmt.raw_execute()?;
        }
        drop(held);
        tx.commit()?;
        Ok(())
    }

    /// The ledger in PostgreSQL at `url`.
    pub async fn postgres(url: &str) -> Result<LedgerDb, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        let mut schema: Vec<String> = [TABLE, INDEX, payloads::TABLE, payloads::INDEX]
            .map(str::to_owned)
            .to_vec();
        schema.extend(ADDED.map(|(name, ty)| format!("ALTER TABLE spend_ledger ADD COLUMN IF NOT EXISTS {name} {ty}")));
        schema.extend([rollup::TABLE, rollup::DAILY_TABLE, rollup::DIRTY_INDEX].map(str::to_owned));
        crate::pg::create_schema(&pool, &schema).await?;
        Ok(LedgerDb::Pg(pool))
    }

    /// Writes a batch in one transaction, a few hundred rows per statement (an intent and its
    /// settlement in one batch make one row). Replaying a batch changes nothing.
    pub async fn apply(&self, entries: &[Entry<'_>]) -> Result<(), StoreError> {
        let rows = fold(entries);
        match self {
            LedgerDb::Sqlite(SqliteLedger { pool, .. }) => {
                let mut tx = pool.begin().await?;
                for chunk in chunks(&rows) {
                    let sql = statement(chunk.len(), false);
                    bind_rows!(sqlx::query(sqlx::AssertSqlSafe(sql)), chunk)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
            LedgerDb::Pg(pool) => {
                let mut tx = pool.begin().await?;
                for chunk in chunks(&rows) {
                    let sql = statement(chunk.len(), true);
                    bind_rows!(sqlx::query(sqlx::AssertSqlSafe(sql)), chunk)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Closes `instance`'s open rows as `unsettled`, charged their reservation; returns how many.
    pub async fn close_unsettled(&self, instance: &str, now_ms: i64) -> Result<u64, StoreError> {
        let done = match self {
            LedgerDb::Sqlite(SqliteLedger { pool, .. }) => sqlx::query(CLOSE_UNSETTLED)
                .bind(now_ms)
                .bind(instance)
                .execute(pool)
                .await?
                .rows_affected(),
            LedgerDb::Pg(pool) => sqlx::query(sqlx::AssertSqlSafe(numbered(CLOSE_UNSETTLED)))
                .bind(now_ms)
                .bind(instance)
                .execute(pool)
                .await?
                .rows_affected(),
        };
        Ok(done)
    }

    /// Every row's request id and state (for audits and tests).
    pub async fn states(&self) -> Result<Vec<(String, String)>, StoreError> {
        let sql = "SELECT request_id, state FROM spend_ledger ORDER BY request_id";
        let rows: Vec<(String, String)> = match self {
            LedgerDb::Sqlite(SqliteLedger { pool, .. }) => sqlx::query_as(sql).fetch_all(pool).await?,
            LedgerDb::Pg(pool) => sqlx::query_as(sql).fetch_all(pool).await?,
        };
        Ok(rows)
    }
}

pub mod analytics;
mod payloads;
mod plan;
pub mod recent;
mod rollup;
#[cfg(test)]
mod tests;
mod usage;

pub use payloads::PayloadRow;
pub use rollup::RollupPass;
pub use usage::{Per, UsageBy, UsageRow};
