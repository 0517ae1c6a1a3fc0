//! Raw configuration types: exactly what the YAML file says, with unknown fields denied.
//!
//! Nothing here is validated beyond its YAML type; [`crate::validate`] turns a [`RawConfig`]
//! into a [`crate::Config`]. Fields whose value is checked against something else (a reference
//! to a deployment, a number with a range) are `Spanned` so errors can name the line.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

pub type S<T> = Spanned<T>;

mod guard;
mod ops;
mod server;
pub use guard::*;
pub use ops::*;
pub use server::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub logging: RawLogging,
    /// Traces (OpenTelemetry, exported over OTLP/HTTP).
    #[serde(default)]
    pub telemetry: RawTelemetry,
    #[serde(default)]
    pub defaults: RawPolicy,
    #[serde(default)]
    pub deployments: Vec<RawDeployment>,
    #[serde(default)]
    pub models: Vec<RawModel>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub keys: Vec<RawKey>,
    #[serde(default)]
    pub prices: RawPrices,
    /// Named bundles of limits, assigned to keys, teams and tenants.
    #[serde(default)]
    pub tiers: Vec<RawTier>,
    #[serde(default)]
    pub teams: Vec<RawEntity>,
    #[serde(default)]
    pub tenants: Vec<RawEntity>,
    /// The time zone of daily and monthly windows: `UTC` or a fixed offset like `+02:00`.
    pub time_zone: Option<S<String>>,
    pub budget_alerts: Option<RawBudgetAlerts>,
    /// Alert rules on error rate, p95 latency and spend rate (sent to `budget_alerts.url`).
    pub alerts: Option<RawAlerts>,
    #[serde(default)]
    pub ledger: RawLedger,
    #[serde(default)]
    pub breaker: RawBreaker,
    pub geo: Option<RawGeo>,
    /// The response cache's storage (each route says whether and how it caches).
    #[serde(default)]
    pub cache: RawCacheStore,
    /// The in-process embedding model (semantic cache).
    #[serde(default)]
    pub embedder: RawEmbedder,
    /// Named guardrail sets (besides the built-in `pii-redact`, `no-secrets`,
    /// `injection-screen`), which routes attach by name.
    #[serde(default)]
    pub guardrail_sets: BTreeMap<String, Vec<RawGuardRule>>,
}

/// The response cache's in-process tier.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCacheStore {
    /// Most bytes the in-process tier holds (entries are evicted, least used first, past it).
    pub memory_bytes: Option<S<u64>>,
    /// The share of the tier one tenant's entries may take, so one tenant cannot evict the rest.
    pub tenant_max_percent: Option<S<u64>>,
    /// Whether entries are shared through `store.redis` when it is configured (default true).
    pub redis: Option<S<bool>>,
    /// How long a Redis-tier call may take (default: `store.redis.timeout_ms`).
    pub redis_timeout_ms: Option<S<u64>>,
    /// Entries larger than this are compressed in the Redis tier.
    pub compress_above_bytes: Option<S<u64>>,
    /// The most prompts the semantic index holds.
    pub semantic_max_entries: Option<S<u64>>,
    /// Partitions with more prompts than this are searched through an HNSW graph.
    pub semantic_graph_above: Option<S<u64>>,
}

/// The in-process embedding model.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmbedder {
    /// The directory `scripts/fetch-models.sh` unpacked all-MiniLM-L6-v2 into.
    pub path: Option<S<String>>,
    /// Threads that embed (off the async workers).
    pub threads: Option<S<u64>>,
    /// Embeddings waiting for a thread; past it a request skips the semantic lookup.
    pub queue: Option<S<u64>>,
}

/// A route's cache policy (also under `defaults`, merged field by field).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// How long an answer is served from the cache; 0 never caches.
    pub ttl_ms: Option<S<u64>>,
    /// Who shares an entry: `tenant` (default), `team` or `key`.
    pub scope: Option<S<String>>,
    /// Larger answers are not stored.
    pub max_entry_bytes: Option<S<u64>>,
    /// Leave out sampled requests (`temperature` > 0, or none given).
    pub skip_sampled: Option<S<bool>>,
    /// Keep entries this long past their TTL, for a fallback chain's `cache` step.
    pub stale_ms: Option<S<u64>>,
    /// Send a streamed hit's events this far apart (as a live stream would arrive).
    pub replay_chunk_ms: Option<S<u64>>,
    /// Semantic matching of the last user turn (merged field by field with the defaults').
    pub semantic: Option<RawSemantic>,
}

