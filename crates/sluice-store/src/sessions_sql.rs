//! The web console's sign-in sessions, once for SQLite and PostgreSQL: kept in the store so
//! that every instance behind a load balancer knows them and a sign-out ends one everywhere.
//! Only the session id's SHA-256 is stored, with the SHA-256 of the admin token it was opened
//! with (the same hash the principals table keeps), so a revoked principal or a replaced
//! bootstrap token ends its sessions at their next request.

use sqlx::Row;

use crate::sql_values::hex_decode;
use crate::{StoreError, StoredSession};

pub(crate) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS console_sessions (
    hash TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL,
    principal TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
)";

fn hash_of(hex: &str) -> Result<[u8; 32], StoreError> {
    let mut out = [0u8; 32];
    hex_decode(hex, &mut out).ok_or_else(|| StoreError::Corrupt(format!("bad hash {hex:?}")))?;
    Ok(out)
}

pub(crate) fn row_to_session<'r, R>(row: &'r R) -> Result<StoredSession, StoreError>
where
    R: Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(StoredSession {
        hash: hash_of(&row.try_get::<String, _>("hash")?)?,
        token_hash: hash_of(&row.try_get::<String, _>("token_hash")?)?,
        principal: row.try_get("principal")?,
        csrf: row.try_get("csrf")?,
        created_ms: row.try_get("created_ms")?,
        expires_ms: row.try_get("expires_ms")?,
    })
}

/// The session methods of `impl KeyStore` (expanded inside it, for either database).
macro_rules! session_methods {
    () => {
        fn insert_session<'a>(&'a self, s: &'a $crate::StoredSession) -> $crate::StoreFuture<'a, ()> {
            Box::pin(async move {
                ::sqlx::query(
                    "INSERT INTO console_sessions (hash, token_hash, principal, csrf, created_ms, expires_ms)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind($crate::sql_values::hex_encode(&s.hash))
                .bind($crate::sql_values::hex_encode(&s.token_hash))
                .bind(&s.principal)
                .bind(&s.csrf)
                .bind(s.created_ms)
                .bind(s.expires_ms)
                .execute(&self.pool)
                .await?;
                Ok(())
            })
        }

        fn session<'a>(
            &'a self,
            hash: &'a [u8; 32],
            now_ms: i64,
        ) -> $crate::StoreFuture<'a, Option<$crate::StoredSession>> {
            Box::pin(async move {
                let row = ::sqlx::query("SELECT * FROM console_sessions WHERE hash = $1 AND expires_ms > $2")
                    .bind($crate::sql_values::hex_encode(hash))
                    .bind(now_ms)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map($crate::sessions_sql::row_to_session).transpose()
            })
        }

        fn delete_session<'a>(&'a self, hash: &'a [u8; 32]) -> $crate::StoreFuture<'a, bool> {
            Box::pin(async move {
                let done = ::sqlx::query("DELETE FROM console_sessions WHERE hash = $1")
                    .bind($crate::sql_values::hex_encode(hash))
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            })
        }

        fn prune_sessions(&self, now_ms: i64) -> $crate::StoreFuture<'_, u64> {
            Box::pin(async move {
                let done = ::sqlx::query("DELETE FROM console_sessions WHERE expires_ms <= $1")
                    .bind(now_ms)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            })
        }
    };
}
pub(crate) use session_methods;
