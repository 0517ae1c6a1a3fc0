//! Anthropic Messages: the adapter for Anthropic deployments, and the codec between Messages and
//! the canonical chat exchange in both directions (requests, responses, stream events).
//!
//! Messages to an Anthropic deployment pass through byte for byte, with only `model` spliced;
//! other formats are translated through [`crate::chat`].

mod adapter;
pub(crate) mod error;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod stream;

pub use adapter::{AnthropicAdapter, DEFAULT_VERSION};
pub use error::{classify, code_type, error_body, error_type};
pub use request::{DEFAULT_MAX_TOKENS, chat_to_request, request_to_chat};
pub use response::{chat_to_response, response_to_chat, stop_reason_from, stop_reason_str, usage_from, usage_value};
pub use stream::{EventDecoder, EventEncoder, error_event};

#[cfg(test)]
mod tests;
