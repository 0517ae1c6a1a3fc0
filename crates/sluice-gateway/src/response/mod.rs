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
pub mod guard;
pub mod payload;
mod rewrite;
pub mod store;

use std::sync::Arc;

use bytes::Bytes;
use sluice_config::RouteConfig;
use sluice_providers::chat::{ChatResponse, Delta};
use sluice_providers::translate::{self, DeltaFilter, FilterStop};
use sluice_providers::{Endpoint, InboundRequest, ProviderAdapter, StreamTranslator};

use crate::error::{ErrorKind, GatewayError};
use crate::guard::{GuardReport, Guards};

/// One response stage, per request.
pub trait ResponseStage: Send {
    /// The answer starts.
    fn begin(&mut self) {}
    /// One event of the answer (never `Delta::End`): push what goes on to `out`.
    fn on_event(&mut self, delta: Delta, out: &mut Vec<Delta>) -> Result<(), FilterStop>;
    /// The answer ended: push what is still held.
    fn finish(&mut self, out: &mut Vec<Delta>) -> Result<(), FilterStop>;
}

/// A stage that holds back the answer's text in `pending` and lets it out with `release`.
trait HoldsText {
    fn pending(&mut self) -> &mut String;
    /// Lets out what may go (`all`: everything held).
    fn release(&mut self, all: bool, out: &mut Vec<Delta>);
}

/// A text-holding stage is a response stage: text is held and let out as it may go, all of it
/// at the end.
impl<T: HoldsText + Send> ResponseStage for T {
    fn on_event(&mut self, delta: Delta, out: &mut Vec<Delta>) -> Result<(), FilterStop> {
        hold_text(self, delta, out);
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<Delta>) -> Result<(), FilterStop> {
        self.release(true, out);
        Ok(())
    }
}

/// One event through a text-holding stage: text joins what is held; a tool call or the stop
/// lets everything held out first, in order; anything else passes.
fn hold_text(stage: &mut impl HoldsText, delta: Delta, out: &mut Vec<Delta>) {
    match delta {
        Delta::Text(t) => {
            stage.pending().push_str(&t);
            stage.release(false, out);
        }
        d @ (Delta::ToolStart { .. } | Delta::Stop { .. }) => {
            stage.release(true, out);
            out.push(d);
        }
        d => out.push(d),
    }
}

/// The response stages a route runs, built with the snapshot.
#[derive(Debug, Default)]
pub struct AnswerPlan {
    rewrite: Option<rewrite::RewriteConfig>,
    /// The route's guardrails, when one of them reads the answer or restores.
    guards: Option<Arc<Guards>>,
}

/// One request's side of the answer's guardrails.
pub struct AnswerGuard {
    pub report: GuardReport,
    /// The caller's tenant's deny list.
    pub tenant: Option<crate::guard::TenantRule>,
    /// The placeholders the input guardrails put in: the answer's own are numbered after
    /// them, so one placeholder never stands for two texts.
    pub names: sluice_guard::Placeholders,
    /// Put the input's placeholders back (a rule with `restore: true` redacted input).
    pub restore: bool,
    /// The request's system prompt (for the overlap check).
    pub system: Vec<String>,
}

impl AnswerPlan {
    pub fn new(route: &RouteConfig, guards: Option<&Arc<Guards>>) -> AnswerPlan {
        AnswerPlan {
            rewrite: route.debug_rewrite.as_ref().map(rewrite::RewriteConfig::new),
            guards: guards.cloned(),
        }
    }

    /// This request's stages, in order: the output guardrails, the cache's store (it keeps
    /// what the client gets — never restored input), the restore; `None` when the route has
    /// none for its endpoint.
    fn chain(
        &self,
        endpoint: Endpoint,
        store: Option<store::Store>,
        guard: Option<AnswerGuard>,
        capture: Option<payload::Capture>,
    ) -> Option<Chain> {
        if !chat_shaped(endpoint) {
            return None;
        }
        let mut stages: Vec<AnyStage> = Vec::new();
        if let Some(r) = &self.rewrite {
            stages.push(AnyStage::Rewrite(r.start()));
        }
        let mut report = None;
        let mut restore = None;
        if let (Some(g), Some(a)) = (&self.guards, guard) {
            if g.reads_output() || a.tenant.is_some() {
                let names = a.names.clone();
                let out = guard::GuardOut::new(g.clone(), (a.tenant, &a.system, names), a.report.clone());
                stages.push(AnyStage::Guard(Box::new(out)));
            }
            report = Some(a.report);
            restore = a.restore.then_some(a.names);
        }
        // An answer to a request whose input is put back is not stored (its placeholders
        // stand for one caller's text).
        if let Some(s) = store.filter(|_| restore.is_none()) {
            stages.push(AnyStage::Store(Box::new(s)));
        }
        // The payload log keeps what the guardrails let out — never restored input.
        if let Some(c) = capture {
            stages.push(AnyStage::Capture(Box::new(c)));
        }
        if let Some(names) = restore {
            stages.push(AnyStage::Restore(guard::Restore::new(names)));
        }
        (!stages.is_empty()).then(|| Chain::new(stages, report))
    }

