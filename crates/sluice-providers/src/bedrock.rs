//! AWS Bedrock's Converse API (`/model/{id}/converse`, `/model/{id}/converse-stream`): an
//! upstream format. Requests are built from the canonical exchange and signed with SigV4
//! (service `bedrock`) using credentials from the environment; streams arrive in AWS
//! event-stream framing ([`crate::eventstream`]) and are decoded into canonical deltas.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use http::{Method, StatusCode};
use serde_json::{Map, Value, json};

use crate::adapter::{
    APPLICATION_JSON, AdapterError, Endpoint, InboundRequest, MalformedResponse, ProviderAdapter, ResponseFault,
    ResponseOut, StreamFault, StreamTranslator, Target,
};
use crate::chat::{ChatRequest, ChatResponse, Delta, Image, Part, Role, StopReason, ToolChoice};
use crate::error::{ErrorClass, RequestError, scrub_credentials};
use crate::eventstream::Framing;
use crate::openai::join_url;
use crate::sse::SseEvent;
use crate::translate::{Source, Translating};
use crate::usage::Usage;

/// AWS credentials and the region to sign for.
#[derive(Clone)]
pub struct AwsAuth {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    pub region: String,
}

impl std::fmt::Debug for AwsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsAuth")
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// Signs `req` in place with SigV4 for `service`.
pub fn sign_request(
    req: &mut http::Request<Bytes>,
    auth: &AwsAuth,
    service: &str,
    now: SystemTime,
) -> Result<(), String> {
    let identity = Credentials::new(
        &auth.access_key_id,
        &auth.secret_access_key,
        auth.session_token.clone(),
        None,
        "sluice",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&auth.region)
        .name(service)
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let uri = req.uri().to_string();
    let headers: Vec<(&str, &str)> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
        .collect();
    let signable = SignableRequest::new(
        req.method().as_str(),
        &uri,
        headers.into_iter(),
        SignableBody::Bytes(req.body()),
    )
    .map_err(|e| e.to_string())?;
    let (instructions, _) = sign(signable, &params).map_err(|e| e.to_string())?.into_parts();
    instructions.apply_to_request_http1x(req);
    Ok(())
}

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

/// ConverseStream events → canonical deltas.
#[derive(Debug, Default)]
pub struct EventDecoder {
    /// Content block index → tool-call number.
    blocks: Vec<Option<u32>>,
    tools: u32,
    stop: Option<StopReason>,
}

