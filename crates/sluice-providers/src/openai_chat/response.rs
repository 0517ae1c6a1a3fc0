//! OpenAI chat responses ⇄ the canonical response: finish reasons, usage, whole answers.

use bytes::Bytes;
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

/// Reads an OpenAI chat response.
pub fn response_to_chat(body: &[u8]) -> Result<ChatResponse, MalformedResponse> {
    let v: Value = serde_json::from_slice(body).map_err(|e| MalformedResponse(e.to_string()))?;
    let choice = v
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or_else(|| MalformedResponse("no choices".to_owned()))?;
    let msg = choice.get("message").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    if let Some(t) = msg.get("content").and_then(Value::as_str)
        && !t.is_empty()
    {
        content.push(Part::Text(t.to_owned()));
    }
    if let Some(calls) = msg.get("tool_calls").and_then(Value::as_array) {
        for c in calls {
            let f = c.get("function").unwrap_or(&Value::Null);
            content.push(Part::ToolUse {
                id: c.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
                name: f.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
                input: parse_arguments(f.get("arguments").and_then(Value::as_str).unwrap_or("")),
            });
        }
    }
    Ok(ChatResponse {
        id: v.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
        model: v.get("model").and_then(Value::as_str).unwrap_or_default().to_owned(),
        content,
        stop_reason: choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(stop_reason_from),
        stop_sequence: None,
        usage: usage_from(v.get("usage")),
    })
}

pub(super) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Writes an OpenAI chat response.
pub fn chat_to_response(r: &ChatResponse) -> Bytes {
    let text = joined_text(&r.content);
    let calls: Vec<Value> = r
        .content
        .iter()
        .filter_map(|p| match p {
            Part::ToolUse { id, name, input } => Some(json!({
                "id": id, "type": "function", "function": {"name": name, "arguments": arguments_text(input)}
            })),
            _ => None,
        })
        .collect();
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) },
        "refusal": null,
    });
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let body = json!({
        "id": r.id,
        "object": "chat.completion",
        "created": now(),
        "model": r.model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(r.stop_reason.unwrap_or(StopReason::EndTurn)),
        }],
        "usage": usage_value(&r.usage),
    });
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}
