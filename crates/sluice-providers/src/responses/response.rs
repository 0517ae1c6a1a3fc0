//! Whole Response objects ⇄ the canonical response, and the output items and envelope the
//! stream events reuse.

use bytes::Bytes;
use serde_json::{Value, json};

use super::request::joined;
use crate::chat::{ChatResponse, Part, StopReason, arguments_text, parse_arguments};
use crate::fault::MalformedResponse;
use crate::usage::Usage;

pub(super) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(super) fn usage_value(u: &Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    })
}

pub(super) fn response_id(id: &str) -> String {
    let id = id
        .trim_start_matches("chatcmpl-")
        .trim_start_matches("msg_")
        .trim_start_matches("resp_");
    format!("resp_{id}")
}

pub(super) fn message_item(id: &str, text: &str, done: bool) -> Value {
    let content = if done {
        json!([{"type": "output_text", "text": text, "annotations": []}])
    } else {
        json!([])
    };
    json!({"type": "message", "id": id, "status": if done { "completed" } else { "in_progress" },
           "role": "assistant", "content": content})
}

pub(super) fn call_item(id: &str, call_id: &str, name: &str, arguments: &str, done: bool) -> Value {
    json!({"type": "function_call", "id": id, "call_id": call_id, "name": name, "arguments": arguments,
           "status": if done { "completed" } else { "in_progress" }})
}

/// The Response object around `output`.
pub(super) fn envelope(
    id: &str,
    model: &str,
    created: u64,
    output: Vec<Value>,
    stop: Option<StopReason>,
    usage: Option<&Usage>,
) -> Value {
    let (status, incomplete) = match stop {
        None => ("in_progress", Value::Null),
        Some(StopReason::MaxTokens) => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some(StopReason::ContentFilter) => ("incomplete", json!({"reason": "content_filter"})),
        Some(_) => ("completed", Value::Null),
    };
    json!({
        "id": id, "object": "response", "created_at": created, "status": status, "error": null,
        "incomplete_details": incomplete, "instructions": null, "max_output_tokens": null, "metadata": {},
        "model": model, "output": output, "parallel_tool_calls": true, "temperature": null,
        "tool_choice": "auto", "tools": [], "top_p": null, "text": {"format": {"type": "text"}},
        "usage": usage.map(usage_value),
    })
}

/// Reads a whole Response object: its message text and function calls, status and usage.
pub fn response_to_chat(body: &[u8]) -> Result<ChatResponse, MalformedResponse> {
    let v: Value = serde_json::from_slice(body).map_err(|e| MalformedResponse(e.to_string()))?;
    let output = v
        .get("output")
        .and_then(Value::as_array)
        .ok_or_else(|| MalformedResponse("no output".to_owned()))?;
    let text_of = |item: &Value, key: &str| item.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
    let mut content = Vec::new();
    for item in output {
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                let text: String = item
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|c| c.get("type").and_then(Value::as_str) == Some("output_text"))
                    .filter_map(|c| c.get("text").and_then(Value::as_str))
                    .collect();
                if !text.is_empty() {
                    content.push(Part::Text(text));
                }
            }
            Some("function_call") => content.push(Part::ToolUse {
                id: text_of(item, "call_id"),
                name: text_of(item, "name"),
                input: parse_arguments(&text_of(item, "arguments")),
            }),
            _ => {}
        }
    }
    let calls = content.iter().any(|p| matches!(p, Part::ToolUse { .. }));
    let stop_reason = match (
        v.get("status").and_then(Value::as_str),
        v.pointer("/incomplete_details/reason").and_then(Value::as_str),
    ) {
        (Some("incomplete"), Some("max_output_tokens")) => Some(StopReason::MaxTokens),
        (Some("incomplete"), Some("content_filter")) => Some(StopReason::ContentFilter),
        (Some("completed"), _) if calls => Some(StopReason::ToolUse),
        (Some("completed"), _) => Some(StopReason::EndTurn),
        _ => None,
    };
    let u = v.get("usage").unwrap_or(&Value::Null);
    let n = |p: &str| u.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let usage = Usage {
        prompt_tokens: n("/input_tokens"),
        completion_tokens: n("/output_tokens"),
        total_tokens: n("/input_tokens") + n("/output_tokens"),
        cached_tokens: n("/input_tokens_details/cached_tokens"),
        reasoning_tokens: n("/output_tokens_details/reasoning_tokens"),
        ..Usage::default()
    };
    Ok(ChatResponse {
        id: text_of(&v, "id"),
        model: text_of(&v, "model"),
        content,
        stop_reason,
        stop_sequence: None,
        usage,
    })
}

/// Writes a whole answer as a Response object.
pub fn chat_to_response(r: &ChatResponse) -> Bytes {
    let id = response_id(&r.id);
    let mut output = Vec::new();
    let text = joined(&r.content);
    if !text.is_empty() {
        output.push(message_item(
            &format!("msg_{}", id.trim_start_matches("resp_")),
            &text,
            true,
        ));
    }
    for (i, p) in r.content.iter().enumerate() {
        if let Part::ToolUse {
            id: call_id,
            name,
            input,
        } = p
        {
            let item_id = format!("fc_{i}_{}", id.trim_start_matches("resp_"));
            output.push(call_item(&item_id, call_id, name, &arguments_text(input), true));
        }
    }
    let body = envelope(
        &id,
        &r.model,
        now(),
        output,
        Some(r.stop_reason.unwrap_or(StopReason::EndTurn)),
        Some(&r.usage),
    );
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}
