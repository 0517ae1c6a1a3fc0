//! Persistent stores behind traits: run-time virtual keys and limits, in SQLite (the embedded
//! default) or PostgreSQL (shared by several instances), and the spend ledger in either.
//!
//! Stores are never on the request path: the gateway loads what it needs into memory and
//! writes through on change.

pub mod audit;
mod audit_sql;
mod keys_sql;
pub mod ledger;
mod pg;
mod principals_sql;
pub mod redis;
mod sessions_sql;
mod sql_values;
mod sqlite;

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};

pub use pg::PgStore;
pub use sqlite::SqliteStore;

/// What changes whenever a key is added or revoked or run-time limits change.
pub(crate) const VERSION_QUERY: &str = "SELECT
    (SELECT count(*) FROM virtual_keys),
    (SELECT count(*) FROM virtual_keys WHERE revoked_at IS NOT NULL),
    (SELECT count(*) FROM runtime_limits),
    (SELECT coalesce(max(updated_at), '') FROM runtime_limits)";

pub(crate) fn version_of(keys: i64, revoked: i64, limits: i64, updated: String) -> Result<String, StoreError> {
    Ok(format!("{keys}/{revoked}/{limits}/{updated}"))
}

pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a key with id {id:?} already exists")]
    Conflict { id: String },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The ledger's blocking SQLite writer could not be started, or was asked to write where
    /// there is none (an in-memory database).
    #[error("the ledger's SQLite writer: {0}")]
    Writer(String),
}

/// A virtual key created at run time. Only its SHA-256 is stored, never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub id: String,
    pub hash: [u8; 32],
    /// The first characters of the key, to help people recognise it (`sk-sluice-AbCd`).
    pub prefix: String,
    pub tenant: Option<String>,
    pub team: Option<String>,
    pub user: Option<String>,
    pub tier: Option<String>,
    pub models: Option<Vec<String>>,
    pub routes: Option<Vec<String>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The request's `user` field keys the per-user limits (else the key's own user).
    pub trust_user: bool,
}

/// Someone who may call the admin API: a role (`viewer`, `operator`, `admin`), optionally
/// confined to one tenant. Only the token's SHA-256 is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPrincipal {
    pub id: String,
    pub hash: [u8; 32],
    pub role: String,
    pub tenant: Option<String>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A web console session. Only the session id's SHA-256 is stored, and the SHA-256 of the
/// admin token it was opened with (the principal is found again from it at every request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub hash: [u8; 32],
    pub token_hash: [u8; 32],
    /// Who opened it (for the record; the role is looked up again each time).
    pub principal: String,
    /// The token every write of this session must carry.
    pub csrf: String,
    pub created_ms: i64,
    pub expires_ms: i64,
}

/// Limits set at run time for one key or team (the config's limit names → amounts).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredLimits {
    /// `keys`, `teams` or `users` (a key's end users, by key id).
    pub scope: String,
    pub name: String,
    pub limits: std::collections::BTreeMap<String, serde_json::Value>,
}

/// Where run-time keys (and run-time limits) live.
pub trait KeyStore: Send + Sync + 'static {
    /// Changes whenever keys or run-time limits change (another instance's changes included):
    /// cheap to poll.
    fn version(&self) -> StoreFuture<'_, String>;
    /// Every run-time limit set.
    fn list_limits(&self) -> StoreFuture<'_, Vec<StoredLimits>>;
    /// Sets (replaces) the run-time limits of one key or team.
    fn put_limits<'a>(&'a self, limits: &'a StoredLimits) -> StoreFuture<'a, ()>;
    /// Removes them; `false` if there were none.
    fn delete_limits<'a>(&'a self, scope: &'a str, name: &'a str) -> StoreFuture<'a, bool>;
    /// Every key, revoked ones included.
    fn list(&self) -> StoreFuture<'_, Vec<StoredKey>>;
    /// Adds a key; fails with [`StoreError::Conflict`] if the id is taken.
    fn insert<'a>(&'a self, key: &'a StoredKey) -> StoreFuture<'a, ()>;
    /// Marks a key revoked; `false` if there is no such active key.
    fn revoke<'a>(&'a self, id: &'a str, at: DateTime<Utc>) -> StoreFuture<'a, bool>;
    /// The active admin principal whose token has this SHA-256.
    fn principal<'a>(&'a self, hash: &'a [u8; 32]) -> StoreFuture<'a, Option<StoredPrincipal>>;
    /// Every admin principal, revoked ones included.
    fn list_principals(&self) -> StoreFuture<'_, Vec<StoredPrincipal>>;
    /// Adds one; [`StoreError::Conflict`] if the id is taken.
    fn insert_principal<'a>(&'a self, p: &'a StoredPrincipal) -> StoreFuture<'a, ()>;
    /// Revokes one; `false` if there is no such active principal.
    fn revoke_principal<'a>(&'a self, id: &'a str, at: DateTime<Utc>) -> StoreFuture<'a, bool>;
    /// Appends to the audit log (chained onto its head, one append at a time).
    fn append_audit<'a>(&'a self, a: &'a audit::NewAudit) -> StoreFuture<'a, audit::AuditEntry>;
    /// Audit entries after `after` (a sequence number), in order, at most `limit`; only
    /// `tenant`'s when given.
    fn audit_entries<'a>(
        &'a self,
        after: i64,
        limit: i64,
        tenant: Option<&'a str>,
    ) -> StoreFuture<'a, Vec<audit::AuditEntry>>;
    /// The audit log's head: its last entry's number and hash.
    fn audit_head(&self) -> StoreFuture<'_, Option<(i64, String)>>;
    /// Deletes entries older than `before_ms` (never the head), anchoring the chain at the
    /// last one deleted; returns how many.
    fn prune_audit(&self, before_ms: i64) -> StoreFuture<'_, u64>;
    /// Where the chain left after pruning starts: the last deleted entry's number and hash.
    fn audit_anchor(&self) -> StoreFuture<'_, Option<(i64, String)>>;
    /// Opens a console session.
    fn insert_session<'a>(&'a self, s: &'a StoredSession) -> StoreFuture<'a, ()>;
    /// The session with this id hash, unless it expired by `now_ms`.
    fn session<'a>(&'a self, hash: &'a [u8; 32], now_ms: i64) -> StoreFuture<'a, Option<StoredSession>>;
    /// Ends one (sign-out); `false` if there was none.
    fn delete_session<'a>(&'a self, hash: &'a [u8; 32]) -> StoreFuture<'a, bool>;
    /// Deletes the sessions expired by `now_ms`; returns how many.
    fn prune_sessions(&self, now_ms: i64) -> StoreFuture<'_, u64>;
}
