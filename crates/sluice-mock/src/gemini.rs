//! Google Gemini (`/v1beta/models/{model}:generateContent` — or `/v1/…` — `:streamGenerateContent?alt=sse`,
//! `:batchEmbedContents`, `:embedContent`): checks the `x-goog-api-key` header (or `key=`), answers
//! with text or a function call, reports `usageMetadata`, and can block a prompt or an answer
//! with a safety finish, as Gemini does.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::body::{ChannelBody, Chunk};
use crate::knobs::Knobs;
use crate::responses::{self, count_tokens};
use crate::{Attempt, MockBody, json_response};

fn status_name(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}

pub fn error(status: StatusCode, message: &str) -> Response<MockBody> {
    json_response(
        status,
        &json!({"error": {"code": status.as_u16(), "message": message, "status": status_name(status.as_u16())}}),
    )
}

/// `/v1beta/models/{model}:{method}` (or `/v1/…`) → (model, method).
pub fn route(path: &str) -> Option<(&str, &str)> {
    let rest = path
        .strip_prefix("/v1beta/models/")
        .or_else(|| path.strip_prefix("/v1/models/"))?;
    rest.rsplit_once(':')
}

fn text_of(contents: &Value) -> String {
    let mut out = String::new();
    for c in contents.as_array().map(Vec::as_slice).unwrap_or_default() {
        for p in c
            .get("parts")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            if let Some(t) = p.get("text").and_then(Value::as_str) {
                out.push_str(t);
                out.push(' ');
            }
        }
    }
    out
}

fn function_call(req: &Value) -> Option<(String, Value)> {
    let decl = req.pointer("/tools/0/functionDeclarations/0")?;
    if req
        .pointer("/toolConfig/functionCallingConfig/mode")
        .and_then(Value::as_str)
        == Some("NONE")
    {
        return None;
    }
    let last = req.get("contents")?.as_array()?.last()?;
    let answered = last
        .get("parts")
        .and_then(Value::as_array)
        .is_some_and(|ps| ps.iter().any(|p| p.get("functionResponse").is_some()));
    if answered {
        return None;
    }
    let mut args = serde_json::Map::new();
    if let Some(props) = decl.pointer("/parameters/properties").and_then(Value::as_object) {
        for (k, schema) in props {
            let v = match schema
                .get("type")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Some("integer" | "number") => json!(1),
                Some("boolean") => json!(true),
                _ => json!("mock"),
            };
            args.insert(k.clone(), v);
        }
    }
    Some((decl.get("name")?.as_str()?.to_owned(), Value::Object(args)))
}

fn usage(prompt: u64, output: u64, k: &Knobs) -> Value {
    let mut u = json!({"promptTokenCount": prompt, "candidatesTokenCount": output, "totalTokenCount": prompt + output});
    if let Some(c) = k.cached_tokens {
        u["cachedContentTokenCount"] = json!(c);
    }
    u
}

fn chunk(model: &str, parts: Value, finish: Option<&str>, usage: Option<Value>) -> Value {
    let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
    if let Some(f) = finish {
        candidate["finishReason"] = json!(f);
    }
    let mut v = json!({"candidates": [candidate], "modelVersion": model, "responseId": "mock-response"});
    if let Some(u) = usage {
        v["usageMetadata"] = u;
    }
    v
}

