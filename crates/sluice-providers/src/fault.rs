//! What can be wrong with a successful (2xx) upstream response: a body that is not what the
//! protocol promises, a refusal, or a bad event inside a stream.

use crate::error::ErrorClass;

impl StreamFault {
    /// The gateway's code for the error event that ends the client's stream.
    pub fn code(&self) -> &'static str {
        match self {
            StreamFault::Malformed => "upstream_malformed_stream",
            StreamFault::UpstreamError {
                class: ErrorClass::Overloaded,
                ..
            } => "upstream_overloaded",
            StreamFault::UpstreamError {
                class: ErrorClass::RateLimited,
                ..
            } => "upstream_rate_limited",
            StreamFault::UpstreamError { .. } => "upstream_stream_error",
            StreamFault::Stopped { code, .. } => code,
            StreamFault::Ended => "ended_early",
        }
    }
}

/// A successful upstream response whose body is not what the protocol promises.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed response body from upstream: {0}")]
pub struct MalformedResponse(pub String);

/// Why a successful (2xx) upstream response cannot be given to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseFault {
    #[error(transparent)]
    Malformed(#[from] MalformedResponse),
    /// The provider answered 200 but refused, e.g. a prompt blocked by a safety filter.
    #[error("{message}")]
    Refused { class: ErrorClass, message: String },
}

/// The upstream sent something inside a stream that is not a valid event of its protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamFault {
    #[error("malformed stream event from upstream")]
    Malformed,
    #[error("the upstream reported an error inside the stream: {message}")]
    UpstreamError { class: ErrorClass, message: String },
    /// A response stage ended the answer (its error event already went to the client).
    #[error("a response stage ended the stream ({code})")]
    Stopped { class: &'static str, code: &'static str },
    /// A response stage ended the answer well (a runaway cut: its stop and end already went
    /// to the client); the upstream is no longer read.
    #[error("a response stage ended the answer early")]
    Ended,
}
