//! A stored answer written again for the client: in its format, with an id of its own, as a
//! stream when it streams (paced when the route says); and a fallback chain's stale answer.

use std::time::Duration;

use bytes::Bytes;
use sluice_cache::{Answer, CacheKey, Entry, Tiers};
use sluice_providers::{InboundRequest, Wire, translate};

use crate::flow::{Cached, Replayed, Reply};

/// A fallback chain's `cache` step: the stored answer for `key`, even up to `stale` past the
/// route's `ttl` (`x-sluice-cache: stale`).
pub async fn stale_answer(
    cache: &Tiers,
    (key, ttl): &(CacheKey, Duration),
    stale: Duration,
    inbound: &InboundRequest,
    request_id: &str,
) -> Option<Reply> {
    let entry = cache.get(key).await?;
    entry
        .younger_than(ttl.saturating_add(stale))
        .then(|| replay(&entry, inbound, request_id, (key.hex(), "stale", None), None))
}

/// A stored answer in the client's format, with an id of its own; a stream's events `pace`
/// apart when the route asks (text in pieces of 16 characters).
pub(super) fn replay(
    entry: &Entry,
    inbound: &InboundRequest,
    request_id: &str,
    (key, outcome, similarity): (String, &'static str, Option<f32>),
    pace: Option<Duration>,
) -> Reply {
    let (body, stream, usage) = match &entry.answer {
        Answer::Chat(chat) => {
            let wire = inbound.endpoint.wire();
            let mut answer = chat.clone();
            answer.id = fresh_answer_id(wire, request_id);
            let stream = inbound.view.stream;
            let body = match (stream, pace) {
                (true, Some(every)) => Replayed::Paced(
                    translate::stream_events(wire, &answer, inbound.view.include_usage, 16),
                    every,
                ),
                (true, None) => Replayed::Whole(translate::write_stream(wire, &answer, inbound.view.include_usage)),
                (false, _) => Replayed::Whole(translate::write_response(wire, &answer)),
            };
            (body, stream, answer.usage)
        }
        // Another endpoint's answer, as it was (a completion with an id of its own).
        Answer::Body(b) => (
            Replayed::Whole(fresh_id(&b.bytes, &compact(request_id))),
            false,
            b.usage,
        ),
    };
    Reply::Cached(Cached {
        body,
        stream,
        usage,
        saved_cost_micros: entry.cost_micros,
        key,
        outcome,
        similarity,
    })
}

/// An answer's id for this request, in the client's format's style.
pub(super) fn fresh_answer_id(wire: Wire, request_id: &str) -> String {
    let prefix = match wire {
        Wire::OpenAi => "chatcmpl-",
        Wire::Anthropic => "msg_",
        Wire::Responses => "resp_",
    };
    let mut id = String::with_capacity(prefix.len() + request_id.len());
    id.push_str(prefix);
    id.extend(request_id.chars().filter(char::is_ascii_alphanumeric));
    id
}

/// A request id with only its letters and digits.
fn compact(request_id: &str) -> String {
    request_id.chars().filter(char::is_ascii_alphanumeric).collect()
}

/// A body whose top-level `id` (a completion's) is replaced by one of this request's.
fn fresh_id(body: &Bytes, compact: &str) -> Bytes {
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return body.clone();
    };
    match v.get_mut("id") {
        Some(id @ serde_json::Value::String(_)) => {
            *id = serde_json::Value::String(format!("cmpl-{compact}"));
            serde_json::to_vec(&v).map_or_else(|_| body.clone(), Bytes::from)
        }
        _ => body.clone(),
    }
}
