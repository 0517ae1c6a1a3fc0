//! Response stages: what runs over the answer on its way to the caller — the cache's store
//! and the output guardrails plug in here. Every stage has one streaming shape, `begin /
//! on_event / finish` over the canonical answer ([`Delta`]: text, tool calls, usage, end); a
//! non-streamed answer is one list of events. A stage passes an event, rewrites it, holds it
//! back (a bounded window) or ends the answer, which the client then gets as a protocol-correct
//! error in its own format.
//!
//! A route's [`AnswerPlan`] is built with the snapshot. A route with no response stage keeps
//! the byte-for-byte pass-through; with one, each upstream event is decoded once and the
//! stages see its deltas, and an event none of them changed goes to the client as its
//! original bytes where the formats allow (OpenAI chat to OpenAI chat). Response stages run
//! on chat-shaped endpoints (chat completions, messages, responses).
//!
//! Stages never import the spine; only the spine composes them.

pub mod embeddings;
mod rewrite;
pub mod store;

use bytes::Bytes;
use sluice_config::RouteConfig;
use sluice_providers::chat::{ChatResponse, Delta};
use sluice_providers::translate::{self, DeltaFilter, FilterStop};
use sluice_providers::{Endpoint, InboundRequest, ProviderAdapter, StreamTranslator};

use crate::error::{ErrorKind, GatewayError};

/// One response stage, per request.
pub trait ResponseStage: Send {
    /// The answer starts.
    fn begin(&mut self) {}
    /// One event of the answer (never `Delta::End`): push what goes on to `out`.
    fn on_event(&mut self, delta: Delta, out: &mut Vec<Delta>) -> Result<(), FilterStop>;
    /// The answer ended: push what is still held.
    fn finish(&mut self, out: &mut Vec<Delta>) -> Result<(), FilterStop>;
}

/// The response stages a route runs, built with the snapshot.
#[derive(Debug, Default)]
pub struct AnswerPlan {
    rewrite: Option<rewrite::RewriteConfig>,
}

impl AnswerPlan {
    pub fn new(route: &RouteConfig) -> AnswerPlan {
        AnswerPlan {
            rewrite: route.debug_rewrite.as_ref().map(rewrite::RewriteConfig::new),
        }
    }

    /// This request's stages, in order (the cache's store last: it keeps what the client
    /// gets); `None` when the route has none for its endpoint.
    fn chain(&self, endpoint: Endpoint, store: Option<store::Store>) -> Option<Chain> {
        if !chat_shaped(endpoint) {
            return None;
        }
        let mut stages: Vec<AnyStage> = Vec::new();
        if let Some(r) = &self.rewrite {
            stages.push(AnyStage::Rewrite(r.start()));
        }
        if let Some(s) = store {
            stages.push(AnyStage::Store(Box::new(s)));
        }
        (!stages.is_empty()).then(|| Chain::new(stages))
    }

    /// The stream translator for this request: the adapter's own (pass-through where the
    /// formats match) when no stage runs, else one that decodes every event for the stages.
    pub fn translator(
        &self,
        adapter: &dyn ProviderAdapter,
        inbound: &InboundRequest,
        store: Option<store::Store>,
    ) -> Box<dyn StreamTranslator> {
        match self.chain(inbound.endpoint, store) {
            None => adapter.stream_translator(inbound),
            Some(chain) => Box::new(adapter.canonical_translator(inbound).with_filter(Box::new(chain))),
        }
    }

    /// A whole answer (in the client's format, with its usage) through the stages: the
    /// original bytes when no stage changed it, else the answer written again.
    pub fn whole(
        &self,
        endpoint: Endpoint,
        body: Bytes,
        used: sluice_providers::Usage,
        store: Option<store::Store>,
    ) -> Result<Bytes, GatewayError> {
        let store = match store {
            // Nothing but the store (and no streaming follower reading its tape): it keeps the
            // bytes as they came, unread, and they go on. No chain is built.
            Some(s) if self.rewrite.is_none() && chat_shaped(endpoint) && !s.streaming() => {
                s.keep(endpoint.wire(), body.clone(), used);
                return Ok(body);
            }
            store => store,
        };
        let Some(mut chain) = self.chain(endpoint, store) else {
            return Ok(body);
        };
        let wire = endpoint.wire();
        let answer = read(endpoint, &body)?;
        let deltas = answer.to_deltas(usize::MAX);
        let mut out = Vec::with_capacity(deltas.len());
        translate::run_filter(&mut chain, &deltas, &mut out).map_err(stopped)?;
        if out == deltas {
            return Ok(body);
        }
        Ok(translate::write_response(wire, &ChatResponse::from_deltas(&out)))
    }
}

