//! Gemini stream chunks (`streamGenerateContent?alt=sse`) → canonical deltas.

use serde_json::Value;

use super::generate::{stop_reason_from, usage_from};
use crate::chat::{Delta, StopReason, arguments_text};
use crate::error::ErrorClass;
use crate::fault::StreamFault;
use crate::sse::SseEvent;
use crate::usage::Usage;

/// Gemini stream chunks → canonical deltas. The stream has no end marker: it is complete once
/// a chunk carried a finish reason.
#[derive(Debug, Default)]
pub struct ChunkDecoder {
    started: bool,
    calls: u32,
    usage: Option<Usage>,
    ended: bool,
}

impl ChunkDecoder {
    pub fn decode(&mut self, event: &SseEvent, out: &mut Vec<Delta>) -> Result<(), StreamFault> {
        let Some(data) = event.data.as_deref() else {
            return Ok(());
        };
        let v: Value = serde_json::from_slice(data).map_err(|_| StreamFault::Malformed)?;
        if let Some(e) = v.get("error") {
            return Err(StreamFault::UpstreamError {
                class: ErrorClass::Server,
                message: e.get("message").and_then(Value::as_str).unwrap_or_default().to_owned(),
            });
        }
        if !self.started {
            self.started = true;
            out.push(Delta::Start {
                id: v
                    .get("responseId")
                    .and_then(Value::as_str)
                    .unwrap_or("gemini")
                    .to_owned(),
                model: v
                    .get("modelVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            });
        }
        if let Some(reason) = v.pointer("/promptFeedback/blockReason").and_then(Value::as_str) {
            return Err(StreamFault::UpstreamError {
                class: ErrorClass::ContentPolicy,
                message: format!("The prompt was blocked by the provider's safety filters ({reason})."),
            });
        }
        let c = v.pointer("/candidates/0");
        for p in c
            .and_then(|c| c.pointer("/content/parts"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            if p.get("thought").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            if let Some(t) = p.get("text").and_then(Value::as_str) {
                if !t.is_empty() {
                    out.push(Delta::Text(t.to_owned()));
                }
            } else if let Some(f) = p.get("functionCall") {
                let index = self.calls;
                self.calls += 1;
                out.push(Delta::ToolStart {
                    index,
                    id: f
                        .get("id")
                        .and_then(Value::as_str)
                        .map_or_else(|| format!("call_{index}"), str::to_owned),
                    name: f.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
                });
                out.push(Delta::ToolArgs {
                    index,
                    json: arguments_text(f.get("args").unwrap_or(&Value::Null)),
                });
            }
        }
        if let Some(u) = v.get("usageMetadata") {
            self.usage = Some(usage_from(u));
        }
        if let Some(reason) = c.and_then(|c| c.get("finishReason")).and_then(Value::as_str) {
            let mut stop = stop_reason_from(reason);
            if self.calls > 0 && stop == StopReason::EndTurn {
                stop = StopReason::ToolUse;
            }
            out.push(Delta::Stop {
                reason: stop,
                stop_sequence: None,
            });
            if let Some(u) = self.usage {
                out.push(Delta::Usage(u));
            }
            out.push(Delta::End);
            self.ended = true;
        }
        Ok(())
    }
}
