//! Graceful degradation under load: past a route's configured queue depths, serve a cheaper
//! model and/or cap `max_tokens` instead of queueing or refusing — and say so in the
//! `x-sluice-degraded` response header and the log line.

use sluice_providers::{Endpoint, InboundRequest};

use crate::error::GatewayError;
use crate::keys::Caller;
use crate::routing::Decision;
use crate::state::Snapshot;

/// Applies every degradation step the route's queue depth has reached. Returns the (maybe
/// changed) decision and what was changed (`model=small-chat,max_tokens=256`), if anything.
pub fn apply<'s>(
    snap: &'s Snapshot,
    decision: Decision<'s>,
    caller: &Caller,
    inbound: &mut InboundRequest,
) -> Result<(Decision<'s>, Option<String>), GatewayError> {
    let steps = &decision.route.config.degrade;
    if steps.is_empty() {
        return Ok((decision, None));
    }
    let depth = decision.route.queue.queued();
    let (mut model, mut cap) = (None, None);
    for s in steps.iter().filter(|s| depth >= s.when_queued) {
        model = s.model.or(model);
        cap = s.max_tokens.or(cap);
    }
    let mut notes = Vec::new();
    let mut decision = decision;
    if let Some(m) = model
        && m != decision.model_index
        && caller.may_use_model(&snap.models[m].name)
    {
        decision = Decision {
            route: decision.route,
            model_index: m,
            model: &snap.models[m],
        };
        notes.push(format!("model={}", snap.models[m].name));
    }
    if let Some(cap) = cap
        && !matches!(inbound.endpoint, Endpoint::Embeddings | Endpoint::Predict)
    {
        // Spliced into the client's bytes, as the pass-through splices `model`: key order
        // (a JSON schema's property order with it) and number forms stay the client's.
        let field = match inbound.endpoint {
            Endpoint::Responses => "max_output_tokens",
            _ => "max_tokens",
        };
        if let Some(body) = inbound.view.with_token_cap(&inbound.body, field, cap) {
            let headers = std::mem::take(&mut inbound.headers);
            *inbound = InboundRequest::parse(inbound.endpoint, body)?;
            inbound.headers = headers;
            notes.push(format!("max_tokens={cap}"));
        }
    }
    Ok((decision, (!notes.is_empty()).then(|| notes.join(","))))
}
