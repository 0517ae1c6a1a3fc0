//! A route's fallback chain: when its model's attempts fail for a reason the route names, the
//! next alias is tried (re-admitted against the limits, with its own prices), then the route's
//! fixed degradation answer. The spine walks the chain (`spine::fall_back`); this file says
//! which failures fall back, what the steps are, and writes the fixed answer. It all happens
//! before the first byte reaches the caller, so the caller sees only the answer — and the
//! `x-sluice-fallback*` headers saying what happened.

use bytes::Bytes;
use sluice_config::{FallbackConfig, FallbackReason};
use sluice_providers::InboundRequest;
use sluice_providers::chat::{ChatResponse, Part, StopReason};

use crate::error::GatewayError;
use crate::flow::Reply;
use crate::upstream::failure::Failure;

/// Why `e` falls back along `chain`, if the chain names its reason.
/// An answer that failed its JSON check falls back whatever the chain's `on` lists (the
/// route's `guard.on_invalid` said so).
pub fn reason(e: &GatewayError, chain: &FallbackConfig) -> Option<FallbackReason> {
    e.failure
        .and_then(Failure::fallback_reason)
        .filter(|r| *r == FallbackReason::InvalidOutput || chain.on.contains(r))
}

/// One step of a fallback chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'c> {
    /// Another model alias (an index into the snapshot's models), re-admitted at its prices.
    Alias(usize),
    /// The route's cached answer, even this far past its TTL.
    Cache(std::time::Duration),
    /// The route's fixed degradation answer.
    Answer(&'c str),
}

/// The chain's steps in order: its aliases with its cache step where the config puts it, then
/// its fixed answer.
pub fn steps(chain: &FallbackConfig) -> impl Iterator<Item = Step<'_>> {
    let cache_at = |i: usize| chain.cache.filter(|c| c.after == i).map(|c| Step::Cache(c.stale));
    chain
        .models
        .iter()
        .enumerate()
        .flat_map(move |(i, &m)| cache_at(i).into_iter().chain(std::iter::once(Step::Alias(m))))
        .chain(cache_at(chain.models.len()))
        .chain(chain.response.as_deref().map(Step::Answer))
}

/// The route's fixed answer, in the client's format (streamed if it asked for a stream).
pub fn degraded(inbound: &InboundRequest, text: &str, model: &str) -> Reply {
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
            sluice_providers::translate::write_stream(wire, &answer, inbound.view.include_usage),
            "text/event-stream",
        )
    } else {
        (
            sluice_providers::translate::write_response(wire, &answer),
            "application/json",
        )
    };
    Reply::Json {
        status: http::StatusCode::OK,
        content_type: Some(http::HeaderValue::from_static(content_type)),
        body,
    }
}
