//! AWS Bedrock's Converse API (`/model/{id}/converse`, `/model/{id}/converse-stream`): an
//! upstream format. Requests are built from the canonical exchange and signed with SigV4
//! (service `bedrock`) using credentials from the environment; streams arrive in AWS
//! event-stream framing ([`crate::eventstream`]) and are decoded into canonical deltas.

mod adapter;
mod converse;
mod embeddings;
pub(crate) mod stream;

pub use crate::aws::{AwsAuth, sign_request};
pub use adapter::BedrockAdapter;
pub use converse::{chat_to_request, response_to_chat, stop_reason_from, usage_from};
pub use stream::EventDecoder;
