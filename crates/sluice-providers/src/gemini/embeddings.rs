//! Embeddings on Gemini: an OpenAI embeddings request → `batchEmbedContents`, and the answer back
//! as OpenAI's list (floats or base64 as asked).

use bytes::Bytes;
use serde_json::{Value, json};

use crate::fault::MalformedResponse;

/// OpenAI embeddings request → `batchEmbedContents`.
pub(super) fn embeddings_request(body: &[u8], model: &str) -> Result<Bytes, crate::error::RequestError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| crate::error::RequestError::InvalidJson { detail: e.to_string() })?;
    let inputs: Vec<String> = match v.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect()
        }
        _ => {
            return Err(crate::error::RequestError::Unsupported {
                param: "input (token arrays)".to_owned(),
            });
        }
    };
    let dims = v.get("dimensions").and_then(Value::as_u64);
    let requests: Vec<Value> = inputs
        .iter()
        .map(|t| {
            let mut r = json!({"model": format!("models/{model}"), "content": {"parts": [{"text": t}]}});
            if let Some(d) = dims {
                r["outputDimensionality"] = json!(d);
            }
            r
        })
        .collect();
    Ok(Bytes::from(json!({"requests": requests}).to_string()))
}

/// `batchEmbedContents` answer → OpenAI's embeddings list (floats or base64 as asked).
pub(super) fn embeddings_response(req_body: &[u8], body: &[u8], model: &str) -> Result<Bytes, MalformedResponse> {
    let v: Value = serde_json::from_slice(body).map_err(|e| MalformedResponse(e.to_string()))?;
    let list = v
        .get("embeddings")
        .and_then(Value::as_array)
        .ok_or_else(|| MalformedResponse("no embeddings".to_owned()))?;
    let base64 = serde_json::from_slice::<Value>(req_body)
        .ok()
        .and_then(|r| r.get("encoding_format").and_then(Value::as_str).map(|f| f == "base64"))
        .unwrap_or(false);
    let data: Vec<Value> = list
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let values: Vec<f32> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_f64).map(|x| x as f32).collect())
                .unwrap_or_default();
            let embedding = if base64 {
                let bytes: Vec<u8> = values.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64_encode(&bytes))
            } else {
                json!(values)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(Bytes::from(
        json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": 0, "total_tokens": 0}})
            .to_string(),
    ))
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_known_values() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    }
}
