//! An entry as bytes in the Redis tier: a one-byte tag, then JSON — compressed with LZ4 when
//! it is larger than the configured size. A value this version cannot read is a miss, never
//! an error.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_providers::Wire;
use sluice_providers::chat::{ChatResponse, Part, StopReason};
use sluice_providers::usage::Usage;

use crate::memory::{Answer, Body, Entry, Whole};

const PLAIN: u8 = b'j';
const LZ4: u8 = b'z';

#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chat: Option<StoredChat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<StoredBody>,
    /// A whole chat answer as its client got it (an instance of a version before it reads
    /// neither `chat` nor `body`: a miss).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    whole: Option<StoredWhole>,
    cost_micros: u64,
    stored_at_ms: u64,
    ttl_ms: u64,
    stale_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct StoredChat {
    id: String,
    model: String,
    content: Vec<StoredPart>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stop: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stop_sequence: Option<String>,
    usage: Usage,
}

/// A whole body: its text when it is UTF-8 (JSON is), else nothing is stored.
#[derive(Serialize, Deserialize)]
struct StoredBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    text: String,
    usage: Usage,
}

/// A whole chat answer: its client's format (`openai`, `anthropic`, `responses`) and its text.
#[derive(Serialize, Deserialize)]
struct StoredWhole {
    wire: String,
    text: String,
    usage: Usage,
}

fn wire_str(w: Wire) -> &'static str {
    match w {
        Wire::OpenAi => "openai",
        Wire::Anthropic => "anthropic",
        Wire::Responses => "responses",
    }
}

fn wire_of(s: &str) -> Option<Wire> {
    Some(match s {
        "openai" => Wire::OpenAi,
        "anthropic" => Wire::Anthropic,
        "responses" => Wire::Responses,
        _ => return None,
    })
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StoredPart {
    Text(String),
    ToolUse { id: String, name: String, input: Value },
}

fn stop_str(r: StopReason) -> &'static str {
    match r {
        StopReason::EndTurn => "end_turn",
        StopReason::MaxTokens => "max_tokens",
        StopReason::StopSequence => "stop_sequence",
        StopReason::ToolUse => "tool_use",
        StopReason::ContentFilter => "content_filter",
    }
}

