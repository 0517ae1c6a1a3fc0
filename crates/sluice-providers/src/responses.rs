//! OpenAI's Responses API as a client format: requests read into the canonical chat exchange,
//! answers (whole or streamed) written back as Response objects and Responses stream events.
//! The upstream is whatever the route picked (Chat Completions, Anthropic Messages); the
//! Responses features a chat upstream cannot express — stored state (`previous_response_id`),
//! built-in tools, reasoning items — are refused (or dropped) like any unsupported parameter.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::chat::{
    ChatRequest, ChatResponse, Delta, Image, Message, Part, Role, StopReason, Tool, ToolChoice, arguments_text,
    parse_arguments,
};
use crate::error::RequestError;
use crate::usage::Usage;

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

fn joined(parts: &[Part]) -> String {
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

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn usage_value(u: &Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    })
}

fn response_id(id: &str) -> String {
    let id = id
        .trim_start_matches("chatcmpl-")
        .trim_start_matches("msg_")
        .trim_start_matches("resp_");
    format!("resp_{id}")
}

fn message_item(id: &str, text: &str, done: bool) -> Value {
    let content = if done {
        json!([{"type": "output_text", "text": text, "annotations": []}])
    } else {
        json!([])
    };
    json!({"type": "message", "id": id, "status": if done { "completed" } else { "in_progress" },
           "role": "assistant", "content": content})
}

fn call_item(id: &str, call_id: &str, name: &str, arguments: &str, done: bool) -> Value {
    json!({"type": "function_call", "id": id, "call_id": call_id, "name": name, "arguments": arguments,
           "status": if done { "completed" } else { "in_progress" }})
}

