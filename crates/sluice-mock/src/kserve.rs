//! A prediction server speaking KServe's v2 inference protocol (`POST /v2/models/{name}/infer`):
//! one score per element of the first input, deterministic for the same input, in an `outputs`
//! tensor. Knobs come in the request's `parameters.mock` (v2 requests carry a `parameters` map).

use http::{Response, StatusCode};
use serde_json::{Value, json};

use crate::knobs::Knobs;
use crate::{Attempt, MockBody, json_response};

/// `/v2/models/{name}/infer` → name.
pub fn route(path: &str) -> Option<&str> {
    path.strip_prefix("/v2/models/")?.strip_suffix("/infer")
}

fn error(status: StatusCode, message: &str) -> Response<MockBody> {
    json_response(status, &json!({"error": message}))
}

/// A score in [0, 1) for `item`, stable across runs.
fn score(model: &str, item: &Value) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in model.bytes().chain(item.to_string().bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % 1000) as f64 / 1000.0
}

pub async fn respond(model: &str, body: &[u8], defaults: &Knobs, attempt: Attempt) -> Response<MockBody> {
    attempt.complete();
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return error(StatusCode::BAD_REQUEST, "invalid JSON");
    };
    let knobs = match req
        .pointer("/parameters/mock")
        .map(|m| serde_json::from_value::<Knobs>(m.clone()))
    {
        None => defaults.clone(),
        Some(Ok(k)) => k.over(defaults),
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, &format!("bad mock knobs: {e}")),
    };
    crate::generate::pause(Knobs::ms(knobs.latency_ms)).await;
    if let Some(status) = knobs.status {
        return error(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "mock fault injected",
        );
    }
    let Some(first) = req.pointer("/inputs/0") else {
        return error(StatusCode::BAD_REQUEST, "inputs: at least one input tensor is required");
    };
    let Some(data) = first.get("data").and_then(Value::as_array) else {
        return error(StatusCode::BAD_REQUEST, "inputs[0].data must be an array");
    };
    if knobs.malformed == Some(true) {
        // A well-formed JSON answer that breaks the tensor contract.
        return json_response(StatusCode::OK, &json!({"model_name": model, "outputs": "not-a-tensor"}));
    }
    let scores: Vec<f64> = data.iter().map(|item| score(model, item)).collect();
    json_response(
        StatusCode::OK,
        &json!({"model_name": model, "model_version": "1", "id": req.get("id").cloned().unwrap_or(json!("mock")),
                "outputs": [{"name": "scores", "shape": [1, scores.len()], "datatype": "FP32", "data": scores}]}),
    )
}