/// A route's semantic cache.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSemantic {
    /// The least cosine similarity of a hit (a floor: no request can lower it).
    pub threshold: Option<S<f64>>,
    /// `minilm` (in process).
    pub embedder: Option<S<String>>,
    /// The longest the embedding and search may take; past it the lookup is a miss.
    pub max_wait_ms: Option<S<u64>>,
    /// Shorter last user turns are not looked up semantically.
    pub min_chars: Option<S<u64>>,
    /// Check a similar entry's numbers, names, negation… before it answers (default true).
    pub verify: Option<S<bool>>,
}

/// Geographic routing: where a caller is, and which regions serve it in what order.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGeo {
    /// A header naming the caller's region (default `x-sluice-region`).
    pub header: Option<S<String>>,
    /// Region → client networks (`10.1.0.0/16`, `2001:db8::/32`).
    #[serde(default)]
    pub networks: BTreeMap<String, Vec<S<String>>>,
    /// Region → the regions to try next, in order.
    #[serde(default)]
    pub failover: BTreeMap<String, Vec<String>>,
}

/// The spend ledger: a local write-ahead file, shipped in batches to the store's database.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLedger {
    pub enabled: Option<bool>,
    /// Directory of the write-ahead segments (one per instance).
    pub dir: Option<S<String>>,
    pub ship_interval_ms: Option<S<u64>>,
    /// Ledger rows older than this many days are deleted (default: kept).
    pub retention_days: Option<S<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudgetAlerts {
    pub url: S<String>,
    pub secret_env: Option<S<String>>,
    pub thresholds: Option<Vec<u8>>,
}

/// Limits by readable name (`requests_per_minute: 60`, `tokens_per_day: 1000000`,
/// `cost_per_month: 50`, `requests_per_minute_burst: 10`, `requests_per_day_on_outage: closed`…).
pub type RawLimits = std::collections::BTreeMap<String, RawLimitValue>;

/// A limit's amount, or a word (the `…_on_outage` policy).
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum RawLimitValue {
    Number(f64),
    Word(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTier {
    pub name: S<String>,
    #[serde(default)]
    pub limits: RawLimits,
    /// Queue priority of the tier's keys, 0 (lowest) to 9; default 5.
    pub priority: Option<S<u64>>,
}

/// A team or tenant: its tier and own limits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEntity {
    pub name: S<String>,
    pub tier: Option<S<String>>,
    #[serde(default)]
    pub limits: RawLimits,
    /// Tenants: their share of a route queue's turns against other tenants (default 1).
    pub queue_weight: Option<S<u64>>,
    /// Tenants: what their requests and answers must not contain (blocked on every guarded
    /// route).
    pub deny: Option<RawDeny>,
}

/// The price table: what each upstream model costs, per million tokens (or per request).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrices {
    pub currency: Option<S<String>>,
    #[serde(default)]
    pub models: Vec<RawModelPrice>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModelPrice {
    /// Upstream model name: exact, `prefix*` or `*`.
    pub model: S<String>,
    #[serde(flatten)]
    pub price: RawPrice,
}

/// Prices in currency units: per million input, output, cache-read and cache-write tokens, and
/// per request.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    pub input: Option<f64>,
    pub output: Option<f64>,
    pub cached_input: Option<f64>,
    pub cache_write: Option<f64>,
    pub per_request: Option<f64>,
}

/// Per-route policies; also the shape of the top-level `defaults` block.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub connect_timeout_ms: Option<S<u64>>,
    pub first_byte_timeout_ms: Option<S<u64>>,
    pub total_timeout_ms: Option<S<u64>>,
    pub stream_idle_timeout_ms: Option<S<u64>>,
    pub max_body_bytes: Option<S<u64>>,
    pub max_attempts: Option<S<u64>>,
    pub unsupported_params: Option<S<String>>,
    pub forward_params: Option<Vec<String>>,
    pub retry: Option<RawRetry>,
    /// Send a `server-timing` response header with the time of each stage.
    pub server_timing: Option<S<bool>>,
    /// The response cache.
    pub cache: Option<RawCache>,
    /// Guardrail sets attached to every route that names none of its own.
    pub guardrails: Option<Vec<S<String>>>,
    pub guard: Option<RawGuard>,
}

