//! Embedding models on Bedrock through InvokeModel: Titan and Cohere requests, and their answers
//! as OpenAI's list.

use bytes::Bytes;
use serde_json::{Value, json};

use crate::error::RequestError;
use crate::fault::MalformedResponse;
use crate::usage::Usage;

/// Embedding models on Bedrock: Amazon Titan (`amazon.titan-embed-*`, one text per request)
/// and Cohere (`cohere.embed-*`, a batch of texts), through InvokeModel.
pub(super) fn embeddings_request(body: &[u8], model: &str) -> Result<Bytes, RequestError> {
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
pub(super) fn embeddings_response(
    req_body: &[u8],
    body: &[u8],
    model: &str,
) -> Result<(Bytes, Option<Usage>), MalformedResponse> {
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
