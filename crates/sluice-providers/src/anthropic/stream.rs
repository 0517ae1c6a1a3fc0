//! Anthropic stream events ⇄ canonical deltas, and the in-stream error event.

use bytes::Bytes;
use serde_json::{Value, json};

use super::error::classify;
use super::response::{message_id, stop_reason_from, stop_reason_str, usage_from, usage_value};
use crate::chat::{Delta, StopReason};
use crate::fault::StreamFault;
use crate::sse::SseEvent;
use crate::usage::Usage;

fn sse(event: &str, v: &Value) -> Bytes {
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    let _ = serde_json::to_writer(&mut out, v);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// An in-stream error event in Anthropic's format.
pub fn error_event(kind: &str, message: &str) -> Bytes {
    sse(
        "error",
        &json!({"type": "error", "error": {"type": kind, "message": message}}),
    )
}

/// Anthropic stream events → canonical deltas.
#[derive(Debug, Default)]
pub struct EventDecoder {
    /// For each content block index: the tool-call number if it is a tool_use block.
    blocks: Vec<Option<u32>>,
    tools: u32,
    usage: Usage,
}

impl EventDecoder {
    /// The prompt's tokens as `message_start` gave them, once it has.
    pub fn prompt_tokens(&self) -> Option<u64> {
        Some(self.usage.prompt_tokens).filter(|n| *n > 0)
    }

    pub fn decode(&mut self, event: &SseEvent, out: &mut Vec<Delta>) -> Result<(), StreamFault> {
        let Some(data) = event.data.as_deref() else {
            return Ok(());
        };
        let v: Value = serde_json::from_slice(data).map_err(|_| StreamFault::Malformed)?;
        let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
        match kind {
            "message_start" => {
                let m = v.get("message").unwrap_or(&Value::Null);
                if let Some(u) = m.get("usage") {
                    self.usage = usage_from(u);
                }
                out.push(Delta::Start {
                    id: m.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
                    model: m.get("model").and_then(Value::as_str).unwrap_or_default().to_owned(),
                });
            }
            "content_block_start" => {
                let index = v.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                let b = v.get("content_block").unwrap_or(&Value::Null);
                if self.blocks.len() <= index {
                    self.blocks.resize(index + 1, None);
                }
                match b.get("type").and_then(Value::as_str) {
                    Some("tool_use") => {
                        let n = self.tools;
                        self.tools += 1;
                        self.blocks[index] = Some(n);
                        out.push(Delta::ToolStart {
                            index: n,
                            id: b.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
                            name: b.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
                        });
                    }
                    Some("text") => {
                        if let Some(t) = b.get("text").and_then(Value::as_str)
                            && !t.is_empty()
                        {
                            out.push(Delta::Text(t.to_owned()));
                        }
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let index = v.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                let d = v.get("delta").unwrap_or(&Value::Null);
                match d.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        let t = d.get("text").and_then(Value::as_str).unwrap_or_default();
                        if !t.is_empty() {
                            out.push(Delta::Text(t.to_owned()));
                        }
                    }
                    Some("input_json_delta") => {
                        let tool = self
                            .blocks
                            .get(index)
                            .copied()
                            .flatten()
                            .ok_or(StreamFault::Malformed)?;
                        let j = d.get("partial_json").and_then(Value::as_str).unwrap_or_default();
                        if !j.is_empty() {
                            out.push(Delta::ToolArgs {
                                index: tool,
                                json: j.to_owned(),
                            });
                        }
                    }
                    _ => {} // thinking and signature deltas have no OpenAI equivalent
                }
            }
            "message_delta" => {
                if let Some(u) = v.get("usage") {
                    let later = usage_from(u);
                    // Output tokens are cumulative; input counts, when repeated, are final.
                    self.usage.completion_tokens = later.completion_tokens;
                    if later.prompt_tokens > 0 {
                        self.usage.prompt_tokens = later.prompt_tokens;
                        self.usage.cached_tokens = later.cached_tokens;
                        self.usage.cache_write_tokens = later.cache_write_tokens;
                    }
                    self.usage.total_tokens = self.usage.prompt_tokens + self.usage.completion_tokens;
                }
                let d = v.get("delta").unwrap_or(&Value::Null);
                if let Some(r) = d.get("stop_reason").and_then(Value::as_str) {
                    out.push(Delta::Stop {
                        reason: stop_reason_from(r),
                        stop_sequence: d.get("stop_sequence").and_then(Value::as_str).map(str::to_owned),
                    });
                }
                out.push(Delta::Usage(self.usage));
            }
            "message_stop" => out.push(Delta::End),
            "error" => {
                let e = v.get("error").unwrap_or(&Value::Null);
                let kind = e.get("type").and_then(Value::as_str).unwrap_or_default();
                let message = e.get("message").and_then(Value::as_str).unwrap_or_default();
                return Err(StreamFault::UpstreamError {
                    class: classify(200, kind, message),
                    message: message.to_owned(),
                });
            }
            _ => {} // ping, content_block_stop
        }
        Ok(())
    }
}

/// Canonical deltas → Anthropic stream events.
#[derive(Debug, Default)]
pub struct EventEncoder {
    model: String,
    /// Index of the open content block and whether it is text.
    open: Option<(u32, bool)>,
    next_block: u32,
    stop: Option<(StopReason, Option<String>)>,
    usage: Usage,
}

impl EventEncoder {
    fn close(&mut self, out: &mut Vec<Bytes>) {
        if let Some((index, _)) = self.open.take() {
            out.push(sse(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            ));
        }
    }

    fn open(&mut self, block: Value, text: bool, out: &mut Vec<Bytes>) -> u32 {
        self.close(out);
        let index = self.next_block;
        self.next_block += 1;
        self.open = Some((index, text));
        out.push(sse(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        index
    }

    pub fn encode(&mut self, d: &Delta, out: &mut Vec<Bytes>) {
        match d {
            Delta::Start { id, model } => {
                self.model = model.clone();
                let message = json!({
                    "id": message_id(id), "type": "message", "role": "assistant", "model": model,
                    "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": 0, "output_tokens": 0},
                });
                out.push(sse(
                    "message_start",
                    &json!({"type": "message_start", "message": message}),
                ));
            }
            Delta::Text(t) => {
                let index = match self.open {
                    Some((i, true)) => i,
                    _ => self.open(json!({"type": "text", "text": ""}), true, out),
                };
                out.push(sse(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": t}}),
                ));
            }
            Delta::ToolStart { id, name, .. } => {
                self.open(
                    json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                    false,
                    out,
                );
            }
            Delta::ToolArgs { json, .. } => {
                if let Some((index, false)) = self.open {
                    out.push(sse(
                        "content_block_delta",
                        &json!({"type": "content_block_delta", "index": index,
                                "delta": {"type": "input_json_delta", "partial_json": json}}),
                    ));
                }
            }
            Delta::Stop { reason, stop_sequence } => self.stop = Some((*reason, stop_sequence.clone())),
            Delta::Usage(u) => self.usage = *u,
            Delta::End => {
                self.close(out);
                let (reason, seq) = self.stop.clone().unwrap_or((StopReason::EndTurn, None));
                out.push(sse(
                    "message_delta",
                    &json!({"type": "message_delta",
                            "delta": {"stop_reason": stop_reason_str(reason), "stop_sequence": seq},
                            "usage": usage_value(&self.usage)}),
                ));
                out.push(sse("message_stop", &json!({"type": "message_stop"})));
            }
        }
    }
}