fn stop_of(s: &str) -> Option<StopReason> {
    Some(match s {
        "end_turn" => StopReason::EndTurn,
        "max_tokens" => StopReason::MaxTokens,
        "stop_sequence" => StopReason::StopSequence,
        "tool_use" => StopReason::ToolUse,
        "content_filter" => StopReason::ContentFilter,
        _ => return None,
    })
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn chat_of(a: &ChatResponse) -> Option<StoredChat> {
    let content = a
        .content
        .iter()
        .map(|p| match p {
            Part::Text(t) => Some(StoredPart::Text(t.clone())),
            Part::ToolUse { id, name, input } => Some(StoredPart::ToolUse {
                id: id.clone(),
                name: name.clone(),
                input: input.clone(),
            }),
            Part::Image(_) | Part::ToolResult { .. } => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some(StoredChat {
        id: a.id.clone(),
        model: a.model.clone(),
        content,
        stop: a.stop_reason.map(|r| stop_str(r).to_owned()),
        stop_sequence: a.stop_sequence.clone(),
        usage: a.usage,
    })
}

fn chat_from(s: StoredChat) -> ChatResponse {
    ChatResponse {
        id: s.id,
        model: s.model,
        content: s
            .content
            .into_iter()
            .map(|p| match p {
                StoredPart::Text(t) => Part::Text(t),
                StoredPart::ToolUse { id, name, input } => Part::ToolUse { id, name, input },
            })
            .collect(),
        stop_reason: s.stop.as_deref().and_then(stop_of),
        stop_sequence: s.stop_sequence,
        usage: s.usage,
    }
}

/// The entry's bytes; `None` for an answer an entry in Redis does not hold (images, a body
/// that is not UTF-8).
pub(crate) fn encode(entry: &Entry, compress_above: usize) -> Option<Vec<u8>> {
    let (mut chat, mut body, mut whole) = (None, None, None);
    match &entry.answer {
        Answer::Chat(c) => chat = Some(chat_of(c)?),
        Answer::Body(b) => {
            body = Some(StoredBody {
                content_type: b.content_type.clone(),
                text: std::str::from_utf8(&b.bytes).ok()?.to_owned(),
                usage: b.usage,
            });
        }
        Answer::Whole(w) => {
            whole = Some(StoredWhole {
                wire: wire_str(w.wire).to_owned(),
                text: std::str::from_utf8(&w.bytes).ok()?.to_owned(),
                usage: w.usage,
            });
        }
    }
    let stored = Stored {
        chat,
        body,
        whole,
        cost_micros: entry.cost_micros,
        stored_at_ms: entry.stored_at.duration_since(UNIX_EPOCH).map_or(0, ms),
        ttl_ms: ms(entry.ttl),
        stale_ms: ms(entry.stale),
    };
    let json = serde_json::to_vec(&stored).ok()?;
    let mut out;
    if json.len() > compress_above {
        let packed = lz4_flex::compress_prepend_size(&json);
        out = Vec::with_capacity(packed.len() + 1);
        out.push(LZ4);
        out.extend_from_slice(&packed);
    } else {
        out = Vec::with_capacity(json.len() + 1);
        out.push(PLAIN);
        out.extend_from_slice(&json);
    }
    Some(out)
}

/// The entry in `bytes`; `None` when they are not one this version wrote.
pub(crate) fn decode(bytes: &[u8]) -> Option<Entry> {
    let (tag, rest) = bytes.split_first()?;
    let unpacked;
    let json = match *tag {
        PLAIN => rest,
        LZ4 => {
            unpacked = lz4_flex::decompress_size_prepended(rest).ok()?;
            &unpacked[..]
        }
        _ => return None,
    };
    let s: Stored = serde_json::from_slice(json).ok()?;
    let answer = match (s.chat, s.body, s.whole) {
        (Some(c), None, None) => Answer::Chat(chat_from(c)),
        (None, Some(b), None) => Answer::Body(Body {
            content_type: b.content_type,
            bytes: bytes::Bytes::from(b.text),
            usage: b.usage,
        }),
        (None, None, Some(w)) => Answer::Whole(Whole {
            wire: wire_of(&w.wire)?,
            bytes: bytes::Bytes::from(w.text),
            usage: w.usage,
        }),
        _ => return None,
    };
    let mut entry = Entry::new(
        answer,
        s.cost_micros,
        Duration::from_millis(s.ttl_ms),
        Duration::from_millis(s.stale_ms),
    );
    entry.stored_at = UNIX_EPOCH + Duration::from_millis(s.stored_at_ms);
    // A clock behind the writer's would make the entry younger than it is; it is at least new.
    entry.stored_at = entry.stored_at.min(SystemTime::now());
    Some(entry)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn entry(text: &str) -> Entry {
        let answer = Answer::Chat(ChatResponse {
            id: "chatcmpl-1".into(),
            model: "m".into(),
            content: vec![
                Part::Text(text.into()),
                Part::ToolUse {
                    id: "call_1".into(),
                    name: "f".into(),
                    input: json!({"city": "Paris", "n": 2}),
                },
            ],
            stop_reason: Some(StopReason::ToolUse),
            stop_sequence: Some("###".into()),
            usage: Usage {
                prompt_tokens: 12,
                completion_tokens: 7,
                total_tokens: 19,
                cached_tokens: 4,
                cache_write_tokens: 2,
                reasoning_tokens: 1,
            },
        });
        Entry::new(
            answer,
            1234,
            Duration::from_millis(60_000),
            Duration::from_millis(5_000),
        )
    }

    fn check(e: &Entry, compress_above: usize, tag: u8) {
        let bytes = encode(e, compress_above).unwrap();
        assert_eq!(bytes[0], tag);
        let back = decode(&bytes).unwrap();
        assert_eq!(back.answer, e.answer);
        assert_eq!(back.cost_micros, e.cost_micros);
        assert_eq!((back.ttl, back.stale), (e.ttl, e.stale));
        let drift = e.stored_at.duration_since(back.stored_at).unwrap_or_default();
        assert!(drift < Duration::from_millis(1), "{drift:?}");
    }

    #[test]
    fn an_entry_comes_back_as_it_went_plain_or_compressed() {
        let small = entry("hi");
        check(&small, 1024, PLAIN);
        let large = entry(&"the same words again ".repeat(200));
        check(&large, 1024, LZ4);
        let packed = encode(&large, 1024).unwrap();
        assert!(packed.len() < 1024, "compressed to {} bytes", packed.len());
        check(&small, 0, LZ4);
        let body = Entry::new(
            Answer::Body(Body {
                content_type: Some("application/json".into()),
                bytes: bytes::Bytes::from_static(br#"{"data":[{"embedding":[0.1,0.2]}]}"#),
                usage: Usage {
                    prompt_tokens: 3,
                    ..Usage::default()
                },
            }),
            5,
            Duration::from_secs(1),
            Duration::ZERO,
        );
        check(&body, 1024, PLAIN);
        for wire in [Wire::OpenAi, Wire::Anthropic, Wire::Responses] {
            let whole = Entry::new(
                Answer::Whole(Whole {
                    wire,
                    bytes: bytes::Bytes::from_static(br#"{"id":"chatcmpl-1","choices":[]}"#),
                    usage: Usage {
                        prompt_tokens: 3,
                        completion_tokens: 2,
                        total_tokens: 5,
                        ..Usage::default()
                    },
                }),
                7,
                Duration::from_secs(1),
                Duration::ZERO,
            );
            check(&whole, 1024, PLAIN);
            check(&whole, 0, LZ4);
        }
    }

    /// A whole answer in a format this version does not know.
    const UNKNOWN_WIRE: &[u8] = br#"j{"whole":{"wire":"telex","text":"{}","usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0,"cached_tokens":0,"cache_write_tokens":0,"reasoning_tokens":0}},"cost_micros":0,"stored_at_ms":0,"ttl_ms":1,"stale_ms":0}"#;

    #[test]
    fn bytes_this_version_did_not_write_are_a_miss() {
        // The same bytes with a format it knows are an entry.
        let known = std::str::from_utf8(UNKNOWN_WIRE).unwrap().replace("telex", "anthropic");
        assert!(decode(known.as_bytes()).is_some());
        for bad in [
            &b""[..],
            b"x{}",
            b"j{",
            b"z\x05\x00\x00\x00ab",
            b"j{\"id\":1}",
            UNKNOWN_WIRE,
        ] {
            assert!(decode(bad).is_none(), "{bad:?}");
        }
    }
}