impl EventDecoder {
    pub fn decode(&mut self, event: &SseEvent, out: &mut Vec<Delta>) -> Result<(), StreamFault> {
        let name = event.event.as_deref().unwrap_or_default();
        let v: Value = match event.data.as_deref() {
            Some(d) if !d.is_empty() => serde_json::from_slice(d).map_err(|_| StreamFault::Malformed)?,
            _ => Value::Null,
        };
        if let Some(kind) = name.strip_prefix("exception:") {
            let class = match kind {
                "throttlingException" => ErrorClass::RateLimited,
                "serviceUnavailableException" | "modelNotReadyException" => ErrorClass::Overloaded,
                "validationException" => ErrorClass::InvalidRequest,
                _ => ErrorClass::Server,
            };
            return Err(StreamFault::UpstreamError {
                class,
                message: v.get("message").and_then(Value::as_str).unwrap_or(kind).to_owned(),
            });
        }
        let index = v.get("contentBlockIndex").and_then(Value::as_u64).unwrap_or(0) as usize;
        match name {
            "messageStart" => out.push(Delta::Start {
                id: "bedrock".to_owned(),
                model: String::new(),
            }),
            "contentBlockStart" => {
                if let Some(t) = v.pointer("/start/toolUse") {
                    if self.blocks.len() <= index {
                        self.blocks.resize(index + 1, None);
                    }
                    let n = self.tools;
                    self.tools += 1;
                    self.blocks[index] = Some(n);
                    out.push(Delta::ToolStart {
                        index: n,
                        id: t
                            .get("toolUseId")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        name: t.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
                    });
                }
            }
            "contentBlockDelta" => {
                if let Some(t) = v.pointer("/delta/text").and_then(Value::as_str) {
                    if !t.is_empty() {
                        out.push(Delta::Text(t.to_owned()));
                    }
                } else if let Some(j) = v.pointer("/delta/toolUse/input").and_then(Value::as_str) {
                    let tool = self
                        .blocks
                        .get(index)
                        .copied()
                        .flatten()
                        .ok_or(StreamFault::Malformed)?;
                    if !j.is_empty() {
                        out.push(Delta::ToolArgs {
                            index: tool,
                            json: j.to_owned(),
                        });
                    }
                }
            }
            "messageStop" => {
                let reason = v
                    .get("stopReason")
                    .and_then(Value::as_str)
                    .map_or(StopReason::EndTurn, stop_reason_from);
                self.stop = Some(reason);
                out.push(Delta::Stop {
                    reason,
                    stop_sequence: None,
                });
            }
            // Usage comes last, after messageStop: it ends the stream.
            "metadata" => {
                if let Some(u) = v.get("usage") {
                    out.push(Delta::Usage(usage_from(u)));
                }
                if self.stop.is_some() {
                    out.push(Delta::End);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Embedding models on Bedrock: Amazon Titan (`amazon.titan-embed-*`, one text per request)
/// and Cohere (`cohere.embed-*`, a batch of texts), through InvokeModel.
fn embeddings_request(body: &[u8], model: &str) -> Result<Bytes, RequestError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| RequestError::InvalidJson { detail: e.to_string() })?;
    let inputs: Vec<&str> = match v.get("input") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => a.iter().filter_map(Value::as_str).collect(),
        _ => {
            return Err(RequestError::Unsupported {
                param: "input (token arrays)".to_owned(),
            });
        }
    };
    let out = if model.starts_with("cohere.embed") {
        json!({"texts": inputs, "input_type": "search_document"})
    } else {
        // Titan embeds one text per request.
        let [one] = inputs.as_slice() else {
            return Err(RequestError::Unsupported {
                param: "input (several texts: this Bedrock embedding model takes one per request)".to_owned(),
            });
        };
        let mut t = json!({"inputText": one});
        if let Some(d) = v.get("dimensions").and_then(Value::as_u64) {
            t["dimensions"] = json!(d);
        }
        t
    };
    Ok(Bytes::from(out.to_string()))
}

/// Titan's `{embedding, inputTextTokenCount}` or Cohere's `{embeddings}` → OpenAI's list.
fn embeddings_response(req_body: &[u8], body: &[u8], model: &str) -> Result<(Bytes, Option<Usage>), MalformedResponse> {
    let v: Value = serde_json::from_slice(body).map_err(|e| MalformedResponse(e.to_string()))?;
    let vectors: Vec<&Value> = if let Some(one) = v.get("embedding") {
        vec![one]
    } else if let Some(Value::Array(many)) = v.get("embeddings") {
        many.iter().collect()
    } else {
        return Err(MalformedResponse("no embedding".to_owned()));
    };
    let base64 = serde_json::from_slice::<Value>(req_body)
        .ok()
        .is_some_and(|r| r.get("encoding_format").and_then(Value::as_str) == Some("base64"));
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let floats: Vec<f32> = e
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_f64).map(|x| x as f32).collect())
                .unwrap_or_default();
            let embedding = if base64 {
                use base64::Engine as _;
                let bytes: Vec<u8> = floats.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(floats)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let tokens = v.get("inputTextTokenCount").and_then(Value::as_u64);
    let usage = tokens.map(|t| Usage {
        prompt_tokens: t,
        total_tokens: t,
        ..Usage::default()
    });
    let body = json!({"object": "list", "data": data, "model": model,
                      "usage": {"prompt_tokens": tokens.unwrap_or(0), "total_tokens": tokens.unwrap_or(0)}});
    Ok((Bytes::from(body.to_string()), usage))
}

/// The adapter for Bedrock deployments.
#[derive(Debug, Default, Clone, Copy)]
pub struct BedrockAdapter;

static EVENT_STREAM: HeaderValue = HeaderValue::from_static("application/vnd.amazon.eventstream");

/// Percent-encodes a model id for the path (ids contain `:`).
fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl ProviderAdapter for BedrockAdapter {
    fn name(&self) -> &'static str {
        "bedrock"
    }

    fn supports(&self, endpoint: Endpoint) -> bool {
        matches!(
            endpoint,
            Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::Responses | Endpoint::Embeddings
        )
    }

    fn framing(&self) -> Framing {
        Framing::EventStream
    }

    fn build_request(&self, req: &InboundRequest, target: &Target<'_>) -> Result<http::Request<Bytes>, AdapterError> {
        if !self.supports(req.endpoint) {
            return Err(AdapterError::Unsupported(req.endpoint.as_str()));
        }
        let (op, body, stream) = if req.endpoint == Endpoint::Embeddings {
            ("invoke", embeddings_request(&req.body, target.model)?, false)
        } else {
            let mut chat = crate::translate::read_request(req.endpoint.wire(), &req.body)?;
            target.params.apply(&mut chat)?;
            let op = if chat.stream { "converse-stream" } else { "converse" };
            (op, chat_to_request(&chat)?, chat.stream)
        };
        let uri = join_url(target.base_url, &format!("/model/{}/{op}", path_segment(target.model)))?;
        let mut request = http::Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(CONTENT_TYPE, APPLICATION_JSON.clone())
            .header(
                ACCEPT,
                if stream {
                    EVENT_STREAM.clone()
                } else {
                    APPLICATION_JSON.clone()
                },
            )
            .body(body)?;
        if let Some(host) = request.uri().authority().map(|a| a.as_str().to_owned())
            && let Ok(v) = HeaderValue::from_str(&host)
        {
            request.headers_mut().insert(http::header::HOST, v);
        }
        let auth = target.aws.ok_or(AdapterError::Credentials("no AWS credentials"))?;
        sign_request(&mut request, auth, "bedrock", SystemTime::now())
            .map_err(|_| AdapterError::Credentials("SigV4 signing failed"))?;
        for v in request.headers_mut().values_mut() {
            if v.as_bytes().starts_with(b"AWS4-HMAC-SHA256") {
                v.set_sensitive(true);
            }
        }
        if let Some(f) = target.forward {
            f.apply(request.headers_mut());
        }
        Ok(request)
    }

