//! The route's fallback chain, walked by the spine after the route's model failed: each alias
//! re-admitted at its own prices and limits, then its attempts; its cache step (a stored
//! answer, even past its TTL); then the fixed answer.

use sluice_providers::InboundRequest;

use crate::Gateway;
use crate::error::GatewayError;
use crate::finish::Finish;
use crate::flow::Decision;
use crate::flow::Flow;
use crate::flow::Upstream;
use crate::guard::output::OutputCheck;
use crate::keys::Caller;
use crate::stages::admit::{Limiting, admit};
use crate::state::Snapshot;
use crate::upstream::dispatch;
use crate::upstream::fallback;
use sluice_limits::Need;

/// How an alias's attempts loop runs: with the caller's region, spilling over to the next
/// alias at capacity when the chain falls back for capacity and `more` aliases follow.
pub(super) fn attempting<'a>(
    gw: &'a Gateway,
    region: Option<&'a str>,
    more: bool,
    chain: &sluice_config::FallbackConfig,
    (request_id, trace, check): (&'a str, Option<&'a crate::trace::TraceCtx>, Option<&'a OutputCheck>),
) -> dispatch::Attempting<'a> {
    dispatch::Attempting {
        telemetry: &gw.telemetry,
        region,
        spill: more && chain.on.contains(&sluice_config::FallbackReason::Capacity),
        request_id,
        trace,
        check,
    }
}

/// The route's fallback chain after its model failed with `err`: each alias re-admitted
/// against the limits at its own prices, then its attempts; then the fixed answer. An alias
/// the caller may not use, or whose admission is refused, is skipped — and the caller still
/// sees the upstream's error, not the refusal. `sent` is the request as the upstreams get it
/// (not streamed when its answer is held for its JSON check); a fixed or stored answer is
/// written for `inbound`, as the client asked.
#[allow(clippy::too_many_arguments)]
pub(super) async fn fall_back(
    gw: &Gateway,
    snap: &Snapshot,
    decision: &Decision<'_>,
    caller: &Caller,
    (inbound, sent, check): (&InboundRequest, &InboundRequest, Option<&OutputCheck>),
    finish: &mut Finish,
    (deadline, region): (std::time::Instant, Option<&str>),
    cached: Option<&(sluice_cache::CacheKey, std::time::Duration)>,
    mut err: GatewayError,
) -> Result<Flow<Upstream>, GatewayError> {
    let chain = &decision.route.config.fallback;
    let Some(why) = fallback::reason(&err, chain) else {
        return Err(err);
    };
    let aliases = chain.models.len();
    let mut k = 0;
    for step in fallback::steps(chain) {
        let index = match step {
            fallback::Step::Answer(text) => {
                finish.set_fallback(&decision.model.name, why);
                finish.release_admission(&Need::default());
                return Ok(Flow::Respond(fallback::degraded(inbound, text, &decision.model.name)));
            }
            fallback::Step::Cache(stale) => {
                let answer = match cached {
                    Some(c) => {
                        crate::stages::cache::stale_answer(&gw.cache, c, stale, inbound, finish.request_id()).await
                    }
                    None => None,
                };
                if let Some(reply) = answer {
                    finish.set_fallback(&decision.model.name, why);
                    return Ok(Flow::Respond(reply));
                }
                continue;
            }
            fallback::Step::Alias(index) => index,
        };
        k += 1;
        if std::time::Instant::now() >= deadline {
            continue; // out of time for another alias; the fixed answer, if any, still goes
        }
        let next = Decision {
            route: decision.route,
            model_index: index,
            model: &snap.models[index],
        };
        if !caller.may_use_model(&next.model.name) {
            continue;
        }
        // The first reservation goes back; the fallback reserves at its own prices and limits.
        finish.release_admission(&Need::default());
        let runtime_limits = gw.runtime_limits.load();
        match admit(&limiting(gw, &runtime_limits), snap, caller, &next, inbound).await {
            Ok(Flow::Next(admission)) => finish.admitted(admission),
            Ok(Flow::Respond(reply)) => return Ok(Flow::Respond(reply)),
            Err(refused) => {
                tracing::debug!(alias = %next.model.name, code = refused.code, "fallback alias not admitted");
                continue;
            }
        }
        finish.set_fallback(&next.model.name, why);
        let how = attempting(
            gw,
            region,
            k < aliases,
            chain,
            (finish.request_id(), finish.trace(), check),
        );
        let (result, done) = dispatch::attempts(snap, &next, sent, deadline, how).await;
        finish.add_dispatch(done, &snap.currency);
        match result {
            Ok(up) => return Ok(Flow::Next(up)),
            Err(e) if fallback::reason(&e, chain).is_some() => err = e,
            Err(e) => return Err(e),
        }
    }
    Err(err)
}

/// What admission reads from the gateway.
pub(super) fn limiting<'a>(gw: &'a Gateway, runtime: &'a sluice_limits::RuntimeLimits) -> Limiting<'a> {
    Limiting {
        limiter: &gw.live.limits,
        runtime,
        alerts: &gw.alerts,
    }
}
