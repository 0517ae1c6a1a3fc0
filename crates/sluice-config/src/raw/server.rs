//! The process's sections as written: `server`, `admin` (and its console), `store`, `logging`.

use serde::Deserialize;
use serde_saphyr::Spanned as S;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<S<String>>,
    pub tls: Option<RawTls>,
    pub header_read_timeout_ms: Option<S<u64>>,
    pub idle_timeout_ms: Option<S<u64>>,
    pub max_headers: Option<S<u64>>,
    pub max_header_bytes: Option<S<u64>>,
    pub h2_max_concurrent_streams: Option<S<u64>>,
    pub max_body_bytes: Option<S<u64>>,
    pub body_read_timeout_ms: Option<S<u64>>,
    pub drain_timeout_ms: Option<S<u64>>,
    pub reuse_port: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert_file: S<String>,
    pub key_file: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<S<String>>,
    pub token_env: Option<S<String>>,
    /// Audit entries older than this many days are deleted, the chain anchored at the last
    /// one deleted (default: kept).
    pub audit_retention_days: Option<S<u64>>,
    /// The web console at `/console` on this listener.
    #[serde(default)]
    pub console: RawConsole,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsole {
    /// Serve it (default: true).
    pub enabled: Option<bool>,
    /// A sign-in lasts this long (default 480: a working day).
    pub session_minutes: Option<S<u64>>,
    /// Sign-in attempts allowed per client address per minute (default 5).
    pub sign_in_attempts: Option<S<u64>>,
    /// Mark the session cookie `Secure` (set it when the console is reached over HTTPS, e.g.
    /// through a TLS-terminating proxy; default false).
    pub secure_cookie: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub sqlite_path: Option<S<String>>,
    /// PostgreSQL for keys and the ledger, shared by several instances (a URL with a password
    /// belongs in the environment: `postgres_url_env`).
    pub postgres_url: Option<S<String>>,
    pub postgres_url_env: Option<S<String>>,
    /// Shared limit counters, for several instances.
    pub redis: Option<RawRedis>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    /// One node: `redis://host:port/db`.
    pub url: Option<S<String>>,
    /// The same, read from an environment variable (for URLs with a password).
    pub url_env: Option<S<String>>,
    /// Redis Cluster: seed nodes.
    pub cluster: Option<Vec<S<String>>>,
    /// Longest wait for one round trip before the store counts as down.
    pub timeout_ms: Option<S<u64>>,
    /// How many instances share the store: the local fallback allows limit ÷ instances.
    pub instances: Option<S<u64>>,
    /// Default outage policy of every limit: `local`, `open` or `closed`.
    pub on_outage: Option<S<String>>,
    /// Prefix of every key Sluice writes.
    pub prefix: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogging {
    /// `stdout`, `stderr`, `off`, or a file path.
    pub access_log: Option<S<String>>,
    pub access_log_queue: Option<S<u64>>,
}
