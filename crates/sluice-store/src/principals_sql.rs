//! Admin principals' SQL, once for SQLite and PostgreSQL: who may call the admin API, with
//! which role and for which tenant. Only a token's SHA-256 is stored.

use sqlx::Row;

use crate::sql_values::{hex_decode, time};
use crate::{StoreError, StoredPrincipal};

pub(crate) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS admin_principals (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    tenant TEXT,
    created_at TEXT NOT NULL,
    revoked_at TEXT
)";

pub(crate) fn row_to_principal<'r, R>(row: &'r R) -> Result<StoredPrincipal, StoreError>
where
    R: Row,
    &'r str: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let hash_hex: String = row.try_get("hash")?;
    let mut hash = [0u8; 32];
    hex_decode(&hash_hex, &mut hash).ok_or_else(|| StoreError::Corrupt(format!("bad hash {hash_hex:?}")))?;
    Ok(StoredPrincipal {
        id: row.try_get("id")?,
        hash,
        role: row.try_get("role")?,
        tenant: row.try_get("tenant")?,
        created_at: time(Some(row.try_get("created_at")?))?.unwrap_or_default(),
        revoked_at: time(row.try_get("revoked_at")?)?,
    })
}

/// The principal methods of `impl KeyStore` (expanded inside it, for either database).
macro_rules! principal_methods {
    () => {
        fn principal<'a>(&'a self, hash: &'a [u8; 32]) -> $crate::StoreFuture<'a, Option<$crate::StoredPrincipal>> {
            Box::pin(async move {
                let row = ::sqlx::query("SELECT * FROM admin_principals WHERE hash = $1 AND revoked_at IS NULL")
                    .bind($crate::sql_values::hex_encode(hash))
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref()
                    .map($crate::principals_sql::row_to_principal)
                    .transpose()
            })
        }

        fn list_principals(&self) -> $crate::StoreFuture<'_, Vec<$crate::StoredPrincipal>> {
            Box::pin(async move {
                let rows = ::sqlx::query("SELECT * FROM admin_principals ORDER BY id")
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map($crate::principals_sql::row_to_principal)
                    .collect()
            })
        }

        fn insert_principal<'a>(&'a self, p: &'a $crate::StoredPrincipal) -> $crate::StoreFuture<'a, ()> {
            Box::pin(async move {
                let result = ::sqlx::query(
                    "INSERT INTO admin_principals (id, hash, role, tenant, created_at, revoked_at)
                     VALUES ($1, $2, $3, $4, $5, NULL)",
                )
                .bind(&p.id)
                .bind($crate::sql_values::hex_encode(&p.hash))
                .bind(&p.role)
                .bind(&p.tenant)
                .bind(p.created_at.to_rfc3339())
                .execute(&self.pool)
                .await;
                match result {
                    Ok(_) => Ok(()),
                    Err(::sqlx::Error::Database(e)) if e.is_unique_violation() => {
                        Err($crate::StoreError::Conflict { id: p.id.clone() })
                    }
                    Err(e) => Err(e.into()),
                }
            })
        }

        fn revoke_principal<'a>(
            &'a self,
            id: &'a str,
            at: ::chrono::DateTime<::chrono::Utc>,
        ) -> $crate::StoreFuture<'a, bool> {
            Box::pin(async move {
                let done =
                    ::sqlx::query("UPDATE admin_principals SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                        .bind(at.to_rfc3339())
                        .bind(id)
                        .execute(&self.pool)
                        .await?;
                Ok(done.rows_affected() == 1)
            })
        }
    };
}
pub(crate) use principal_methods;