/// How retries wait and how many there may be.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub backoff_ms: Option<S<u64>>,
    pub backoff_max_ms: Option<S<u64>>,
    pub budget_percent: Option<S<u64>>,
    pub budget_min_per_s: Option<S<u64>>,
}

/// Passive health: when a deployment is taken out of its pools, and how it comes back.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    pub enabled: Option<bool>,
    pub consecutive_failures: Option<S<u64>>,
    pub failure_ratio_percent: Option<S<u64>>,
    pub window_ms: Option<S<u64>>,
    pub min_requests: Option<S<u64>>,
    pub open_ms: Option<S<u64>>,
    pub max_open_ms: Option<S<u64>>,
    pub half_open_probes: Option<S<u64>>,
    pub max_ejected_percent: Option<S<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeployment {
    pub name: S<String>,
    pub provider: S<String>,
    pub base_url: Option<S<String>>,
    pub model: Option<S<String>>,
    pub api_key_env: Option<S<String>>,
    #[serde(default)]
    pub http2_prior_knowledge: bool,
    pub mock: Option<RawMockKnobs>,
    /// Azure OpenAI's `api-version` query parameter.
    pub api_version: Option<S<String>>,
    /// AWS region (Bedrock); else `AWS_REGION` from the environment.
    pub region: Option<S<String>>,
    /// This deployment's price, overriding the price table.
    pub price: Option<RawPrice>,
    /// The region it serves from, for geographic routing.
    pub geo: Option<S<String>>,
    /// Its Prometheus endpoint (vLLM, TGI), scraped for queue depth and KV-cache use.
    pub metrics: Option<RawScrape>,
    /// An active health check: a free path on the same server (a models list, a health
    /// endpoint — never a paid completion).
    pub health_check: Option<RawHealthCheck>,
    /// Most requests in flight to this deployment from this gateway at once.
    pub max_concurrency: Option<S<u64>>,
    /// A response header in which the server reports its load (a queue depth): read from every
    /// answer, for capacity-aware balancing.
    pub load_header: Option<S<String>>,
    /// Pass the caller's `traceparent`/`tracestate` and the request id on to this deployment
    /// (default: on for servers on a private network, off for third-party providers).
    pub forward_trace: Option<S<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    pub path: S<String>,
    pub interval_ms: Option<S<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScrape {
    pub url: S<String>,
    pub interval_ms: Option<S<u64>>,
}

/// Defaults for the built-in mock provider (`provider: mock`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMockKnobs {
    pub latency_ms: Option<u64>,
    pub ttft_ms: Option<u64>,
    pub chunk_delay_ms: Option<u64>,
    pub chunks: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub name: S<String>,
    pub deployments: Vec<S<String>>,
    /// `round_robin` (default), `weighted`, `least_outstanding` or `latency`.
    pub balance: Option<S<String>>,
    /// Relative weights, one per deployment (implies `weighted`).
    pub weights: Option<Vec<S<u64>>>,
    #[serde(default)]
    pub limits: RawLimits,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: S<String>,
    #[serde(default, rename = "match")]
    pub matcher: RawMatch,
    pub model: Option<S<String>>,
    pub allowed_models: Option<Vec<S<String>>>,
    pub connect_timeout_ms: Option<S<u64>>,
    pub first_byte_timeout_ms: Option<S<u64>>,
    pub total_timeout_ms: Option<S<u64>>,
    pub stream_idle_timeout_ms: Option<S<u64>>,
    pub max_body_bytes: Option<S<u64>>,
    pub max_attempts: Option<S<u64>>,
    pub unsupported_params: Option<S<String>>,
    pub forward_params: Option<Vec<String>>,
    pub server_timing: Option<S<bool>>,
    pub prediction: Option<S<RawPrediction>>,
    #[serde(default)]
    pub limits: RawLimits,
    pub retry: Option<RawRetry>,
    /// The response cache (fields not given come from `defaults.cache`).
    pub cache: Option<RawCache>,
    /// Guardrail sets, by name (this list replaces `defaults.guardrails`).
    pub guardrails: Option<Vec<S<String>>>,
    /// How the guardrails read prompts (fields not given come from `defaults.guard`).
    pub guard: Option<RawGuard>,
    /// Steps tried in order when the route's model fails: model aliases, and
    /// `{cache: {stale_ms}}` (a stored answer, even past its TTL).
    pub fallback: Option<Vec<S<RawFallbackStep>>>,
    /// Which failures fall back: error, timeout, open_circuit, rate_limit, context_length,
    /// content_policy.
    pub fallback_on: Option<Vec<S<String>>>,
    /// The last resort: an answer with this text instead of an error.
    pub fallback_response: Option<RawFallbackResponse>,
    /// A concurrency limit with a bounded priority queue in front.
    pub queue: Option<RawQueue>,
    /// Under load (by queue depth), serve a cheaper model or fewer tokens instead of refusing.
    pub degrade: Option<Vec<RawDegradeStep>>,
    /// A test response stage: holds back the last `hold_chars` of the answer's text and
    /// rewrites one string (it proves hold-back and rewrite on live streams).
    pub debug_rewrite: Option<S<RawDebugRewrite>>,
    /// Store each request's prompt and answer, after the route's redaction rules ran.
    pub log_payloads: Option<S<bool>>,
    /// How long stored payloads are kept (days; default 30).
    pub payload_retention_days: Option<S<u64>>,
    /// Store payloads on a route whose guardrails redact nothing (they are stored as sent).
    pub allow_unredacted: Option<S<bool>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDebugRewrite {
    pub hold_chars: u64,
    pub replace: RawReplace,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReplace {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDegradeStep {
    pub when_queued: S<u64>,
    pub model: Option<S<String>>,
    pub max_tokens: Option<S<u64>>,
    /// Serve only cached answers: a miss is refused (503) rather than queued.
    pub cache_only: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    pub max_concurrency: S<u64>,
    pub max_queued: Option<S<u64>>,
    pub timeout_ms: Option<S<u64>>,
}

/// One step of a fallback chain.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawFallbackStep {
    /// Another model alias.
    Alias(String),
    /// The route's cached answer, even past its TTL (within `stale_ms` of it).
    Cache { cache: RawStaleCache },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStaleCache {
    pub stale_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFallbackResponse {
    pub content: S<String>,
}

/// A prediction route: JSON Schemas for the caller's request and the model's answer, and
/// declarative transformations between the public API and the model server's.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrediction {
    pub request_schema: Option<serde_json::Value>,
    pub response_schema: Option<serde_json::Value>,
    pub request_transform: Option<serde_json::Value>,
    pub response_transform: Option<serde_json::Value>,
}

impl RawRoute {
    /// The route's own policy fields, in the same shape as the `defaults` block.
    pub fn policy(&self) -> RawPolicy {
        RawPolicy {
            connect_timeout_ms: self.connect_timeout_ms.clone(),
            first_byte_timeout_ms: self.first_byte_timeout_ms.clone(),
            total_timeout_ms: self.total_timeout_ms.clone(),
            stream_idle_timeout_ms: self.stream_idle_timeout_ms.clone(),
            max_body_bytes: self.max_body_bytes.clone(),
            max_attempts: self.max_attempts.clone(),
            unsupported_params: self.unsupported_params.clone(),
            forward_params: self.forward_params.clone(),
            retry: self.retry.clone(),
            server_timing: self.server_timing.clone(),
            cache: self.cache.clone(),
            guardrails: self.guardrails.clone(),
            guard: self.guard.clone(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    #[serde(default)]
    pub paths: Vec<S<String>>,
    #[serde(default)]
    pub models: Vec<S<String>>,
    #[serde(default)]
    pub keys: Vec<String>,
    #[serde(default)]
    pub tenants: Vec<String>,
    #[serde(default)]
    pub teams: Vec<String>,
    #[serde(default)]
    pub tiers: Vec<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub id: S<String>,
    pub hash: S<String>,
    pub tenant: Option<String>,
    pub team: Option<String>,
    pub user: Option<String>,
    pub tier: Option<String>,
    pub models: Option<Vec<S<String>>>,
    pub routes: Option<Vec<S<String>>>,
    pub expires_at: Option<S<String>>,
    #[serde(default)]
    pub limits: RawLimits,
    /// Limits for each end user of the key (see `trust_user`).
    #[serde(default)]
    pub user_limits: RawLimits,
    /// The request's `user` field (Anthropic: `metadata.user_id`) names the end user.
    pub trust_user: Option<bool>,
    /// The key may set its requests' queue priority with `x-sluice-priority`.
    pub priority_header: Option<bool>,
}
