//! A route's fallback chain: when its model's attempts fail for a reason the route names, the
//! next alias is tried (re-admitted against the limits, with its own prices), then the route's
//! fixed degradation answer. It all happens before the first byte reaches the caller, so the
//! caller sees only the answer — and the `x-sluice-fallback*` headers saying what happened.

use std::time::Instant;

use bytes::Bytes;
use sluice_config::FallbackReason;
use sluice_providers::InboundRequest;
use sluice_providers::chat::{ChatResponse, Part, StopReason};

use crate::Gateway;
use crate::dispatch::{self, Upstream};
use crate::error::GatewayError;
use crate::finish::Finish;
use crate::keys::Caller;
use crate::limits::Need;
use crate::routing::Decision;
use crate::state::Snapshot;

/// Why an error would fall back, if it is one a chain can help with.
pub fn reason(e: &GatewayError) -> Option<FallbackReason> {
    Some(match e.code {
        "upstream_timeout" => FallbackReason::Timeout,
        "no_healthy_deployment" => FallbackReason::OpenCircuit,
        "deployments_at_capacity" => FallbackReason::Capacity,
        "upstream_rate_limited" | "upstream_quota_exceeded" => FallbackReason::RateLimit,
        "context_length_exceeded" => FallbackReason::ContextLength,
        "content_policy_violation" => FallbackReason::ContentPolicy,
        "upstream_error"
        | "upstream_overloaded"
        | "upstream_connect_failed"
        | "upstream_connection_error"
        | "upstream_malformed_response"
        | "upstream_auth_failed"
        | "upstream_not_found" => FallbackReason::Error,
        _ => return None,
    })
}

/// The attempts loop of the route's model, then of each fallback alias, then the degradation
/// answer.
#[allow(clippy::too_many_arguments)]
pub async fn attempts(
    gw: &Gateway,
    snap: &Snapshot,
    decision: &Decision<'_>,
    caller: &Caller,
    inbound: &InboundRequest,
    finish: &mut Finish,
    deadline: Instant,
    region: Option<&str>,
) -> Result<Upstream, GatewayError> {
    let chain = &decision.route.config.fallback;
    // At capacity, an alias spills over to the next one in the chain at once rather than wait.
    let spills = chain.on.contains(&FallbackReason::Capacity);
    let how = |spill: bool| dispatch::Attempting {
        telemetry: &gw.telemetry,
        region,
        spill: spills && spill,
    };
    let first = dispatch::attempts(snap, decision, inbound, finish, deadline, how(!chain.models.is_empty())).await;
    let mut err = match first {
        Ok(up) => return Ok(up),
        Err(e) => e,
    };
    let Some(why) = reason(&err).filter(|r| chain.on.contains(r)) else {
        return Err(err);
    };
    for (k, &index) in chain.models.iter().enumerate() {
        if Instant::now() >= deadline {
            break;
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
        match crate::stages::admit(gw, snap, caller, &next, inbound).await {
            Ok(admission) => finish.set_admission(admission),
            Err(refused) => {
                err = refused;
                continue;
            }
        }
        finish.set_fallback(&next.model.name, why);
        let later = k + 1 < chain.models.len();
        match dispatch::attempts(snap, &next, inbound, finish, deadline, how(later)).await {
            Ok(up) => return Ok(up),
            Err(e) => {
                if reason(&e).is_none_or(|r| !chain.on.contains(&r)) {
                    return Err(e);
                }
                err = e;
            }
        }
    }
    match &chain.response {
        Some(text) => {
            finish.set_fallback(&decision.model.name, why);
            finish.release_admission(&Need::default());
            Ok(degraded(inbound, text, &decision.model.name))
        }
        None => Err(err),
    }
}

/// The route's fixed answer, in the client's format (streamed if it asked for a stream).
fn degraded(inbound: &InboundRequest, text: &str, model: &str) -> Upstream {
    let answer = ChatResponse {
        id: "chatcmpl-sluice-fallback".to_owned(),
        model: model.to_owned(),
        content: vec![Part::Text(text.to_owned())],
        stop_reason: Some(StopReason::EndTurn),
        stop_sequence: None,
        usage: sluice_providers::Usage::default(),
    };
    let wire = inbound.endpoint.wire();
    let (body, content_type): (Bytes, &'static str) = if inbound.view.stream {
        (
            sluice_providers::translate::write_stream(wire, &answer),
            "text/event-stream",
        )
    } else {
        (
            sluice_providers::translate::write_response(wire, &answer),
            "application/json",
        )
    };
    Upstream::Complete {
        status: http::StatusCode::OK,
        content_type: Some(http::HeaderValue::from_static(content_type)),
        body,
        usage: Some(sluice_providers::Usage::default()),
    }
}
