//! OpenAI Chat Completions ⇄ the canonical chat exchange ([`crate::chat`]): requests, responses
//! and stream chunks in both directions. Used only when the other side speaks another format.

mod plain;
mod read;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod stream;

pub use plain::PlainChat;
pub use read::request_to_chat;
pub use request::chat_to_request;
pub use response::{chat_to_response, finish_reason, response_to_chat, stop_reason_from, usage_value};
pub use stream::{ChunkDecoder, ChunkEncoder, stream_error_class};
