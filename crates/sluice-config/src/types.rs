//! The validated, typed configuration. Every reference is resolved to an index, every duration
//! is a `Duration`, every secret a [`Secret`]. A `Config` that exists is a config that can serve.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use http::{HeaderName, Uri};

/// A credential read from the environment. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; call only where it is put on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub store: StoreConfig,
    pub logging: LoggingConfig,
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
    pub ledger: LedgerConfig,
    pub breaker: BreakerConfig,
    pub geo: GeoConfig,
    /// First 12 hex digits of the SHA-256 of the file: which config is serving.
    pub version: String,
}

/// What an upstream model costs, in micro-units of the currency: per million tokens of each
/// kind, and per request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Price {
    pub input: u64,
    pub output: u64,
    /// Prompt tokens read from the provider's cache.
    pub cached_input: u64,
    /// Prompt tokens written to the provider's cache.
    pub cache_write: u64,
    pub per_request: u64,
}

impl Price {
    /// The cost of one request, in micro-units, rounded to the nearest. `prompt` includes the
    /// cached and cache-written tokens, as the canonical usage counts them.
    pub fn cost_micros(&self, prompt: u64, cached: u64, cache_write: u64, completion: u64) -> u64 {
        let plain = prompt.saturating_sub(cached.saturating_add(cache_write));
        let part = |n: u64, price: u64| u128::from(n).saturating_mul(u128::from(price));
        let per_mtok = part(plain, self.input)
            .saturating_add(part(cached, self.cached_input))
            .saturating_add(part(cache_write, self.cache_write))
            .saturating_add(part(completion, self.output));
        let tokens = per_mtok.saturating_add(500_000) / 1_000_000;
        u64::try_from(tokens)
            .unwrap_or(u64::MAX)
            .saturating_add(self.per_request)
    }
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

/// What a limit does while its shared store is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutagePolicy {
    /// Count in process, at the limit divided by the number of instances.
    Local,
    /// Admit without counting.
    Open,
    /// Refuse.
    Closed,
}

impl OutagePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            OutagePolicy::Local => "local",
            OutagePolicy::Open => "open",
            OutagePolicy::Closed => "closed",
        }
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

/// The wire dialect a deployment speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// OpenAI-compatible HTTP APIs: OpenAI, vLLM, Ollama, TGI, Groq…
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
    /// Google Gemini (`generateContent`), authenticated with `x-goog-api-key`.
    Gemini,
    /// AWS Bedrock's Converse API, SigV4-signed with credentials from the environment.
    Bedrock,
    /// Any JSON prediction server (KServe v2, Triton, a plain JSON API): `base_url` is the
    /// endpoint the route's (transformed) request is POSTed to.
    Prediction,
    /// Azure OpenAI: OpenAI's format under `/openai/deployments/{model}/…?api-version=…`,
    /// authenticated with an `api-key` header.
    Azure,
    /// The built-in mock provider. Without a `base_url` the gateway runs one in-process.
    Mock,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Azure => "azure",
            ProviderKind::Gemini => "gemini",
            ProviderKind::Bedrock => "bedrock",
            ProviderKind::Prediction => "prediction",
            ProviderKind::Mock => "mock",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MockKnobs {
    pub latency_ms: Option<u64>,
    pub ttft_ms: Option<u64>,
    pub chunk_delay_ms: Option<u64>,
    pub chunks: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct DeploymentConfig {
    pub name: String,
    /// The region it serves from (geographic routing).
    pub geo: Option<String>,
    /// Its Prometheus endpoint and how often to read it (capacity-aware balancing).
    pub metrics: Option<(Uri, Duration)>,
    /// An active health check: a path on the deployment's server, and how often.
    pub health_check: Option<(String, Duration)>,
    /// Most requests in flight to it at once (none: no limit).
    pub max_concurrency: Option<u32>,
    /// The response header reporting the server's queue depth (capacity-aware balancing).
    pub load_header: Option<HeaderName>,
    pub provider: ProviderKind,
    /// `None` only for an embedded mock, whose address is known once it is started.
    pub base_url: Option<Uri>,
    /// The model name sent upstream.
    pub upstream_model: String,
    pub api_key: Option<Secret>,
    pub http2_prior_knowledge: bool,
    pub mock: MockKnobs,
    /// Azure's `api-version`.
    pub api_version: Option<String>,
    /// The price of this deployment's model, from the deployment or the price table.
    pub price: Option<Price>,
    /// AWS credentials (Bedrock), read from the standard environment variables.
    pub aws: Option<AwsCredentials>,
    /// The caller's trace context and the request id go upstream (self-hosted servers by
    /// default; a third-party provider only when the deployment says so).
    pub forward_trace: bool,
}

/// Whether `base_url` is a server of one's own: an embedded mock, a loopback, private or
/// link-local address, or a name that only resolves inside a network (`localhost`, one label,
/// `.local`, `.internal`, `.lan`, `.svc`, `.cluster.local`). Anything else is a third party.
pub fn is_self_hosted(base_url: Option<&Uri>) -> bool {
    let Some(host) = base_url.and_then(Uri::host) else {
        return true; // an embedded mock
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return match ip {
            std::net::IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
            std::net::IpAddr::V6(v6) => v6.is_loopback() || v6.is_unique_local() || v6.is_unicast_link_local(),
        };
    }
    let host = host.to_ascii_lowercase();
    host == "localhost"
        || !host.contains('.')
        || [
            ".localhost",
            ".local",
            ".internal",
            ".lan",
            ".svc",
            ".cluster.local",
            ".home.arpa",
        ]
        .iter()
        .any(|suffix| host.ends_with(suffix))
}

#[derive(Debug, Clone)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
    pub region: String,
}

