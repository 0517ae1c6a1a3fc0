//! Responses API requests → the canonical request: instructions, input items, tools, tool
//! choice; the parameters only the provider's bookkeeping needs are accepted and not carried.

use serde_json::{Map, Value, json};

use crate::chat::{ChatRequest, Image, Message, Part, Role, Tool, ToolChoice, parse_arguments};
use crate::error::RequestError;

fn invalid(param: &'static str, expected: &'static str) -> RequestError {
    RequestError::InvalidType { param, expected }
}

fn unsupported(param: impl Into<String>) -> RequestError {
    RequestError::Unsupported { param: param.into() }
}

/// Parameters that shape the provider's bookkeeping, not the answer: accepted, not carried.
const IGNORED: &[&str] = &[
    "store",
    "metadata",
    "service_tier",
    "include",
    "truncation",
    "background",
];

/// Reads a Responses API request.
pub fn request_to_chat(body: &[u8]) -> Result<ChatRequest, RequestError> {
    let map: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| RequestError::InvalidJson { detail: e.to_string() })?;
    let mut req = ChatRequest::default();
    for (key, value) in map {
        match key.as_str() {
            "model" => req.model = value.as_str().unwrap_or_default().to_owned(),
            "instructions" => {
                if let Some(s) = value.as_str() {
                    req.system.push(s.to_owned());
                }
            }
            "input" => read_input(&value, &mut req)?,
            "max_output_tokens" => req.max_tokens = value.as_u64(),
            "temperature" => req.temperature = value.as_f64(),
            "top_p" => req.top_p = value.as_f64(),
            "stream" => req.stream = value.as_bool().unwrap_or(false),
            "tools" => {
                for t in value.as_array().map(Vec::as_slice).unwrap_or_default() {
                    let kind = t.get("type").and_then(Value::as_str).unwrap_or("function");
                    if kind != "function" {
                        return Err(unsupported(format!("tools[].type={kind}")));
                    }
                    req.tools.push(Tool {
                        name: t.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
                        description: t.get("description").and_then(Value::as_str).map(str::to_owned),
                        parameters: t
                            .get("parameters")
                            .cloned()
                            .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                    });
                }
            }
            "tool_choice" => {
                req.tool_choice = match &value {
                    Value::String(s) => Some(match s.as_str() {
                        "auto" => ToolChoice::Auto,
                        "none" => ToolChoice::None,
                        "required" => ToolChoice::Required,
                        _ => return Err(invalid("tool_choice", "auto, none, required or a function")),
                    }),
                    Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => Some(
                        ToolChoice::Tool(o.get("name").and_then(Value::as_str).unwrap_or_default().to_owned()),
                    ),
                    Value::Null => None,
                    _ => return Err(unsupported("tool_choice")),
                }
            }
            "parallel_tool_calls" => req.parallel_tool_calls = value.as_bool(),
            "user" => req.user = value.as_str().map(str::to_owned),
            // Plain text output is what a chat upstream gives anyway.
            "text"
                if value
                    .pointer("/format/type")
                    .and_then(Value::as_str)
                    .is_none_or(|t| t == "text") => {}
            k if IGNORED.contains(&k) => {}
            _ if value.is_null() => {}
            _ => req.extra.push((key, value)),
        }
    }
    Ok(req)
}

fn read_input(value: &Value, req: &mut ChatRequest) -> Result<(), RequestError> {
    let items = match value {
        Value::String(s) => {
            req.messages.push(Message {
                role: Role::User,
                content: vec![Part::Text(s.clone())],
            });
            return Ok(());
        }
        Value::Array(items) => items,
        _ => return Err(invalid("input", "a string or an array of input items")),
    };
    for item in items {
        let kind = item.get("type").and_then(Value::as_str).unwrap_or("message");
        let s = |k: &str| item.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        match kind {
            "message" => {
                let role = item.get("role").and_then(Value::as_str).unwrap_or("user");
                let content = read_content(item.get("content"))?;
                match role {
                    "system" | "developer" => req.system.push(joined(&content)),
                    "assistant" => push(req, Role::Assistant, content),
                    "user" => push(req, Role::User, content),
                    _ => {
                        return Err(RequestError::InvalidValue {
                            param: "input",
                            reason: "a message's role must be user, assistant, system or developer",
                        });
                    }
                }
            }
            "function_call" => push(
                req,
                Role::Assistant,
                vec![Part::ToolUse {
                    id: s("call_id"),
                    name: s("name"),
                    input: parse_arguments(&s("arguments")),
                }],
            ),
            "function_call_output" => {
                let output = match item.get("output") {
                    Some(Value::String(t)) => vec![Part::Text(t.clone())],
                    other => read_content(other)?,
                };
                push(
                    req,
                    Role::User,
                    vec![Part::ToolResult {
                        tool_use_id: s("call_id"),
                        content: output,
                        is_error: false,
                    }],
                );
            }
            other => return Err(unsupported(format!("input[].type={other}"))),
        }
    }
    Ok(())
}

/// Appends a turn, merging it into the previous one of the same role.
fn push(req: &mut ChatRequest, role: Role, content: Vec<Part>) {
    match req.messages.last_mut() {
        Some(last) if last.role == role => last.content.extend(content),
        _ => req.messages.push(Message { role, content }),
    }
}

pub(super) fn joined(parts: &[Part]) -> String {
    parts
        .iter()
        .filter_map(|p| match p {
            Part::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn read_content(content: Option<&Value>) -> Result<Vec<Part>, RequestError> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![Part::Text(s.clone())]),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| match p.get("type").and_then(Value::as_str) {
                Some("input_text" | "output_text" | "text") => Ok(Part::Text(
                    p.get("text").and_then(Value::as_str).unwrap_or_default().to_owned(),
                )),
                Some("input_image") => match p.get("image_url").and_then(Value::as_str) {
                    Some(url) => Ok(Part::Image(Image::from_url(url))),
                    None => Err(unsupported("input_image.file_id")),
                },
                other => Err(unsupported(format!("content[].type={}", other.unwrap_or("?")))),
            })
            .collect(),
        Some(_) => Err(invalid("content", "a string or an array of content parts")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_input_items_into_the_conversation() {
        let body = json!({
            "model": "m", "instructions": "Be brief.", "max_output_tokens": 50,
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "Weather?"},
                                             {"type": "input_image", "image_url": "data:image/png;base64,AA=="}]},
                {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{\"city\":\"Oslo\"}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "Sunny"}
            ],
            "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}}],
            "store": true, "text": {"format": {"type": "text"}}
        });
        let r = request_to_chat(body.to_string().as_bytes()).unwrap();
        assert_eq!(r.system, vec!["Be brief."]);
        assert_eq!(r.max_tokens, Some(50));
        assert_eq!(r.messages.len(), 3);
        assert_eq!(r.messages[1].role, Role::Assistant);
        assert!(matches!(&r.messages[2].content[0], Part::ToolResult { tool_use_id, .. } if tool_use_id == "call_1"));
        assert!(r.extra.is_empty());
        let stored = json!({"model": "m", "input": "hi", "previous_response_id": "resp_1"});
        let r = request_to_chat(stored.to_string().as_bytes()).unwrap();
        assert_eq!(r.extra[0].0, "previous_response_id");
        let builtin = json!({"model": "m", "input": "hi", "tools": [{"type": "web_search"}]});
        assert_eq!(
            request_to_chat(builtin.to_string().as_bytes()).unwrap_err().code(),
            "unsupported_parameter"
        );
    }
}
