//! OpenAI's Responses API as a client format: requests read into the canonical chat exchange,
//! answers (whole or streamed) written back as Response objects and Responses stream events.
//! The upstream is whatever the route picked (Chat Completions, Anthropic Messages); the
//! Responses features a chat upstream cannot express — stored state (`previous_response_id`),
//! built-in tools, reasoning items — are refused (or dropped) like any unsupported parameter.

pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod stream;

pub use request::request_to_chat;
pub use response::{chat_to_response, response_to_chat};
pub use stream::EventEncoder;
