//! The PostgreSQL key store: what several instances share. Same tables as SQLite (times as
//! RFC 3339 text, lists as JSON text), so a key means the same thing in either.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};

use crate::sqlite::{hex_decode, hex_encode, list_to_text, text_to_list, time};
use crate::{KeyStore, StoreError, StoreFuture, StoredKey, StoredLimits};

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

/// Serializes schema creation between instances starting at once.
const SCHEMA_LOCK: i64 = 0x51_1C_E0_01;

const SCHEMA: [&str; 2] = [
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
    "CREATE TABLE IF NOT EXISTS runtime_limits (
        scope TEXT NOT NULL,
        name TEXT NOT NULL,
        limits TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (scope, name)
    )",
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
pub(crate) async fn create_schema(pool: &PgPool, statements: &[&'static str]) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SCHEMA_LOCK)
        .execute(&mut *tx)
        .await?;
    for s in statements {
        sqlx::query(*s).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

fn row_to_key(row: &PgRow) -> Result<StoredKey, StoreError> {
    let hash_hex: String = row.try_get("hash")?;
    let mut hash = [0u8; 32];
    hex_decode(&hash_hex, &mut hash).ok_or_else(|| StoreError::Corrupt(format!("bad hash {hash_hex:?}")))?;
    Ok(StoredKey {
        id: row.try_get("id")?,
        hash,
        prefix: row.try_get("prefix")?,
        tenant: row.try_get("tenant")?,
        team: row.try_get("team")?,
        user: row.try_get("user_id")?,
        tier: row.try_get("tier")?,
        models: text_to_list(row.try_get("models")?)?,
        routes: text_to_list(row.try_get("routes")?)?,
        expires_at: time(row.try_get("expires_at")?)?,
        created_at: time(Some(row.try_get("created_at")?))?.unwrap_or_default(),
        revoked_at: time(row.try_get("revoked_at")?)?,
    })
}

impl KeyStore for PgStore {
    fn version(&self) -> StoreFuture<'_, String> {
        Box::pin(async move {
            let row = sqlx::query(crate::VERSION_QUERY).fetch_one(&self.pool).await?;
            crate::version_of(
                row.try_get(0)?,
                row.try_get(1)?,
                row.try_get(2)?,
                row.try_get::<String, _>(3)?,
            )
        })
    }

    fn list_limits(&self) -> StoreFuture<'_, Vec<StoredLimits>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT scope, name, limits FROM runtime_limits ORDER BY scope, name")
                .fetch_all(&self.pool)
                .await?;
            rows.iter()
                .map(|row| {
                    let text: String = row.try_get("limits")?;
                    Ok(StoredLimits {
                        scope: row.try_get("scope")?,
                        name: row.try_get("name")?,
                        limits: serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    })
                })
                .collect()
        })
    }

    fn put_limits<'a>(&'a self, limits: &'a StoredLimits) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let text = serde_json::to_string(&limits.limits).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            sqlx::query(
                "INSERT INTO runtime_limits (scope, name, limits, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (scope, name) DO UPDATE SET limits = excluded.limits, updated_at = excluded.updated_at",
            )
            .bind(&limits.scope)
            .bind(&limits.name)
            .bind(text)
            .bind(Utc::now().to_rfc3339())
            .execute(&self.pool)
            .await?;
            Ok(())
        })
    }

    fn delete_limits<'a>(&'a self, scope: &'a str, name: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let done = sqlx::query("DELETE FROM runtime_limits WHERE scope = $1 AND name = $2")
                .bind(scope)
                .bind(name)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    fn list(&self) -> StoreFuture<'_, Vec<StoredKey>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT * FROM virtual_keys ORDER BY created_at, id")
                .fetch_all(&self.pool)
                .await?;
            rows.iter().map(row_to_key).collect()
        })
    }

    fn insert<'a>(&'a self, key: &'a StoredKey) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let result = sqlx::query(
                "INSERT INTO virtual_keys (id, hash, prefix, tenant, team, user_id, tier, models, routes, expires_at, created_at, revoked_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL)",
            )
            .bind(&key.id)
            .bind(hex_encode(&key.hash))
            .bind(&key.prefix)
            .bind(&key.tenant)
            .bind(&key.team)
            .bind(&key.user)
            .bind(&key.tier)
            .bind(list_to_text(&key.models))
            .bind(list_to_text(&key.routes))
            .bind(key.expires_at.map(|t| t.to_rfc3339()))
            .bind(key.created_at.to_rfc3339())
            .execute(&self.pool)
            .await;
            match result {
                Ok(_) => Ok(()),
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    Err(StoreError::Conflict { id: key.id.clone() })
                }
                Err(e) => Err(e.into()),
            }
        })
    }

    fn revoke<'a>(&'a self, id: &'a str, at: DateTime<Utc>) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let done = sqlx::query("UPDATE virtual_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(at.to_rfc3339())
                .bind(id)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }
}
