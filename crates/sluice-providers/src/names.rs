//! Header names the request path reads and writes, made once: a `&str` name costs a parse and a
//! validation on every `get` or `insert`; a constant costs neither.

use http::HeaderName;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
pub const ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");
pub const ANTHROPIC_BETA: HeaderName = HeaderName::from_static("anthropic-beta");
pub const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
pub const X_SLUICE_PRIORITY: HeaderName = HeaderName::from_static("x-sluice-priority");
pub const X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");
pub const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");
pub const X_SLUICE_MODEL: HeaderName = HeaderName::from_static("x-sluice-model");
pub const X_SLUICE_DEGRADED: HeaderName = HeaderName::from_static("x-sluice-degraded");
pub const X_SLUICE_CACHE: HeaderName = HeaderName::from_static("x-sluice-cache");
/// A semantic hit's cosine similarity to the stored prompt.
pub const X_SLUICE_CACHE_SIMILARITY: HeaderName = HeaderName::from_static("x-sluice-cache-similarity");
pub const X_SLUICE_CACHE_TTL_MS: HeaderName = HeaderName::from_static("x-sluice-cache-ttl-ms");
pub const X_SLUICE_FALLBACK: HeaderName = HeaderName::from_static("x-sluice-fallback");
pub const X_SLUICE_FALLBACK_REASON: HeaderName = HeaderName::from_static("x-sluice-fallback-reason");
pub const X_SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");
pub const X_GOOG_API_KEY: HeaderName = HeaderName::from_static("x-goog-api-key");
