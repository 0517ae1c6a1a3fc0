//! What the request's stages hand one another, and how a stage answers early.
//!
//! Every stage after routing returns `Result<Flow<T>, GatewayError>`: `Flow::Next(T)` passes
//! its typed output on; `Flow::Respond(Reply)` answers the caller now (a cache hit, a fixed
//! answer); an error ends the walk. Stages and the spine both import this module; stages never
//! import the spine or each other.

use bytes::Bytes;
use http::StatusCode;
use http::header::HeaderValue;
use sluice_providers::InboundRequest;

use crate::relay::Relay;
use crate::routing::Decision;

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
}

/// The request once routed: where it goes and what it says (degradation may change both).
#[derive(Debug)]
pub struct Routed<'s> {
    pub decision: Decision<'s>,
    pub inbound: InboundRequest,
    /// What degradation under load changed (`model=…,max_tokens=…`), if anything.
    pub degraded: Option<String>,
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
