//! The key store's SQL, once for SQLite and PostgreSQL: the same tables (times as RFC 3339
//! text, lists as JSON text) and the same statements (`$n` placeholders, which both accept).

use sqlx::Row;

use crate::sql_values::{hex_decode, text_to_list, time};
use crate::{StoreError, StoredKey};

pub(crate) fn row_to_key<'r, R>(row: &'r R) -> Result<StoredKey, StoreError>
where
    R: Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i32: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
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
        trust_user: row.try_get::<i32, _>("trust_user")? != 0,
    })
}

/// `impl KeyStore` for a store type with a `pool` field of either database.
macro_rules! key_store {
    ($store:ty, $audit_lock:expr) => {
        impl $crate::KeyStore for $store {
            $crate::principals_sql::principal_methods!();
            $crate::sessions_sql::session_methods!();
            $crate::audit_sql::audit_methods!($audit_lock);

            fn version(&self) -> $crate::StoreFuture<'_, String> {
                Box::pin(async move {
                    let row = ::sqlx::query($crate::VERSION_QUERY).fetch_one(&self.pool).await?;
                    $crate::version_of(
                        row.try_get(0)?,
                        row.try_get(1)?,
                        row.try_get(2)?,
                        row.try_get::<String, _>(3)?,
                    )
                })
            }

            fn list_limits(&self) -> $crate::StoreFuture<'_, Vec<$crate::StoredLimits>> {
                Box::pin(async move {
                    let rows = ::sqlx::query("SELECT scope, name, limits FROM runtime_limits ORDER BY scope, name")
                        .fetch_all(&self.pool)
                        .await?;
                    rows.iter()
                        .map(|row| {
                            let text: String = row.try_get("limits")?;
                            Ok($crate::StoredLimits {
                                scope: row.try_get("scope")?,
                                name: row.try_get("name")?,
                                limits: ::serde_json::from_str(&text).map_err(|e| $crate::StoreError::Corrupt(e.to_string()))?,
                            })
                        })
                        .collect()
                })
            }

            fn put_limits<'a>(&'a self, limits: &'a $crate::StoredLimits) -> $crate::StoreFuture<'a, ()> {
                Box::pin(async move {
                    let text = ::serde_json::to_string(&limits.limits).map_err(|e| $crate::StoreError::Corrupt(e.to_string()))?;
                    ::sqlx::query(
                        "INSERT INTO runtime_limits (scope, name, limits, updated_at) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (scope, name) DO UPDATE SET limits = excluded.limits, updated_at = excluded.updated_at",
                    )
                    .bind(&limits.scope)
                    .bind(&limits.name)
                    .bind(text)
                    .bind(::chrono::Utc::now().to_rfc3339())
                    .execute(&self.pool)
                    .await?;
                    Ok(())
                })
            }

            fn delete_limits<'a>(&'a self, scope: &'a str, name: &'a str) -> $crate::StoreFuture<'a, bool> {
                Box::pin(async move {
                    let done = ::sqlx::query("DELETE FROM runtime_limits WHERE scope = $1 AND name = $2")
                        .bind(scope)
                        .bind(name)
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected() == 1)
                })
            }

            fn list(&self) -> $crate::StoreFuture<'_, Vec<$crate::StoredKey>> {
                Box::pin(async move {
                    let rows = ::sqlx::query("SELECT * FROM virtual_keys ORDER BY created_at, id")
                        .fetch_all(&self.pool)
                        .await?;
                    rows.iter().map($crate::keys_sql::row_to_key).collect()
                })
            }

            fn insert<'a>(&'a self, key: &'a $crate::StoredKey) -> $crate::StoreFuture<'a, ()> {
                Box::pin(async move {
                    let result = ::sqlx::query(
                        "INSERT INTO virtual_keys (id, hash, prefix, tenant, team, user_id, tier, models, routes, expires_at, created_at, revoked_at, trust_user)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, $12)",
                    )
                    .bind(&key.id)
                    .bind($crate::sql_values::hex_encode(&key.hash))
                    .bind(&key.prefix)
                    .bind(&key.tenant)
                    .bind(&key.team)
                    .bind(&key.user)
                    .bind(&key.tier)
                    .bind($crate::sql_values::list_to_text(&key.models))
                    .bind($crate::sql_values::list_to_text(&key.routes))
                    .bind(key.expires_at.map(|t| t.to_rfc3339()))
                    .bind(key.created_at.to_rfc3339())
                    .bind(i32::from(key.trust_user))
                    .execute(&self.pool)
                    .await;
                    match result {
                        Ok(_) => Ok(()),
                        Err(::sqlx::Error::Database(e)) if e.is_unique_violation() => {
                            Err($crate::StoreError::Conflict { id: key.id.clone() })
                        }
                        Err(e) => Err(e.into()),
                    }
                })
            }

            fn revoke<'a>(&'a self, id: &'a str, at: ::chrono::DateTime<::chrono::Utc>) -> $crate::StoreFuture<'a, bool> {
                Box::pin(async move {
                    let done = ::sqlx::query("UPDATE virtual_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                        .bind(at.to_rfc3339())
                        .bind(id)
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected() == 1)
                })
            }
        }
    };
}
pub(crate) use key_store;