/// What keeps an answer for the cache.
pub enum Keeping {
    /// The whole answer, under the request's key.
    Whole(Box<store::Store>),
    /// An embeddings request cached per input: the stored inputs, and where the new ones go.
    Inputs {
        slots: Vec<sluice_cache::InputSlot>,
        price: Option<sluice_config::Price>,
    },
}

impl Keeping {
    /// What a stream keeps (only a whole answer streams).
    pub fn into_store(self) -> Option<store::Store> {
        match self {
            Keeping::Whole(s) => Some(*s),
            Keeping::Inputs { .. } => None,
        }
    }
}

impl AnswerPlan {
    /// A whole answer through the response stages, kept for the cache when it succeeded: a
    /// chat answer in canonical form (by the store stage), any other endpoint's as the client
    /// gets it, an embeddings answer per input (put together with the stored inputs).
    pub fn complete(
        &self,
        endpoint: Endpoint,
        (success, content_type): (bool, Option<&http::HeaderValue>),
        body: Bytes,
        used: sluice_providers::Usage,
        keeping: Option<Keeping>,
    ) -> Result<Bytes, GatewayError> {
        match keeping.filter(|_| success) {
            Some(Keeping::Inputs { slots, price }) => embeddings::merge(slots, &body, used, price),
            Some(Keeping::Whole(s)) if !chat_shaped(endpoint) => {
                (*s).commit_body(content_type, body.clone(), used);
                Ok(body)
            }
            keeping => self.whole(endpoint, body, used, keeping.and_then(Keeping::into_store)),
        }
    }
}

/// Response stages run on the chat-shaped endpoints.
fn chat_shaped(endpoint: Endpoint) -> bool {
    matches!(
        endpoint,
        Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::Responses
    )
}

/// A whole answer in the client's format, read into the canonical answer.
fn read(endpoint: Endpoint, body: &[u8]) -> Result<ChatResponse, GatewayError> {
    translate::read_response(endpoint.wire(), body).map_err(|e| {
        GatewayError::new(
            ErrorKind::UpstreamRejected,
            "upstream_malformed_response",
            e.to_string(),
        )
    })
}

/// A stage's stop as the error a non-streamed caller gets.
fn stopped(stop: FilterStop) -> GatewayError {
    let kind = match stop.class {
        "guardrail_blocked" => ErrorKind::GuardrailBlocked,
        _ => ErrorKind::Internal,
    };
    GatewayError::new(kind, stop.code, stop.message)
}

/// The response stages there are (static dispatch; no boxes per stage).
enum AnyStage {
    Rewrite(rewrite::Rewrite),
    /// Boxed: a request that stores pays one allocation; the others carry no large variant.
    Store(Box<store::Store>),
}

impl AnyStage {
    fn stage(&mut self) -> &mut dyn ResponseStage {
        match self {
            AnyStage::Rewrite(s) => s,
            AnyStage::Store(s) => s.as_mut(),
        }
    }
}

/// A request's response stages in order, as one filter between decoder and encoder.
struct Chain {
    stages: Vec<AnyStage>,
    input: Vec<Delta>,
    output: Vec<Delta>,
}

impl Chain {
    fn new(mut stages: Vec<AnyStage>) -> Chain {
        for s in &mut stages {
            s.stage().begin();
        }
        Chain {
            stages,
            input: Vec::with_capacity(4),
            output: Vec::with_capacity(4),
        }
    }
}

impl DeltaFilter for Chain {
    fn on_delta(&mut self, d: Delta, out: &mut Vec<Delta>) -> Result<(), FilterStop> {
        let Chain { stages, input, output } = self;
        input.clear();
        input.push(d);
        for s in stages.iter_mut() {
            let s = s.stage();
            output.clear();
            for item in input.drain(..) {
                match item {
                    Delta::End => {
                        s.finish(output)?;
                        output.push(Delta::End);
                    }
                    other => s.on_event(other, output)?,
                }
            }
            std::mem::swap(input, output);
        }
        out.append(input);
        Ok(())
    }
}