/// A model alias: the name clients ask for, served by one or more deployments.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub name: String,
    /// Indices into `Config::deployments`.
    pub deployments: Vec<usize>,
    pub balance: Balance,
    /// One per deployment (all 1 unless weighted).
    pub weights: Vec<u32>,
    pub limits: Vec<LimitSpec>,
}

/// A name pattern: exact, `prefix*`, or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Any,
    Exact(String),
    Prefix(String),
}

impl Pattern {
    pub fn parse(s: &str) -> Pattern {
        if s == "*" {
            Pattern::Any
        } else if let Some(prefix) = s.strip_suffix('*') {
            Pattern::Prefix(prefix.to_owned())
        } else {
            Pattern::Exact(s.to_owned())
        }
    }
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Exact(e) => e == value,
            Pattern::Prefix(p) => value.starts_with(p.as_str()),
        }
    }
}

/// All present conditions must hold; within one list any entry may match.
#[derive(Debug, Clone, Default)]
pub struct RouteMatch {
    pub paths: Vec<Pattern>,
    pub models: Vec<Pattern>,
    pub keys: Vec<Pattern>,
    pub tenants: Vec<Pattern>,
    pub teams: Vec<Pattern>,
    pub tiers: Vec<Pattern>,
    pub headers: Vec<(HeaderName, Pattern)>,
    pub metadata: Vec<(String, Pattern)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePolicy {
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    /// Whole-request bound for non-streamed responses.
    pub total_timeout: Duration,
    /// Longest allowed gap between two chunks of a stream.
    pub stream_idle_timeout: Duration,
    pub max_body_bytes: u64,
    pub max_attempts: u32,
    /// Drop request parameters the selected provider's API cannot express, instead of
    /// refusing the request with a 400.
    pub drop_unsupported: bool,
    /// Parameters carried into a translated request as they are (vendor extensions).
    pub forward_params: Vec<String>,
    pub retry: RetryPolicy,
    /// Answers carry a `server-timing` header with each stage's time.
    pub server_timing: bool,
}

/// How an alias spreads requests over its deployments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    #[default]
    RoundRobin,
    /// Round-robin in proportion to `weights`.
    Weighted,
    /// The deployment with the fewest requests in flight.
    LeastOutstanding,
    /// Peak-EWMA latency × requests in flight, of two picked at random.
    Latency,
    /// The deployment whose model server reports the least queued work (scraped), then the
    /// fewest in flight from here.
    Capacity,
}

/// Backoff between attempts, and the retry budget: retries may add at most `budget_percent`
/// of the route's requests, plus `budget_min_per_s` per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub backoff: Duration,
    pub backoff_max: Duration,
    pub budget_percent: u32,
    pub budget_min_per_s: u32,
}

