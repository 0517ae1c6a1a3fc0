//! Routes: what a route matches, the alias it serves, its policy, and the stages and queue it
//! runs requests through.

use std::time::Duration;

use http::HeaderName;

use super::limits::LimitSpec;
use super::resilience::{FallbackConfig, RetryPolicy};

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

#[derive(Debug, Clone, PartialEq)]
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
    /// The response cache; `None` never caches (no `cache`, or `ttl_ms: 0`).
    pub cache: Option<CachePolicy>,
}

/// How a route caches answers.
#[derive(Debug, Clone, PartialEq)]
pub struct CachePolicy {
    pub ttl: Duration,
    pub scope: CacheScope,
    /// Answers larger than this (in the cache's own measure) are not stored.
    pub max_entry_bytes: u64,
    /// Sampled requests (`temperature` > 0, or none given) are neither looked up nor stored.
    pub skip_sampled: bool,
    /// Entries are kept this long past their TTL: for a fallback chain's `cache` step.
    pub stale: Duration,
    /// A streamed hit's events are sent this far apart (none: all at once).
    pub replay_chunk: Option<Duration>,
    /// Semantic matching of the last user turn, when the route turns it on.
    pub semantic: Option<SemanticPolicy>,
}

/// A route's semantic cache.
#[derive(Debug, Clone, PartialEq)]
pub struct SemanticPolicy {
    /// The least cosine similarity of a hit.
    pub threshold: f32,
    pub embedder: EmbedderChoice,
    /// The longest the embedding and search may take before the lookup is given up (a miss).
    pub max_wait: Duration,
    /// Shorter last user turns (in characters) are not looked up.
    pub min_chars: usize,
    /// Check a similar entry's numbers, names, negation, order, format… before it answers.
    pub verify: bool,
}

/// What embeds a route's prompts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmbedderChoice {
    /// all-MiniLM-L6-v2, in process.
    MiniLm,
    /// An embedding deployment behind this model alias, reached through the gateway's own
    /// provider layer (OpenAI, Azure, Gemini, Bedrock, a TEI or vLLM server…).
    Model(String),
}

/// Who shares a cache entry. The tenant is always part of it (a key without a tenant is its
/// own tenant); `Team` and `Key` narrow it further.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheScope {
    Tenant,
    Team,
    Key,
}

impl CacheScope {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheScope::Tenant => "tenant",
            CacheScope::Team => "team",
            CacheScope::Key => "key",
        }
    }
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
    /// The route's guardrails, when it has any.
    pub guard: Option<super::guard::RouteGuard>,
    /// Its requests' prompts and answers are stored (redacted), when it says so.
    pub payloads: Option<PayloadLogConfig>,
}

/// A route's payload log: prompt and answer stored after its redaction rules ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadLogConfig {
    pub retention_days: u32,
    /// Whether the route's guardrails redact (else the operator allowed unredacted rows).
    pub redacted: bool,
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
    /// Serve only cached answers; a miss is refused with 503.
    pub cache_only: bool,
}

/// At most `max_concurrency` requests of a route at once; up to `max_queued` more wait, by
/// priority and then in turn by tenant, for at most `timeout` (and the request's deadline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    pub max_concurrency: usize,
    pub max_queued: usize,
    pub timeout: Duration,
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
