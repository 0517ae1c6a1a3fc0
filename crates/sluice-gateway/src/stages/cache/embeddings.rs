//! Embeddings cached per input string: a batch whose inputs were all embedded before is
//! answered from the cache; one with some new inputs sends only those upstream (and pays for
//! only those), and the answer is put together in the caller's order by the response side
//! (`response::embeddings`). Each input's key is the request without its inputs (model,
//! `dimensions`, `encoding_format`, …) and the input itself, under the request's scope.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use sluice_cache::{Answer, CacheKey, Entry, InputSlot, KeyParts, Scope, Storing, Tiers};
use sluice_providers::{Endpoint, InboundRequest, Usage};

use crate::flow::{Cached, Replayed, Reply};

/// What the lookup found.
pub(super) enum Inputs {
    /// Every input was stored: the whole answer.
    All(Reply),
    /// Some were not: the request for those alone, and each input's slot.
    Some {
        request: InboundRequest,
        slots: Vec<InputSlot>,
        key: sluice_cache::KeyDigest,
    },
}

/// The request's input strings and the rest of it; `None` when its input is not text (token
/// arrays) or the body is not an object.
pub(super) fn split(body: &[u8]) -> Option<(Vec<String>, Map<String, Value>)> {
    let Value::Object(mut rest) = serde_json::from_slice::<Value>(body).ok()? else {
        return None;
    };
    let inputs = match rest.remove("input")? {
        Value::String(s) => vec![s],
        Value::Array(items) if !items.is_empty() => items
            .into_iter()
            .map(|i| match i {
                Value::String(s) => Some(s),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?,
        _ => return None,
    };
    Some((inputs, rest))
}

/// Looks each input up. `kept`: how long a new embedding is kept (TTL, stale time);
/// `max_bytes`: the largest entry.
#[allow(clippy::too_many_arguments)] // the lookup's inputs, each used
pub(super) async fn lookup(
    tiers: &Tiers,
    scope: &Scope,
    parts: &KeyParts<'_>,
    (inputs, rest): (Vec<String>, Map<String, Value>),
    inbound: &InboundRequest,
    (ttl, stale, max_bytes): (std::time::Duration, std::time::Duration, u64),
    no_cache: bool,
) -> Option<Inputs> {
    let common = sluice_cache::canonical::of_value(Value::Object(rest.clone())).bytes;
    let keys: Vec<CacheKey> = inputs
        .iter()
        .map(|input| {
            let mut body = common.clone();
            body.push(0);
            body.extend_from_slice(input.as_bytes());
            CacheKey::new(
                scope,
                &KeyParts {
                    endpoint: "embeddings/input",
                    body: &body,
                    ..*parts
                },
            )
        })
        .collect();
    let found: Vec<Option<Arc<Entry>>> = if no_cache {
        keys.iter().map(|_| None).collect()
    } else {
        tiers
            .get_many(&keys)
            .await
            .into_iter()
            .map(|e| e.filter(|e| e.younger_than(ttl) && matches!(e.answer, Answer::Body(_))))
            .collect()
    };
    let key = keys.first()?.digest();
    if found.iter().all(Option::is_some) {
        let entries: Vec<Arc<Entry>> = found.into_iter().flatten().collect();
        return Some(Inputs::All(whole(&entries, key)?));
    }
    let missing: Vec<Value> = inputs
        .iter()
        .zip(&found)
        .filter(|(_, f)| f.is_none())
        .map(|(i, _)| Value::String(i.clone()))
        .collect();
    let mut body = rest;
    body.insert("input".to_owned(), Value::Array(missing));
    let bytes = Bytes::from(serde_json::to_vec(&Value::Object(body)).ok()?);
    let mut request = InboundRequest::parse(Endpoint::Embeddings, bytes).ok()?;
    request.headers = inbound.headers.clone();
    let slots = found
        .into_iter()
        .zip(keys)
        .zip(&inputs)
        .map(|((f, k), input)| match f {
            Some(e) => InputSlot::Hit(e),
            None => InputSlot::Miss {
                storing: Box::new(Storing::new(
                    (&tiers.memory, tiers.shared.as_ref()),
                    k,
                    (ttl, stale),
                    max_bytes,
                    None,
                )),
                chars: input.chars().count(),
            },
        })
        .collect();
    Some(Inputs::Some { request, slots, key })
}

/// The answer put together from stored inputs alone.
fn whole(entries: &[Arc<Entry>], key: sluice_cache::KeyDigest) -> Option<Reply> {
    let mut data = Vec::with_capacity(entries.len());
    let mut model = Value::Null;
    let (mut tokens, mut saved) = (0u64, 0u64);
    for (i, e) in entries.iter().enumerate() {
        let Answer::Body(b) = &e.answer else { return None };
        let stored: Value = serde_json::from_slice(&b.bytes).ok()?;
        model = stored.get("model").cloned().unwrap_or(Value::Null);
        data.push(json!({"object": "embedding", "index": i, "embedding": stored.get("embedding")?}));
        tokens += b.usage.prompt_tokens;
        saved += e.cost_micros;
    }
    let body = json!({"object": "list", "data": data, "model": model,
                      "usage": {"prompt_tokens": tokens, "total_tokens": tokens}});
    Some(Reply::Cached(Cached {
        body: Replayed::Whole(Bytes::from(serde_json::to_vec(&body).ok()?)),
        stream: false,
        usage: Usage {
            prompt_tokens: tokens,
            total_tokens: tokens,
            ..Usage::default()
        },
        saved_cost_micros: saved,
        key,
        outcome: "hit",
        similarity: None,
    }))
}
