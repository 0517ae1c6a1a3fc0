//! OpenAI-shaped payloads: completions, chunks, embeddings, errors.

use serde_json::{Value, json};

const WORDS: &[&str] = &[
    "Sluice",
    "is",
    "a",
    "fast",
    "gateway",
    "for",
    "models;",
    "this",
    "answer",
    "comes",
    "from",
    "its",
    "mock",
    "provider,",
    "one",
    "token",
    "per",
    "chunk.",
];

pub fn token(i: u64) -> String {
    format!("{} ", WORDS[(i as usize) % WORDS.len()])
}

pub fn text(chunks: u64) -> String {
    (0..chunks).map(token).collect()
}

/// Roughly four characters per token, as providers bill English.
pub fn count_tokens(s: &str) -> u64 {
    (s.chars().count() as u64).div_ceil(4).max(1)
}

/// Text of every message (or the prompt / input), for a prompt-token estimate.
pub fn prompt_text(req: &Value) -> String {
    let mut out = String::new();
    let mut walk = |v: &Value| collect_text(v, &mut out);
    if let Some(m) = req.get("messages") {
        walk(m);
    }
    if let Some(p) = req.get("prompt") {
        walk(p);
    }
    if let Some(i) = req.get("input") {
        walk(i);
    }
    out
}

fn collect_text(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push_str(s);
            out.push(' ');
        }
        Value::Array(a) => a.iter().for_each(|x| collect_text(x, out)),
        Value::Object(o) => o
            .iter()
            .filter(|(k, _)| *k == "content" || *k == "text")
            .for_each(|(_, x)| collect_text(x, out)),
        _ => {}
    }
}

pub fn usage(prompt: u64, completion: u64) -> Value {
    json!({ "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion })
}

/// Usage with `prompt_tokens_details.cached_tokens` when some prompt tokens came from a cache.
pub fn usage_cached(prompt: u64, completion: u64, cached: Option<u64>) -> Value {
    let mut u = usage(prompt, completion);
    if let Some(c) = cached {
        u["prompt_tokens_details"] = json!({ "cached_tokens": c });
    }
    u
}

pub fn error_body(status: u16, message: &str) -> Value {
    let (kind, code) = match status {
        400 | 422 => ("invalid_request_error", "invalid_request"),
        401 => ("invalid_request_error", "invalid_api_key"),
        403 => ("permission_denied", "permission_denied"),
        404 => ("invalid_request_error", "model_not_found"),
        429 => ("rate_limit_error", "rate_limit_exceeded"),
        _ => ("server_error", "server_error"),
    };
    json!({ "error": { "message": message, "type": kind, "param": null, "code": code } })
}

/// A tool call for the first tool offered, when the conversation is waiting for one.
pub fn tool_call(req: &Value) -> Option<(String, String)> {
    let tools = req.get("tools")?.as_array()?;
    let last_role = req.get("messages")?.as_array()?.last()?.get("role")?.as_str()?;
    if tools.is_empty() || last_role == "tool" || req.get("tool_choice").and_then(Value::as_str) == Some("none") {
        return None;
    }
    let function = tools.first()?.get("function")?;
    let name = function.get("name")?.as_str()?.to_owned();
    let mut args = serde_json::Map::new();
    if let Some(props) = function.pointer("/parameters/properties").and_then(Value::as_object) {
        for (k, schema) in props {
            let v = match schema.get("type").and_then(Value::as_str) {
                Some("integer" | "number") => json!(1),
                Some("boolean") => json!(true),
                _ => json!("mock"),
            };
            args.insert(k.clone(), v);
        }
    }
    Some((name, Value::Object(args).to_string()))
}

/// Deterministic unit-ish vector for `text`.
pub fn embedding(text: &str, dims: u64) -> Vec<f32> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    (0..dims)
        .map(|i| {
            for b in text.bytes().chain(i.to_le_bytes()) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x100_0000_01b3);
            }
            ((h >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A hashed bag of the text's words (lower-cased letters and digits), unit length: the same
/// words give the same vector whatever their order, and each word more or less moves it.
pub fn words_embedding(text: &str, dims: u64) -> Vec<f32> {
    let dims = dims.max(1);
    let mut v = vec![0f32; dims as usize];
    let lower = text.to_lowercase();
    for word in lower.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in word.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        v[(h % dims) as usize] += if h >> 63 == 0 { 1.0 } else { -1.0 };
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 of little-endian f32s, as OpenAI's `encoding_format: base64` returns.
pub fn base64_f32(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= c.len() {
                out.push(B64[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_known_values() {
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32(&[0.0, 0.0]), "AAAAAAAAAAA=");
    }
}
