//! What finish reports to: Prometheus metrics (one registry per gateway, no globals) and the
//! access log, written by its own thread so the request path only enqueues. A full queue is
//! never silent: every line that could not be queued is counted.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::registry::Registry;
use sluice_config::AccessLogTarget;
use sluice_telemetry::{AccessLog, Histogram, LogLine};

mod labels;
pub use labels::*;

fn stage_histogram() -> Histogram {
    // 10 µs … ~168 s
    Histogram::new(exponential_buckets(0.000_01, 2.0, 25))
}

fn latency_histogram() -> Histogram {
    // 100 µs … ~210 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 22))
}

#[derive(Debug)]
pub struct Metrics {
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<RouteModel, Histogram, fn() -> Histogram>,
    pub ttfb: Family<RouteModel, Histogram, fn() -> Histogram>,
    /// A stream's first content token (text, tool-call arguments or reasoning), by model.
    pub ttft: Family<ModelLabel, Histogram, fn() -> Histogram>,
    /// A stream's time per output token after its first, by model.
    pub tpot: Family<ModelLabel, Histogram, fn() -> Histogram>,
    /// Answers a fallback chain gave, by route and reason.
    pub fallbacks: Family<FallbackLabels, Counter>,
    pub overhead: Histogram,
    /// Each stage of the walk, by route.
    pub stages: Family<StageLabels, Histogram, fn() -> Histogram>,
    pub errors: Family<ClassLabel, Counter>,
    pub tokens: Family<TokenLabels, Counter>,
    /// Micro-units of the configured currency, for requests whose model has a price.
    pub cost: Family<RouteModel, Counter>,
    pub attempts: Family<AttemptLabels, Counter>,
    pub in_flight: Gauge,
    pub log_dropped: Counter,
    /// Audit entries that could not be appended (the change itself was made).
    pub audit_errors: Counter,
    /// Payload rows stored, and dropped (the writer's queue full, or the database failed).
    pub payload_written: Counter,
    pub payload_dropped: Counter,
    pub reloads: Family<ResultLabel, Counter>,
    pub keys: Gauge,
    pub limits_store: sluice_limits::StoreMetrics,
    /// The response cache's Redis tier.
    pub cache_redis: sluice_cache::SharedMetrics,
    /// In-process limiter cells (set by each sweep and when scraped).
    pub limits_cells: Gauge,
    /// 0 closed, 1 open, 2 half-open.
    pub breaker_state: Family<DeploymentLabel, Gauge>,
    pub breaker_transitions: Family<TransitionLabels, Counter>,
    pub retries: Family<RetryLabels, Counter>,
    /// Requests waiting in each route's queue.
    pub queue_depth: Family<RouteLabel, Gauge>,
    /// Cache lookups by route and result (`hit`, `miss`, `bypass`).
    pub cache_lookups: Family<CacheLabels, Counter>,
    /// Guardrails that fired (the safety-filter trigger rate, over `sluice_requests_total`).
    pub guard_triggers: Family<GuardLabels, Counter>,
    /// The longest an answer's output guardrails held back, in bytes.
    pub guard_held: Histogram,
    /// Images passed to the upstream unscreened.
    pub guard_images: Counter,
    /// Answers that failed their JSON check (each attempt's).
    pub guard_invalid: Counter,
    /// Streamed answers held until complete (for their JSON check or an output hook).
    pub guard_held_whole: Counter,
    /// External guardrail hooks: how long each call took, and the calls that failed.
    pub guard_hook_duration: Family<HookLabel, Histogram, fn() -> Histogram>,
    pub guard_hook_errors: Family<HookLabel, Counter>,
    /// What cache hits saved, by route: the stored answers' cost and tokens.
    pub cache_saved_cost: Family<RouteLabel, Counter>,
    pub cache_saved_tokens: Family<RouteLabel, Counter>,
    /// Entries and bytes in the in-process cache tier (set when scraped).
    pub cache_entries: Gauge,
    pub cache_bytes: Gauge,
    /// Entries the in-process tier evicted to make room (brought up to date when scraped).
    pub cache_evictions: Counter,
    /// Misses waiting for an identical request in the air (single flight).
    pub cache_waiting: Gauge,
    /// Semantic lookups given up, by reason: busy (the embedder's queue was full), late (past
    /// `max_wait_ms`), short, not_text, no_embedder, error.
    pub cache_semantic_skips: Family<ReasonLabel, Counter>,
    /// Similar stored prompts the check refused, by what differed (numbers, names, order…).
    pub cache_semantic_rejected: Family<ReasonLabel, Counter>,
    /// Embedding a prompt and searching its partition, seconds (semantic lookups that finished).
    pub cache_embed: Histogram,
    /// Requests holding a place among each route's running requests (routes with a queue).
    pub queue_running: Family<RouteLabel, Gauge>,
    /// Requests in flight to each deployment from this gateway (set when scraped).
    pub deployment_in_flight: Family<DeploymentLabel, Gauge>,
    /// Each deployment's server-reported load (queue × 1000 + KV-cache ‰; set when scraped).
    pub deployment_load: Family<DeploymentLabel, Gauge>,
    /// The web console's sign-ins and refusals, by event.
    pub console_events: Family<EventLabel, Counter>,
}

