//! The SQLite key store: one file, created on first use, WAL journal.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};

use crate::StoreError;

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
    revoked_at TEXT,
    trust_user INTEGER NOT NULL DEFAULT 0
)";

/// Columns added since the table was first released: the name, and its type.
const ADDED_COLUMNS: [(&str, &str); 1] = [("trust_user", "INTEGER NOT NULL DEFAULT 0")];

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
        sqlx::query(crate::principals_sql::SCHEMA).execute(&pool).await?;
        sqlx::query(crate::sessions_sql::SCHEMA).execute(&pool).await?;
        for s in crate::audit_sql::SCHEMA {
            sqlx::query(s).execute(&pool).await?;
        }
        add_columns(&pool, "virtual_keys", &ADDED_COLUMNS).await?;
        Ok(SqliteStore { pool })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// Adds to `table` each of `columns` (name, type) it lacks: how a table released before a
/// column gains it (additive, so a process of the version before can share the file).
pub(crate) async fn add_columns(pool: &SqlitePool, table: &str, columns: &[(&str, &str)]) -> Result<(), StoreError> {
    for (name, ty) in columns {
        let present: i64 = sqlx::query("SELECT count(*) FROM pragma_table_info(?) WHERE name = ?")
            .bind(table)
            .bind(name)
            .fetch_one(pool)
            .await?
            .try_get(0)?;
        if present == 0 {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "ALTER TABLE {table} ADD COLUMN {name} {ty}"
            )))
            .execute(pool)
            .await?;
        }
    }
    Ok(())
}

