//! OpenAI chat stream chunks ⇄ canonical deltas, and the in-stream error event.

use bytes::Bytes;
use serde_json::{Value, json};

use super::response::{finish_reason, now, stop_reason_from, usage_from, usage_value};
use crate::chat::{Delta, StopReason};
use crate::error::ErrorClass;
use crate::fault::StreamFault;
use crate::sse::SseEvent;
use crate::usage::Usage;

/// OpenAI chat chunks → canonical deltas.
#[derive(Debug, Default)]
pub struct ChunkDecoder {
    started: bool,
    /// Tool calls seen so far, by the upstream's index.
    tool_indices: Vec<u64>,
}

impl ChunkDecoder {
    pub fn decode(&mut self, event: &SseEvent, out: &mut Vec<Delta>) -> Result<(), StreamFault> {
        let Some(data) = event.data.as_deref() else {
            return Ok(());
        };
        if data == b"[DONE]" {
            out.push(Delta::End);
            return Ok(());
        }
        let v: Value = serde_json::from_slice(data).map_err(|_| StreamFault::Malformed)?;
        if let Some(err) = v.get("error") {
            return Err(StreamFault::UpstreamError {
                class: stream_error_class(err),
                message: err
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            });
        }
        if !self.started {
            self.started = true;
            out.push(Delta::Start {
                id: v.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
                model: v.get("model").and_then(Value::as_str).unwrap_or_default().to_owned(),
            });
        }
        if let Some(choice) = v.get("choices").and_then(|c| c.get(0)) {
            let delta = choice.get("delta").unwrap_or(&Value::Null);
            if let Some(t) = delta.get("content").and_then(Value::as_str)
                && !t.is_empty()
            {
                out.push(Delta::Text(t.to_owned()));
            }
            if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                for c in calls {
                    let upstream_index = c.get("index").and_then(Value::as_u64).unwrap_or(0);
                    let f = c.get("function").unwrap_or(&Value::Null);
                    let known = self.tool_indices.iter().position(|i| *i == upstream_index);
                    let index = match known {
                        Some(i) => i as u32,
                        None => {
                            self.tool_indices.push(upstream_index);
                            let i = (self.tool_indices.len() - 1) as u32;
                            out.push(Delta::ToolStart {
                                index: i,
                                id: c.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
                                name: f.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
                            });
                            i
                        }
                    };
                    if let Some(a) = f.get("arguments").and_then(Value::as_str)
                        && !a.is_empty()
                    {
                        out.push(Delta::ToolArgs {
                            index,
                            json: a.to_owned(),
                        });
                    }
                }
            }
            if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
                out.push(Delta::Stop {
                    reason: stop_reason_from(f),
                    stop_sequence: None,
                });
            }
        }
        if let Some(u) = v.get("usage")
            && !u.is_null()
        {
            out.push(Delta::Usage(usage_from(Some(u))));
        }
        Ok(())
    }
}

/// The class of an OpenAI-style error object met inside a stream.
pub fn stream_error_class(err: &Value) -> ErrorClass {
    let kind = err.get("type").and_then(Value::as_str).unwrap_or("");
    let code = err.get("code").and_then(Value::as_str).unwrap_or("");
    match (kind, code) {
        (_, "upstream_overloaded") | ("overloaded_error", _) => ErrorClass::Overloaded,
        (_, "rate_limit_exceeded" | "upstream_rate_limited") | ("rate_limit_error", _) => ErrorClass::RateLimited,
        (_, "context_length_exceeded") => ErrorClass::ContextLength,
        _ => ErrorClass::Server,
    }
}

/// Canonical deltas → OpenAI chat chunks.
#[derive(Debug)]
pub struct ChunkEncoder {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    usage: Option<Usage>,
    stop: Option<StopReason>,
}

impl ChunkEncoder {
    pub fn new(include_usage: bool) -> ChunkEncoder {
        ChunkEncoder {
            id: String::new(),
            model: String::new(),
            created: now(),
            include_usage,
            usage: None,
            stop: None,
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Bytes {
        let v = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        sse_data(&v)
    }

    pub fn encode(&mut self, d: &Delta, out: &mut Vec<Bytes>) {
        match d {
            Delta::Start { id, model } => {
                self.id = if id.starts_with("chatcmpl") {
                    id.clone()
                } else {
                    format!("chatcmpl-{id}")
                };
                self.model = model.clone();
                out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
            }
            Delta::Text(t) => out.push(self.chunk(json!({"content": t}), None)),
            Delta::ToolStart { index, id, name } => out.push(self.chunk(
                json!({"tool_calls": [{"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
                None,
            )),
            Delta::ToolArgs { index, json } => out.push(self.chunk(
                json!({"tool_calls": [{"index": index, "function": {"arguments": json}}]}),
                None,
            )),
            Delta::Stop { reason, .. } => self.stop = Some(*reason),
            Delta::Usage(u) => self.usage = Some(*u),
            Delta::End => {
                let reason = finish_reason(self.stop.unwrap_or(StopReason::EndTurn));
                out.push(self.chunk(json!({}), Some(reason)));
                if self.include_usage
                    && let Some(u) = &self.usage
                {
                    let v = json!({
                        "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                        "model": self.model, "choices": [], "usage": usage_value(u),
                    });
                    out.push(sse_data(&v));
                }
                out.push(Bytes::from_static(b"data: [DONE]\n\n"));
            }
        }
    }

    pub fn error_event(code: &str, message: &str) -> Bytes {
        sse_data(&json!({"error": {"message": message, "type": "server_error", "param": null, "code": code}}))
    }
}

fn sse_data(v: &Value) -> Bytes {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"data: ");
    let _ = serde_json::to_writer(&mut out, v);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}