    fn read_response(&self, req: &InboundRequest, body: Bytes) -> Result<ResponseOut, ResponseFault> {
        if req.endpoint == Endpoint::Embeddings {
            let (body, usage) = embeddings_response(&req.body, &body, &req.view.model)?;
            return Ok(ResponseOut { body, usage });
        }
        let chat = response_to_chat(&body, &req.view.model)?;
        Ok(ResponseOut {
            body: crate::translate::write_response(req.endpoint.wire(), &chat),
            usage: Some(chat.usage),
        })
    }

    fn stream_translator(&self, req: &InboundRequest) -> Box<dyn StreamTranslator> {
        Box::new(self.canonical_translator(req))
    }

    fn canonical_translator(&self, req: &InboundRequest) -> Translating {
        Translating::new(Source::Bedrock, req.endpoint.wire(), req.view.include_usage)
            .with_fallback_model(req.view.model.clone())
    }

    fn classify_error(&self, status: StatusCode, body: &[u8]) -> ErrorClass {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let message = v
            .get("message")
            .or_else(|| v.get("Message"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_ascii_lowercase();
        match status.as_u16() {
            400 if message.contains("too long") || message.contains("context") => ErrorClass::ContextLength,
            400 | 409 | 413 | 422 => ErrorClass::InvalidRequest,
            401 | 403 => ErrorClass::Auth,
            404 => ErrorClass::NotFound,
            429 => ErrorClass::RateLimited,
            503 => ErrorClass::Overloaded,
            _ => ErrorClass::Server,
        }
    }

    fn error_message(&self, body: &[u8], secrets: &[&str]) -> Option<String> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let text = v.get("message").or_else(|| v.get("Message"))?.as_str()?;
        Some(scrub_credentials(text, secrets).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eventstream::{EventStreamParser, encode};

    #[test]
    fn signs_like_the_aws_test_suite_shapes_it() {
        let mut req = http::Request::builder()
            .method("POST")
            .uri("https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-v2%3A1/converse")
            .header("host", "bedrock-runtime.us-east-1.amazonaws.com")
            .header("content-type", "application/json")
            .body(Bytes::from_static(b"{}"))
            .unwrap();
        let auth = AwsAuth {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: Some("token".into()),
            region: "us-east-1".into(),
        };
        sign_request(&mut req, &auth, "bedrock", SystemTime::UNIX_EPOCH).unwrap();
        let a = req.headers()["authorization"].to_str().unwrap();
        assert!(
            a.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/19700101/us-east-1/bedrock/aws4_request"),
            "{a}"
        );
        assert!(
            a.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token"),
            "{a}"
        );
        assert_eq!(req.headers()["x-amz-date"], "19700101T000000Z");
        assert_eq!(req.headers()["x-amz-security-token"], "token");
    }

    #[test]
    fn a_converse_stream_decodes_to_deltas() {
        let mut bytes = Vec::new();
        let ev = |t: &str, p: Value| {
            encode(
                &[(":event-type", t), (":message-type", "event")],
                p.to_string().as_bytes(),
            )
        };
        bytes.extend_from_slice(&ev("messageStart", json!({"role": "assistant"})));
        bytes.extend_from_slice(&ev(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
        ));
        bytes.extend_from_slice(&ev("contentBlockStop", json!({"contentBlockIndex": 0})));
        bytes.extend_from_slice(&ev(
            "contentBlockStart",
            json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t1", "name": "f"}}}),
        ));
        bytes.extend_from_slice(&ev(
            "contentBlockDelta",
            json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"a\":1}"}}}),
        ));
        bytes.extend_from_slice(&ev("messageStop", json!({"stopReason": "tool_use"})));
        bytes.extend_from_slice(&ev(
            "metadata",
            json!({"usage": {"inputTokens": 5, "outputTokens": 7, "totalTokens": 12}}),
        ));
        let mut p = EventStreamParser::default();
        p.push(&bytes);
        let mut d = EventDecoder::default();
        let mut out = Vec::new();
        while let Some(e) = p.next_event() {
            d.decode(&e.unwrap(), &mut out).unwrap();
        }
        let r = ChatResponse::from_deltas(&out);
        assert_eq!(r.content[0], Part::Text("Hi".into()));
        assert_eq!(
            r.content[1],
            Part::ToolUse {
                id: "t1".into(),
                name: "f".into(),
                input: json!({"a": 1})
            }
        );
        assert_eq!(r.stop_reason, Some(StopReason::ToolUse));
        assert_eq!(r.usage.total_tokens, 12);
        assert_eq!(out.last(), Some(&Delta::End));
    }
}