#[allow(clippy::too_many_arguments)]
pub async fn respond(
    headers: &HeaderMap,
    query: Option<&str>,
    api_key: Option<&str>,
    model: &str,
    method: &str,
    body: &[u8],
    defaults: &Knobs,
    attempt: Attempt,
) -> Result<Response<MockBody>, std::io::Error> {
    let key = headers
        .get("x-goog-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| query?.split('&').find_map(|kv| kv.strip_prefix("key=")));
    if let Some(expected) = api_key
        && key != Some(expected)
    {
        attempt.complete();
        return Ok(error(
            StatusCode::BAD_REQUEST,
            "API key not valid. Please pass a valid API key.",
        ));
    }
    let req: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            attempt.complete();
            return Ok(error(StatusCode::BAD_REQUEST, "Invalid JSON payload received."));
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

    if method == "batchEmbedContents" || method == "embedContent" {
        let requests: Vec<Value> = match method {
            "embedContent" => vec![req.clone()],
            _ => req
                .get("requests")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        };
        let embeddings: Vec<Value> = requests
            .iter()
            .map(|r| {
                let text = text_of(&json!([r.get("content").cloned().unwrap_or(Value::Null)]));
                let dims = r
                    .get("outputDimensionality")
                    .and_then(Value::as_u64)
                    .unwrap_or(8)
                    .min(4096);
                json!({"values": responses::embedding(&text, dims)})
            })
            .collect();
        attempt.complete();
        let body = if method == "embedContent" {
            json!({"embedding": embeddings.first().cloned().unwrap_or(Value::Null)})
        } else {
            json!({"embeddings": embeddings})
        };
        return Ok(json_response(StatusCode::OK, &body));
    }
    if method != "generateContent" && method != "streamGenerateContent" {
        attempt.complete();
        return Ok(error(StatusCode::NOT_FOUND, "method not found"));
    }
    let Some(contents) = req
        .get("contents")
        .filter(|c| c.as_array().is_some_and(|a| !a.is_empty()))
    else {
        attempt.complete();
        return Ok(error(StatusCode::BAD_REQUEST, "contents is not specified"));
    };
    let mut prompt_text = text_of(contents);
    if let Some(s) = req.get("systemInstruction") {
        prompt_text.push_str(&text_of(&json!([s])));
    }
    let prompt = count_tokens(&prompt_text);
    let call = function_call(&req);
    let chunks = knobs.chunks();
    let max = req
        .pointer("/generationConfig/maxOutputTokens")
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX);
    let (n, finish) = if chunks > max {
        (max, "MAX_TOKENS")
    } else {
        (chunks, "STOP")
    };
    let block = knobs.safety_block.as_deref();

    if method == "streamGenerateContent" {
        let (tx, body) = ChannelBody::channel();
        tokio::spawn(stream(
            model.to_owned(),
            prompt,
            call,
            n,
            finish,
            knobs.clone(),
            tx,
            attempt,
        ));
        let mut r = Response::new(body.boxed());
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        return Ok(r);
    }

    crate::generate::pause(Knobs::ms(knobs.ttft_ms)).await;
    attempt.complete();
    let v = match (block, call) {
        (Some("prompt"), _) => {
            json!({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": usage(prompt, 0, &knobs),
                                      "modelVersion": model})
        }
        (Some(_), _) => chunk(model, json!([]), Some("SAFETY"), Some(usage(prompt, 0, &knobs))),
        (None, Some((name, args))) => chunk(
            model,
            json!([{"functionCall": {"name": name, "args": args}}]),
            Some("STOP"),
            Some(usage(prompt, 3, &knobs)),
        ),
        (None, None) => chunk(
            model,
            json!([{"text": responses::text(n)}]),
            Some(finish),
            Some(usage(prompt, n, &knobs)),
        ),
    };
    Ok(json_response(StatusCode::OK, &v))
}

async fn send(tx: &mpsc::Sender<Chunk>, v: &Value) -> bool {
    tx.send(Ok(Bytes::from(format!("data: {v}\r\n\r\n")))).await.is_ok()
}

#[allow(clippy::too_many_arguments)]
async fn stream(
    model: String,
    prompt: u64,
    call: Option<(String, Value)>,
    n: u64,
    finish: &'static str,
    k: Knobs,
    tx: mpsc::Sender<Chunk>,
    mut attempt: Attempt,
) {
    tokio::select! {
        biased;
        _ = crate::generate::pause(Knobs::ms(k.ttft_ms)) => {}
        _ = tx.closed() => return,
    }
    if k.safety_block.as_deref() == Some("prompt") {
        let _ = send(
            &tx,
            &json!({"promptFeedback": {"blockReason": "SAFETY"}, "modelVersion": model}),
        )
        .await;
        attempt.complete();
        return;
    }
    if let Some((name, args)) = call {
        let v = chunk(
            &model,
            json!([{"functionCall": {"name": name, "args": args}}]),
            Some("STOP"),
            Some(usage(prompt, 3, &k)),
        );
        if send(&tx, &v).await {
            attempt.complete();
        }
        return;
    }
    for i in 0..n {
        let Some(a) = crate::generate::before_chunk(&k, i, &tx, attempt).await else {
            return;
        };
        attempt = a;
        if k.safety_block.is_some() && i == n / 2 {
            let v = chunk(&model, json!([]), Some("SAFETY"), Some(usage(prompt, i, &k)));
            if send(&tx, &v).await {
                attempt.complete();
            }
            return;
        }
        let last = i + 1 == n;
        let v = chunk(
            &model,
            json!([{"text": responses::token(i)}]),
            last.then_some(finish),
            Some(usage(prompt, i + 1, &k)),
        );
        if !send(&tx, &v).await {
            return;
        }
    }
    if n == 0 {
        let _ = send(
            &tx,
            &chunk(&model, json!([{"text": ""}]), Some(finish), Some(usage(prompt, 0, &k))),
        )
        .await;
    }
    attempt.complete();
}
