//! Anthropic Messages (`POST /v1/messages`): checks what Anthropic's API checks (the
//! `x-api-key` and `anthropic-version` headers, `max_tokens`, the roles), answers in its format,
//! streamed or whole, with text or a tool call, and injects the same faults as the OpenAI side —
//! plus an `overloaded_error` event inside a 200 stream, as Anthropic sends under load.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::body::{ChannelBody, Chunk};
use crate::knobs::Knobs;
use crate::responses::{self, count_tokens};
use crate::{Attempt, MockBody, json_response};

pub fn error_type(status: u16) -> &'static str {
    match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    }
}

pub fn error(status: StatusCode, message: &str) -> Response<MockBody> {
    json_response(
        status,
        &json!({"type": "error", "error": {"type": error_type(status.as_u16()), "message": message},
                "request_id": "req_mock"}),
    )
}

/// The request's headers as Anthropic checks them.
pub fn check_headers(headers: &HeaderMap, api_key: Option<&str>) -> Result<(), (StatusCode, &'static str)> {
    // The API key comes as `x-api-key`, or (as current SDKs send it) as a bearer token.
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        })
        .unwrap_or("");
    if key.is_empty() {
        return Err((StatusCode::UNAUTHORIZED, "x-api-key header is required"));
    }
    if api_key.is_some_and(|k| k != key) {
        return Err((StatusCode::UNAUTHORIZED, "invalid x-api-key"));
    }
    if headers.get("anthropic-version").is_none() {
        return Err((StatusCode::BAD_REQUEST, "anthropic-version: header is required"));
    }
    Ok(())
}

fn validate(req: &Value) -> Result<(), &'static str> {
    if !req.get("model").is_some_and(Value::is_string) {
        return Err("model: Field required");
    }
    if !req.get("max_tokens").is_some_and(Value::is_u64) {
        return Err("max_tokens: Field required");
    }
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("messages: Field required")?;
    if messages.is_empty() {
        return Err("messages: at least one message is required");
    }
    for m in messages {
        match m.get("role").and_then(Value::as_str) {
            Some("user" | "assistant") => {}
            _ => return Err("messages: Input tag should be 'user' or 'assistant'"),
        }
        if m.get("content").is_none() {
            return Err("messages.content: Field required");
        }
    }
    if req.get("stream_options").is_some() {
        return Err("stream_options: Extra inputs are not permitted");
    }
    Ok(())
}

/// The tool call to make: the first tool offered, unless the conversation just answered one.
fn tool_call(req: &Value) -> Option<(String, Value)> {
    let tools = req.get("tools")?.as_array()?;
    let tool = tools.first()?;
    if req.pointer("/tool_choice/type").and_then(Value::as_str) == Some("none") {
        return None;
    }
    let last = req.get("messages")?.as_array()?.last()?;
    let answered = last.get("content").and_then(Value::as_array).is_some_and(|blocks| {
        blocks
            .iter()
            .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
    });
    if answered {
        return None;
    }
    let name = tool.get("name")?.as_str()?.to_owned();
    let mut input = serde_json::Map::new();
    if let Some(props) = tool.pointer("/input_schema/properties").and_then(Value::as_object) {
        for (k, schema) in props {
            let v = match schema.get("type").and_then(Value::as_str) {
                Some("integer" | "number") => json!(1),
                Some("boolean") => json!(true),
                _ => json!("mock"),
            };
            input.insert(k.clone(), v);
        }
    }
    Some((name, Value::Object(input)))
}

fn usage(prompt: u64, output: u64, k: &Knobs) -> Value {
    json!({
        "input_tokens": prompt,
        "output_tokens": output,
        "cache_creation_input_tokens": k.cache_write_tokens.unwrap_or(0),
        "cache_read_input_tokens": k.cached_tokens.unwrap_or(0),
    })
}

fn prompt_tokens(req: &Value) -> u64 {
    let mut text = responses::prompt_text(req);
    if let Some(s) = req.get("system") {
        text.push_str(&s.to_string());
    }
    count_tokens(&text)
}

