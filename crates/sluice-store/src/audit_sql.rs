//! The audit log's SQL, once for SQLite and PostgreSQL. An append runs in one transaction:
//! the head row is read (on PostgreSQL under an advisory lock, so instances sharing the
//! database append one at a time), the entry is chained onto it, and the head moves on.

use sqlx::Row;

use crate::StoreError;
use crate::audit::AuditEntry;

pub(crate) const SCHEMA: [&str; 3] = [
    "CREATE TABLE IF NOT EXISTS admin_audit (
        seq BIGINT PRIMARY KEY,
        at BIGINT NOT NULL,
        actor TEXT NOT NULL,
        role TEXT,
        actor_tenant TEXT,
        action TEXT NOT NULL,
        target TEXT,
        tenant TEXT,
        before_json TEXT,
        after_json TEXT,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS admin_audit_head (
        id INTEGER PRIMARY KEY,
        seq BIGINT NOT NULL,
        hash TEXT NOT NULL
    )",
    // The last entry retention deleted: where the chain that is left starts.
    "CREATE TABLE IF NOT EXISTS admin_audit_anchor (
        id INTEGER PRIMARY KEY,
        seq BIGINT NOT NULL,
        hash TEXT NOT NULL
    )",
];

/// The advisory lock PostgreSQL appends hold (SQLite's one writer needs none).
pub(crate) const PG_LOCK: &str = "SELECT pg_advisory_xact_lock(1361635330)";

pub(crate) fn row_to_entry<'r, R>(row: &'r R) -> Result<AuditEntry, StoreError>
where
    R: Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(AuditEntry {
        seq: row.try_get("seq")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        role: row.try_get("role")?,
        actor_tenant: row.try_get("actor_tenant")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        tenant: row.try_get("tenant")?,
        before: row.try_get("before_json")?,
        after: row.try_get("after_json")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

/// The audit methods of `impl KeyStore` (expanded inside it, for either database; `$lock` is
/// the statement that serializes appends across instances, if the database needs one).
macro_rules! audit_methods {
    ($lock:expr) => {
        fn append_audit<'a>(&'a self, a: &'a $crate::audit::NewAudit) -> $crate::StoreFuture<'a, $crate::audit::AuditEntry> {
            Box::pin(async move {
                let mut tx = self.pool.begin().await?;
                let lock: Option<&str> = $lock;
                if let Some(lock) = lock {
                    ::sqlx::query(::sqlx::AssertSqlSafe(lock)).execute(&mut *tx).await?;
                }
                let head = ::sqlx::query("SELECT seq, hash FROM admin_audit_head WHERE id = 1")
                    .fetch_optional(&mut *tx)
                    .await?;
                let (seq, prev) = match head {
                    Some(row) => (row.try_get::<i64, _>("seq")? + 1, row.try_get::<String, _>("hash")?),
                    None => (1, $crate::audit::GENESIS.to_owned()),
                };
                let e = $crate::audit::AuditEntry::new(seq, ::chrono::Utc::now().timestamp_millis(), prev, a);
                ::sqlx::query(
                    "INSERT INTO admin_audit (seq, at, actor, role, actor_tenant, action, target, tenant, before_json, after_json, prev_hash, hash)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(e.seq)
                .bind(e.at)
                .bind(&e.actor)
                .bind(&e.role)
                .bind(&e.actor_tenant)
                .bind(&e.action)
                .bind(&e.target)
                .bind(&e.tenant)
                .bind(&e.before)
                .bind(&e.after)
                .bind(&e.prev_hash)
                .bind(&e.hash)
                .execute(&mut *tx)
                .await?;
                ::sqlx::query(
                    "INSERT INTO admin_audit_head (id, seq, hash) VALUES (1, $1, $2)
                     ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                )
                .bind(e.seq)
                .bind(&e.hash)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(e)
            })
        }

        fn audit_entries<'a>(
            &'a self,
            after: i64,
            limit: i64,
            tenant: Option<&'a str>,
        ) -> $crate::StoreFuture<'a, Vec<$crate::audit::AuditEntry>> {
            Box::pin(async move {
                let rows = match tenant {
                    None => {
                        ::sqlx::query("SELECT * FROM admin_audit WHERE seq > $1 ORDER BY seq LIMIT $2")
                            .bind(after)
                            .bind(limit)
                            .fetch_all(&self.pool)
                            .await?
                    }
                    Some(t) => {
                        ::sqlx::query("SELECT * FROM admin_audit WHERE seq > $1 AND tenant = $2 ORDER BY seq LIMIT $3")
                            .bind(after)
                            .bind(t)
                            .bind(limit)
                            .fetch_all(&self.pool)
                            .await?
                    }
                };
                rows.iter().map($crate::audit_sql::row_to_entry).collect()
            })
        }

        fn prune_audit(&self, before_ms: i64) -> $crate::StoreFuture<'_, u64> {
            Box::pin(async move {
                let mut tx = self.pool.begin().await?;
                let lock: Option<&str> = $lock;
                if let Some(lock) = lock {
                    ::sqlx::query(::sqlx::AssertSqlSafe(lock)).execute(&mut *tx).await?;
                }
                // The newest entry older than the cutoff — never the head itself.
                let last = ::sqlx::query(
                    "SELECT seq, hash FROM admin_audit WHERE at < $1
                       AND seq < (SELECT coalesce(max(seq), 0) FROM admin_audit_head)
                     ORDER BY seq DESC LIMIT 1",
                )
                .bind(before_ms)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(last) = last else {
                    return Ok(0);
                };
                let (seq, hash): (i64, String) = (last.try_get("seq")?, last.try_get("hash")?);
                let done = ::sqlx::query("DELETE FROM admin_audit WHERE seq <= $1")
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
                ::sqlx::query(
                    "INSERT INTO admin_audit_anchor (id, seq, hash) VALUES (1, $1, $2)
                     ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                )
                .bind(seq)
                .bind(&hash)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(done.rows_affected())
            })
        }

        fn audit_anchor(&self) -> $crate::StoreFuture<'_, Option<(i64, String)>> {
            Box::pin(async move {
                let row = ::sqlx::query("SELECT seq, hash FROM admin_audit_anchor WHERE id = 1")
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|r| Ok::<_, $crate::StoreError>((r.try_get::<i64, _>("seq")?, r.try_get::<String, _>("hash")?)))
                    .transpose()
            })
        }

        fn audit_head(&self) -> $crate::StoreFuture<'_, Option<(i64, String)>> {
            Box::pin(async move {
                let row = ::sqlx::query("SELECT seq, hash FROM admin_audit_head WHERE id = 1")
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|r| Ok::<_, $crate::StoreError>((r.try_get::<i64, _>("seq")?, r.try_get::<String, _>("hash")?)))
                    .transpose()
            })
        }
    };
}
pub(crate) use audit_methods;
