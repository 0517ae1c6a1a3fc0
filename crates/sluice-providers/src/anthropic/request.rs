//! Anthropic Messages requests ⇄ the canonical request: system prompt, content blocks (text,
//! images, tool use and results), tools and tool choice.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::chat::{ChatRequest, Image, Message, Part, Role, Tool, ToolChoice};
use crate::error::RequestError;

/// Anthropic requires `max_tokens`; a request from a format where it is optional gets this.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

fn invalid(param: &'static str, expected: &'static str) -> RequestError {
    RequestError::InvalidType { param, expected }
}

/// Reads an Anthropic Messages request.
pub fn request_to_chat(body: &[u8]) -> Result<ChatRequest, RequestError> {
    let map: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| RequestError::InvalidJson { detail: e.to_string() })?;
    let mut req = ChatRequest::default();
    for (key, value) in map {
        match key.as_str() {
            "model" => req.model = value.as_str().unwrap_or_default().to_owned(),
            "system" => match &value {
                Value::String(s) => req.system.push(s.clone()),
                Value::Array(blocks) => {
                    for b in blocks {
                        if let Some(t) = b.get("text").and_then(Value::as_str) {
                            req.system.push(t.to_owned());
                        }
                    }
                }
                Value::Null => {}
                _ => return Err(invalid("system", "a string or an array of text blocks")),
            },
            "messages" => {
                let list = value.as_array().ok_or(invalid("messages", "an array"))?;
                for m in list {
                    let role = match m.get("role").and_then(Value::as_str) {
                        Some("user") => Role::User,
                        Some("assistant") => Role::Assistant,
                        _ => {
                            return Err(RequestError::InvalidValue {
                                param: "messages",
                                reason: "each message needs a role of user or assistant",
                            });
                        }
                    };
                    let content = read_blocks(m.get("content"))?;
                    req.messages.push(Message { role, content });
                }
            }
            "max_tokens" => req.max_tokens = value.as_u64(),
            "temperature" => req.temperature = value.as_f64(),
            "top_p" => req.top_p = value.as_f64(),
            "top_k" => req.top_k = value.as_u64(),
            "stop_sequences" => {
                req.stop = value
                    .as_array()
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default()
            }
            "stream" => req.stream = value.as_bool().unwrap_or(false),
            "tools" => {
                for t in value.as_array().map(Vec::as_slice).unwrap_or_default() {
                    if t.get("type").and_then(Value::as_str).is_some_and(|ty| ty != "custom") {
                        return Err(RequestError::Unsupported {
                            param: format!("tools[].type={}", t["type"].as_str().unwrap_or("?")),
                        });
                    }
                    req.tools.push(Tool {
                        name: t.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
                        description: t.get("description").and_then(Value::as_str).map(str::to_owned),
                        parameters: t
                            .get("input_schema")
                            .cloned()
                            .unwrap_or_else(|| json!({"type": "object"})),
                    });
                }
            }
            "tool_choice" => {
                let kind = value.get("type").and_then(Value::as_str).unwrap_or("auto");
                req.tool_choice = Some(match kind {
                    "auto" => ToolChoice::Auto,
                    "any" => ToolChoice::Required,
                    "none" => ToolChoice::None,
                    "tool" => {
                        ToolChoice::Tool(value.get("name").and_then(Value::as_str).unwrap_or_default().to_owned())
                    }
                    _ => return Err(invalid("tool_choice", "auto, any, tool or none")),
                });
                if value.get("disable_parallel_tool_use").and_then(Value::as_bool) == Some(true) {
                    req.parallel_tool_calls = Some(false);
                }
            }
            "metadata" => req.user = value.get("user_id").and_then(Value::as_str).map(str::to_owned),
            "service_tier" => {}
            _ if value.is_null() => {}
            _ => req.extra.push((key, value)),
        }
    }
    Ok(req)
}

fn read_blocks(content: Option<&Value>) -> Result<Vec<Part>, RequestError> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![Part::Text(s.clone())]),
        Some(Value::Array(blocks)) => blocks.iter().map(read_block).collect(),
        Some(_) => Err(invalid("content", "a string or an array of content blocks")),
    }
}

