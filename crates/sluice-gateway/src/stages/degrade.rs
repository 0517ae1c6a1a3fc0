//! Graceful degradation under load: past a route's configured queue depths, serve a cheaper
//! model, cap `max_tokens` and/or serve only cached answers instead of queueing or refusing — and say so in the
//! `x-sluice-degraded` response header and the log line.

use sluice_config::DegradeStep;
use sluice_providers::{Endpoint, InboundRequest};

use crate::error::GatewayError;
use crate::flow::Decision;
use crate::flow::{Flow, Routed};
use crate::keys::Caller;
use crate::state::Snapshot;

/// The route's degradation steps (none: the no-op stage).
#[derive(Debug)]
pub struct DegradeStage {
    steps: Box<[DegradeStep]>,
}

impl DegradeStage {
    pub fn new(steps: &[DegradeStep]) -> DegradeStage {
        DegradeStage { steps: steps.into() }
    }

    /// Applies every step the route's queue depth has reached: the model changed (when the
    /// caller may use the cheaper one) and the token cap spliced into the body.
    pub fn run<'s>(
        &self,
        snap: &'s Snapshot,
        caller: &Caller,
        routed: Routed<'s>,
    ) -> Result<Flow<Routed<'s>>, GatewayError> {
        if self.steps.is_empty() {
            return Ok(Flow::Next(routed));
        }
        let Routed {
            mut decision,
            mut inbound,
            ..
        } = routed;
        let depth = decision.route.queue.queued();
        let (mut model, mut cap, mut cache_only) = (None, None, false);
        for s in self.steps.iter().filter(|s| depth >= s.when_queued) {
            model = s.model.or(model);
            cap = s.max_tokens.or(cap);
            cache_only |= s.cache_only;
        }
        let mut notes = Vec::new();
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
            && let Some(capped) = capped(&inbound, cap)?
        {
            inbound = capped;
            notes.push(format!("max_tokens={cap}"));
        }
        if cache_only {
            notes.push("cache_only".to_owned());
        }
        Ok(Flow::Next(Routed {
            decision,
            inbound,
            degraded: (!notes.is_empty()).then(|| notes.join(",")),
            cache_only,
        }))
    }
}

/// The request with its token cap set to `cap` — spliced into the client's bytes, as the
/// pass-through splices `model`, so key order (a JSON schema's property order with it) and
/// number forms stay the client's. `None` when the endpoint has no cap or it is already lower.
fn capped(inbound: &InboundRequest, cap: u64) -> Result<Option<InboundRequest>, GatewayError> {
    let field = match inbound.endpoint {
        Endpoint::Embeddings | Endpoint::Predict => return Ok(None),
        Endpoint::Responses => "max_output_tokens",
        _ => "max_tokens",
    };
    let Some(body) = inbound.view.with_token_cap(&inbound.body, field, cap) else {
        return Ok(None);
    };
    let mut capped = InboundRequest::parse(inbound.endpoint, body)?;
    capped.headers = inbound.headers.clone();
    Ok(Some(capped))
}
