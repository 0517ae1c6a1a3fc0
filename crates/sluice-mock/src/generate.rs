//! Answers a completion request according to its knobs: latency, faults, and the payload,
//! streamed chunk by chunk or whole.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::sleep;

use crate::body::{ChannelBody, Chunk};
use crate::knobs::Knobs;
use crate::responses::{self, count_tokens};
use crate::{Attempt, MockBody, full, json_response};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Completion,
    Embedding,
}

pub(crate) async fn respond(
    path: &str,
    body: &[u8],
    defaults: &Knobs,
    attempt: Attempt,
) -> Result<Response<MockBody>, std::io::Error> {
    let kind = match path {
        "/v1/chat/completions" => Kind::Chat,
        "/v1/completions" => Kind::Completion,
        _ => Kind::Embedding,
    };
    let req: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            attempt.complete();
            return Ok(json_response(
                StatusCode::BAD_REQUEST,
                &responses::error_body(400, "invalid JSON body"),
            ));
        }
    };
    let mut knobs = match req.get("mock").map(|m| serde_json::from_value::<Knobs>(m.clone())) {
        None => defaults.clone(),
        Some(Ok(k)) => k.over(defaults),
        Some(Err(e)) => {
            attempt.complete();
            let msg = format!("bad mock knobs: {e}");
            return Ok(json_response(
                StatusCode::BAD_REQUEST,
                &responses::error_body(400, &msg),
            ));
        }
    };
    if knobs.echo_system == Some(true) {
        let system: Vec<&str> = req
            .get("messages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|m| matches!(m.get("role").and_then(Value::as_str), Some("system" | "developer")))
            .filter_map(|m| m.get("content").and_then(Value::as_str))
            .collect();
        knobs.reply = Some(format!("My instructions say: {}", system.join("\n")));
    }
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);

    pause(Knobs::ms(knobs.latency_ms)).await;

    let injected = match knobs.fail_percent {
        Some(p) if rand::random_range(0..100u8) < p => Some(knobs.status.unwrap_or(500)),
        Some(_) => None,
        None => knobs.status,
    };
    if let Some(status) = injected {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = json_response(status, &responses::error_body(status.as_u16(), "mock fault injected"));
        if let Some(s) = knobs.retry_after_s
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            r.headers_mut().insert(http::header::RETRY_AFTER, v);
        }
        attempt.complete();
        return Ok(r);
    }
    if knobs.stall == Some(true) {
        std::future::pending::<()>().await; // only the client leaving ends this
    }
    if !stream && knobs.drop_after_chunks.is_some() {
        attempt.dropped_on_purpose();
        return Err(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "mock drop"));
    }

    let model = req.get("model").and_then(Value::as_str).unwrap_or("mock").to_owned();
    let prompt_tokens = count_tokens(&responses::prompt_text(&req));

    if kind == Kind::Embedding {
        attempt.complete();
        return Ok(embeddings(&req, &model, prompt_tokens, &knobs));
    }
    if stream {
        let (tx, body) = ChannelBody::channel();
        let include_usage = req
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let tool = if kind == Kind::Chat {
            responses::tool_call(&req)
        } else {
            None
        };
        let spec = StreamSpec {
            kind,
            model,
            prompt_tokens,
            include_usage,
            tool,
            knobs,
        };
        tokio::spawn(stream_task(spec, tx, attempt));
        let mut r = Response::new(body.boxed());
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        r.headers_mut()
            .insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return Ok(r);
    }

    let chunks = knobs.chunks();
    pause(Knobs::ms(knobs.ttft_ms) + Knobs::ms(knobs.chunk_delay_ms) * chunks as u32).await;
    if knobs.malformed == Some(true) {
        attempt.complete();
        return Ok(full(
            StatusCode::OK,
            r#"{"id": "chatcmpl-broken", "choices": [{"#,
            "application/json",
        ));
    }
    let created = now();
    let payload = match kind {
        Kind::Chat => {
            let (message, finish, completion_tokens) = match responses::tool_call(&req) {
                Some((name, args)) => {
                    let n = count_tokens(&args);
                    (
                        json!({ "role": "assistant", "content": null, "tool_calls": [
                            { "id": "call_mock_1", "type": "function", "function": { "name": name, "arguments": args } }
                        ]}),
                        "tool_calls",
                        n,
                    )
                }
                None => (json!({ "role": "assistant", "content": knobs.text() }), "stop", chunks),
            };
            json!({
                "id": "chatcmpl-mock", "object": "chat.completion", "created": created, "model": model,
                "choices": [{ "index": 0, "message": message, "finish_reason": finish, "logprobs": null }],
                "usage": responses::usage_cached(prompt_tokens, completion_tokens, knobs.cached_tokens),
            })
        }
        _ => json!({
            "id": "cmpl-mock", "object": "text_completion", "created": created, "model": model,
            "choices": [{ "index": 0, "text": knobs.text(), "finish_reason": "stop", "logprobs": null }],
            "usage": responses::usage(prompt_tokens, chunks),
        }),
    };
    attempt.complete();
    Ok(json_response(StatusCode::OK, &payload))
}