pub(super) fn read_block(b: &Value) -> Result<Part, RequestError> {
    let s = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    match b.get("type").and_then(Value::as_str) {
        Some("text") => Ok(Part::Text(s("text"))),
        Some("image") => {
            let src = b.get("source").ok_or(invalid("source", "an image source"))?;
            let field = |k: &str| src.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
            match src.get("type").and_then(Value::as_str) {
                Some("base64") => Ok(Part::Image(Image::Base64 {
                    media_type: field("media_type"),
                    data: field("data"),
                })),
                Some("url") => Ok(Part::Image(Image::Url(field("url")))),
                _ => Err(RequestError::Unsupported {
                    param: "image.source.type".to_owned(),
                }),
            }
        }
        Some("tool_use") => Ok(Part::ToolUse {
            id: s("id"),
            name: s("name"),
            input: b.get("input").cloned().unwrap_or_else(|| json!({})),
        }),
        Some("tool_result") => Ok(Part::ToolResult {
            tool_use_id: s("tool_use_id"),
            content: read_blocks(b.get("content"))?,
            is_error: b.get("is_error").and_then(Value::as_bool).unwrap_or(false),
        }),
        other => Err(RequestError::Unsupported {
            param: format!("content[].type={}", other.unwrap_or("?")),
        }),
    }
}

pub(super) fn block_value(p: &Part) -> Value {
    match p {
        Part::Text(t) => json!({"type": "text", "text": t}),
        Part::Image(Image::Base64 { media_type, data }) => {
            json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}})
        }
        Part::Image(Image::Url(url)) => json!({"type": "image", "source": {"type": "url", "url": url}}),
        Part::ToolUse { id, name, input } => {
            let input = if input.is_object() { input.clone() } else { json!({}) };
            json!({"type": "tool_use", "id": id, "name": name, "input": input})
        }
        Part::ToolResult {
            tool_use_id,
            content,
            is_error,
        } => {
            let mut v = json!({"type": "tool_result", "tool_use_id": tool_use_id,
                               "content": content.iter().map(block_value).collect::<Vec<_>>()});
            if *is_error {
                v["is_error"] = json!(true);
            }
            v
        }
    }
}

/// Builds an Anthropic Messages request for `model` from the canonical request.
pub fn chat_to_request(req: &ChatRequest, model: &str) -> Bytes {
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("max_tokens".into(), json!(req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)));
    if !req.system.is_empty() {
        out.insert("system".into(), json!(req.system.join("\n\n")));
    }
    // Anthropic wants turns to alternate; consecutive turns of one role are merged.
    let mut messages: Vec<(Role, Vec<Value>)> = Vec::new();
    for m in &req.messages {
        let blocks: Vec<Value> = m
            .content
            .iter()
            .filter(|p| !matches!(p, Part::Text(t) if t.is_empty()))
            .map(block_value)
            .collect();
        match messages.last_mut() {
            Some((role, b)) if *role == m.role => b.extend(blocks),
            _ => messages.push((m.role, blocks)),
        }
    }
    let messages: Vec<Value> = messages
        .into_iter()
        .map(|(role, blocks)| json!({"role": if role == Role::User { "user" } else { "assistant" }, "content": blocks}))
        .collect();
    out.insert("messages".into(), Value::Array(messages));
    if let Some(t) = req.temperature {
        out.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        out.insert("top_p".into(), json!(p));
    }
    if let Some(k) = req.top_k {
        out.insert("top_k".into(), json!(k));
    }
    if !req.stop.is_empty() {
        out.insert("stop_sequences".into(), json!(req.stop));
    }
    if req.stream {
        out.insert("stream".into(), json!(true));
    }
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut v = json!({"name": t.name, "input_schema": t.parameters});
                if let Some(d) = &t.description {
                    v["description"] = json!(d);
                }
                v
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    let no_parallel = req.parallel_tool_calls == Some(false) && !req.tools.is_empty();
    let choice = match &req.tool_choice {
        Some(ToolChoice::Auto) => Some(json!({"type": "auto"})),
        Some(ToolChoice::None) => Some(json!({"type": "none"})),
        Some(ToolChoice::Required) => Some(json!({"type": "any"})),
        Some(ToolChoice::Tool(name)) => Some(json!({"type": "tool", "name": name})),
        None if no_parallel => Some(json!({"type": "auto"})),
        None => None,
    };
    if let Some(mut c) = choice {
        if no_parallel {
            c["disable_parallel_tool_use"] = json!(true);
        }
        out.insert("tool_choice".into(), c);
    }
    if let Some(u) = &req.user {
        out.insert("metadata".into(), json!({"user_id": u}));
    }
    for (k, v) in &req.extra {
        out.insert(k.clone(), v.clone());
    }
    Bytes::from(serde_json::to_vec(&Value::Object(out)).unwrap_or_default())
}
