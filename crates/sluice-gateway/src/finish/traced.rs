//! A finished record as the trace the exporter writes (only for a sampled request).

use std::time::{Duration, Instant, UNIX_EPOCH};

use super::RequestRecord;
use crate::trace::{AttemptSpan, Traced, nanos};

/// The record's trace, when it has one and it is sampled.
pub(super) fn traced(r: &RequestRecord, started: Instant, total: Duration) -> Option<Box<Traced>> {
    let ctx = r.trace.as_ref().filter(|t| t.sampled)?.clone();
    let attempts = r
        .attempts
        .iter()
        .filter_map(|a| {
            Some(AttemptSpan {
                trace: a.trace.clone()?,
                deployment: a.deployment.clone(),
                outcome: a.outcome,
                status: a.status,
                start_ns: a.at.saturating_duration_since(started).as_nanos() as u64,
                dur_ns: nanos(a.ms / 1000.0),
            })
        })
        .collect();
    Some(Box::new(Traced {
        ctx,
        start_unix_nano: r.time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64),
        total_ns: total.as_nanos() as u64,
        request_id: r.request_id.as_str().into(),
        endpoint: r.endpoint,
        route: r.route.route.clone(),
        model: r.route.model.clone(),
        tenant: r.caller.tenant.clone(),
        status: r.outcome.status,
        error_class: r.outcome.error_class,
        error_code: r.outcome.error_code,
        finish_reason: r.outcome.finish_reason,
        input_tokens: r.usage.prompt_tokens,
        output_tokens: r.usage.completion_tokens,
        cost_micros: r.usage.cost_micros,
        cache: r.cache.outcome,
        fallback: r.route.fallback,
        guardrail: r.guard.as_ref().and_then(|g| g.strongest()),
        stream: r.route.stream,
        ttft_ms: r.timing.ttft_ms,
        stages: r.timing.stages,
        attempts,
    }))
}
