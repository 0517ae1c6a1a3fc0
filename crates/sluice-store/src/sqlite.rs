//! The SQLite key store: one file, created on first use, WAL journal.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};

use crate::{KeyStore, StoreError, StoreFuture, StoredKey, StoredLimits};

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS virtual_keys (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    tenant TEXT, team TEXT, user_id TEXT, tier TEXT,
    models TEXT, routes TEXT,
    expires_at TEXT,
    created_at TEXT NOT NULL,
    revoked_at TEXT
)";

const LIMITS_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS runtime_limits (
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    limits TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (scope, name)
)";

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`; `:memory:` for a private in-memory one.
    pub async fn open(path: &str) -> Result<SqliteStore, StoreError> {
        let options = if path == ":memory:" {
            SqliteConnectOptions::from_str("sqlite::memory:")?
        } else {
            SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
        }
        .busy_timeout(Duration::from_secs(5));
        // One writer is all SQLite allows; in-memory databases must keep their one connection.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        sqlx::query(SCHEMA).execute(&pool).await?;
        sqlx::query(LIMITS_SCHEMA).execute(&pool).await?;
        Ok(SqliteStore { pool })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

pub(crate) fn list_to_text(v: &Option<Vec<String>>) -> Option<String> {
    v.as_ref().and_then(|v| serde_json::to_string(v).ok())
}

pub(crate) fn text_to_list(t: Option<String>) -> Result<Option<Vec<String>>, StoreError> {
    t.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(e.to_string())))
        .transpose()
}

pub(crate) fn time(t: Option<String>) -> Result<Option<DateTime<Utc>>, StoreError> {
    t.map(|t| {
        DateTime::parse_from_rfc3339(&t)
            .map(|d| d.with_timezone(&Utc))
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    })
    .transpose()
}

fn row_to_key(row: &sqlx::sqlite::SqliteRow) -> Result<StoredKey, StoreError> {
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

pub(crate) fn hex_decode(s: &str, out: &mut [u8; 32]) -> Option<()> {
    if s.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(())
}

pub(crate) fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl KeyStore for SqliteStore {
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
                "INSERT INTO runtime_limits (scope, name, limits, updated_at) VALUES (?, ?, ?, ?)
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
            let done = sqlx::query("DELETE FROM runtime_limits WHERE scope = ? AND name = ?")
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
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
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
            let done = sqlx::query("UPDATE virtual_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(at.to_rfc3339())
                .bind(id)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, byte: u8) -> StoredKey {
        StoredKey {
            id: id.to_owned(),
            hash: [byte; 32],
            prefix: "sk-sluice-ab".to_owned(),
            tenant: Some("t".to_owned()),
            team: None,
            user: None,
            tier: Some("pro".to_owned()),
            models: Some(vec!["chat".to_owned()]),
            routes: None,
            expires_at: None,
            created_at: Utc::now(),
            revoked_at: None,
        }
    }

    #[tokio::test]
    async fn keys_persist_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.db");
        let path = path.to_str().unwrap();
        {
            let store = SqliteStore::open(path).await.unwrap();
            store.insert(&key("a", 1)).await.unwrap();
            store.insert(&key("b", 2)).await.unwrap();
            assert!(matches!(
                store.insert(&key("a", 3)).await,
                Err(StoreError::Conflict { .. })
            ));
            assert!(store.revoke("b", Utc::now()).await.unwrap());
            assert!(!store.revoke("b", Utc::now()).await.unwrap(), "already revoked");
            assert!(!store.revoke("zzz", Utc::now()).await.unwrap());
        }
        let store = SqliteStore::open(path).await.unwrap();
        let keys = store.list().await.unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].hash, [1; 32]);
        assert_eq!(keys[0].models, Some(vec!["chat".to_owned()]));
        assert!(keys[0].revoked_at.is_none());
        assert!(keys[1].revoked_at.is_some());
    }

    #[tokio::test]
    async fn memory_store_works() {
        let store = SqliteStore::open(":memory:").await.unwrap();
        store.insert(&key("a", 1)).await.unwrap();
        assert_eq!(store.list().await.unwrap().len(), 1);
    }
}
