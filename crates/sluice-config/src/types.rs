//! The validated, typed configuration. Every reference is resolved to an index, every duration
//! is a `Duration`, every secret a [`Secret`]. A `Config` that exists is a config that can serve.
//!
//! Each part of the config has its own module; this one holds the whole and re-exports them all.

mod deployment;
mod guard;
mod key;
mod limits;
mod resilience;
mod route;
mod secret;
mod server;

pub use deployment::*;
pub use guard::*;
pub use key::*;
pub use limits::*;
pub use resilience::*;
pub use route::*;
pub use secret::*;
pub use server::*;

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub store: StoreConfig,
    pub logging: LoggingConfig,
    pub telemetry: TelemetryConfig,
    pub deployments: Vec<DeploymentConfig>,
    pub models: Vec<ModelConfig>,
    pub routes: Vec<RouteConfig>,
    pub keys: Vec<KeyConfig>,
    /// Currency of every price and cost (costs are integer micro-units of it).
    pub currency: String,
    /// Limit bundles by tier name.
    pub tiers: std::collections::HashMap<String, Vec<LimitSpec>>,
    /// Queue priority by tier name (0–9).
    pub tier_priorities: std::collections::HashMap<String, u8>,
    /// Turns in a route queue by tenant name (default 1).
    pub tenant_weights: std::collections::HashMap<String, u32>,
    /// Teams and tenants with limits (their tier's and their own).
    pub teams: std::collections::HashMap<String, Vec<LimitSpec>>,
    pub tenants: std::collections::HashMap<String, Vec<LimitSpec>>,
    /// Offset of the zone daily and monthly windows follow, in seconds east of UTC.
    pub time_zone_offset_s: i32,
    /// Where budget alerts go.
    pub budget_alerts: Option<BudgetAlerts>,
    pub alerts: AlertsConfig,
    pub ledger: LedgerConfig,
    pub breaker: BreakerConfig,
    pub geo: GeoConfig,
    pub cache: CacheStoreConfig,
    pub embedder: EmbedderConfig,
    /// Tenants' own deny lists (`tenants[].deny`), by tenant name: every guarded route blocks
    /// their matches for that tenant's requests, on input and output.
    pub tenant_deny: std::collections::HashMap<String, GuardRule>,
    /// First 12 hex digits of the SHA-256 of the file: which config is serving.
    pub version: String,
}

/// The response cache's storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheStoreConfig {
    /// Most bytes the in-process tier holds.
    pub memory_bytes: u64,
    /// The share of them one tenant may take (1–100).
    pub tenant_max_percent: u8,
    /// Whether entries are shared through `store.redis` (when it is configured).
    pub redis: bool,
    /// How long a Redis-tier call may take; `None`: `store.redis`'s timeout.
    pub redis_timeout: Option<std::time::Duration>,
    /// Entries larger than this (encoded) are compressed in the Redis tier.
    pub compress_above_bytes: u64,
    /// The most prompts the semantic index holds.
    pub semantic_max_entries: usize,
    /// Partitions with more prompts than this are searched through an HNSW graph.
    pub semantic_graph_above: usize,
}

/// The in-process embedding model: where its files are, and the threads that run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedderConfig {
    pub path: std::path::PathBuf,
    pub threads: usize,
    pub queue: usize,
}

impl Config {
    /// Whether any token or cost limit is configured (admission may then count tokens).
    pub fn counts_tokens(&self) -> bool {
        let any = |l: &[LimitSpec]| l.iter().any(|s| s.metric != Metric::Requests);
        self.tiers.values().any(|l| any(l))
            || self.teams.values().any(|l| any(l))
            || self.tenants.values().any(|l| any(l))
            || self.keys.iter().any(|k| any(&k.limits))
            || self.models.iter().any(|m| any(&m.limits))
            || self.routes.iter().any(|r| any(&r.limits))
    }

    pub fn model_index(&self, name: &str) -> Option<usize> {
        self.models.iter().position(|m| m.name == name)
    }
    pub fn route_index(&self, name: &str) -> Option<usize> {
        self.routes.iter().position(|r| r.name == name)
    }
}
