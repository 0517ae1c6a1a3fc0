//! Wire formats. Pure translation between what a client sent and what an upstream speaks:
//! SSE framing, the provider adapter boundary, and the OpenAI-compatible codec.
//!
//! This crate never does IO, never holds a connection and never logs: transport, timeouts and
//! retries live in `sluice-gateway`. An adapter builds the upstream request, reads usage from
//! responses and stream events, and classifies errors.

pub mod adapter;
pub mod anthropic;
mod aws;
pub mod azure;
pub mod bedrock;
pub mod chat;
pub mod error;
pub mod eventstream;
mod fault;
pub mod format;
pub mod gemini;
mod lenient;
pub mod names;
pub mod openai;
pub mod openai_chat;
pub mod prediction;
pub mod responses;
pub mod sse;
mod stream;
pub mod translate;
pub mod usage;
mod view;
mod wire;

pub use adapter::{ClientHeaders, Endpoint, InboundRequest, ProviderAdapter, ResponseOut, StreamTranslator, Target};
pub use error::{ErrorClass, RequestError, scrub_credentials};
pub use translate::{ParamPolicy, Source, Wire};
pub use usage::Usage;
