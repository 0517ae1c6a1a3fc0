//! OpenAI chat requests ⇄ the canonical request: what the reader (`read.rs`) makes of members,
//! messages, content parts, tools and tool choice, and building a request for an
//! OpenAI-compatible upstream.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::chat::{ChatRequest, Image, Message, Part, Role, Tool, ToolChoice, arguments_text, parse_arguments};
use crate::error::RequestError;

/// Request parameters that are the target's business, not meaning: accepted and not carried.
const IGNORED: &[&str] = &["stream_options", "store", "service_tier", "metadata"];

pub(super) fn invalid(param: &'static str, expected: &'static str) -> RequestError {
    RequestError::InvalidType { param, expected }
}

/// A top-level member other than `messages`, read as a tree, into the request.
pub(super) fn member(req: &mut ChatRequest, key: &str, value: Value) -> Result<(), RequestError> {
    match key {
        "model" => req.model = value.as_str().unwrap_or_default().to_owned(),
        "max_tokens" | "max_completion_tokens" => {
            if !value.is_null() {
                req.max_tokens = Some(value.as_u64().ok_or(invalid("max_tokens", "a positive integer"))?);
            }
        }
        "temperature" => req.temperature = value.as_f64(),
        "top_p" => req.top_p = value.as_f64(),
        "stop" => {
            req.stop = match value {
                Value::String(s) => vec![s],
                Value::Array(a) => a.into_iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
                Value::Null => Vec::new(),
                _ => return Err(invalid("stop", "a string or an array of strings")),
            }
        }
        "stream" => req.stream = value.as_bool().unwrap_or(false),
        "stream_options" => {
            req.include_usage = value.get("include_usage").and_then(Value::as_bool).unwrap_or(false);
        }
        "tools" => req.tools = read_tools(&value)?,
        "tool_choice" => req.tool_choice = read_tool_choice(&value)?,
        "parallel_tool_calls" => req.parallel_tool_calls = value.as_bool(),
        "user" => req.user = value.as_str().map(str::to_owned),
        k if IGNORED.contains(&k) => {}
        // Values that ask for nothing beyond the default are no request at all.
        "n" if value.as_u64() == Some(1) => {}
        "logprobs" if value == Value::Bool(false) => {}
        "presence_penalty" | "frequency_penalty" if value.as_f64() == Some(0.0) => {}
        _ if value.is_null() => {}
        _ => req.extra.push((key.to_owned(), value)),
    }
    Ok(())
}

pub(super) fn no_role() -> RequestError {
    RequestError::InvalidValue {
        param: "messages",
        reason: "each message needs a role of system, developer, user, assistant or tool",
    }
}

/// An assistant turn's tool calls, appended to its parts.
pub(super) fn tool_calls(calls: &Value, parts: &mut Vec<Part>) {
    for c in calls.as_array().map(Vec::as_slice).unwrap_or_default() {
        let f = c.get("function").unwrap_or(&Value::Null);
        parts.push(Part::ToolUse {
            id: c.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
            name: f.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
            input: parse_arguments(f.get("arguments").and_then(Value::as_str).unwrap_or("")),
        });
    }
}

/// The messages from a tree (the single-pass reader's reference in the tests).
#[cfg(test)]
pub(super) fn read_messages(value: &Value, req: &mut ChatRequest) -> Result<(), RequestError> {
    let list = value.as_array().ok_or(invalid("messages", "an array"))?;
    for m in list {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        match role {
            "system" | "developer" => req.system.push(text_of(m.get("content"))),
            "user" => push(req, Role::User, read_content(m.get("content"))?),
            "assistant" => {
                let mut parts = read_content(m.get("content"))?;
                if let Some(calls) = m.get("tool_calls") {
                    tool_calls(calls, &mut parts);
                }
                push(req, Role::Assistant, parts);
            }
            "tool" => {
                let result = Part::ToolResult {
                    tool_use_id: m
                        .get("tool_call_id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    content: read_content(m.get("content"))?,
                    is_error: false,
                };
                push(req, Role::User, vec![result]);
            }
            _ => return Err(no_role()),
        }
    }
    Ok(())
}

/// Appends a turn, merging it into the previous one when the role repeats (tool results that
/// follow one another form one user turn).
pub(super) fn push(req: &mut ChatRequest, role: Role, content: Vec<Part>) {
    if let Some(last) = req.messages.last_mut()
        && last.role == role
    {
        // Tool results go before any text of the same turn.
        if content.iter().all(|p| matches!(p, Part::ToolResult { .. }))
            && last.content.iter().all(|p| matches!(p, Part::ToolResult { .. }))
        {
            last.content.extend(content);
            return;
        }
    }
    req.messages.push(Message { role, content });
}

pub(super) fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

pub(super) fn read_content(content: Option<&Value>) -> Result<Vec<Part>, RequestError> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![Part::Text(s.clone())]),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => Ok(Part::Text(
                    p.get("text").and_then(Value::as_str).unwrap_or_default().to_owned(),
                )),
                Some("image_url") => {
                    let url = p
                        .get("image_url")
                        .and_then(|i| i.get("url").or(Some(i)))
                        .and_then(Value::as_str)
                        .ok_or(invalid("image_url", "an object with a url"))?;
                    Ok(Part::Image(Image::from_url(url)))
                }
                _ => Err(RequestError::Unsupported {
                    param: format!(
                        "messages[].content[].type={}",
                        p.get("type").and_then(Value::as_str).unwrap_or("?")
                    ),
                }),
            })
            .collect(),
        Some(_) => Err(invalid("content", "a string or an array of parts")),
    }
}