pub async fn respond(
    headers: &HeaderMap,
    api_key: Option<&str>,
    body: &[u8],
    defaults: &Knobs,
    attempt: Attempt,
) -> Result<Response<MockBody>, std::io::Error> {
    if let Err((status, message)) = check_headers(headers, api_key) {
        attempt.complete();
        return Ok(error(status, message));
    }
    let req: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            attempt.complete();
            return Ok(error(StatusCode::BAD_REQUEST, "invalid JSON body"));
        }
    };
    let knobs = match req.get("mock").map(|m| serde_json::from_value::<Knobs>(m.clone())) {
        None => defaults.clone(),
        Some(Ok(k)) => k.over(defaults),
        Some(Err(e)) => {
            attempt.complete();
            return Ok(error(StatusCode::BAD_REQUEST, &format!("bad mock knobs: {e}")));
        }
    };
    if let Err(msg) = validate(&req) {
        attempt.complete();
        return Ok(error(StatusCode::BAD_REQUEST, msg));
    }
    crate::generate::pause(Knobs::ms(knobs.latency_ms)).await;
    if let Some(status) = knobs.status {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = error(status, "mock fault injected");
        if let Some(s) = knobs.retry_after_s
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            r.headers_mut().insert(http::header::RETRY_AFTER, v);
        }
        attempt.complete();
        return Ok(r);
    }
    if knobs.stall == Some(true) {
        std::future::pending::<()>().await;
    }
    let model = req.get("model").and_then(Value::as_str).unwrap_or("mock").to_owned();
    let prompt = prompt_tokens(&req);
    let tool = tool_call(&req);
    let chunks = knobs.chunks();
    let max_tokens = req.get("max_tokens").and_then(Value::as_u64).unwrap_or(u64::MAX);
    let stop_sequence = req
        .get("stop_sequences")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .map(str::to_owned);

    if req.get("stream").and_then(Value::as_bool) == Some(true) {
        let (tx, body) = ChannelBody::channel();
        let spec = Spec {
            model,
            prompt,
            tool,
            chunks: chunks.min(max_tokens),
            truncated: chunks > max_tokens,
            stop_sequence,
            knobs,
        };
        tokio::spawn(stream(spec, tx, attempt));
        let mut r = Response::new(body.boxed());
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream; charset=utf-8"),
        );
        r.headers_mut()
            .insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return Ok(r);
    }

    crate::generate::pause(Knobs::ms(knobs.ttft_ms) + Knobs::ms(knobs.chunk_delay_ms) * chunks as u32).await;
    let (content, stop, output) = match &tool {
        Some((name, input)) => (
            json!([{"type": "text", "text": "Calling a tool."},
                   {"type": "tool_use", "id": "toolu_mock_1", "name": name, "input": input}]),
            "tool_use".to_owned(),
            3 + count_tokens(&input.to_string()),
        ),
        None => {
            let n = chunks.min(max_tokens);
            let stop = if chunks > max_tokens {
                "max_tokens"
            } else if stop_sequence.is_some() {
                "stop_sequence"
            } else {
                "end_turn"
            };
            (
                json!([{"type": "text", "text": responses::text(n)}]),
                stop.to_owned(),
                n,
            )
        }
    };
    let stop_seq = if stop == "stop_sequence" { stop_sequence } else { None };
    attempt.complete();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop, "stop_sequence": stop_seq,
            "usage": usage(prompt, output, &knobs),
        }),
    ))
}

struct Spec {
    model: String,
    prompt: u64,
    tool: Option<(String, Value)>,
    chunks: u64,
    truncated: bool,
    stop_sequence: Option<String>,
    knobs: Knobs,
}

fn event(name: &str, v: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {v}\n\n"))
}

async fn send(tx: &mpsc::Sender<Chunk>, b: Bytes) -> bool {
    tx.send(Ok(b)).await.is_ok()
}

async fn stream(spec: Spec, tx: mpsc::Sender<Chunk>, mut attempt: Attempt) {
    let k = &spec.knobs;
    tokio::select! {
        biased;
        _ = crate::generate::pause(Knobs::ms(k.ttft_ms)) => {}
        _ = tx.closed() => return,
    }
    let mut start_usage = usage(spec.prompt, 1, k);
    start_usage["output_tokens"] = json!(1);
    let mut frames = vec![
        event(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": "msg_mock", "type": "message", "role": "assistant", "model": spec.model, "content": [],
                "stop_reason": null, "stop_sequence": null, "usage": start_usage}}),
        ),
        event("ping", &json!({"type": "ping"})),
    ];
    let mut output = 0u64;
    let stop = match &spec.tool {
        Some((name, input)) => {
            frames.push(event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ));
            frames.push(event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Calling a tool."}}),
            ));
            frames.push(event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}),
            ));
            frames.push(event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 1, "content_block":
                        {"type": "tool_use", "id": "toolu_mock_1", "name": name, "input": {}}}),
            ));
            let args = input.to_string();
            for piece in args.as_bytes().chunks(8) {
                let piece = String::from_utf8_lossy(piece);
                frames.push(event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 1,
                            "delta": {"type": "input_json_delta", "partial_json": piece}}),
                ));
            }
            frames.push(event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 1}),
            ));
            output = 3 + count_tokens(&args);
            "tool_use"
        }
        None => {
            frames.push(event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ));
            for i in 0..spec.chunks {
                frames.push(event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 0,
                            "delta": {"type": "text_delta", "text": responses::token(i)}}),
                ));
                output += 1;
            }
            frames.push(event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}),
            ));
            if spec.truncated {
                "max_tokens"
            } else if spec.stop_sequence.is_some() {
                "stop_sequence"
            } else {
                "end_turn"
            }
        }
    };
    let seq = if stop == "stop_sequence" {
        spec.stop_sequence.clone()
    } else {
        None
    };
    frames.push(event(
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": seq},
                "usage": {"output_tokens": output}}),
    ));
    frames.push(event("message_stop", &json!({"type": "message_stop"})));

    // Content frames are numbered from the first content_block_delta, for the fault knobs.
    let mut content_index = 0u64;
    for frame in frames {
        let is_content = frame.starts_with(b"event: content_block_delta");
        if is_content {
            let Some(a) = crate::generate::before_chunk(k, content_index, &tx, attempt).await else {
                return;
            };
            attempt = a;
            if k.error_after_chunks == Some(content_index) {
                let kind = k.error_type.as_deref().unwrap_or("overloaded_error");
                let _ = send(
                    &tx,
                    event(
                        "error",
                        &json!({"type": "error", "error": {"type": kind, "message": "Overloaded"}}),
                    ),
                )
                .await;
                attempt.complete();
                return;
            }
            if k.malformed == Some(true)
                && content_index == spec.chunks / 2
                && !send(
                    &tx,
                    Bytes::from_static(b"event: content_block_delta\ndata: {\"type\": [\n\n"),
                )
                .await
            {
                return;
            }
            content_index += 1;
        }
        if !send(&tx, frame).await {
            return;
        }
    }
    attempt.complete();
}