/// Sleeps for `d`; zero returns at once (a zero `sleep` would still wait for the next timer tick).
pub(crate) async fn pause(d: std::time::Duration) {
    if !d.is_zero() {
        sleep(d).await;
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn embeddings(req: &Value, model: &str, prompt_tokens: u64, knobs: &Knobs) -> Response<MockBody> {
    let inputs: Vec<String> = match req.get("input") {
        Some(Value::Array(a)) => a.iter().map(|v| v.to_string()).collect(),
        Some(v) => vec![v.to_string()],
        None => Vec::new(),
    };
    let base64 = req.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let dims = knobs
        .dimensions
        .or_else(|| req.get("dimensions").and_then(Value::as_u64))
        .unwrap_or(8)
        .min(4096);
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let v = if knobs.embed_words == Some(true) {
                responses::words_embedding(text, dims)
            } else {
                responses::embedding(text, dims)
            };
            let embedding = if base64 {
                json!(responses::base64_f32(&v))
            } else {
                json!(v)
            };
            json!({ "object": "embedding", "index": i, "embedding": embedding })
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({ "object": "list", "data": data, "model": model,
                 "usage": { "prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens } }),
    )
}

struct StreamSpec {
    kind: Kind,
    model: String,
    prompt_tokens: u64,
    include_usage: bool,
    tool: Option<(String, String)>,
    knobs: Knobs,
}

impl StreamSpec {
    fn frame(&self, choices: Value) -> Bytes {
        let object = if self.kind == Kind::Chat {
            "chat.completion.chunk"
        } else {
            "text_completion"
        };
        let mut v = json!({ "id": "chatcmpl-mock", "object": object, "created": now(), "model": self.model, "choices": choices });
        if self.include_usage {
            v["usage"] = Value::Null;
        }
        Bytes::from(format!("data: {v}\n\n"))
    }
    fn content(&self, piece: &str) -> Bytes {
        match self.kind {
            Kind::Chat => self
                .frame(json!([{ "index": 0, "delta": { "content": piece }, "finish_reason": null, "logprobs": null }])),
            _ => self.frame(json!([{ "index": 0, "text": piece, "finish_reason": null, "logprobs": null }])),
        }
    }
}

async fn send(tx: &mpsc::Sender<Chunk>, b: Bytes) -> bool {
    tx.send(Ok(b)).await.is_ok()
}

/// What every streamed format does before content chunk `i`: the pause between chunks, and the
/// stall and drop faults. `None` when the stream is over (the client left, or a fault ended it;
/// the attempt has been accounted for).
pub(crate) async fn before_chunk(k: &Knobs, i: u64, tx: &mpsc::Sender<Chunk>, attempt: Attempt) -> Option<Attempt> {
    if i > 0 {
        tokio::select! {
            biased;
            _ = pause(Knobs::ms(k.chunk_delay_ms)) => {}
            _ = tx.closed() => return None,
        }
    }
    if k.stall_after_chunks == Some(i) {
        tx.closed().await;
        return None;
    }
    if k.drop_after_chunks == Some(i) {
        let _ = tx
            .send(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "mock drop",
            )))
            .await;
        attempt.dropped_on_purpose();
        return None;
    }
    Some(attempt)
}

/// Streams the answer; returning early drops `attempt`, which counts a cancel.
async fn stream_task(spec: StreamSpec, tx: mpsc::Sender<Chunk>, mut attempt: Attempt) {
    let k = &spec.knobs;
    tokio::select! {
        biased;
        _ = pause(Knobs::ms(k.ttft_ms)) => {}
        _ = tx.closed() => return,
    }
    let pieces: Vec<String> = match &spec.tool {
        Some((_, args)) => args
            .as_bytes()
            .chunks(8)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect(),
        None => k.pieces(),
    };
    let first = match (&spec.tool, spec.kind) {
        (Some((name, _)), _) => spec.frame(json!([{ "index": 0, "delta": { "role": "assistant", "content": null,
            "tool_calls": [{ "index": 0, "id": "call_mock_1", "type": "function", "function": { "name": name, "arguments": "" } }] },
            "finish_reason": null, "logprobs": null }])),
        (None, Kind::Chat) => spec.frame(json!([{ "index": 0, "delta": { "role": "assistant", "content": "" }, "finish_reason": null, "logprobs": null }])),
        (None, _) => spec.content(""),
    };
    if !send(&tx, first).await {
        return;
    }
    for (i, piece) in pieces.iter().enumerate() {
        let i = i as u64;
        let Some(a) = before_chunk(k, i, &tx, attempt).await else {
            return;
        };
        attempt = a;
        if k.error_after_chunks == Some(i) {
            let kind = k.error_type.as_deref().unwrap_or("server_error");
            let err =
                json!({"error": {"message": "The server is overloaded.", "type": kind, "param": null, "code": null}});
            let _ = send(&tx, Bytes::from(format!("data: {err}\n\n"))).await;
            attempt.complete();
            return;
        }
        if k.malformed == Some(true)
            && i == pieces.len() as u64 / 2
            && !send(&tx, Bytes::from_static(b"data: {\"choices\": [\n\n")).await
        {
            return;
        }
        let frame = match &spec.tool {
            Some(_) => spec.frame(
                json!([{ "index": 0, "delta": { "tool_calls": [{ "index": 0, "function": { "arguments": piece } }] },
                "finish_reason": null, "logprobs": null }]),
            ),
            None => spec.content(piece),
        };
        if !send(&tx, frame).await {
            return;
        }
    }
    let finish = if spec.tool.is_some() { "tool_calls" } else { "stop" };
    let last = match spec.kind {
        Kind::Chat => spec.frame(json!([{ "index": 0, "delta": {}, "finish_reason": finish, "logprobs": null }])),
        _ => spec.frame(json!([{ "index": 0, "text": "", "finish_reason": finish, "logprobs": null }])),
    };
    if !send(&tx, last).await {
        return;
    }
    if spec.include_usage {
        let completion = pieces.len() as u64;
        let usage = json!({ "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": now(), "model": spec.model,
            "choices": [], "usage": responses::usage_cached(spec.prompt_tokens, completion, k.cached_tokens) });
        if !send(&tx, Bytes::from(format!("data: {usage}\n\n"))).await {
            return;
        }
    }
    if !send(&tx, Bytes::from_static(b"data: [DONE]\n\n")).await {
        return;
    }
    attempt.complete();
}
