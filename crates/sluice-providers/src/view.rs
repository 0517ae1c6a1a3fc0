//! The request envelope: what the gateway reads of a client body without parsing it whole
//! (model, stream, usage option, metadata, token cap, user), where each sits in the bytes, and
//! the in-place edits the pass-through makes (`model`, `stream_options`, the token cap).

use std::ops::Range;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use crate::error::RequestError;
use crate::wire::{Endpoint, Wire};

/// What the gateway needs to know about a client request, and where in the bytes it sits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestView {
    pub model: String,
    pub stream: bool,
    /// The client asked for the final usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
    /// String entries of the request's `metadata` object.
    pub metadata: Vec<(String, String)>,
    /// The most output tokens the request asks for (`max_tokens` and its synonyms).
    pub max_tokens: Option<u64>,
    /// The end user the client names (`user`; Anthropic: `metadata.user_id`). Untrusted: it
    /// keys limits only for keys allowed to set it.
    pub user: Option<String>,
    model_span: Range<usize>,
    stream_options_span: Option<Range<usize>>,
    /// Where `max_tokens`, `max_completion_tokens` and `max_output_tokens` sit, when present.
    token_cap_spans: [Option<Range<usize>>; 3],
    close_brace: usize,
    /// OpenAI's format, where a stream reports usage only when asked (`stream_options`).
    usage_on_request: bool,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(borrow, default)]
    stream: Option<&'a RawValue>,
    #[serde(borrow, default)]
    stream_options: Option<&'a RawValue>,
    #[serde(borrow, default)]
    messages: Option<&'a RawValue>,
    #[serde(borrow, default)]
    prompt: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(borrow, default)]
    metadata: Option<&'a RawValue>,
    // A `null` cap is kept as its raw value: a cap spliced in must replace it, not repeat the key.
    #[serde(borrow, default, deserialize_with = "raw_even_null")]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "raw_even_null")]
    max_completion_tokens: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "raw_even_null")]
    max_output_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    user: Option<&'a RawValue>,
}

/// A present field's raw value, `null` included (serde's `Option` would make that `None`).
fn raw_even_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue as Deserialize<'de>>::deserialize(d).map(Some)
}

fn span(base: &str, raw: &RawValue) -> Range<usize> {
    let start = raw.get().as_ptr() as usize - base.as_ptr() as usize;
    start..start + raw.get().len()
}

fn first_byte(raw: &RawValue) -> u8 {
    raw.get().as_bytes().first().copied().unwrap_or(b' ')
}

