//! A stored answer written again for the client: in its format, with an id of its own, as a
//! stream when it streams (paced when the route says); and a fallback chain's stale answer.

use std::time::Duration;

use bytes::Bytes;
use sluice_cache::{Answer, CacheKey, Entry, Tiers};
use sluice_providers::chat::ChatResponse;
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
    if !entry.younger_than(ttl.saturating_add(stale)) {
        return None;
    }
    replay(&entry, inbound, request_id, (key.digest(), "stale", None), None)
}

/// A stored answer in the client's format, with an id of its own; a stream's events `pace`
/// apart when the route asks (text in pieces of 16 characters). `None` when a whole answer
/// kept as its client got it does not read as an answer for another format (then it is a
/// miss).
pub(super) fn replay(
    entry: &Entry,
    inbound: &InboundRequest,
    request_id: &str,
    (key, outcome, similarity): (sluice_cache::KeyDigest, &'static str, Option<f32>),
    pace: Option<Duration>,
) -> Option<Reply> {
    let wire = inbound.endpoint.wire();
    let stream = inbound.view.stream;
    let (body, stream, usage) = match &entry.answer {
        // The same format, whole: the bytes as they were, with an id of this request's.
        Answer::Whole(w) if w.wire == wire && !stream => {
            let id = fresh_answer_id(wire, request_id);
            let body = match with_id(&w.bytes, &id) {
                Some(b) => b,
                None => written(translate::read_response(w.wire, &w.bytes).ok()?, wire, request_id),
            };
            (Replayed::Whole(body), false, w.usage)
        }
        Answer::Whole(w) => {
            let chat = translate::read_response(w.wire, &w.bytes).ok()?;
            (rewritten(chat, inbound, request_id, pace), stream, w.usage)
        }
        Answer::Chat(chat) => (rewritten(chat.clone(), inbound, request_id, pace), stream, chat.usage),
        // Another endpoint's answer, as it was (a completion with an id of its own).
        Answer::Body(b) => (
            Replayed::Whole(fresh_id(&b.bytes, &compact(request_id))),
            false,
            b.usage,
        ),
    };
    Some(Reply::Cached(Cached {
        body,
        stream,
        usage,
        saved_cost_micros: entry.cost_micros,
        key,
        outcome,
        similarity,
    }))
}

/// A canonical answer written again in the client's format with an id of its own: as a
/// stream when it streams (paced when the route says), else whole.
fn rewritten(answer: ChatResponse, inbound: &InboundRequest, request_id: &str, pace: Option<Duration>) -> Replayed {
    let wire = inbound.endpoint.wire();
    if !inbound.view.stream {
        return Replayed::Whole(written(answer, wire, request_id));
    }
    let mut answer = answer;
    answer.id = fresh_answer_id(wire, request_id);
    match pace {
        Some(every) => Replayed::Paced(
            translate::stream_events(wire, &answer, inbound.view.include_usage, 16),
            every,
        ),
        None => Replayed::Whole(translate::write_stream(wire, &answer, inbound.view.include_usage)),
    }
}

/// A canonical answer as a whole body in `wire`, with an id of this request's.
fn written(mut answer: ChatResponse, wire: Wire, request_id: &str) -> Bytes {
    answer.id = fresh_answer_id(wire, request_id);
    translate::write_response(wire, &answer)
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

/// `body` with its top-level `id` replaced by `id` (letters, digits, `_` and `-`), found by
/// a scan that skips strings and nested values without reading them; `None` when the body is
/// not an object or its `id` is not a string without escapes.
pub(super) fn with_id(body: &[u8], id: &str) -> Option<Bytes> {
    let (open, len) = top_level_id(body)?;
    let mut out = Vec::with_capacity(body.len() - len + id.len());
    out.extend_from_slice(&body[..open]);
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(&body[open + len..]);
    Some(Bytes::from(out))
}

/// Where the value of the top-level object's first `id` member starts, and its length.
fn top_level_id(body: &[u8]) -> Option<(usize, usize)> {
    let space = |at: usize| {
        at + body
            .get(at..)
            .map_or(0, |rest| rest.iter().take_while(|b| b.is_ascii_whitespace()).count())
    };
    let mut at = space(0);
    if body.get(at) != Some(&b'{') {
        return None;
    }
    let mut depth = 0usize;
    // The next string is a member's name (after the object's `{` or a `,` in it).
    let mut name = false;
    while let Some(&b) = body.get(at) {
        match b {
            b'"' => {
                let end = string_end(body, at + 1)?;
                if depth == 1 && name {
                    name = false;
                    if &body[at + 1..end] == b"id" {
                        let colon = space(end + 1);
                        let quote = space(colon + 1);
                        if body.get(colon) != Some(&b':') || body.get(quote) != Some(&b'"') {
                            return None;
                        }
                        let close = string_end(body, quote + 1)?;
                        let value = &body[quote + 1..close];
                        return (!value.contains(&b'\\')).then_some((quote + 1, value.len()));
                    }
                }
                at = end + 1;
                continue;
            }
            b'{' | b'[' => {
                depth += 1;
                name = depth == 1;
            }
            b'}' | b']' => depth = depth.checked_sub(1)?,
            b',' if depth == 1 => name = true,
            _ => {}
        }
        at += 1;
    }
    None
}

/// The closing quote of the string whose text starts at `from`.
fn string_end(body: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let at = from + memchr::memchr2(b'"', b'\\', body.get(from..)?)?;
        if body[at] == b'"' {
            return Some(at);
        }
        from = at + 2;
    }
}

/// A body whose top-level `id` (a completion's) is replaced by one of this request's.
fn fresh_id(body: &Bytes, compact: &str) -> Bytes {
    let fresh = format!("cmpl-{compact}");
    if let Some(b) = with_id(body, &fresh) {
        return b;
    }
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return body.clone();
    };
    match v.get_mut("id") {
        Some(id @ serde_json::Value::String(_)) => {
            *id = serde_json::Value::String(fresh);
            serde_json::to_vec(&v).map_or_else(|_| body.clone(), Bytes::from)
        }
        _ => body.clone(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_top_level_id_is_replaced_wherever_it_sits() {
        let got = with_id(
            br#"{"id":"chatcmpl-abc","object":"chat.completion","x":{"id":"inner"}}"#,
            "chatcmpl-NEW",
        );
        assert_eq!(
            got.unwrap(),
            &br#"{"id":"chatcmpl-NEW","object":"chat.completion","x":{"id":"inner"}}"#[..]
        );
        // Spaces between the tokens stay; those inside the old value go with it.
        let got = with_id(b" {\n  \"id\" : \" a b \" ,\"n\":1}", "msg_1");
        assert_eq!(got.unwrap(), &b" {\n  \"id\" : \"msg_1\" ,\"n\":1}"[..]);
        let got = with_id(br#"{"id":""}"#, "x");
        assert_eq!(got.unwrap(), &br#"{"id":"x"}"#[..]);
        // After other members, nested ids, names and strings that look like them.
        let body = br#"{"choices":[{"id":"no","m":{"id":"no"}}],"s":"\",\"id\":\"",
            "x":["id",{"id":1}],"id":"chatcmpl-1","z":0}"#;
        let got = with_id(body, "NEW").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&got).unwrap();
        let mut want: serde_json::Value = serde_json::from_slice(body).unwrap();
        want["id"] = "NEW".into();
        assert_eq!(v, want);
    }

    #[test]
    fn any_other_shape_is_left_to_the_reader() {
        for body in [
            &br#"{"object":{"id":"chatcmpl-abc"}}"#[..],
            br#"{"id":"chat\"cmpl"}"#,
            br#"{"id":"chat\u0041"}"#,
            br#"{"id":12}"#,
            br#"{"idx":"a"}"#,
            br#"["id","a"]"#,
            br#"{"id":"unterminated"#,
            br#"{"id""#,
            br#"{"a":"\"#,
            br#"{"a":1]],"id":"x"}"#,
            b"",
        ] {
            assert!(with_id(body, "new").is_none(), "{}", String::from_utf8_lossy(body));
        }
    }

    /// JSON values of a few levels, with `id` members here and there.
    fn json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<i32>().prop_map(serde_json::Value::from),
            "[a-z\\\\\"{}\\[\\],: ]{0,8}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::vec((prop_oneof![Just("id".to_owned()), "[a-z]{1,3}"], inner), 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn a_replaced_id_is_the_only_change(v in json(), bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            // Never a panic on any bytes.
            let _ = with_id(&bytes, "x");
            let body = serde_json::to_vec(&v).unwrap();
            match with_id(&body, "NEW") {
                Some(out) => {
                    let mut want = v.clone();
                    want["id"] = "NEW".into();
                    proptest::prop_assert_eq!(serde_json::from_slice::<serde_json::Value>(&out).unwrap(), want);
                }
                // Only an id that is not a string, or one written with escapes, is left.
                None => proptest::prop_assert!(v.get("id").and_then(|id| id.as_str()).is_none_or(|s| s.contains(['"', '\\']))),
            }
        }
    }
}
