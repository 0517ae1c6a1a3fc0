//! Anthropic Messages: the adapter for Anthropic deployments, and the codec between Messages and
//! the canonical chat exchange in both directions (requests, responses, stream events).
//!
//! Messages to an Anthropic deployment pass through byte for byte, with only `model` spliced;
//! other formats are translated through [`crate::chat`].

use bytes::Bytes;
use http::StatusCode;
use http::header::HeaderValue;
use serde_json::{Map, Value, json};

use crate::adapter::{
    AdapterError, Endpoint, InboundRequest, KeyHeader, MalformedResponse, ProviderAdapter, ResponseFault, ResponseOut,
    StreamFault, StreamTranslator, Target, json_post,
};
use crate::chat::{ChatRequest, ChatResponse, Delta, Image, Message, Part, Role, StopReason, Tool, ToolChoice};
use crate::error::{ErrorClass, RequestError, scrub_credentials};
use crate::openai::join_url;
use crate::sse::SseEvent;
use crate::translate::{Source, Translating, Wire};
use crate::usage::Usage;

/// The API version sent upstream when the client did not choose one.
pub const DEFAULT_VERSION: &str = "2023-06-01";
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

fn read_block(b: &Value) -> Result<Part, RequestError> {
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

fn block_value(p: &Part) -> Value {
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

fn message_id(id: &str) -> String {
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

/// The Anthropic error type for an HTTP status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 | 405 | 408 | 409 | 415 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    }
}

/// An Anthropic-shaped error body.
pub fn error_body(status: u16, message: &str, request_id: &str) -> Bytes {
    let mut v = json!({"type": "error", "error": {"type": error_type(status), "message": message}});
    if !request_id.is_empty() {
        v["request_id"] = json!(request_id);
    }
    Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
}

fn sse(event: &str, v: &Value) -> Bytes {
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    let _ = serde_json::to_writer(&mut out, v);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// An in-stream error event in Anthropic's format.
pub fn error_event(kind: &str, message: &str) -> Bytes {
    sse(
        "error",
        &json!({"type": "error", "error": {"type": kind, "message": message}}),
    )
}

/// Anthropic stream events → canonical deltas.
#[derive(Debug, Default)]
pub struct EventDecoder {
    /// For each content block index: the tool-call number if it is a tool_use block.
    blocks: Vec<Option<u32>>,
    tools: u32,
    usage: Usage,
}

impl EventDecoder {
    /// The prompt's tokens as `message_start` gave them, once it has.
    pub fn prompt_tokens(&self) -> Option<u64> {
        Some(self.usage.prompt_tokens).filter(|n| *n > 0)
    }

    pub fn decode(&mut self, event: &SseEvent, out: &mut Vec<Delta>) -> Result<(), StreamFault> {
        let Some(data) = event.data.as_deref() else {
            return Ok(());
        };
        let v: Value = serde_json::from_slice(data).map_err(|_| StreamFault::Malformed)?;
        let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
        match kind {
            "message_start" => {
                let m = v.get("message").unwrap_or(&Value::Null);
                if let Some(u) = m.get("usage") {
                    self.usage = usage_from(u);
                }
                out.push(Delta::Start {
                    id: m.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
                    model: m.get("model").and_then(Value::as_str).unwrap_or_default().to_owned(),
                });
            }
            "content_block_start" => {
                let index = v.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                let b = v.get("content_block").unwrap_or(&Value::Null);
                if self.blocks.len() <= index {
                    self.blocks.resize(index + 1, None);
                }
                match b.get("type").and_then(Value::as_str) {
                    Some("tool_use") => {
                        let n = self.tools;
                        self.tools += 1;
                        self.blocks[index] = Some(n);
                        out.push(Delta::ToolStart {
                            index: n,
                            id: b.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
                            name: b.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
                        });
                    }
                    Some("text") => {
                        if let Some(t) = b.get("text").and_then(Value::as_str)
                            && !t.is_empty()
                        {
                            out.push(Delta::Text(t.to_owned()));
                        }
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let index = v.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                let d = v.get("delta").unwrap_or(&Value::Null);
                match d.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        let t = d.get("text").and_then(Value::as_str).unwrap_or_default();
                        if !t.is_empty() {
                            out.push(Delta::Text(t.to_owned()));
                        }
                    }
                    Some("input_json_delta") => {
                        let tool = self
                            .blocks
                            .get(index)
                            .copied()
                            .flatten()
                            .ok_or(StreamFault::Malformed)?;
                        let j = d.get("partial_json").and_then(Value::as_str).unwrap_or_default();
                        if !j.is_empty() {
                            out.push(Delta::ToolArgs {
                                index: tool,
                                json: j.to_owned(),
                            });
                        }
                    }
                    _ => {} // thinking and signature deltas have no OpenAI equivalent
                }
            }
            "message_delta" => {
                if let Some(u) = v.get("usage") {
                    let later = usage_from(u);
                    // Output tokens are cumulative; input counts, when repeated, are final.
                    self.usage.completion_tokens = later.completion_tokens;
                    if later.prompt_tokens > 0 {
                        self.usage.prompt_tokens = later.prompt_tokens;
                        self.usage.cached_tokens = later.cached_tokens;
                        self.usage.cache_write_tokens = later.cache_write_tokens;
                    }
                    self.usage.total_tokens = self.usage.prompt_tokens + self.usage.completion_tokens;
                }
                let d = v.get("delta").unwrap_or(&Value::Null);
                if let Some(r) = d.get("stop_reason").and_then(Value::as_str) {
                    out.push(Delta::Stop {
                        reason: stop_reason_from(r),
                        stop_sequence: d.get("stop_sequence").and_then(Value::as_str).map(str::to_owned),
                    });
                }
                out.push(Delta::Usage(self.usage));
            }
            "message_stop" => out.push(Delta::End),
            "error" => {
                let e = v.get("error").unwrap_or(&Value::Null);
                let kind = e.get("type").and_then(Value::as_str).unwrap_or_default();
                let message = e.get("message").and_then(Value::as_str).unwrap_or_default();
                return Err(StreamFault::UpstreamError {
                    class: classify(200, kind, message),
                    message: message.to_owned(),
                });
            }
            _ => {} // ping, content_block_stop
        }
        Ok(())
    }
}

/// Canonical deltas → Anthropic stream events.
#[derive(Debug, Default)]
pub struct EventEncoder {
    model: String,
    /// Index of the open content block and whether it is text.
    open: Option<(u32, bool)>,
    next_block: u32,
    stop: Option<(StopReason, Option<String>)>,
    usage: Usage,
}

impl EventEncoder {
    fn close(&mut self, out: &mut Vec<Bytes>) {
        if let Some((index, _)) = self.open.take() {
            out.push(sse(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            ));
        }
    }

    fn open(&mut self, block: Value, text: bool, out: &mut Vec<Bytes>) -> u32 {
        self.close(out);
        let index = self.next_block;
        self.next_block += 1;
        self.open = Some((index, text));
        out.push(sse(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        index
    }

    pub fn encode(&mut self, d: &Delta, out: &mut Vec<Bytes>) {
        match d {
            Delta::Start { id, model } => {
                self.model = model.clone();
                let message = json!({
                    "id": message_id(id), "type": "message", "role": "assistant", "model": model,
                    "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": 0, "output_tokens": 0},
                });
                out.push(sse(
                    "message_start",
                    &json!({"type": "message_start", "message": message}),
                ));
            }
            Delta::Text(t) => {
                let index = match self.open {
                    Some((i, true)) => i,
                    _ => self.open(json!({"type": "text", "text": ""}), true, out),
                };
                out.push(sse(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": t}}),
                ));
            }
            Delta::ToolStart { id, name, .. } => {
                self.open(
                    json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                    false,
                    out,
                );
            }
            Delta::ToolArgs { json, .. } => {
                if let Some((index, false)) = self.open {
                    out.push(sse(
                        "content_block_delta",
                        &json!({"type": "content_block_delta", "index": index,
                                "delta": {"type": "input_json_delta", "partial_json": json}}),
                    ));
                }
            }
            Delta::Stop { reason, stop_sequence } => self.stop = Some((*reason, stop_sequence.clone())),
            Delta::Usage(u) => self.usage = *u,
            Delta::End => {
                self.close(out);
                let (reason, seq) = self.stop.clone().unwrap_or((StopReason::EndTurn, None));
                out.push(sse(
                    "message_delta",
                    &json!({"type": "message_delta",
                            "delta": {"stop_reason": stop_reason_str(reason), "stop_sequence": seq},
                            "usage": usage_value(&self.usage)}),
                ));
                out.push(sse("message_stop", &json!({"type": "message_stop"})));
            }
        }
    }
}

/// The adapter for Anthropic deployments.
#[derive(Debug, Default, Clone, Copy)]
pub struct AnthropicAdapter;

impl ProviderAdapter for AnthropicAdapter {
    fn name(&self) -> &'static str {
        "anthropic"
    }

    fn supports(&self, endpoint: Endpoint) -> bool {
        matches!(
            endpoint,
            Endpoint::Messages | Endpoint::ChatCompletions | Endpoint::Responses
        )
    }

    fn build_request(&self, req: &InboundRequest, target: &Target<'_>) -> Result<http::Request<Bytes>, AdapterError> {
        let uri = join_url(target.base_url, "/messages")?;
        if !self.supports(req.endpoint) {
            return Err(AdapterError::Unsupported(req.endpoint.as_str()));
        }
        let body = match req.endpoint.wire() {
            Wire::Anthropic => req.view.upstream_body(&req.body, target.model),
            wire => {
                let mut chat = crate::translate::read_request(wire, &req.body)?;
                target.params.apply(&mut chat)?;
                chat_to_request(&chat, target.model)
            }
        };
        let version = req
            .headers
            .anthropic_version
            .clone()
            .unwrap_or_else(|| HeaderValue::from_static(DEFAULT_VERSION));
        let mut builder = json_post(uri, req.view.stream, target, KeyHeader::Named("x-api-key"))?
            .header("anthropic-version", version);
        if let Some(beta) = &req.headers.anthropic_beta {
            builder = builder.header("anthropic-beta", beta.clone());
        }
        Ok(builder.body(body)?)
    }

    fn read_response(&self, req: &InboundRequest, body: Bytes) -> Result<ResponseOut, ResponseFault> {
        let chat = response_to_chat(&body)?;
        let usage = Some(chat.usage);
        let body = match req.endpoint.wire() {
            Wire::Anthropic => body,
            wire => crate::translate::write_response(wire, &chat),
        };
        Ok(ResponseOut { body, usage })
    }

    fn stream_translator(&self, req: &InboundRequest) -> Box<dyn StreamTranslator> {
        match req.endpoint.wire() {
            Wire::Anthropic => Box::new(PassThrough::default()),
            wire => Box::new(Translating::new(Source::Anthropic, wire, req.view.include_usage)),
        }
    }

    fn canonical_translator(&self, req: &InboundRequest) -> Translating {
        Translating::new(Source::Anthropic, req.endpoint.wire(), req.view.include_usage)
    }

    fn classify_error(&self, status: StatusCode, body: &[u8]) -> ErrorClass {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let e = v.get("error").unwrap_or(&Value::Null);
        let kind = e.get("type").and_then(Value::as_str).unwrap_or("");
        let message = e.get("message").and_then(Value::as_str).unwrap_or("");
        classify(status.as_u16(), kind, message)
    }

    fn error_message(&self, body: &[u8], secrets: &[&str]) -> Option<String> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let text = v.get("error")?.get("message")?.as_str()?;
        Some(scrub_credentials(text, secrets).into_owned())
    }
}

/// What an Anthropic error means, from its status, `error.type` and message.
pub fn classify(status: u16, kind: &str, message: &str) -> ErrorClass {
    let lower = message.to_ascii_lowercase();
    match (status, kind) {
        (_, "overloaded_error") | (529, _) => ErrorClass::Overloaded,
        (_, "rate_limit_error") | (429, _) => ErrorClass::RateLimited,
        (_, "billing_error") | (402, _) => ErrorClass::QuotaExceeded,
        (_, "authentication_error" | "permission_error") | (401 | 403, _) => ErrorClass::Auth,
        (_, "not_found_error") | (404, _) => ErrorClass::NotFound,
        (400 | 413, _) if lower.contains("prompt is too long") || lower.contains("context window") => {
            ErrorClass::ContextLength
        }
        (_, "request_too_large") | (400 | 409 | 413 | 422, _) => ErrorClass::InvalidRequest,
        _ => ErrorClass::Server,
    }
}

/// Anthropic to Anthropic: every event is forwarded as it came; usage (and, when asked, the
/// generated text) is read on the way.
#[derive(Debug, Default)]
struct PassThrough {
    decoder: EventDecoder,
    usage: Option<Usage>,
    relayed: u64,
    done: bool,
    text: Option<String>,
}

impl StreamTranslator for PassThrough {
    fn on_event(&mut self, event: SseEvent, out: &mut Vec<Bytes>) -> Result<(), StreamFault> {
        let mut deltas = Vec::new();
        let result = self.decoder.decode(&event, &mut deltas);
        out.push(event.raw);
        result?;
        for d in deltas {
            match d {
                Delta::Text(t) | Delta::ToolArgs { json: t, .. } => {
                    self.relayed += 1;
                    if let Some(text) = &mut self.text {
                        text.push_str(&t);
                    }
                }
                Delta::Usage(u) => self.usage = Some(u),
                Delta::End => self.done = true,
                _ => {}
            }
        }
        Ok(())
    }
    fn reported_usage(&self) -> Option<Usage> {
        self.usage
    }
    fn relayed_chunks(&self) -> u64 {
        self.relayed
    }
    fn prompt_tokens(&self) -> Option<u64> {
        self.decoder.prompt_tokens()
    }
    fn saw_end(&self) -> bool {
        self.done
    }
    fn text_buffer(&mut self) -> Option<&mut Option<String>> {
        Some(&mut self.text)
    }
    fn error_event(&self, code: &str, message: &str) -> Bytes {
        error_event(code_type(code), message)
    }
}

/// The Anthropic error type for one of the gateway's stream error codes.
pub fn code_type(code: &str) -> &'static str {
    match code {
        "upstream_overloaded" => "overloaded_error",
        "upstream_rate_limited" => "rate_limit_error",
        "stream_idle_timeout" | "upstream_timeout" => "timeout_error",
        _ => "api_error",
    }
}

#[cfg(test)]
mod tests;
