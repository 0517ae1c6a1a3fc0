//! The process sections, validated: listener and TLS, admin API, key and ledger stores, shared
//! limit counters (Redis), access logging.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::limits::OutagePolicy;
use super::secret::Secret;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub tls: Option<TlsConfig>,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_headers: usize,
    pub max_header_bytes: usize,
    pub h2_max_concurrent_streams: u32,
    /// Hard cap on any request body, whatever the route says.
    pub max_body_bytes: u64,
    /// Longest wait for a request body to arrive.
    pub body_read_timeout: Duration,
    pub drain_timeout: Duration,
    /// Bind with SO_REUSEPORT so a new process can take over the port before this one has
    /// drained (hand-over); new connections go to the newest process.
    pub reuse_port: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// When set, the admin API requires `Authorization: Bearer <token>`.
    pub token: Option<Secret>,
    /// Audit entries older than this are deleted (none: kept).
    pub audit_retention: Option<Duration>,
    pub console: ConsoleConfig,
}

/// The web console on the admin listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleConfig {
    pub enabled: bool,
    /// How long a sign-in lasts.
    pub session: Duration,
    /// Sign-in attempts per client address per minute.
    pub sign_in_attempts: u32,
    /// The session cookie is marked `Secure`.
    pub secure_cookie: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// SQLite database file for run-time keys; `:memory:` keeps them in memory only.
    pub sqlite_path: String,
    /// PostgreSQL for keys and the ledger (none: SQLite).
    pub postgres_url: Option<Secret>,
    /// Shared limit counters (none: in process).
    pub redis: Option<RedisConfig>,
}

/// The spend ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerConfig {
    pub enabled: bool,
    pub dir: PathBuf,
    pub ship_interval: Duration,
    /// Ledger rows older than this are deleted (none: kept).
    pub retention: Option<Duration>,
}

/// Where shared limit counters live, and what happens when that store is unreachable.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// Node URLs: one, or a cluster's seed nodes.
    pub nodes: Vec<String>,
    pub cluster: bool,
    pub timeout: Duration,
    /// How many instances share the store (the `local` outage share); `None`: counted live.
    pub instances: Option<u64>,
    pub on_outage: OutagePolicy,
    pub prefix: String,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Node URLs may carry a password.
        f.debug_struct("RedisConfig")
            .field("nodes", &self.nodes.len())
            .field("cluster", &self.cluster)
            .field("timeout", &self.timeout)
            .field("instances", &self.instances)
            .field("on_outage", &self.on_outage)
            .field("prefix", &self.prefix)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Stdout,
    Stderr,
    Off,
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct LoggingConfig {
    pub access_log: AccessLogTarget,
    /// Lines buffered between the request path and the writer before lines are counted as dropped.
    pub access_log_queue: usize,
}

/// Traces.
#[derive(Debug, Clone, Default)]
pub struct TelemetryConfig {
    pub otlp: Option<OtlpConfig>,
}

/// The OTLP/HTTP exporter's target and its sampling.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// The full traces URL the batches are POSTed to.
    pub endpoint: http::Uri,
    /// Extra request headers (values marked sensitive).
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// The share of new traces recorded, 0–1.
    pub sample_ratio: f64,
    pub queue: usize,
    pub batch: usize,
    pub timeout: Duration,
    pub service_name: String,
}
