//! What the request's stages hand one another, and how a stage answers early.
//!
//! Every stage after routing returns `Result<Flow<T>, GatewayError>`: `Flow::Next(T)` passes
//! its typed output on; `Flow::Respond(Reply)` answers the caller now (a cache hit, a fixed
//! answer); an error ends the walk. Stages and the spine both import this module; stages never
//! import the spine or each other.

use bytes::Bytes;
use http::StatusCode;
use http::header::HeaderValue;
use hyper::body::Incoming;
use sluice_providers::InboundRequest;
use sluice_providers::Usage;
use sluice_providers::eventstream::Framing;

use crate::finish::RoutePart;
use crate::state::{ModelRuntime, RouteRuntime};
use crate::stream::relay::Relay;
use crate::upstream::health::InFlight;

/// What a stage decided: go on with `T`, or answer now.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // lives for one return; boxing would cost every request
pub enum Flow<T> {
    Next(T),
    Respond(Reply),
}

/// What the walk sends, before the response (and its finish) is assembled.
/// (A `Reply` lives for one return and moves once into the response body; boxing the relay
/// would cost every stream an allocation to save a few hundred bytes of stack.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Reply {
    Json {
        status: StatusCode,
        content_type: Option<HeaderValue>,
        body: Bytes,
    },
    Stream(Relay),
    /// A stored answer, written in the client's format (an event stream if it asked for one).
    Cached(Cached),
    /// Another request's streamed answer as it arrives (a streaming follower of its flight).
    Live(Live),
}

/// A streaming follower's answer: the leader's tape, in this client's format.
#[derive(Debug)]
pub struct Live {
    pub tape: std::sync::Arc<sluice_cache::Tape>,
    pub wire: sluice_providers::Wire,
    pub include_usage: bool,
    /// The answer's id for this client.
    pub id: String,
    /// The entry's key (its digest).
    pub key: sluice_cache::KeyDigest,
}

/// A stored answer's body: whole, or a stream's events sent `every` apart.
#[derive(Debug)]
pub enum Replayed {
    Whole(Bytes),
    Paced(Vec<Bytes>, std::time::Duration),
}

/// A cache hit as the client gets it, and what finish records of it.
#[derive(Debug)]
pub struct Cached {
    pub body: Replayed,
    pub stream: bool,
    /// The stored answer's usage: shown to the client, charged to no one.
    pub usage: Usage,
    pub saved_cost_micros: u64,
    /// The entry's key (its digest).
    pub key: sluice_cache::KeyDigest,
    /// `hit`, `semantic`, or `stale` (a fallback chain's `cache` step, past the TTL).
    pub outcome: &'static str,
    /// A semantic hit's similarity to the stored prompt.
    pub similarity: Option<f32>,
}

/// The client's IP address, attached to each request.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub std::net::IpAddr);

/// The decision: which route, and which model alias it will serve.
#[derive(Debug, Clone, Copy)]
pub struct Decision<'s> {
    pub route: &'s RouteRuntime,
    pub model_index: usize,
    pub model: &'s ModelRuntime,
}

/// A successful upstream answer.
pub enum Upstream {
    /// A whole, checked, non-streamed body.
    Complete {
        status: StatusCode,
        content_type: Option<http::HeaderValue>,
        body: Bytes,
        usage: Option<Usage>,
        /// Why the answer stopped, as the upstream said (OpenAI's words).
        finish_reason: Option<&'static str>,
    },
    /// An event stream, headers received, body still arriving.
    Stream {
        body: Incoming,
        framing: Framing,
        /// Whose translator the relay uses (chosen with the route's response stages).
        adapter: &'static dyn sluice_providers::ProviderAdapter,
        /// Counts the stream as in flight on its deployment until it ends.
        inflight: Option<InFlight>,
    },
}

/// The request once routed: where it goes and what it says (degradation may change both).
#[derive(Debug)]
pub struct Routed<'s> {
    pub decision: Decision<'s>,
    pub inbound: InboundRequest,
    /// What degradation under load changed (`model=…,max_tokens=…,cache_only`), if anything.
    pub degraded: Option<String>,
    /// Degradation under load serves only cached answers (a miss is refused).
    pub cache_only: bool,
}

impl Routed<'_> {
    /// The record's route part: where the request goes, as routing and degradation decided.
    pub fn record(&self) -> RoutePart {
        RoutePart {
            route: Some(self.decision.route.name.clone()),
            model: Some(self.decision.model.name.clone()),
            stream: self.inbound.view.stream,
            degraded: self.degraded.clone(),
            ..RoutePart::default()
        }
    }
}

/// `next!(stage.run(..))`: the stage's output, or return its early answer (or error) from the
/// walk.
macro_rules! next {
    ($e:expr) => {
        match $e? {
            $crate::flow::Flow::Next(v) => v,
            $crate::flow::Flow::Respond(reply) => return Ok(reply),
        }
    };
}
pub(crate) use next;