/// Passive health per deployment: a breaker that opens after consecutive failures or a
/// failure ratio over a window, stays open for a time growing with repeats, then lets a few
/// probes through (half-open) before closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    pub enabled: bool,
    pub consecutive_failures: u32,
    pub failure_ratio_percent: u32,
    pub window: Duration,
    pub min_requests: u32,
    pub open: Duration,
    pub max_open: Duration,
    pub half_open_probes: u32,
    /// Never more than this share of an alias's deployments out at once.
    pub max_ejected_percent: u32,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub name: String,
    pub matcher: RouteMatch,
    /// Alias to serve instead of the one asked for (index into `Config::models`).
    pub model: Option<usize>,
    /// Aliases this route serves; `None` means any.
    pub allowed_models: Option<Vec<usize>>,
    pub policy: RoutePolicy,
    pub prediction: Option<PredictionConfig>,
    pub limits: Vec<LimitSpec>,
    pub fallback: FallbackConfig,
    /// The route's concurrency limit and the queue in front of it.
    pub queue: Option<QueueConfig>,
    /// Degradation steps, by rising queue depth; every step reached applies.
    pub degrade: Vec<DegradeStep>,
    /// The test response stage (`debug_rewrite`), when on.
    pub debug_rewrite: Option<DebugRewriteConfig>,
}

/// Hold back the last `hold_chars` characters of an answer's text and replace `from` with
/// `to` in what is released (`hold_chars` ≥ the length of `from`, so a match split between
/// chunks is always seen whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugRewriteConfig {
    pub hold_chars: usize,
    pub from: String,
    pub to: String,
}

/// Past `when_queued` waiting requests, serve `model` instead and/or cap `max_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DegradeStep {
    pub when_queued: usize,
    /// Model index.
    pub model: Option<usize>,
    pub max_tokens: Option<u64>,
}

/// At most `max_concurrency` requests of a route at once; up to `max_queued` more wait, by
/// priority and then in turn by tenant, for at most `timeout` (and the request's deadline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    pub max_concurrency: usize,
    pub max_queued: usize,
    pub timeout: Duration,
}

/// Why a request fell back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FallbackReason {
    Error,
    Timeout,
    OpenCircuit,
    RateLimit,
    ContextLength,
    ContentPolicy,
    /// Every deployment at its concurrency limit, and no place freed in time.
    Capacity,
}

impl FallbackReason {
    pub const ALL: [FallbackReason; 7] = [
        FallbackReason::Error,
        FallbackReason::Timeout,
        FallbackReason::OpenCircuit,
        FallbackReason::RateLimit,
        FallbackReason::ContextLength,
        FallbackReason::ContentPolicy,
        FallbackReason::Capacity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FallbackReason::Error => "error",
            FallbackReason::Timeout => "timeout",
            FallbackReason::OpenCircuit => "open_circuit",
            FallbackReason::RateLimit => "rate_limit",
            FallbackReason::ContextLength => "context_length",
            FallbackReason::ContentPolicy => "content_policy",
            FallbackReason::Capacity => "capacity",
        }
    }
}

/// A route's fallback chain: other aliases, then a fixed answer.
#[derive(Debug, Clone, Default)]
pub struct FallbackConfig {
    /// Model indices, tried in order.
    pub models: Vec<usize>,
    pub on: Vec<FallbackReason>,
    /// The degradation answer's text.
    pub response: Option<String>,
}

/// A prediction route's contract. The schemas are compiled when the config is validated and
/// kept compiled: a route can never lose its checks to a second compilation.
#[derive(Debug, Clone, Default)]
pub struct PredictionConfig {
    pub request_schema: Option<std::sync::Arc<jsonschema::Validator>>,
    pub response_schema: Option<std::sync::Arc<jsonschema::Validator>>,
    pub request_transform: Option<serde_json::Value>,
    pub response_transform: Option<serde_json::Value>,
}

#[derive(Debug, Clone)]
pub struct KeyConfig {
    pub id: String,
    /// SHA-256 of the full key.
    pub hash: [u8; 32],
    pub tenant: Option<String>,
    pub team: Option<String>,
    pub user: Option<String>,
    pub tier: Option<String>,
    /// Model aliases the key may use; `None` means all.
    pub models: Option<Vec<Pattern>>,
    /// Routes the key may use; `None` means all.
    pub routes: Option<Vec<String>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The key's own limits (its tier's are added at admission).
    pub limits: Vec<LimitSpec>,
    /// Limits for each end user: the one the request names when `trust_user`, else the key's
    /// own `user`. A client-supplied user never keys a limit unless the key is trusted.
    pub user_limits: Vec<LimitSpec>,
    pub trust_user: bool,
    /// The key may set its requests' queue priority (`x-sluice-priority`).
    pub priority_header: bool,
}