    /// The stream translator for this request: the adapter's own (pass-through where the
    /// formats match) when no stage runs, else one that decodes every event for the stages.
    pub fn translator(
        &self,
        adapter: &dyn ProviderAdapter,
        inbound: &InboundRequest,
        store: Option<store::Store>,
        guard: Option<AnswerGuard>,
        capture: Option<payload::Capture>,
    ) -> Box<dyn StreamTranslator> {
        match self.chain(inbound.endpoint, store, guard, capture) {
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
        (guard, capture): (Option<AnswerGuard>, Option<payload::Capture>),
    ) -> Result<Bytes, GatewayError> {
        let store = match store {
            // Nothing but the store (and no streaming follower reading its tape): it keeps the
            // bytes as they came, unread, and they go on. No chain is built.
            Some(s)
                if self.rewrite.is_none()
                    && guard.is_none()
                    && capture.is_none()
                    && chat_shaped(endpoint)
                    && !s.streaming() =>
            {
                s.keep(endpoint.wire(), body.clone(), used);
                return Ok(body);
            }
            store => store,
        };
        let Some(mut chain) = self.chain(endpoint, store, guard, capture) else {
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
        (keeping, guard, capture): (Option<Keeping>, Option<AnswerGuard>, Option<payload::Capture>),
    ) -> Result<Bytes, GatewayError> {
        match keeping.filter(|_| success) {
            Some(Keeping::Inputs { slots, price }) => embeddings::merge(slots, &body, used, price),
            Some(Keeping::Whole(s)) if !chat_shaped(endpoint) => {
                (*s).commit_body(content_type, body.clone(), used);
                Ok(body)
            }
            keeping if !success => {
                drop(keeping);
                Ok(body)
            }
            keeping => self.whole(
                endpoint,
                body,
                used,
                keeping.and_then(Keeping::into_store),
                (guard, capture),
            ),
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
    /// Boxed, as the store: a request that runs it pays one allocation; the others carry no
    /// large variant.
    Guard(Box<guard::GuardOut>),
    Store(Box<store::Store>),
    Capture(Box<payload::Capture>),
    Restore(guard::Restore),
    /// A stage taken out mid-answer (a store whose answer a guardrail changed).
    Gone(Gone),
}

/// Passes every event on.
struct Gone;

impl ResponseStage for Gone {
    fn on_event(&mut self, delta: Delta, out: &mut Vec<Delta>) -> Result<(), FilterStop> {
        out.push(delta);
        Ok(())
    }

    fn finish(&mut self, _: &mut Vec<Delta>) -> Result<(), FilterStop> {
        Ok(())
    }
}

impl AnyStage {
    fn stage(&mut self) -> &mut dyn ResponseStage {
        match self {
            AnyStage::Rewrite(s) => s,
            AnyStage::Guard(s) => s.as_mut(),
            AnyStage::Store(s) => s.as_mut(),
            AnyStage::Capture(s) => s.as_mut(),
            AnyStage::Restore(s) => s,
            AnyStage::Gone(s) => s,
        }
    }
}

/// A request's response stages in order, as one filter between decoder and encoder.
struct Chain {
    stages: Vec<AnyStage>,
    /// The guardrails' report: an answer they changed is no longer the answer to store.
    report: Option<GuardReport>,
    input: Vec<Delta>,
    output: Vec<Delta>,
}

impl Chain {
    fn new(mut stages: Vec<AnyStage>, report: Option<GuardReport>) -> Chain {
        for s in &mut stages {
            s.stage().begin();
        }
        Chain {
            stages,
            report,
            input: Vec::with_capacity(4),
            output: Vec::with_capacity(4),
        }
    }
}

impl DeltaFilter for Chain {
    fn on_delta(&mut self, d: Delta, out: &mut Vec<Delta>) -> Result<(), FilterStop> {
        let Chain {
            stages,
            report,
            input,
            output,
        } = self;
        input.clear();
        input.push(d);
        for s in stages.iter_mut() {
            if let AnyStage::Store(_) = s
                && report.as_ref().is_some_and(GuardReport::touched_output)
            {
                // Redacted or stopped by a guardrail: the store is dropped unkept.
                *s = AnyStage::Gone(Gone);
            }
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