fn read_tools(value: &Value) -> Result<Vec<Tool>, RequestError> {
    let Some(list) = value.as_array() else {
        return Ok(Vec::new());
    };
    list.iter()
        .map(|t| {
            if t.get("type").and_then(Value::as_str).unwrap_or("function") != "function" {
                return Err(RequestError::Unsupported {
                    param: "tools[].type".to_owned(),
                });
            }
            let f = t.get("function").ok_or(invalid("tools", "function tools"))?;
            Ok(Tool {
                name: f.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
                description: f.get("description").and_then(Value::as_str).map(str::to_owned),
                parameters: f
                    .get("parameters")
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            })
        })
        .collect()
}

fn read_tool_choice(value: &Value) -> Result<Option<ToolChoice>, RequestError> {
    Ok(match value {
        Value::Null => None,
        Value::String(s) => Some(match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            _ => return Err(invalid("tool_choice", "auto, none, required or a function")),
        }),
        Value::Object(o) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or(invalid("tool_choice", "auto, none, required or a function"))?;
            Some(ToolChoice::Tool(name.to_owned()))
        }
        _ => return Err(invalid("tool_choice", "auto, none, required or a function")),
    })
}

/// Builds an OpenAI chat request for `model` from the canonical request.
pub fn chat_to_request(req: &ChatRequest, model: &str) -> Bytes {
    Bytes::from(serde_json::to_vec(&chat_to_value(req, model)).unwrap_or_default())
}

/// The OpenAI chat request for `model` as JSON (not yet written out).
pub fn chat_to_value(req: &ChatRequest, model: &str) -> Value {
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if !req.system.is_empty() {
        messages.push(json!({"role": "system", "content": req.system.join("\n\n")}));
    }
    for m in &req.messages {
        match m.role {
            Role::Assistant => {
                let text = joined_text(&m.content);
                let calls: Vec<Value> = m
                    .content
                    .iter()
                    .filter_map(|p| match p {
                        Part::ToolUse { id, name, input } => Some(json!({
                            "id": id, "type": "function",
                            "function": {"name": name, "arguments": arguments_text(input)}
                        })),
                        _ => None,
                    })
                    .collect();
                let mut msg = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { Value::String(text) }});
                if !calls.is_empty() {
                    msg["tool_calls"] = Value::Array(calls);
                }
                messages.push(msg);
            }
            Role::User => {
                // Tool results become `tool` messages, before the rest of the turn.
                for p in &m.content {
                    if let Part::ToolResult {
                        tool_use_id, content, ..
                    } = p
                    {
                        messages.push(
                            json!({"role": "tool", "tool_call_id": tool_use_id, "content": content_value(content)}),
                        );
                    }
                }
                let rest: Vec<Part> = m
                    .content
                    .iter()
                    .filter(|p| !matches!(p, Part::ToolResult { .. }))
                    .cloned()
                    .collect();
                if !rest.is_empty() {
                    messages.push(json!({"role": "user", "content": content_value(&rest)}));
                }
            }
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("messages".into(), Value::Array(messages));
    if let Some(n) = req.max_tokens {
        out.insert("max_tokens".into(), json!(n));
    }
    if let Some(t) = req.temperature {
        out.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        out.insert("top_p".into(), json!(p));
    }
    if !req.stop.is_empty() {
        out.insert("stop".into(), json!(req.stop));
    }
    if req.stream {
        out.insert("stream".into(), json!(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut f = json!({"name": t.name, "parameters": t.parameters});
                if let Some(d) = &t.description {
                    f["description"] = json!(d);
                }
                json!({"type": "function", "function": f})
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(c) = &req.tool_choice {
        out.insert(
            "tool_choice".into(),
            match c {
                ToolChoice::Auto => json!("auto"),
                ToolChoice::None => json!("none"),
                ToolChoice::Required => json!("required"),
                ToolChoice::Tool(name) => json!({"type": "function", "function": {"name": name}}),
            },
        );
    }
    if let Some(p) = req.parallel_tool_calls
        && !req.tools.is_empty()
    {
        out.insert("parallel_tool_calls".into(), json!(p));
    }
    if let Some(u) = &req.user {
        out.insert("user".into(), json!(u));
    }
    for (k, v) in &req.extra {
        out.insert(k.clone(), v.clone());
    }
    Value::Object(out)
}

pub(super) fn joined_text(parts: &[Part]) -> String {
    parts
        .iter()
        .filter_map(|p| match p {
            Part::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("")
}

/// Message content: a plain string when it is only text, else an array of parts.
fn content_value(parts: &[Part]) -> Value {
    if parts.iter().all(|p| matches!(p, Part::Text(_))) {
        return Value::String(joined_text(parts));
    }
    Value::Array(
        parts
            .iter()
            .filter_map(|p| match p {
                Part::Text(t) => Some(json!({"type": "text", "text": t})),
                Part::Image(i) => Some(json!({"type": "image_url", "image_url": {"url": i.to_url()}})),
                _ => None,
            })
            .collect(),
    )
}