crate::keys_sql::key_store!(SqliteStore, None);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeyStore, StoredKey};
    use chrono::Utc;

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
            trust_user: false,
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
    async fn principals_are_found_by_token_hash_until_revoked() {
        use crate::StoredPrincipal;
        let store = SqliteStore::open(":memory:").await.unwrap();
        let p = StoredPrincipal {
            id: "ops-a".to_owned(),
            hash: [7; 32],
            role: "operator".to_owned(),
            tenant: Some("acme".to_owned()),
            created_at: Utc::now(),
            revoked_at: None,
        };
        store.insert_principal(&p).await.unwrap();
        assert!(matches!(
            store.insert_principal(&p).await,
            Err(StoreError::Conflict { .. })
        ));
        let found = store.principal(&[7; 32]).await.unwrap().unwrap();
        assert_eq!(
            (found.id.as_str(), found.role.as_str(), found.tenant.as_deref()),
            ("ops-a", "operator", Some("acme"))
        );
        assert!(store.principal(&[8; 32]).await.unwrap().is_none());
        assert!(store.revoke_principal("ops-a", Utc::now()).await.unwrap());
        assert!(!store.revoke_principal("ops-a", Utc::now()).await.unwrap());
        assert!(
            store.principal(&[7; 32]).await.unwrap().is_none(),
            "revoked: no longer found"
        );
        assert_eq!(store.list_principals().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn console_sessions_are_found_until_they_expire_or_end() {
        use crate::StoredSession;
        let store = SqliteStore::open(":memory:").await.unwrap();
        let session = |hash: u8, expires_ms: i64| StoredSession {
            hash: [hash; 32],
            token_hash: [9; 32],
            principal: "bootstrap".to_owned(),
            csrf: "c".repeat(64),
            created_ms: 1_000,
            expires_ms,
        };
        store.insert_session(&session(1, 10_000)).await.unwrap();
        store.insert_session(&session(2, 20_000)).await.unwrap();
        let found = store.session(&[1; 32], 9_999).await.unwrap().unwrap();
        assert_eq!(found, session(1, 10_000));
        assert!(
            store.session(&[1; 32], 10_000).await.unwrap().is_none(),
            "expired: not found"
        );
        assert!(store.session(&[3; 32], 0).await.unwrap().is_none());
        assert_eq!(store.prune_sessions(15_000).await.unwrap(), 1);
        assert!(store.delete_session(&[2; 32]).await.unwrap());
        assert!(!store.delete_session(&[2; 32]).await.unwrap());
        assert!(
            store.session(&[2; 32], 0).await.unwrap().is_none(),
            "signed out: not found"
        );
    }

    #[tokio::test]
    async fn audit_appends_chain_onto_the_head_and_verify() {
        use crate::audit::{NewAudit, verify};
        let store = SqliteStore::open(":memory:").await.unwrap();
        for (i, tenant) in [None, Some("acme"), Some("globex")].into_iter().enumerate() {
            let e = store
                .append_audit(&NewAudit {
                    actor: "admin".into(),
                    action: "key.create".into(),
                    target: Some(format!("k{i}")),
                    tenant: tenant.map(Into::into),
                    after: Some("{}".into()),
                    ..NewAudit::default()
                })
                .await
                .unwrap();
            assert_eq!(e.seq, i as i64 + 1);
        }
        let all = store.audit_entries(0, 100, None).await.unwrap();
        let head = store.audit_head().await.unwrap();
        assert_eq!(head.as_ref().map(|h| h.0), Some(3));
        assert_eq!(verify(&all, None, head.clone(), Some(&all[1].hash)), Ok(()));
        let acme = store.audit_entries(0, 100, Some("acme")).await.unwrap();
        assert_eq!(acme.iter().map(|e| e.seq).collect::<Vec<_>>(), [2]);
        assert_eq!(store.audit_entries(1, 1, None).await.unwrap()[0].seq, 2, "paged");
        // Retention: entries before a cutoff go, the head never, and the rest still verifies
        // from the anchor.
        assert_eq!(store.prune_audit(i64::MAX).await.unwrap(), 2, "all but the head");
        let left = store.audit_entries(0, 100, None).await.unwrap();
        assert_eq!(left.iter().map(|e| e.seq).collect::<Vec<_>>(), [3]);
        let anchor = store.audit_anchor().await.unwrap();
        assert_eq!(anchor, Some((2, all[1].hash.clone())));
        assert_eq!(verify(&left, anchor, head, None), Ok(()));
        assert_eq!(store.prune_audit(0).await.unwrap(), 0, "nothing older than the epoch");
    }

    #[tokio::test]
    async fn memory_store_works() {
        let store = SqliteStore::open(":memory:").await.unwrap();
        store.insert(&key("a", 1)).await.unwrap();
        assert_eq!(store.list().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_table_from_before_trust_user_gets_the_column_and_keeps_its_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let path = path.to_str().unwrap();
        {
            let opts = SqliteConnectOptions::new().filename(path).create_if_missing(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(opts)
                .await
                .unwrap();
            // The table as first released.
            sqlx::query(
                "CREATE TABLE virtual_keys (id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, prefix TEXT NOT NULL,
                 tenant TEXT, team TEXT, user_id TEXT, tier TEXT, models TEXT, routes TEXT, expires_at TEXT,
                 created_at TEXT NOT NULL, revoked_at TEXT)",
            )
            .execute(&pool)
            .await
            .unwrap();
            sqlx::query("INSERT INTO virtual_keys (id, hash, prefix, created_at) VALUES ('old', ?, 'sk-sluice-x', ?)")
                .bind(crate::sql_values::hex_encode(&[7; 32]))
                .bind(Utc::now().to_rfc3339())
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
        let store = SqliteStore::open(path).await.unwrap();
        let mut trusted = key("new", 2);
        trusted.trust_user = true;
        store.insert(&trusted).await.unwrap();
        let keys = store.list().await.unwrap();
        let got: Vec<(&str, bool)> = keys.iter().map(|k| (k.id.as_str(), k.trust_user)).collect();
        assert_eq!(got, [("old", false), ("new", true)]);
        drop(store);
        // Opening again finds the column there.
        assert_eq!(SqliteStore::open(path).await.unwrap().list().await.unwrap().len(), 2);
    }
}