impl Metrics {
    fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            ttfb: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            ttft: Family::new_with_constructor(stage_histogram as fn() -> Histogram),
            tpot: Family::new_with_constructor(stage_histogram as fn() -> Histogram),
            fallbacks: Family::default(),
            overhead: Histogram::new(exponential_buckets(0.000_005, 2.0, 20)),
            stages: Family::new_with_constructor(stage_histogram as fn() -> Histogram),
            errors: Family::default(),
            tokens: Family::default(),
            cost: Family::default(),
            attempts: Family::default(),
            in_flight: Gauge::default(),
            log_dropped: Counter::default(),
            audit_errors: Counter::default(),
            payload_written: Counter::default(),
            payload_dropped: Counter::default(),
            reloads: Family::default(),
            keys: Gauge::default(),
            limits_store: sluice_limits::StoreMetrics::default(),
            cache_redis: sluice_cache::SharedMetrics::default(),
            limits_cells: Gauge::default(),
            breaker_state: Family::default(),
            breaker_transitions: Family::default(),
            retries: Family::default(),
            queue_depth: Family::default(),
            cache_lookups: Family::default(),
            guard_triggers: Family::default(),
            guard_held: Histogram::new(exponential_buckets(16.0, 2.0, 13)),
            guard_images: Counter::default(),
            guard_invalid: Counter::default(),
            guard_held_whole: Counter::default(),
            guard_hook_duration: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            guard_hook_errors: Family::default(),
            cache_saved_cost: Family::default(),
            cache_saved_tokens: Family::default(),
            cache_entries: Gauge::default(),
            cache_bytes: Gauge::default(),
            cache_evictions: Counter::default(),
            cache_waiting: Gauge::default(),
            cache_semantic_skips: Family::default(),
            cache_semantic_rejected: Family::default(),
            cache_embed: stage_histogram(),
            queue_running: Family::default(),
            deployment_in_flight: Family::default(),
            deployment_load: Family::default(),
            console_events: Family::default(),
        };
        registry.register(
            "sluice_console_events",
            "Web console sign-ins and refusals (signed_in, sign_in_refused, sign_in_limited, csrf_refused)",
            m.console_events.clone(),
        );
        registry.register(
            "sluice_deployment_in_flight",
            "Requests in flight to each deployment from this gateway",
            m.deployment_in_flight.clone(),
        );
        registry.register(
            "sluice_deployment_reported_load",
            "Load each deployment's server reports (waiting x 1000 + KV-cache use in thousandths)",
            m.deployment_load.clone(),
        );
        registry.register(
            "sluice_queue_running",
            "Requests holding a place among each route's running requests",
            m.queue_running.clone(),
        );
        registry.register(
            "sluice_guardrail_triggers",
            "Guardrail rules that fired, by rule (set/rule), action, side (input, output) and tenant",
            m.guard_triggers.clone(),
        );
        registry.register(
            "sluice_guardrail_held_bytes",
            "The longest an answer's output guardrails held text back, in bytes, per answer",
            m.guard_held.clone(),
        );
        registry.register(
            "sluice_guardrail_images_unscreened",
            "Images passed to the upstream without being screened",
            m.guard_images.clone(),
        );
        registry.register(
            "sluice_guardrail_invalid_outputs",
            "Answers that failed their JSON check (response_format or the route's output_schema), one per attempt",
            m.guard_invalid.clone(),
        );
        registry.register(
            "sluice_guardrail_held_whole",
            "Streamed answers held until complete, because their JSON check or an output hook cannot decide on a window",
            m.guard_held_whole.clone(),
        );
        registry.register(
            "sluice_guardrail_hook_duration_seconds",
            "External guardrail hooks' calls, by rule, in seconds (errors and timeouts included)",
            m.guard_hook_duration.clone(),
        );
        registry.register(
            "sluice_guardrail_hook_errors",
            "External guardrail hooks' calls that failed (error status, unreadable answer, timeout), by rule",
            m.guard_hook_errors.clone(),
        );
        registry.register(
            "sluice_cache_lookups",
            "Response-cache lookups by route and result: hit, miss, bypass",
            m.cache_lookups.clone(),
        );
        registry.register(
            "sluice_cache_saved_cost_micros",
            "What cache hits saved by route: the stored answers' cost when they were made",
            m.cache_saved_cost.clone(),
        );
        registry.register(
            "sluice_cache_saved_tokens",
            "Tokens cache hits did not spend, by route (the stored answers' prompt and completion)",
            m.cache_saved_tokens.clone(),
        );
        registry.register(
            "sluice_cache_entries",
            "Entries in the in-process response cache",
            m.cache_entries.clone(),
        );
        registry.register(
            "sluice_cache_waiting",
            "Cache misses waiting for an identical request in the air (single flight)",
            m.cache_waiting.clone(),
        );
        registry.register(
            "sluice_cache_bytes",
            "Bytes held by the in-process response cache",
            m.cache_bytes.clone(),
        );
        registry.register(
            "sluice_cache_evictions",
            "Entries the in-process response cache evicted to make room",
            m.cache_evictions.clone(),
        );
        registry.register(
            "sluice_queue_depth",
            "Requests waiting in each route's queue",
            m.queue_depth.clone(),
        );
        registry.register(
            "sluice_breaker_state",
            "Circuit breaker per deployment: 0 closed, 1 open, 2 half-open",
            m.breaker_state.clone(),
        );
        registry.register(
            "sluice_breaker_transitions",
            "Circuit breaker state changes per deployment",
            m.breaker_transitions.clone(),
        );
        registry.register(
            "sluice_retries",
            "Retry decisions per route: allowed, denied_budget, denied_deadline",
            m.retries.clone(),
        );
        registry.register("sluice_requests", "Finished API requests", m.requests.clone());
        registry.register(
            "sluice_request_duration_seconds",
            "Total request latency",
            m.duration.clone(),
        );
        registry.register(
            "sluice_time_to_first_byte_seconds",
            "Time to the first response byte",
            m.ttfb.clone(),
        );
        registry.register(
            "sluice_time_to_first_token_seconds",
            "Streams: time from the request's arrival to the first content token from the upstream (text, tool-call arguments or reasoning; not the role chunk), by model",
            m.ttft.clone(),
        );
        registry.register(
            "sluice_time_per_output_token_seconds",
            "Streams: time per output token after the first (stream time after the first content token / (completion tokens - 1)), by model",
            m.tpot.clone(),
        );
        registry.register(
            "sluice_fallbacks",
            "Answers a route's fallback chain gave, by route and reason (error, timeout, open_circuit, rate_limit, capacity, invalid_output, ...)",
            m.fallbacks.clone(),
        );
        registry.register(
            "sluice_gateway_overhead_seconds",
            "Request time not spent upstream",
            m.overhead.clone(),
        );
        registry.register(
            "sluice_stage_duration_seconds",
            "Time in each stage of the request's walk, by route",
            m.stages.clone(),
        );
        registry.register(
            "sluice_errors",
            "Requests that ended in an error, by class",
            m.errors.clone(),
        );
        registry.register("sluice_tokens", "Tokens by route, model and kind", m.tokens.clone());
        registry.register(
            "sluice_cost_micros",
            "Cost of requests in micro-units of the price table's currency, by route and model",
            m.cost.clone(),
        );
        registry.register(
            "sluice_upstream_attempts",
            "Upstream attempts by deployment and outcome",
            m.attempts.clone(),
        );
        registry.register(
            "sluice_in_flight_requests",
            "Requests being served",
            m.in_flight.clone(),
        );
        registry.register(
            "sluice_payload_rows_written",
            "Payload rows stored (routes with log_payloads)",
            m.payload_written.clone(),
        );
        registry.register(
            "sluice_payload_rows_dropped",
            "Payload rows not stored: the writer's queue was full or the database failed",
            m.payload_dropped.clone(),
        );
        registry.register(
            "sluice_audit_append_errors",
            "Audit entries that could not be appended (the change itself was made)",
            m.audit_errors.clone(),
        );
        registry.register(
            "sluice_access_log_dropped",
            "Access log lines dropped because the writer fell behind",
            m.log_dropped.clone(),
        );
        registry.register(
            "sluice_config_reloads",
            "Config reload attempts by result",
            m.reloads.clone(),
        );
        registry.register("sluice_virtual_keys", "Active virtual keys", m.keys.clone());
        registry.register(
            "sluice_cache_semantic_skips",
            "Semantic cache lookups given up (a miss), by reason: busy, late, short, not_text, no_embedder, error",
            m.cache_semantic_skips.clone(),
        );
        registry.register(
            "sluice_cache_semantic_rejected",
            "Similar stored prompts the semantic hit check refused, by what differed",
            m.cache_semantic_rejected.clone(),
        );
        registry.register(
            "sluice_cache_embed_seconds",
            "Embedding a prompt and searching its semantic partition (lookups that finished in time)",
            m.cache_embed.clone(),
        );
        let redis = &m.cache_redis;
        registry.register(
            "sluice_cache_redis_up",
            "1 while the response cache's Redis tier answers (0 while it is down and skipped)",
            redis.up.clone(),
        );
        registry.register(
            "sluice_cache_redis_lookups",
            "Response-cache lookups that reached the Redis tier, by result: hit, miss, error, skipped (the tier was down)",
            redis.lookups.clone(),
        );
        registry.register(
            "sluice_cache_redis_errors",
            "Response-cache Redis calls that failed or timed out, by operation: get, put, purge, probe",
            redis.errors.clone(),
        );
        registry.register(
            "sluice_cache_redis_stores",
            "Entries written to the response cache's Redis tier",
            redis.stores.clone(),
        );
        let store = &m.limits_store;
        registry.register(
            "sluice_limits_store_up",
            "1 while the shared limits store answers",
            store.up.clone(),
        );
        registry.register(
            "sluice_limits_outage_decisions",
            "Admissions decided by an outage policy while the shared limits store was down",
            store.decisions.clone(),
        );
        registry.register(
            "sluice_limits_store_errors",
            "Shared limits store calls that failed or timed out",
            store.errors.clone(),
        );
        registry.register(
            "sluice_limits_store_instances",
            "Instances sharing the limits store: counted by their heartbeats in it, or as configured",
            store.instances.clone(),
        );
        registry.register(
            "sluice_limits_cells",
            "Live in-process limiter cells (one per limit and key, team, user…; evicted once back at rest)",
            m.limits_cells.clone(),
        );
        registry.register(
            "sluice_limits_settlements_lost",
            "Settlements that could not reach the shared limits store after retries",
            store.lost_settlements.clone(),
        );
        m
    }
}

