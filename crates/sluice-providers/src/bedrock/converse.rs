//! Converse requests and responses ⇄ the canonical exchange (inline images only; `top_k` through
//! `additionalModelRequestFields`).

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::chat::{ChatRequest, ChatResponse, Image, Part, Role, StopReason, ToolChoice};
use crate::error::RequestError;
use crate::fault::MalformedResponse;
use crate::usage::Usage;

fn image_format(media_type: &str) -> Option<&'static str> {
    match media_type {
        "image/png" => Some("png"),
        "image/jpeg" | "image/jpg" => Some("jpeg"),
        "image/gif" => Some("gif"),
        "image/webp" => Some("webp"),
        _ => None,
    }
}

fn block(p: &Part) -> Result<Option<Value>, RequestError> {
    Ok(Some(match p {
        Part::Text(t) if t.is_empty() => return Ok(None),
        Part::Text(t) => json!({"text": t}),
        Part::Image(Image::Base64 { media_type, data }) => {
            let format = image_format(media_type).ok_or_else(|| RequestError::Unsupported {
                param: format!("image type {media_type}"),
            })?;
            json!({"image": {"format": format, "source": {"bytes": data}}})
        }
        Part::Image(Image::Url(_)) => {
            return Err(RequestError::Unsupported {
                param: "image URLs (Bedrock takes inline images only)".to_owned(),
            });
        }
        Part::ToolUse { id, name, input } => {
            let input = if input.is_object() { input.clone() } else { json!({}) };
            json!({"toolUse": {"toolUseId": id, "name": name, "input": input}})
        }
        Part::ToolResult {
            tool_use_id,
            content,
            is_error,
        } => {
            let content: Vec<Value> = content.iter().filter_map(|c| block(c).ok().flatten()).collect();
            let content = if content.is_empty() {
                vec![json!({"text": ""})]
            } else {
                content
            };
            json!({"toolResult": {"toolUseId": tool_use_id, "content": content,
                                  "status": if *is_error { "error" } else { "success" }}})
        }
    }))
}

/// Builds a Converse request body from the canonical request.
pub fn chat_to_request(req: &ChatRequest) -> Result<Bytes, RequestError> {
    let mut messages: Vec<Value> = Vec::new();
    for m in &req.messages {
        let mut blocks = Vec::new();
        for p in &m.content {
            if let Some(b) = block(p)? {
                blocks.push(b);
            }
        }
        let role = if m.role == Role::Assistant { "assistant" } else { "user" };
        match messages.last_mut() {
            Some(last) if last["role"] == role => {
                if let Some(Value::Array(c)) = last.get_mut("content") {
                    c.extend(blocks);
                }
            }
            _ => messages.push(json!({"role": role, "content": blocks})),
        }
    }
    let mut out = Map::new();
    out.insert("messages".into(), Value::Array(messages));
    if !req.system.is_empty() {
        let system: Vec<Value> = req.system.iter().map(|s| json!({"text": s})).collect();
        out.insert("system".into(), Value::Array(system));
    }
    let mut cfg = Map::new();
    if let Some(n) = req.max_tokens {
        cfg.insert("maxTokens".into(), json!(n));
    }
    if let Some(t) = req.temperature {
        cfg.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        cfg.insert("topP".into(), json!(p));
    }
    if !req.stop.is_empty() {
        cfg.insert("stopSequences".into(), json!(req.stop));
    }
    if !cfg.is_empty() {
        out.insert("inferenceConfig".into(), Value::Object(cfg));
    }
    if !req.tools.is_empty() && req.tool_choice != Some(ToolChoice::None) {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut spec = json!({"name": t.name, "inputSchema": {"json": t.parameters}});
                if let Some(d) = &t.description {
                    spec["description"] = json!(d);
                }
                json!({"toolSpec": spec})
            })
            .collect();
        let mut tool_config = json!({"tools": tools});
        match &req.tool_choice {
            Some(ToolChoice::Required) => tool_config["toolChoice"] = json!({"any": {}}),
            Some(ToolChoice::Tool(name)) => tool_config["toolChoice"] = json!({"tool": {"name": name}}),
            Some(ToolChoice::Auto) => tool_config["toolChoice"] = json!({"auto": {}}),
            _ => {}
        }
        out.insert("toolConfig".into(), tool_config);
    }
    if let Some(k) = req.top_k {
        // Model-specific fields go through additionalModelRequestFields.
        out.insert("additionalModelRequestFields".into(), json!({"top_k": k}));
    }
    for (k, v) in &req.extra {
        out.insert(k.clone(), v.clone());
    }
    Ok(Bytes::from(serde_json::to_vec(&Value::Object(out)).unwrap_or_default()))
}

pub fn stop_reason_from(s: &str) -> StopReason {
    match s {
        "max_tokens" | "model_context_window_exceeded" => StopReason::MaxTokens,
        "stop_sequence" => StopReason::StopSequence,
        "tool_use" => StopReason::ToolUse,
        "guardrail_intervened" | "content_filtered" => StopReason::ContentFilter,
        _ => StopReason::EndTurn,
    }
}

pub fn usage_from(v: &Value) -> Usage {
    let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let (input, read, write, output) = (
        n("inputTokens"),
        n("cacheReadInputTokens"),
        n("cacheWriteInputTokens"),
        n("outputTokens"),
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

fn read_block(b: &Value) -> Option<Part> {
    if let Some(t) = b.get("text").and_then(Value::as_str) {
        return Some(Part::Text(t.to_owned()));
    }
    let t = b.get("toolUse")?;
    Some(Part::ToolUse {
        id: t
            .get("toolUseId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        name: t.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
        input: t.get("input").cloned().unwrap_or_else(|| json!({})),
    })
}

/// Reads a Converse response.
pub fn response_to_chat(body: &[u8], model: &str) -> Result<ChatResponse, MalformedResponse> {
    let v: Value = serde_json::from_slice(body).map_err(|e| MalformedResponse(e.to_string()))?;
    let content = v
        .pointer("/output/message/content")
        .and_then(Value::as_array)
        .ok_or_else(|| MalformedResponse("no output message".to_owned()))?
        .iter()
        .filter_map(read_block)
        .collect();
    Ok(ChatResponse {
        id: "bedrock".to_owned(),
        model: model.to_owned(),
        content,
        stop_reason: v.get("stopReason").and_then(Value::as_str).map(stop_reason_from),
        stop_sequence: None,
        usage: v.get("usage").map(usage_from).unwrap_or_default(),
    })
}
