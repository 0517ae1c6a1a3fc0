//! Google Gemini (`generateContent`, `streamGenerateContent?alt=sse`, `batchEmbedContents`):
//! an upstream format only. Requests are built from the canonical exchange, answers read back
//! into it; a prompt or answer blocked by Gemini's safety filters is a content-policy error.
//!
//! Gemini has no tool-call ids: calls get `call_{n}` ids on the way back, and a tool result is
//! matched to its call's function name through the conversation.

mod adapter;
mod embeddings;
mod generate;
pub(crate) mod stream;

pub use adapter::GeminiAdapter;
pub use generate::{chat_to_request, response_to_chat, stop_reason_from, usage_from};
pub use stream::ChunkDecoder;
