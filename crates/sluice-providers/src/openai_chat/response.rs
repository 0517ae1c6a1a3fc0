//! OpenAI chat responses ⇄ the canonical response: finish reasons, usage, whole answers.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::lenient::{Text, text_of};
use serde_json::{Value, json};

use super::request::joined_text;
use crate::chat::{ChatResponse, Part, StopReason, arguments_text, parse_arguments};
use crate::fault::MalformedResponse;
use crate::usage::{OpenAiUsage, Usage};

pub fn stop_reason_from(finish: &str) -> StopReason {
    match finish {
        "length" => StopReason::MaxTokens,
        "tool_calls" | "function_call" => StopReason::ToolUse,
        "content_filter" => StopReason::ContentFilter,
        _ => StopReason::EndTurn,
    }
}

pub fn finish_reason(r: StopReason) -> &'static str {
    match r {
        StopReason::EndTurn | StopReason::StopSequence => "stop",
        StopReason::MaxTokens => "length",
        StopReason::ToolUse => "tool_calls",
        StopReason::ContentFilter => "content_filter",
    }
}

pub(super) fn usage_from(v: Option<&Value>) -> Usage {
    v.and_then(|u| serde_json::from_value::<OpenAiUsage>(u.clone()).ok())
        .map(Usage::from)
        .unwrap_or_default()
}

/// OpenAI's usage object for a canonical usage.
pub fn usage_value(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    })
}

/// Reads an OpenAI chat response: one pass over the bytes into borrowed fields, no JSON tree
/// (every cached miss reads its answer so). Fields of an unexpected type count as absent, as
/// they always have: a lenient reader of what OpenAI-compatible servers send.
pub fn response_to_chat(body: &[u8]) -> Result<ChatResponse, MalformedResponse> {
    let wire: WireResponse<'_> = serde_json::from_slice(body).map_err(|e| MalformedResponse(e.to_string()))?;
    let choice = wire
        .choices
        .and_then(|c| c.into_iter().next())
        .ok_or_else(|| MalformedResponse("no choices".to_owned()))?;
    let mut content = Vec::new();
    let msg = choice.message.unwrap_or_default();
    if let Some(t) = text_of(msg.content)
        && !t.is_empty()
    {
        content.push(Part::Text(t.into_owned()));
    }
    for c in msg.tool_calls.unwrap_or_default() {
        let f = c.function.unwrap_or_default();
        content.push(Part::ToolUse {
            id: text_of(c.id).unwrap_or_default().into_owned(),
            name: text_of(f.name).unwrap_or_default().into_owned(),
            input: parse_arguments(&text_of(f.arguments).unwrap_or_default()),
        });
    }
    Ok(ChatResponse {
        id: text_of(wire.id).unwrap_or_default().into_owned(),
        model: text_of(wire.model).unwrap_or_default().into_owned(),
        content,
        stop_reason: text_of(choice.finish_reason).map(|r| stop_reason_from(&r)),
        stop_sequence: None,
        usage: wire
            .usage
            .and_then(|u| serde_json::from_str::<OpenAiUsage>(u.get()).ok())
            .map(Usage::from)
            .unwrap_or_default(),
    })
}

/// The parts of a chat response the canonical answer takes; the rest is skipped unread.
#[derive(Deserialize)]
struct WireResponse<'a> {
    #[serde(borrow, default)]
    id: Option<Text<'a>>,
    #[serde(borrow, default)]
    model: Option<Text<'a>>,
    #[serde(borrow, default)]
    choices: Option<Vec<WireChoice<'a>>>,
    #[serde(borrow, default)]
    usage: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WireChoice<'a> {
    #[serde(borrow, default)]
    message: Option<WireMessage<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<Text<'a>>,
}

#[derive(Deserialize, Default)]
struct WireMessage<'a> {
    #[serde(borrow, default)]
    content: Option<Text<'a>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<WireCall<'a>>>,
}

#[derive(Deserialize)]
struct WireCall<'a> {
    #[serde(borrow, default)]
    id: Option<Text<'a>>,
    #[serde(borrow, default)]
    function: Option<WireFunction<'a>>,
}

#[derive(Deserialize, Default)]
struct WireFunction<'a> {
    #[serde(borrow, default)]
    name: Option<Text<'a>>,
    #[serde(borrow, default)]
    arguments: Option<Text<'a>>,
}

