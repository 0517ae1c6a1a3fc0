//! The PostgreSQL key store: what several instances share. Same tables as SQLite (times as
//! RFC 3339 text, lists as JSON text), so a key means the same thing in either.

use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::StoreError;

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

/// Serializes schema creation between instances starting at once.
const SCHEMA_LOCK: i64 = 0x51_1C_E0_01;

const SCHEMA: [&str; 8] = [
    "CREATE TABLE IF NOT EXISTS virtual_keys (
        id TEXT PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        tenant TEXT, team TEXT, user_id TEXT, tier TEXT,
        models TEXT, routes TEXT,
        expires_at TEXT,
        created_at TEXT NOT NULL,
        revoked_at TEXT
    )",
    // Added since the table was first released.
    "ALTER TABLE virtual_keys ADD COLUMN IF NOT EXISTS trust_user INTEGER NOT NULL DEFAULT 0",
    "CREATE TABLE IF NOT EXISTS runtime_limits (
        scope TEXT NOT NULL,
        name TEXT NOT NULL,
        limits TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (scope, name)
    )",
    crate::principals_sql::SCHEMA,
    crate::audit_sql::SCHEMA[0],
    crate::audit_sql::SCHEMA[1],
    crate::audit_sql::SCHEMA[2],
    crate::sessions_sql::SCHEMA,
];

impl PgStore {
    /// Connects to `url` and creates the tables if needed.
    pub async fn open(url: &str) -> Result<PgStore, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        create_schema(&pool, &SCHEMA).await?;
        Ok(PgStore { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Runs `statements` in one transaction holding an advisory lock, so instances starting
/// together do not race on `CREATE TABLE IF NOT EXISTS`.
pub(crate) async fn create_schema(pool: &PgPool, statements: &[impl AsRef<str>]) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SCHEMA_LOCK)
        .execute(&mut *tx)
        .await?;
    for s in statements {
        sqlx::query(sqlx::AssertSqlSafe(s.as_ref().to_owned()))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

crate::keys_sql::key_store!(PgStore, Some(crate::audit_sql::PG_LOCK));
