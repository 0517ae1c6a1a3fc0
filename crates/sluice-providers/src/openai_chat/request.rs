//! OpenAI chat requests ⇄ the canonical request: reading messages, content parts, tools and
//! tool choice, and building a request for an OpenAI-compatible upstream.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::chat::{ChatRequest, Image, Message, Part, Role, Tool, ToolChoice, arguments_text, parse_arguments};
use crate::error::RequestError;
use crate::lenient::{Fields, Text};

/// Request parameters that are the target's business, not meaning: accepted and not carried.
const IGNORED: &[&str] = &["stream_options", "store", "service_tier", "metadata"];

fn invalid(param: &'static str, expected: &'static str) -> RequestError {
    RequestError::InvalidType { param, expected }
}

/// Reads an OpenAI chat request: its members read from the body's bytes, the messages into
/// borrowed fields (their text copied once), JSON trees only for the rarer members.
pub fn request_to_chat(body: &[u8]) -> Result<ChatRequest, RequestError> {
    let fields: Fields<'_> =
        serde_json::from_slice(body).map_err(|e| RequestError::InvalidJson { detail: e.to_string() })?;
    let mut req = ChatRequest::default();
    for (key, raw) in fields.0 {
        if key == "messages" {
            read_messages_raw(raw, &mut req)?;
            continue;
        }
        let value = tree(raw)?;
        match key.as_ref() {
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
            _ => req.extra.push((key.into_owned(), value)),
        }
    }
    Ok(req)
}

/// A member's value as a JSON tree.
fn tree(raw: &RawValue) -> Result<Value, RequestError> {
    serde_json::from_str(raw.get()).map_err(|e| RequestError::InvalidJson { detail: e.to_string() })
}

/// One message's members the canonical request takes (the rest skipped unread).
#[derive(Deserialize)]
struct WireMessage<'a> {
    #[serde(borrow, default)]
    role: Option<Text<'a>>,
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tool_calls: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tool_call_id: Option<Text<'a>>,
}

/// The messages, read into borrowed fields; any shape that does not read so (not an array of
/// objects) goes through the tree reader, which says what is wrong.
fn read_messages_raw(raw: &RawValue, req: &mut ChatRequest) -> Result<(), RequestError> {
    let Ok(list) = serde_json::from_str::<Vec<WireMessage<'_>>>(raw.get()) else {
        return read_messages(&tree(raw)?, req);
    };
    for m in list {
        match m.role.and_then(|r| r.0).as_deref().unwrap_or("") {
            "system" | "developer" => req.system.push(match m.content {
                Some(c) if c.get().starts_with('"') => string(c)?,
                c => text_of(c.map(tree).transpose()?.as_ref()),
            }),
            "user" => push(req, Role::User, content_raw(m.content)?),
            "assistant" => {
                let mut parts = content_raw(m.content)?;
                if let Some(calls) = m.tool_calls {
                    tool_calls(&tree(calls)?, &mut parts);
                }
                push(req, Role::Assistant, parts);
            }
            "tool" => {
                let result = Part::ToolResult {
                    tool_use_id: m.tool_call_id.and_then(|t| t.0).unwrap_or_default().into_owned(),
                    content: content_raw(m.content)?,
                    is_error: false,
                };
                push(req, Role::User, vec![result]);
            }
            _ => return Err(no_role()),
        }
    }
    Ok(())
}

/// A JSON string member's text.
fn string(raw: &RawValue) -> Result<String, RequestError> {
    let t: Text<'_> =
        serde_json::from_str(raw.get()).map_err(|e| RequestError::InvalidJson { detail: e.to_string() })?;
    Ok(t.0.unwrap_or_default().into_owned())
}

/// Message content from its bytes: a string without a tree, anything else through the tree.
fn content_raw(raw: Option<&RawValue>) -> Result<Vec<Part>, RequestError> {
    match raw {
        Some(c) if c.get().starts_with('"') => {
            let s = string(c)?;
            Ok(if s.is_empty() { Vec::new() } else { vec![Part::Text(s)] })
        }
        c => read_content(c.map(tree).transpose()?.as_ref()),
    }
}

