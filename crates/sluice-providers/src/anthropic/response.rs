//! Anthropic Messages responses ⇄ the canonical response: stop reasons, usage (cache reads and
//! writes included), whole answers.

use bytes::Bytes;
use serde_json::{Value, json};

use super::request::{block_value, read_block};
use crate::chat::{ChatResponse, Part, StopReason};
use crate::fault::MalformedResponse;
use crate::usage::Usage;

pub fn stop_reason_from(s: &str) -> StopReason {
    match s {
        "max_tokens" | "model_context_window_exceeded" => StopReason::MaxTokens,
        "stop_sequence" => StopReason::StopSequence,
        "tool_use" => StopReason::ToolUse,
        "refusal" => StopReason::ContentFilter,
        _ => StopReason::EndTurn,
    }
}

pub fn stop_reason_str(r: StopReason) -> &'static str {
    match r {
        StopReason::EndTurn => "end_turn",
        StopReason::MaxTokens => "max_tokens",
        StopReason::StopSequence => "stop_sequence",
        StopReason::ToolUse => "tool_use",
        StopReason::ContentFilter => "refusal",
    }
}

/// Anthropic's usage (input tokens exclude cache reads and writes) → canonical usage (prompt
/// tokens include them).
pub fn usage_from(v: &Value) -> Usage {
    let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let (input, read, write, output) = (
        n("input_tokens"),
        n("cache_read_input_tokens"),
        n("cache_creation_input_tokens"),
        n("output_tokens"),
    );
    let prompt = input + read + write;
    Usage {
        prompt_tokens: prompt,
        completion_tokens: output,
        total_tokens: prompt + output,
        cached_tokens: read,
        cache_write_tokens: write,
        reasoning_tokens: 0,
    }
}

pub fn usage_value(u: &Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens.saturating_sub(u.cached_tokens + u.cache_write_tokens),
        "output_tokens": u.completion_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cached_tokens,
    })
}

/// Reads an Anthropic Messages response.
pub fn response_to_chat(body: &[u8]) -> Result<ChatResponse, MalformedResponse> {
    let v: Value = serde_json::from_slice(body).map_err(|e| MalformedResponse(e.to_string()))?;
    let blocks = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| MalformedResponse("no content array".to_owned()))?;
    let content = blocks
        .iter()
        .filter_map(|b| match b.get("type").and_then(Value::as_str) {
            // Thinking blocks have no place in an OpenAI answer; everything else is kept.
            Some("thinking" | "redacted_thinking") => None,
            _ => read_block(b).ok(),
        })
        .collect();
    Ok(ChatResponse {
        id: v.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
        model: v.get("model").and_then(Value::as_str).unwrap_or_default().to_owned(),
        content,
        stop_reason: v.get("stop_reason").and_then(Value::as_str).map(stop_reason_from),
        stop_sequence: v.get("stop_sequence").and_then(Value::as_str).map(str::to_owned),
        usage: v.get("usage").map(usage_from).unwrap_or_default(),
    })
}

pub(super) fn message_id(id: &str) -> String {
    if id.starts_with("msg_") {
        id.to_owned()
    } else {
        format!("msg_{id}")
    }
}

/// Writes an Anthropic Messages response.
pub fn chat_to_response(r: &ChatResponse) -> Bytes {
    let body = json!({
        "id": message_id(&r.id),
        "type": "message",
        "role": "assistant",
        "model": r.model,
        "content": r.content.iter().filter(|p| !matches!(p, Part::Text(t) if t.is_empty())).map(block_value).collect::<Vec<_>>(),
        "stop_reason": stop_reason_str(r.stop_reason.unwrap_or(StopReason::EndTurn)),
        "stop_sequence": r.stop_sequence,
        "usage": usage_value(&r.usage),
    });
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}
