//! What a finished request reports: its settlement in the ledger, and its metrics (through
//! its route and model's meter), its alert observation.

use std::time::Duration;

use sluice_store::ledger::{Detail, Entry, Settlement};

use super::{EMPTY, RequestRecord};
use crate::meter::{Meter, Report};
use crate::telemetry::{ClassLabel, Telemetry};

pub(super) fn settle_ledger(ledger: &sluice_ledger::Ledger, r: &RequestRecord) {
    let hit = r.cache.served();
    let settlement = Entry::Settlement(Settlement {
        id: r.request_id.as_str().into(),
        at: chrono::Utc::now().timestamp_millis(),
        deployment: r.route.deployment.as_deref().map(Into::into),
        // The intent named the first alias; a fallback's answer is charged to its own.
        model: r.route.fallback.and(r.route.model.as_deref()).map(Into::into),
        status: r.outcome.status,
        // A cache hit used no tokens of anyone's.
        prompt_tokens: if hit { 0 } else { r.usage.prompt_tokens },
        completion_tokens: if hit { 0 } else { r.usage.completion_tokens },
        cached_tokens: if hit { 0 } else { r.usage.cached_tokens },
        cost: r.usage.cost_micros.unwrap_or(0),
        currency: r.usage.currency.as_deref().map(Into::into),
        estimated: r.usage.usage_estimated,
        detail: Detail {
            latency_us: Some((r.timing.latency_ms * 1000.0) as u64),
            ttfb_us: r.timing.ttfb_ms.map(|t| (t * 1000.0) as u64),
            error_class: r.outcome.error_class.map(Into::into),
            cache: r.cache.outcome.map(Into::into),
            guardrail: r.guard.as_ref().and_then(|g| g.strongest()).map(Into::into),
            saved_cost_micros: r.cache.saved_cost_micros,
            ttft_us: r.timing.ttft_ms.map(|t| (t * 1000.0) as u64),
        },
    });
    if let Err(e) = ledger.settle(&settlement) {
        // The intent is there: the next start closes it as unsettled.
        tracing::error!(error = %e, request_id = %r.request_id, "cannot append a settlement to the spend ledger");
    }
}

/// The request's metrics, through its pair's meter (resolved when it was routed; a request a
/// fallback alias answered, or that never matched a route, resolves one here).
pub(super) fn observe(
    telemetry: &Telemetry,
    meter: Option<&Meter>,
    r: &RequestRecord,
    total: Duration,
    overhead: Duration,
) {
    let m = &telemetry.metrics;
    let hit = r.cache.served();
    m.in_flight.dec();
    let route = r.route.route.as_ref().unwrap_or(&EMPTY);
    let model = r.route.model.as_ref().unwrap_or(&EMPTY);
    let report = Report {
        status: r.outcome.status,
        total_s: total.as_secs_f64(),
        ttfb_s: r.timing.ttfb_ms.map(|t| t / 1000.0),
        ttft_s: r.timing.ttft_ms.map(|t| t / 1000.0),
        tpot_s: r.timing.tpot_ms.map(|t| t / 1000.0),
        stages: &r.timing.stages,
        cost_micros: r.usage.cost_micros.unwrap_or(0),
        // A cache hit's tokens are the stored answer's, used by no one now.
        prompt_tokens: if hit { 0 } else { r.usage.prompt_tokens },
        completion_tokens: if hit { 0 } else { r.usage.completion_tokens },
    };
    match meter {
        Some(meter) if meter.is_for(route, model) => meter.observe(m, &report),
        _ => Meter::resolve(route, model).observe(m, &report),
    }
    m.overhead.observe(overhead.as_secs_f64());
    telemetry.alert_feed.observe(|| crate::alerts::feed::Observation {
        model: r.route.model.clone(),
        tenant: r.caller.tenant.clone(),
        error: r.outcome.status >= 500,
        latency_us: total.as_micros() as u64,
        cost_micros: r.usage.cost_micros.unwrap_or(0),
    });
    r.cache
        .observe(m, route, r.usage.prompt_tokens + r.usage.completion_tokens);
    if let Some(g) = &r.guard {
        let read = g.read();
        let tenant = r.caller.tenant.as_ref().unwrap_or(&EMPTY);
        for f in read.fired {
            m.guard_triggers
                .get_or_create(&crate::telemetry::GuardLabels {
                    rule: f.rule,
                    action: f.action.as_str(),
                    side: f.side,
                    tenant: tenant.clone(),
                })
                .inc();
        }
        m.guard_images.inc_by(u64::from(read.images));
        if read.held > 0 {
            m.guard_held.observe(read.held as f64);
        }
        m.guard_invalid.inc_by(u64::from(read.invalid));
        for h in read.hooks {
            let label = crate::telemetry::HookLabel { rule: h.rule };
            m.guard_hook_duration
                .get_or_create(&label)
                .observe(h.took.as_secs_f64());
            if !h.ok {
                m.guard_hook_errors.get_or_create(&label).inc();
            }
        }
        if read.whole {
            m.guard_held_whole.inc();
        }
    }
    if let Some(reason) = r.route.fallback {
        m.fallbacks
            .get_or_create(&crate::telemetry::FallbackLabels {
                route: route.clone(),
                reason,
            })
            .inc();
    }
    if let Some(class) = r.outcome.error_class {
        m.errors.get_or_create(&ClassLabel { class }).inc();
    }
}