fn no_role() -> RequestError {
    RequestError::InvalidValue {
        param: "messages",
        reason: "each message needs a role of system, developer, user, assistant or tool",
    }
}

/// An assistant turn's tool calls, appended to its parts.
fn tool_calls(calls: &Value, parts: &mut Vec<Part>) {
    for c in calls.as_array().map(Vec::as_slice).unwrap_or_default() {
        let f = c.get("function").unwrap_or(&Value::Null);
        parts.push(Part::ToolUse {
            id: c.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
            name: f.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
            input: parse_arguments(f.get("arguments").and_then(Value::as_str).unwrap_or("")),
        });
    }
}

fn read_messages(value: &Value, req: &mut ChatRequest) -> Result<(), RequestError> {
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
fn push(req: &mut ChatRequest, role: Role, content: Vec<Part>) {
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

fn text_of(content: Option<&Value>) -> String {
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

fn read_content(content: Option<&Value>) -> Result<Vec<Part>, RequestError> {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_message_shape_reads_into_the_canonical_request() {
        let body = br#"{"model":"m","model":"m2","temperature":0.5,"n":1,"seed":7,"stream":true,
            "stream_options":{"include_usage":true},"messages":[
            {"role":"developer","content":"Be brief."},
            {"role":"system","content":[{"type":"text","text":"Use \"metric\" units."}]},
            {"role":"user","content":"line\none","name":"ann"},
            {"role":"user","content":[{"type":"text","text":"and"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]},
            {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},
            {"role":"tool","tool_call_id":"c1","content":"42"},
            {"role":"assistant","content":""}]}"#;
        let r = request_to_chat(body).unwrap();
        assert_eq!(r.model, "m2", "a member given twice keeps its last value");
        assert_eq!((r.temperature, r.stream, r.include_usage), (Some(0.5), true, true));
        assert_eq!(r.extra, vec![("seed".to_owned(), json!(7))]);
        assert_eq!(
            r.system,
            vec!["Be brief.".to_owned(), "Use \"metric\" units.".to_owned()]
        );
        assert_eq!(r.messages.len(), 5, "{:?}", r.messages);
        assert!(r.messages[4].content.is_empty());
        assert_eq!(r.messages[0].content, vec![Part::Text("line\none".into())]);
        assert_eq!(
            r.messages[1].content,
            vec![
                Part::Text("and".into()),
                Part::Image(Image::Base64 {
                    media_type: "image/png".into(),
                    data: "AAAA".into()
                })
            ]
        );
        assert!(matches!(&r.messages[2].content[0], Part::ToolUse { id, input, .. } if id == "c1" && input["a"] == 1));
        assert!(
            matches!(&r.messages[3].content[0], Part::ToolResult { tool_use_id, content, .. } if tool_use_id == "c1" && content == &vec![Part::Text("42".into())])
        );
    }

    #[test]
    fn malformed_messages_are_refused_with_what_is_wrong() {
        let refused = |body: &str| request_to_chat(body.as_bytes()).unwrap_err();
        assert!(matches!(
            refused(r#"{"messages":{"role":"user"}}"#),
            RequestError::InvalidType { param: "messages", .. }
        ));
        assert!(matches!(
            refused(r#"{"messages":[1]}"#),
            RequestError::InvalidValue { param: "messages", .. }
        ));
        assert!(matches!(
            refused(r#"{"messages":[{"role":"robot","content":"x"}]}"#),
            RequestError::InvalidValue { param: "messages", .. }
        ));
        assert!(matches!(
            refused(r#"{"messages":[{"role":"user","content":5}]}"#),
            RequestError::InvalidType { param: "content", .. }
        ));
        assert!(matches!(refused(r#"[1,2]"#), RequestError::InvalidJson { .. }));
        assert!(matches!(refused(r#"{"messages":[}"#), RequestError::InvalidJson { .. }));
    }
}