impl RequestView {
    pub fn parse(endpoint: Endpoint, body: &[u8]) -> Result<RequestView, RequestError> {
        let text = std::str::from_utf8(body).map_err(|_| RequestError::InvalidJson {
            detail: "the body is not UTF-8".to_owned(),
        })?;
        let trimmed = text.trim_ascii();
        if trimmed.is_empty() {
            return Err(RequestError::InvalidJson {
                detail: "the body is empty".to_owned(),
            });
        }
        if !trimmed.starts_with('{') {
            // serde would also accept a struct written as an array; the API takes only objects.
            return match serde_json::from_str::<IgnoredAny>(text) {
                Ok(_) => Err(RequestError::NotAnObject),
                Err(e) => Err(RequestError::InvalidJson { detail: e.to_string() }),
            };
        }
        if endpoint == Endpoint::Predict {
            // Any JSON object; the route names the model, its schema checks the body.
            return Ok(RequestView {
                close_brace: text.trim_ascii_end().len() - 1,
                ..RequestView::default()
            });
        }
        let env: Envelope<'_> =
            serde_json::from_str(text).map_err(|e| RequestError::InvalidJson { detail: e.to_string() })?;
        let close_brace = text.trim_ascii_end().len() - 1;

        let model_raw = env.model.ok_or(RequestError::MissingField { param: "model" })?;
        let model: String = serde_json::from_str(model_raw.get()).map_err(|_| RequestError::InvalidType {
            param: "model",
            expected: "a string",
        })?;
        if model.is_empty() {
            return Err(RequestError::InvalidValue {
                param: "model",
                reason: "must not be empty",
            });
        }

        match endpoint {
            Endpoint::ChatCompletions | Endpoint::Messages => {
                let m = env.messages.ok_or(RequestError::MissingField { param: "messages" })?;
                if first_byte(m) != b'[' {
                    return Err(RequestError::InvalidType {
                        param: "messages",
                        expected: "an array",
                    });
                }
                if m.get()[1..].trim_ascii_start().starts_with(']') {
                    return Err(RequestError::InvalidValue {
                        param: "messages",
                        reason: "must not be empty",
                    });
                }
            }
            Endpoint::Completions => {
                let p = env.prompt.ok_or(RequestError::MissingField { param: "prompt" })?;
                if !matches!(first_byte(p), b'"' | b'[') {
                    return Err(RequestError::InvalidType {
                        param: "prompt",
                        expected: "a string or an array",
                    });
                }
            }
            Endpoint::Predict => {}
            Endpoint::Embeddings | Endpoint::Responses => {
                let i = env.input.ok_or(RequestError::MissingField { param: "input" })?;
                if !matches!(first_byte(i), b'"' | b'[') {
                    return Err(RequestError::InvalidType {
                        param: "input",
                        expected: "a string or an array",
                    });
                }
            }
        }

        if endpoint == Endpoint::Messages {
            // Anthropic's API requires it, so a Messages request without it is refused here
            // whichever provider the route picks.
            let m = env
                .max_tokens
                .filter(|m| m.get() != "null")
                .ok_or(RequestError::MissingField { param: "max_tokens" })?;
            if m.get().parse::<u64>().is_err() {
                return Err(RequestError::InvalidType {
                    param: "max_tokens",
                    expected: "a positive integer",
                });
            }
        }

        let stream = match env.stream {
            None => false,
            Some(raw) => match raw.get() {
                "true" => true,
                "false" | "null" => false,
                _ => {
                    return Err(RequestError::InvalidType {
                        param: "stream",
                        expected: "a boolean",
                    });
                }
            },
        };
        if stream && endpoint == Endpoint::Embeddings {
            return Err(RequestError::InvalidValue {
                param: "stream",
                reason: "embeddings cannot be streamed",
            });
        }

        let mut include_usage = false;
        if let Some(raw) = env.stream_options
            && raw.get() != "null"
        {
            #[derive(Deserialize)]
            struct StreamOptions {
                #[serde(default)]
                include_usage: Option<bool>,
            }
            let so: StreamOptions = serde_json::from_str(raw.get()).map_err(|_| RequestError::InvalidType {
                param: "stream_options",
                expected: "an object with a boolean include_usage",
            })?;
            include_usage = so.include_usage.unwrap_or(false);
        }

        let metadata = match env.metadata {
            Some(raw) if raw.get() != "null" => {
                let map: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(raw.get()).map_err(|_| RequestError::InvalidType {
                        param: "metadata",
                        expected: "an object",
                    })?;
                map.into_iter()
                    .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_owned())))
                    .collect()
            }
            _ => Vec::new(),
        };

        let user = env
            .user
            .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
            .or_else(|| metadata.iter().find(|(k, _)| k == "user_id").map(|(_, v)| v.clone()));
        let max_tokens = [env.max_tokens, env.max_completion_tokens, env.max_output_tokens]
            .into_iter()
            .flatten()
            .find_map(|raw| raw.get().parse::<u64>().ok());
        Ok(RequestView {
            model,
            stream,
            include_usage,
            metadata,
            max_tokens,
            user,
            model_span: span(text, model_raw),
            stream_options_span: env.stream_options.map(|r| span(text, r)),
            token_cap_spans: [env.max_tokens, env.max_completion_tokens, env.max_output_tokens]
                .map(|raw| raw.map(|r| span(text, r))),
            close_brace,
            usage_on_request: endpoint.wire() == Wire::OpenAi,
        })
    }

    /// The body to send upstream: `body` with `model` set to `upstream_model` and, on streams,
    /// `stream_options.include_usage` forced on so every stream reports its usage. Every other
    /// byte is the client's.
    pub fn upstream_body(&self, body: &[u8], upstream_model: &str) -> Bytes {
        let mut edits: Vec<(Range<usize>, Vec<u8>)> = Vec::with_capacity(2);
        if upstream_model != self.model {
            edits.push((self.model_span.clone(), json_string(upstream_model)));
        }
        if self.stream && !self.include_usage && self.usage_on_request {
            match &self.stream_options_span {
                Some(r) => edits.push((r.clone(), stream_options_with_usage(&body[r.clone()]))),
                None => edits.push((
                    self.close_brace..self.close_brace,
                    br#","stream_options":{"include_usage":true}"#.to_vec(),
                )),
            }
        }
        if edits.is_empty() {
            return Bytes::copy_from_slice(body);
        }
        splice(body, edits)
    }
}