/// Budget alerts: a webhook called when spend crosses each threshold (percent of a cost limit,
/// hard or soft), once per window, signed with HMAC-SHA256 when a secret is set.
#[derive(Debug, Clone)]
pub struct BudgetAlerts {
    pub url: Uri,
    pub secret: Option<Secret>,
    /// Percentages, ascending.
    pub thresholds: Vec<u8>,
}

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    Requests,
    Tokens,
    InputTokens,
    OutputTokens,
    /// Micro-units of the price table's currency.
    Cost,
}

/// Rates (second, minute, hour) are GCRA token buckets with a burst; quotas (day, month) are
/// calendar windows in the configured time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Window {
    Second,
    Minute,
    Hour,
    Day,
    Month,
}

impl Window {
    pub fn is_rate(self) -> bool {
        matches!(self, Window::Second | Window::Minute | Window::Hour)
    }
    pub fn seconds(self) -> u64 {
        match self {
            Window::Second => 1,
            Window::Minute => 60,
            Window::Hour => 3600,
            Window::Day => 86_400,
            Window::Month => 31 * 86_400,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSpec {
    pub metric: Metric,
    pub window: Window,
    /// Units per window (cost: micro-units).
    pub amount: u64,
    /// Rates: the most units admitted at once (default: `amount`).
    pub burst: u64,
    /// A soft budget: never refuses, only alerts (`soft_cost_per_month`).
    pub soft: bool,
    /// While the shared store is down (none: the store's default).
    pub on_outage: Option<OutagePolicy>,
}

impl LimitSpec {
    /// The readable name, e.g. `tokens_per_minute`.
    pub fn name(&self) -> String {
        let m = match self.metric {
            Metric::Requests => "requests",
            Metric::Tokens => "tokens",
            Metric::InputTokens => "input_tokens",
            Metric::OutputTokens => "output_tokens",
            Metric::Cost => "cost",
        };
        let w = match self.window {
            Window::Second => "second",
            Window::Minute => "minute",
            Window::Hour => "hour",
            Window::Day => "day",
            Window::Month => "month",
        };
        let soft = if self.soft { "soft_" } else { "" };
        format!("{soft}{m}_per_{w}")
    }
}

/// Geographic routing: the caller's region comes from a header, else from the network its
/// address is in; an alias's deployments in that region are preferred, then the failover
/// regions in order, then any.
#[derive(Debug, Clone, Default)]
pub struct GeoConfig {
    pub header: String,
    pub networks: Vec<(IpNet, String)>,
    pub failover: std::collections::HashMap<String, Vec<String>>,
}

impl GeoConfig {
    /// The caller's region: the header's value, else the first network holding `ip`.
    pub fn region<'a>(&'a self, header: Option<&'a str>, ip: Option<std::net::IpAddr>) -> Option<&'a str> {
        header.filter(|h| !h.is_empty()).or_else(|| {
            let ip = ip?;
            self.networks
                .iter()
                .find(|(n, _)| n.contains(ip))
                .map(|(_, r)| r.as_str())
        })
    }
}

/// An IP network (`10.0.0.0/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

impl IpNet {
    pub fn parse(s: &str) -> Option<IpNet> {
        let (a, p) = s.split_once('/')?;
        let addr: std::net::IpAddr = a.parse().ok()?;
        let prefix: u8 = p.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(IpNet { addr, prefix })
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let bits = |ip: std::net::IpAddr| -> (u128, u32) {
            match ip {
                std::net::IpAddr::V4(v) => (u128::from(u32::from(v)) << 96, 32),
                std::net::IpAddr::V6(v) => (u128::from(v), 128),
            }
        };
        let ((net, nlen), (x, xlen)) = (bits(self.addr), bits(ip));
        if nlen != xlen {
            return false;
        }
        let mask = if self.prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(self.prefix))
        };
        net & mask == x & mask
    }
}
