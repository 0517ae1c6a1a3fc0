//! An embeddings answer for the inputs that were not cached, put together with the stored ones
//! in the caller's order (the cache stage sent only the missing inputs upstream). Each new
//! embedding is stored as its input's entry, with its share of the answer's tokens (by length).

use bytes::Bytes;
use serde_json::{Value, json};
use sluice_cache::{Answer, Body, InputSlot};
use sluice_config::Price;
use sluice_providers::Usage;

use crate::error::{ErrorKind, GatewayError};

/// The whole answer. Its usage shows every input's tokens (the upstream's for the new ones,
/// the stored ones' for the rest); only the upstream's is charged.
pub fn merge(slots: Vec<InputSlot>, body: &Bytes, usage: Usage, price: Option<Price>) -> Result<Bytes, GatewayError> {
    let malformed = |why: &str| {
        GatewayError::new(
            ErrorKind::UpstreamRejected,
            "upstream_malformed_response",
            format!("the embeddings answer {why}"),
        )
    };
    let answer: Value = serde_json::from_slice(body).map_err(|_| malformed("is not JSON"))?;
    let mut fresh: Vec<(u64, Value)> = answer
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("has no data"))?
        .iter()
        .map(|d| {
            (
                d.get("index").and_then(Value::as_u64).unwrap_or(0),
                d.get("embedding").cloned().unwrap_or(Value::Null),
            )
        })
        .collect();
    fresh.sort_by_key(|(i, _)| *i);
    let misses = slots.iter().filter(|s| matches!(s, InputSlot::Miss { .. })).count();
    if fresh.len() != misses {
        return Err(malformed("has another number of embeddings than inputs sent"));
    }
    let model = answer.get("model").cloned().unwrap_or(Value::Null);
    let total_chars: usize = slots
        .iter()
        .map(|s| match s {
            InputSlot::Miss { chars, .. } => (*chars).max(1),
            InputSlot::Hit(_) => 0,
        })
        .sum();
    let mut fresh = fresh.into_iter().map(|(_, e)| e);
    let (mut left, mut shown) = (usage.prompt_tokens, usage.prompt_tokens);
    let mut seen_misses = 0;
    let mut data = Vec::with_capacity(slots.len());
    for (i, slot) in slots.into_iter().enumerate() {
        let embedding = match slot {
            InputSlot::Hit(e) => {
                let Answer::Body(b) = &e.answer else { continue };
                shown += b.usage.prompt_tokens;
                let stored: Value = serde_json::from_slice(&b.bytes).unwrap_or(Value::Null);
                stored.get("embedding").cloned().unwrap_or(Value::Null)
            }
            InputSlot::Miss { storing, chars } => {
                let embedding = fresh.next().unwrap_or(Value::Null);
                seen_misses += 1;
                let tokens = if seen_misses == misses {
                    left
                } else {
                    (usage.prompt_tokens * chars.max(1) as u64 / total_chars.max(1) as u64).min(left)
                };
                left -= tokens;
                let stored = json!({"model": model, "embedding": embedding});
                let cost = price.map_or(0, |p| p.cost_micros(tokens, 0, 0, 0));
                if let Ok(bytes) = serde_json::to_vec(&stored) {
                    (*storing).commit(
                        Answer::Body(Body {
                            content_type: None,
                            bytes: Bytes::from(bytes),
                            usage: Usage {
                                prompt_tokens: tokens,
                                total_tokens: tokens,
                                ..Usage::default()
                            },
                        }),
                        cost,
                    );
                }
                embedding
            }
        };
        data.push(json!({"object": "embedding", "index": i, "embedding": embedding}));
    }
    let whole = json!({"object": "list", "data": data, "model": model,
                       "usage": {"prompt_tokens": shown, "total_tokens": shown}});
    let bytes = serde_json::to_vec(&whole).map_err(|_| malformed("cannot be written again"))?;
    Ok(Bytes::from(bytes))
}