impl RequestView {
    /// `body` with its output-token cap lowered to `cap`, or `None` when it asks for no more
    /// already: every cap field present (`max_tokens`, `max_completion_tokens`,
    /// `max_output_tokens`) whose value is above `cap` or not a number gets `cap` in place; with
    /// none present, `field` is added at the end. Every other byte is the client's — key order
    /// (and with it a JSON schema's property order) included.
    pub fn with_token_cap(&self, body: &[u8], field: &str, cap: u64) -> Option<Bytes> {
        let value = cap.to_string().into_bytes();
        let mut edits: Vec<(Range<usize>, Vec<u8>)> = Vec::with_capacity(3);
        for r in self.token_cap_spans.iter().flatten() {
            let current = std::str::from_utf8(&body[r.clone()])
                .ok()
                .and_then(|t| t.parse::<u64>().ok());
            if current.is_none_or(|t| t > cap) {
                edits.push((r.clone(), value.clone()));
            }
        }
        if self.token_cap_spans.iter().all(Option::is_none) {
            // Right after the last member (or the opening brace of an empty object).
            let last = body[..self.close_brace]
                .iter()
                .rposition(|b| !b.is_ascii_whitespace())
                .unwrap_or(0);
            let mut added = if body.get(last) == Some(&b'{') {
                Vec::new()
            } else {
                b",".to_vec()
            };
            added.extend_from_slice(&json_string(field));
            added.push(b':');
            added.extend_from_slice(&value);
            edits.push((last + 1..last + 1, added));
        }
        if edits.is_empty() {
            return None;
        }
        Some(splice(body, edits))
    }
}

/// `body` with each range replaced by its bytes (ranges do not overlap).
fn splice(body: &[u8], mut edits: Vec<(Range<usize>, Vec<u8>)>) -> Bytes {
    edits.sort_by_key(|(r, _)| r.start);
    let mut out = Vec::with_capacity(body.len() + 64);
    let mut at = 0;
    for (r, replacement) in edits {
        out.extend_from_slice(&body[at..r.start]);
        out.extend_from_slice(&replacement);
        at = r.end;
    }
    out.extend_from_slice(&body[at..]);
    Bytes::from(out)
}

fn json_string(s: &str) -> Vec<u8> {
    serde_json::to_vec(s).unwrap_or_else(|_| b"\"\"".to_vec())
}

/// `stream_options` with `include_usage: true`, keeping the client's other options.
fn stream_options_with_usage(raw: &[u8]) -> Vec<u8> {
    let mut map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(raw).unwrap_or_default();
    map.insert("include_usage".to_owned(), serde_json::Value::Bool(true));
    serde_json::to_vec(&map).unwrap_or_else(|_| br#"{"include_usage":true}"#.to_vec())
}
