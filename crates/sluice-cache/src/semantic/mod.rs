//! The semantic cache: a request whose last user turn means the same as a stored one's —
//! everything else being identical — is answered with the stored answer.
//!
//! Only the last user turn is embedded. Everything else — the system prompt, the earlier
//! turns, tools, parameters, the model, the scope, the embedding model — goes into a hard
//! partition key (a [`CacheKey`], so it holds the tenant by construction): two conversations
//! that end with the same question never share an answer, nor do two tenants.
//!
//! A similar stored prompt is a hit only after its [`Features`] agree with the request's
//! ([`verify`]): similarity alone merges near-misses.

pub mod eval;
mod graph;
mod index;
mod partition;
mod vector;
pub mod verify;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

pub use index::SemanticIndex;
pub use partition::Candidate;
pub use vector::dot;
pub use verify::{Disagreement, Features};

use crate::canonical;
use crate::key::{CacheKey, KeyParts, Scope};

/// A request's question, ready for the semantic index.
#[derive(Debug, Clone)]
pub struct Question {
    /// Everything but the last user turn's text.
    pub partition: CacheKey,
    /// The last user turn's text (what is embedded).
    pub text: String,
}

/// A miss's prompt, to be indexed with its answer once that is stored.
#[derive(Debug, Clone)]
pub struct SemanticSlot {
    pub index: Arc<SemanticIndex>,
    pub partition: CacheKey,
    pub vector: Vec<f32>,
    /// The prompt (sent to the other instances, which read its features again).
    pub text: String,
    pub features: Features,
}

impl SemanticSlot {
    /// Indexes the prompt, pointing at the exact entry `entry` that holds its answer, for `life`.
    pub fn insert(self, entry: CacheKey, life: Duration) -> bool {
        self.index
            .insert(self.partition, entry, &self.vector, self.features, life)
    }
}

/// The question in an OpenAI-form chat request (`messages`), under `parts` (whose body is
/// ignored: the partition's body is the request without its last user turn's text), for
/// `embedder`. `None` when the last message is not the user's or holds more than text.
pub fn question(scope: &Scope, parts: &KeyParts<'_>, chat: &Value, embedder: &str) -> Option<Question> {
    let mut rest = chat.clone();
    let last = rest.get_mut("messages")?.as_array_mut()?.last_mut()?;
    if last.get("role")?.as_str()? != "user" {
        return None;
    }
    let text = match last.get("content")? {
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let mut text = String::new();
            for item in items {
                if item.get("type")?.as_str()? != "text" {
                    return None;
                }
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(item.get("text")?.as_str()?);
            }
            text
        }
        _ => return None,
    };
    last.as_object_mut()?
        .insert("content".to_owned(), Value::String(String::new()));
    let body = canonical::of_value(rest).bytes;
    let endpoint = format!("{}/semantic:{embedder}", parts.endpoint);
    let partition = CacheKey::new(
        scope,
        &KeyParts {
            endpoint: &endpoint,
            body: &body,
            ..*parts
        },
    );
    Some(Question { partition, text })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use serde_json::json;
    use sluice_config::CacheScope;

    use super::*;

    fn ask(tenant: &str, chat: &Value) -> Option<Question> {
        let (t, k): (Arc<str>, Arc<str>) = (Arc::from(tenant), Arc::from("k"));
        let scope = Scope::of(CacheScope::Tenant, Some(&t), None, &k);
        let parts = KeyParts {
            route: "r",
            policy_version: "v",
            endpoint: "chat",
            model: "m",
            headers: &[],
            body: b"ignored",
        };
        question(&scope, &parts, chat, "minilm")
    }

    fn chat(system: &str, last: Value) -> Value {
        json!({"model": "m", "messages": [{"role": "system", "content": system}, {"role": "user", "content": last}]})
    }

    #[test]
    fn only_the_last_user_turn_is_the_question_and_the_rest_partitions() {
        let a = ask("t", &chat("Be brief.", json!("Capital of France?"))).unwrap();
        let b = ask("t", &chat("Be brief.", json!("What is France's capital?"))).unwrap();
        assert_eq!(a.text, "Capital of France?");
        assert_eq!(a.partition, b.partition, "same conversation but its last question");
        let other_system = ask("t", &chat("Be verbose.", json!("Capital of France?"))).unwrap();
        assert_ne!(a.partition, other_system.partition);
        let other_tenant = ask("u", &chat("Be brief.", json!("Capital of France?"))).unwrap();
        assert_ne!(a.partition, other_tenant.partition);
        let parts = ask(
            "t",
            &chat(
                "Be brief.",
                json!([{"type": "text", "text": "Capital"}, {"type": "text", "text": "of France?"}]),
            ),
        );
        assert_eq!(parts.unwrap().text, "Capital\nof France?");
    }

    #[test]
    fn a_last_turn_that_is_not_the_users_text_is_no_question() {
        let image = json!([{"type": "image_url", "image_url": {"url": "data:,"}}]);
        assert!(ask("t", &chat("s", image)).is_none());
        let assistant =
            json!({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]});
        assert!(ask("t", &assistant).is_none());
        assert!(ask("t", &json!({"prompt": "hi"})).is_none());
    }
}
