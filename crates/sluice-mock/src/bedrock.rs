//! AWS Bedrock's Converse API (`POST /model/{id}/converse`, `/model/{id}/converse-stream`). Like
//! Bedrock, it refuses a request whose SigV4 signature does not verify against the configured
//! credentials, and streams in AWS event-stream framing.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::body::{ChannelBody, Chunk};
use crate::knobs::Knobs;
use crate::responses::{self, count_tokens};
use crate::{Attempt, MockBody, json_response};

/// `/model/{id}/{op}` → (model id, op).
pub fn route(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/model/")?;
    let (model, op) = rest.rsplit_once('/')?;
    matches!(op, "converse" | "converse-stream" | "invoke").then_some((model, op))
}

fn error_type(status: u16) -> &'static str {
    match status {
        400 => "ValidationException",
        403 => "AccessDeniedException",
        404 => "ResourceNotFoundException",
        408 => "ModelTimeoutException",
        424 => "ModelErrorException",
        429 => "ThrottlingException",
        503 => "ServiceUnavailableException",
        _ => "InternalServerException",
    }
}

pub fn error(status: StatusCode, kind: &str, message: &str) -> Response<MockBody> {
    let mut r = json_response(status, &json!({"message": message}));
    if let Ok(v) = HeaderValue::from_str(&format!("{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/")) {
        r.headers_mut().insert("x-amzn-errortype", v);
    }
    r
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYYMMDDTHHMMSSZ` → time.
fn amz_date(s: &str) -> Option<SystemTime> {
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    if s.len() != 16 || s.as_bytes().get(8) != Some(&b'T') {
        return None;
    }
    let days = days_from_civil(n(0..4)?, n(4..6)?, n(6..8)?);
    let secs = days * 86_400 + n(9..11)? * 3600 + n(11..13)? * 60 + n(13..15)?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(u64::try_from(secs).ok()?))
}

/// Verifies the request's SigV4 signature against `(access key id, secret)`.
pub fn verify(
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
    creds: &(String, String),
) -> Result<(), (StatusCode, &'static str, &'static str)> {
    let denied = |kind, msg| (StatusCode::FORBIDDEN, kind, msg);
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or(denied(
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        ))?;
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256 ").ok_or(denied(
        "IncompleteSignatureException",
        "Unsupported signature algorithm",
    ))?;
    let field = |name: &str| {
        rest.split(',')
            .map(str::trim)
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    };
    let (credential, signed, signature) = match (field("Credential"), field("SignedHeaders"), field("Signature")) {
        (Some(c), Some(h), Some(s)) => (c, h, s),
        _ => return Err(denied("IncompleteSignatureException", "Incomplete signature")),
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, _date, region, service, "aws4_request"] = scope.as_slice() else {
        return Err(denied("IncompleteSignatureException", "Malformed credential scope"));
    };
    if *key_id != creds.0 {
        return Err(denied(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ));
    }
    let time = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .and_then(amz_date)
        .ok_or(denied(
            "IncompleteSignatureException",
            "Missing or malformed x-amz-date",
        ))?;
    let token = headers
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let identity = Credentials::new(creds.0.clone(), creds.1.clone(), token, None, "mock").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|_| denied("IncompleteSignatureException", "bad signing parameters"))?
        .into();
    // Only the headers the client signed; the signer adds x-amz-date and the token itself.
    let wanted: Vec<&str> = signed.split(';').collect();
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(k, _)| {
            wanted.contains(&k.as_str()) && k.as_str() != "x-amz-date" && k.as_str() != "x-amz-security-token"
        })
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
        .collect();
    let host = headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or("localhost");
    let uri = format!("http://{host}{path_and_query}");
    let signable = SignableRequest::new(method, &uri, pairs.into_iter(), SignableBody::Bytes(body))
        .map_err(|_| denied("IncompleteSignatureException", "unsignable request"))?;
    let (_, expected) = sign(signable, &params)
        .map_err(|_| denied("IncompleteSignatureException", "cannot sign"))?
        .into_parts();
    if expected != signature {
        return Err(denied(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided.",
        ));
    }
    Ok(())
}

/// InvokeModel for embedding models: Titan (`inputText`) or Cohere (`texts`).
fn invoke_embeddings(path: &str, req: &Value) -> Response<MockBody> {
    if let Some(text) = req.get("inputText").and_then(Value::as_str) {
        let dims = req.get("dimensions").and_then(Value::as_u64).unwrap_or(8).min(1024);
        return json_response(
            StatusCode::OK,
            &json!({"embedding": responses::embedding(text, dims), "inputTextTokenCount": count_tokens(text)}),
        );
    }
    if let Some(texts) = req.get("texts").and_then(Value::as_array) {
        let embeddings: Vec<Value> = texts
            .iter()
            .map(|t| json!(responses::embedding(t.as_str().unwrap_or(""), 8)))
            .collect();
        return json_response(
            StatusCode::OK,
            &json!({"embeddings": embeddings, "id": "mock", "texts": texts}),
        );
    }
    error(
        StatusCode::BAD_REQUEST,
        "ValidationException",
        &format!("Malformed input request for {path}: expected inputText or texts"),
    )
}

fn tool_call(req: &Value) -> Option<(String, Value)> {
    let spec = req.pointer("/toolConfig/tools/0/toolSpec")?;
    let last = req.get("messages")?.as_array()?.last()?;
    let answered = last
        .get("content")
        .and_then(Value::as_array)
        .is_some_and(|c| c.iter().any(|b| b.get("toolResult").is_some()));
    if answered {
        return None;
    }
    let mut input = serde_json::Map::new();
    if let Some(props) = spec.pointer("/inputSchema/json/properties").and_then(Value::as_object) {
        for (k, schema) in props {
            let v = match schema.get("type").and_then(Value::as_str) {
                Some("integer" | "number") => json!(1),
                Some("boolean") => json!(true),
                _ => json!("mock"),
            };
            input.insert(k.clone(), v);
        }
    }
    Some((spec.get("name")?.as_str()?.to_owned(), Value::Object(input)))
}

fn prompt_tokens(req: &Value) -> u64 {
    let mut text = String::new();
    for m in req
        .get("messages")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        for b in m
            .get("content")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            if let Some(t) = b.get("text").and_then(Value::as_str) {
                text.push_str(t);
            }
        }
    }
    count_tokens(&text)
}

fn usage(input: u64, output: u64, k: &Knobs) -> Value {
    json!({"inputTokens": input, "outputTokens": output, "totalTokens": input + output,
           "cacheReadInputTokens": k.cached_tokens.unwrap_or(0), "cacheWriteInputTokens": k.cache_write_tokens.unwrap_or(0)})
}

/// One event-stream message with string headers.
fn frame(headers: &[(&str, &str)], payload: &[u8]) -> Bytes {
    let mut h = Vec::new();
    for (k, v) in headers {
        h.push(k.len() as u8);
        h.extend_from_slice(k.as_bytes());
        h.push(7);
        h.extend_from_slice(&(v.len() as u16).to_be_bytes());
        h.extend_from_slice(v.as_bytes());
    }
    let total = 16 + h.len() + payload.len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(h.len() as u32).to_be_bytes());
    let prelude = crc32fast::hash(&out);
    out.extend_from_slice(&prelude.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    Bytes::from(out)
}

fn event(kind: &str, v: &Value) -> Bytes {
    frame(
        &[
            (":event-type", kind),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        v.to_string().as_bytes(),
    )
}

#[allow(clippy::too_many_arguments)]
pub async fn respond(
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    creds: Option<&(String, String)>,
    op: &str,
    body: &[u8],
    defaults: &Knobs,
    attempt: Attempt,
) -> Result<Response<MockBody>, std::io::Error> {
    if let Some(c) = creds
        && let Err((status, kind, message)) = verify(method, path_and_query, headers, body, c)
    {
        attempt.complete();
        return Ok(error(status, kind, message));
    }
    let req: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            attempt.complete();
            return Ok(error(
                StatusCode::BAD_REQUEST,
                "ValidationException",
                "Malformed input request",
            ));
        }
    };
    if op == "invoke" {
        attempt.complete();
        return Ok(invoke_embeddings(path_and_query, &req));
    }
    let knobs = match req.get("mock").map(|m| serde_json::from_value::<Knobs>(m.clone())) {
        None => defaults.clone(),
        Some(Ok(k)) => k.over(defaults),
        Some(Err(e)) => {
            attempt.complete();
            return Ok(error(
                StatusCode::BAD_REQUEST,
                "ValidationException",
                &format!("bad mock knobs: {e}"),
            ));
        }
    };
    if req.get("messages").and_then(Value::as_array).is_none_or(Vec::is_empty) {
        attempt.complete();
        return Ok(error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "A conversation must start with a user message.",
        ));
    }
    crate::generate::pause(Knobs::ms(knobs.latency_ms)).await;
    if let Some(status) = knobs.status {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = error(status, error_type(status.as_u16()), "mock fault injected");
        if let Some(s) = knobs.retry_after_s
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            r.headers_mut().insert(http::header::RETRY_AFTER, v);
        }
        attempt.complete();
        return Ok(r);
    }
    let prompt = prompt_tokens(&req);
    let call = tool_call(&req);
    let chunks = knobs.chunks();
    let max = req
        .pointer("/inferenceConfig/maxTokens")
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX);
    let (n, stop) = if chunks > max {
        (max, "max_tokens")
    } else {
        (chunks, "end_turn")
    };

    if op == "converse-stream" {
        let (tx, body) = ChannelBody::channel();
        tokio::spawn(stream(prompt, call, n, stop, knobs, tx, attempt));
        let mut r = Response::new(body.boxed());
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/vnd.amazon.eventstream"),
        );
        return Ok(r);
    }
    crate::generate::pause(Knobs::ms(knobs.ttft_ms)).await;
    attempt.complete();
    let (content, stop, output) = match call {
        Some((name, input)) => (
            json!([{"toolUse": {"toolUseId": "tooluse_mock_1", "name": name, "input": input}}]),
            "tool_use",
            3,
        ),
        None => (json!([{"text": responses::text(n)}]), stop, n),
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop,
                "usage": usage(prompt, output, &knobs), "metrics": {"latencyMs": 1}}),
    ))
}

async fn send(tx: &mpsc::Sender<Chunk>, b: Bytes) -> bool {
    tx.send(Ok(b)).await.is_ok()
}

async fn stream(
    prompt: u64,
    call: Option<(String, Value)>,
    n: u64,
    stop: &'static str,
    k: Knobs,
    tx: mpsc::Sender<Chunk>,
    mut attempt: Attempt,
) {
    tokio::select! {
        biased;
        _ = crate::generate::pause(Knobs::ms(k.ttft_ms)) => {}
        _ = tx.closed() => return,
    }
    if !send(&tx, event("messageStart", &json!({"role": "assistant"}))).await {
        return;
    }
    let (stop, output) = match call {
        Some((name, input)) => {
            let start =
                json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "tooluse_mock_1", "name": name}}});
            if !send(&tx, event("contentBlockStart", &start)).await {
                return;
            }
            let args = input.to_string();
            for piece in args.as_bytes().chunks(8) {
                let d =
                    json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": String::from_utf8_lossy(piece)}}});
                if !send(&tx, event("contentBlockDelta", &d)).await {
                    return;
                }
            }
            ("tool_use", 3)
        }
        None => {
            for i in 0..n {
                let Some(a) = crate::generate::before_chunk(&k, i, &tx, attempt).await else {
                    return;
                };
                attempt = a;
                if k.error_after_chunks == Some(i) {
                    let kind = k.error_type.as_deref().unwrap_or("throttlingException");
                    let e = frame(
                        &[
                            (":message-type", "exception"),
                            (":exception-type", kind),
                            (":content-type", "application/json"),
                        ],
                        json!({"message": "Too many requests, please wait before trying again."})
                            .to_string()
                            .as_bytes(),
                    );
                    let _ = send(&tx, e).await;
                    attempt.complete();
                    return;
                }
                let d = json!({"contentBlockIndex": 0, "delta": {"text": responses::token(i)}});
                if !send(&tx, event("contentBlockDelta", &d)).await {
                    return;
                }
            }
            (stop, n)
        }
    };
    let tail = [
        event("contentBlockStop", &json!({"contentBlockIndex": 0})),
        event("messageStop", &json!({"stopReason": stop})),
        event(
            "metadata",
            &json!({"usage": usage(prompt, output, &k), "metrics": {"latencyMs": 1}}),
        ),
    ];
    for f in tail {
        if !send(&tx, f).await {
            return;
        }
    }
    attempt.complete();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_amz_dates() {
        assert_eq!(amz_date("19700101T000000Z"), Some(SystemTime::UNIX_EPOCH));
        let t = amz_date("20261122T073900Z").unwrap();
        let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs, 1_795_333_140);
        assert_eq!(amz_date("2026-11-22"), None);
    }
}