pub(super) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Writes an OpenAI chat response (straight from the answer: every cache hit is written so).
pub fn chat_to_response(r: &ChatResponse) -> Bytes {
    let text = joined_text(&r.content);
    let tool_calls: Vec<OutCall<'_>> = r
        .content
        .iter()
        .filter_map(|p| match p {
            Part::ToolUse { id, name, input } => Some(OutCall {
                id,
                kind: "function",
                function: OutFunction {
                    name,
                    arguments: arguments_text(input),
                },
            }),
            _ => None,
        })
        .collect();
    let u = &r.usage;
    let body = OutResponse {
        id: &r.id,
        object: "chat.completion",
        created: now(),
        model: &r.model,
        choices: [OutChoice {
            index: 0,
            message: OutMessage {
                role: "assistant",
                content: (!text.is_empty() || tool_calls.is_empty()).then_some(text),
                refusal: (),
                tool_calls,
            },
            logprobs: (),
            finish_reason: finish_reason(r.stop_reason.unwrap_or(StopReason::EndTurn)),
        }],
        usage: OutUsage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.prompt_tokens + u.completion_tokens,
            prompt_tokens_details: CachedTokens {
                cached_tokens: u.cached_tokens,
            },
            completion_tokens_details: ReasoningTokens {
                reasoning_tokens: u.reasoning_tokens,
            },
        },
    };
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

#[derive(Serialize)]
struct OutResponse<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [OutChoice<'a>; 1],
    usage: OutUsage,
}

#[derive(Serialize)]
struct OutChoice<'a> {
    index: u32,
    message: OutMessage<'a>,
    logprobs: (),
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct OutMessage<'a> {
    role: &'static str,
    /// `null` when the answer is only tool calls.
    content: Option<String>,
    refusal: (),
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<OutCall<'a>>,
}

#[derive(Serialize)]
struct OutCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: OutFunction<'a>,
}

#[derive(Serialize)]
struct OutFunction<'a> {
    name: &'a str,
    arguments: String,
}

#[derive(Serialize)]
struct OutUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: CachedTokens,
    completion_tokens_details: ReasoningTokens,
}

#[derive(Serialize)]
struct CachedTokens {
    cached_tokens: u64,
}

#[derive(Serialize)]
struct ReasoningTokens {
    reasoning_tokens: u64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_whole_answer_reads_and_writes_back_the_same() {
        let body = br#"{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,
            "message":{"role":"assistant","content":"line one\nline \"two\"","tool_calls":[{"id":"t1","type":"function",
            "function":{"name":"get","arguments":"{\"city\":\"Paris\"}"}}]},"logprobs":null,"finish_reason":"tool_calls"}],
            "usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12,"prompt_tokens_details":{"cached_tokens":2}}}"#;
        let r = response_to_chat(body).unwrap();
        assert_eq!(r.id, "c1");
        assert_eq!(r.content[0], Part::Text("line one\nline \"two\"".into()));
        assert!(
            matches!(&r.content[1], Part::ToolUse { name, input, .. } if name == "get" && input["city"] == "Paris")
        );
        assert_eq!(r.stop_reason, Some(StopReason::ToolUse));
        assert_eq!(
            (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.cached_tokens),
            (5, 7, 2)
        );
        let again = response_to_chat(&chat_to_response(&r)).unwrap();
        assert_eq!(again, r);
        let v: Value = serde_json::from_slice(&chat_to_response(&r)).unwrap();
        assert_eq!(v["choices"][0]["message"]["tool_calls"][0]["type"], "function");
        assert_eq!(v["choices"][0]["logprobs"], Value::Null);
        assert_eq!(v["usage"]["total_tokens"], 12);
    }

    #[test]
    fn fields_of_an_unexpected_type_count_as_absent() {
        let body =
            br#"{"id":7,"model":null,"choices":[{"message":{"content":[{"type":"text","text":"x"}],"role":"assistant"},
            "finish_reason":{"odd":true}}],"usage":"none"}"#;
        let r = response_to_chat(body).unwrap();
        assert_eq!((r.id.as_str(), r.model.as_str()), ("", ""));
        assert!(r.content.is_empty());
        assert_eq!(r.stop_reason, None);
        assert_eq!(r.usage, Usage::default());
        assert!(response_to_chat(br#"{"choices":[]}"#).is_err());
        assert!(response_to_chat(b"not json").is_err());
        // Only tool calls: the content is null.
        let calls = ChatResponse {
            id: "c".into(),
            model: "m".into(),
            content: vec![Part::ToolUse {
                id: "t".into(),
                name: "n".into(),
                input: json!({}),
            }],
            stop_reason: Some(StopReason::ToolUse),
            stop_sequence: None,
            usage: Usage::default(),
        };
        let v: Value = serde_json::from_slice(&chat_to_response(&calls)).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], Value::Null);
    }
}