/// Where finished requests go.
#[derive(Debug)]
pub struct Telemetry {
    pub metrics: Metrics,
    registry: Registry,
    log: AccessLog,
    /// Lines the access log has written.
    pub log_written: Arc<AtomicU64>,
    /// Finished requests' spans on their way to the OTLP exporter.
    pub traces: Arc<crate::trace::Traces>,
    /// Finished requests on their way to the alert rules.
    pub alert_feed: Arc<crate::alerts::feed::Feed>,
}

impl Telemetry {
    /// Counts a retry decision.
    pub fn retry(&self, route: &Arc<str>, decision: &'static str) {
        self.metrics
            .retries
            .get_or_create(&RetryLabels {
                route: route.clone(),
                decision,
            })
            .inc();
    }

    /// Records a breaker transition (metrics and one log line), if there was one.
    pub fn breaker(&self, deployment: &Arc<str>, t: Option<crate::upstream::health::Transition>) {
        let Some(t) = t else { return };
        let m = &self.metrics;
        m.breaker_state
            .get_or_create(&DeploymentLabel {
                deployment: deployment.clone(),
            })
            .set(t.to as i64);
        m.breaker_transitions
            .get_or_create(&TransitionLabels {
                deployment: deployment.clone(),
                to: t.to.as_str(),
            })
            .inc();
        match t.to {
            crate::upstream::health::BreakerState::Open => {
                tracing::warn!(deployment = %deployment, "circuit open: deployment taken out of its pools")
            }
            _ => tracing::info!(deployment = %deployment, state = t.to.as_str(), "circuit state changed"),
        }
    }

