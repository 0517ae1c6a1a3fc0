//! The operations sections as written: `telemetry` (traces) and `alerts`.

use serde::Deserialize;

use serde_saphyr::Spanned as S;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    /// How often the rules are evaluated.
    pub every_ms: Option<S<u64>>,
    #[serde(default)]
    pub rules: Vec<RawAlertRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlertRule {
    pub name: S<String>,
    /// `error_rate` (share of requests answered 5xx), `latency_p95_ms`, `spend_per_hour`
    /// (currency units).
    pub metric: S<String>,
    /// `model` or `tenant`.
    pub by: S<String>,
    pub window_ms: Option<S<u64>>,
    /// The value the metric must exceed.
    pub above: S<f64>,
    /// Rates and latencies need this many requests in the window.
    pub min_requests: Option<S<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    pub otlp: Option<RawOtlp>,
}

/// Where spans go: an OTLP/HTTP (protobuf) receiver — a collector, Jaeger, Tempo…
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOtlp {
    /// The receiver's base URL (`http://collector:4318`; `/v1/traces` is added) or the full
    /// traces URL.
    pub endpoint: S<String>,
    /// An environment variable holding extra request headers, `name=value,name2=value2`
    /// (the form of `OTEL_EXPORTER_OTLP_HEADERS`), e.g. an authorization token.
    pub headers_env: Option<S<String>>,
    /// The share of new traces recorded (0–1); a caller's `traceparent` decides for its own.
    pub sample_ratio: Option<S<f64>>,
    /// Requests' spans held for export before new ones are dropped (and counted).
    pub queue: Option<S<u64>>,
    /// Most spans in one export request.
    pub batch: Option<S<u64>>,
    /// Longest wait for the receiver to answer one export.
    pub timeout_ms: Option<S<u64>>,
    /// `service.name` of the spans' resource.
    pub service_name: Option<S<String>>,
}
