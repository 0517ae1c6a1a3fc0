//! Deployments (one upstream target each: provider, address, model, credentials, price) and the
//! model aliases they serve.

use std::time::Duration;

use http::{HeaderName, Uri};

use super::limits::LimitSpec;
use super::resilience::Balance;
use super::secret::Secret;

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