/// The Response object around `output`.
fn envelope(
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
pub fn response_to_chat(body: &[u8]) -> Result<ChatResponse, crate::adapter::MalformedResponse> {
    let v: Value = serde_json::from_slice(body).map_err(|e| crate::adapter::MalformedResponse(e.to_string()))?;
    let output = v
        .get("output")
        .and_then(Value::as_array)
        .ok_or_else(|| crate::adapter::MalformedResponse("no output".to_owned()))?;
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

/// An open output item of a streamed Response.
#[derive(Debug)]
enum Item {
    Message {
        id: String,
        text: String,
    },
    Call {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// Canonical deltas → Responses stream events.
#[derive(Debug, Default)]
pub struct EventEncoder {
    id: String,
    model: String,
    created: u64,
    seq: u64,
    /// Output items so far; the last one may be open.
    items: Vec<Item>,
    open: bool,
    stop: Option<StopReason>,
    usage: Option<Usage>,
}

impl EventEncoder {
    fn event(&mut self, kind: &str, mut v: Value) -> Bytes {
        v["type"] = json!(kind);
        v["sequence_number"] = json!(self.seq);
        self.seq += 1;
        let mut out = Vec::with_capacity(192);
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        let _ = serde_json::to_writer(&mut out, &v);
        out.extend_from_slice(b"\n\n");
        Bytes::from(out)
    }

    fn item_value(item: &Item, done: bool) -> Value {
        match item {
            Item::Message { id, text } => message_item(id, text, done),
            Item::Call {
                id,
                call_id,
                name,
                arguments,
            } => call_item(id, call_id, name, arguments, done),
        }
    }

    /// Closes the open item with its `.done` events.
    fn close(&mut self, out: &mut Vec<Bytes>) {
        if !self.open {
            return;
        }
        self.open = false;
        let index = self.items.len() - 1;
        let Some(item) = self.items.last() else { return };
        let done_item = Self::item_value(item, true);
        match item {
            Item::Message { id, text } => {
                let (id, text) = (id.clone(), text.clone());
                let e = self.event(
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "text": text}),
                );
                out.push(e);
                let e = self.event(
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0,
                           "part": {"type": "output_text", "text": text, "annotations": []}}),
                );
                out.push(e);
            }
            Item::Call { id, arguments, .. } => {
                let (id, arguments) = (id.clone(), arguments.clone());
                let e = self.event(
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": index, "arguments": arguments}),
                );
                out.push(e);
            }
        }
        let e = self.event(
            "response.output_item.done",
            json!({"output_index": index, "item": done_item}),
        );
        out.push(e);
    }

    fn response(&self, stop: Option<StopReason>, usage: Option<&Usage>) -> Value {
        let output = self.items.iter().map(|i| Self::item_value(i, true)).collect();
        envelope(&self.id, &self.model, self.created, output, stop, usage)
    }

    pub fn encode(&mut self, d: &Delta, out: &mut Vec<Bytes>) {
        match d {
            Delta::Start { id, model } => {
                self.id = response_id(id);
                self.model = model.clone();
                self.created = now();
                let r = envelope(&self.id, &self.model, self.created, Vec::new(), None, None);
                let e = self.event("response.created", json!({"response": r}));
                out.push(e);
                let r = envelope(&self.id, &self.model, self.created, Vec::new(), None, None);
                let e = self.event("response.in_progress", json!({"response": r}));
                out.push(e);
            }
            Delta::Text(t) => {
                let is_message_open = self.open && matches!(self.items.last(), Some(Item::Message { .. }));
                if !is_message_open {
                    self.close(out);
                    let id = format!("msg_{}_{}", self.items.len(), self.id.trim_start_matches("resp_"));
                    let index = self.items.len();
                    self.items.push(Item::Message {
                        id: id.clone(),
                        text: String::new(),
                    });
                    self.open = true;
                    let e = self.event(
                        "response.output_item.added",
                        json!({"output_index": index, "item": message_item(&id, "", false)}),
                    );
                    out.push(e);
                    let e = self.event(
                        "response.content_part.added",
                        json!({"item_id": id, "output_index": index, "content_index": 0,
                               "part": {"type": "output_text", "text": "", "annotations": []}}),
                    );
                    out.push(e);
                }
                let index = self.items.len() - 1;
                let mut item_id = String::new();
                if let Some(Item::Message { id, text }) = self.items.last_mut() {
                    text.push_str(t);
                    item_id = id.clone();
                }
                let e = self.event(
                    "response.output_text.delta",
                    json!({"item_id": item_id, "output_index": index, "content_index": 0, "delta": t}),
                );
                out.push(e);
            }
            Delta::ToolStart { id: call_id, name, .. } => {
                self.close(out);
                let index = self.items.len();
                let id = format!("fc_{index}_{}", self.id.trim_start_matches("resp_"));
                let item = Item::Call {
                    id,
                    call_id: call_id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                };
                let added = Self::item_value(&item, false);
                self.items.push(item);
                self.open = true;
                let e = self.event(
                    "response.output_item.added",
                    json!({"output_index": index, "item": added}),
                );
                out.push(e);
            }
            Delta::ToolArgs { json, .. } => {
                let index = self.items.len().saturating_sub(1);
                let mut item_id = None;
                if self.open
                    && let Some(Item::Call { id, arguments, .. }) = self.items.last_mut()
                {
                    arguments.push_str(json);
                    item_id = Some(id.clone());
                }
                if let Some(item_id) = item_id {
                    let e = self.event(
                        "response.function_call_arguments.delta",
                        json!({"item_id": item_id, "output_index": index, "delta": json}),
                    );
                    out.push(e);
                }
            }
            Delta::Stop { reason, .. } => self.stop = Some(*reason),
            Delta::Usage(u) => self.usage = Some(*u),
            Delta::End => {
                self.close(out);
                let stop = self.stop.unwrap_or(StopReason::EndTurn);
                let r = self.response(Some(stop), self.usage.as_ref());
                let kind = if r["status"] == "incomplete" {
                    "response.incomplete"
                } else {
                    "response.completed"
                };
                let e = self.event(kind, json!({"response": r}));
                out.push(e);
            }
        }
    }

    /// An error event that ends the stream. It carries an `error` object too, which is what
    /// OpenAI's SDKs look for in a streamed event to raise.
    pub fn error_event(&self, code: &str, message: &str) -> Bytes {
        let v = json!({"type": "error", "code": code, "message": message, "param": null,
                       "sequence_number": self.seq,
                       "error": {"type": "server_error", "code": code, "message": message, "param": null}});
        Bytes::from(format!("event: error\ndata: {v}\n\n"))
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

    #[test]
    fn streams_text_then_a_call_with_matching_done_events() {
        let mut e = EventEncoder::default();
        let mut out = Vec::new();
        for d in [
            Delta::Start {
                id: "chatcmpl-1".into(),
                model: "m".into(),
            },
            Delta::Text("Hel".into()),
            Delta::Text("lo".into()),
            Delta::ToolStart {
                index: 0,
                id: "call_1".into(),
                name: "f".into(),
            },
            Delta::ToolArgs {
                index: 0,
                json: "{}".into(),
            },
            Delta::Stop {
                reason: StopReason::ToolUse,
                stop_sequence: None,
            },
            Delta::Usage(Usage {
                prompt_tokens: 3,
                completion_tokens: 2,
                total_tokens: 5,
                ..Usage::default()
            }),
            Delta::End,
        ] {
            e.encode(&d, &mut out);
        }
        let text: String = out.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect();
        let kinds: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        let data = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .next_back()
            .unwrap();
        let last: Value = serde_json::from_str(data).unwrap();
        assert_eq!(last["response"]["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(last["response"]["output"][1]["call_id"], "call_1");
        assert_eq!(last["response"]["usage"]["total_tokens"], 5);
        assert_eq!(last["sequence_number"], 13);
    }
}