    pub fn new(target: &AccessLogTarget, queue: usize) -> std::io::Result<Telemetry> {
        Ok(Self::with_log(AccessLog::open(target, queue)?))
    }

    /// Telemetry whose access log goes to `out` (none when `None`), through a queue of `queue` lines.
    pub fn with_writer(out: Option<Box<dyn Write + Send>>, queue: usize) -> std::io::Result<Telemetry> {
        Self::with_writer_tick(out, queue, sluice_telemetry::LOG_TICK)
    }

    fn with_writer_tick(
        out: Option<Box<dyn Write + Send>>,
        queue: usize,
        tick: std::time::Duration,
    ) -> std::io::Result<Telemetry> {
        Ok(Self::with_log(AccessLog::with_writer(out, queue, tick)?))
    }

    fn with_log(log: AccessLog) -> Telemetry {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let traces = Arc::new(crate::trace::Traces::new());
        traces.metrics.register(&mut registry);
        let alert_feed = Arc::new(crate::alerts::feed::Feed::new());
        registry.register(
            "sluice_alert_observations_dropped",
            "Finished requests the alert rules did not see (their queue was full)",
            alert_feed.dropped.clone(),
        );
        Telemetry {
            metrics,
            traces,
            alert_feed,
            registry,
            log_written: log.written().clone(),
            log,
        }
    }

    /// Queues a log line; never blocks. A full queue counts the line as dropped.
    pub fn log(&self, record: Box<dyn LogLine>) {
        if !self.log.log(record) {
            self.metrics.log_dropped.inc();
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Waits (at most `within`) until every queued line has been written: for shutdown.
    pub async fn flush(&self, within: std::time::Duration) {
        self.log.flush(within).await;
    }
}

#[cfg(test)]
mod tests;
