//! ConverseStream events (already unframed from AWS event-stream) → canonical deltas.

use serde_json::Value;

use super::converse::{stop_reason_from, usage_from};
use crate::chat::{Delta, StopReason};
use crate::error::ErrorClass;
use crate::fault::StreamFault;
use crate::sse::SseEvent;

/// ConverseStream events → canonical deltas.
#[derive(Debug, Default)]
pub struct EventDecoder {
    /// Content block index → tool-call number.
    blocks: Vec<Option<u32>>,
    tools: u32,
    stop: Option<StopReason>,
}

impl EventDecoder {
    pub fn decode(&mut self, event: &SseEvent, out: &mut Vec<Delta>) -> Result<(), StreamFault> {
        let name = event.event.as_deref().unwrap_or_default();
        let v: Value = match event.data.as_deref() {
            Some(d) if !d.is_empty() => serde_json::from_slice(d).map_err(|_| StreamFault::Malformed)?,
            _ => Value::Null,
        };
        if let Some(kind) = name.strip_prefix("exception:") {
            let class = match kind {
                "throttlingException" => ErrorClass::RateLimited,
                "serviceUnavailableException" | "modelNotReadyException" => ErrorClass::Overloaded,
                "validationException" => ErrorClass::InvalidRequest,
                _ => ErrorClass::Server,
            };
            return Err(StreamFault::UpstreamError {
                class,
                message: v.get("message").and_then(Value::as_str).unwrap_or(kind).to_owned(),
            });
        }
        let index = v.get("contentBlockIndex").and_then(Value::as_u64).unwrap_or(0) as usize;
        match name {
            "messageStart" => out.push(Delta::Start {
                id: "bedrock".to_owned(),
                model: String::new(),
            }),
            "contentBlockStart" => {
                if let Some(t) = v.pointer("/start/toolUse") {
                    if self.blocks.len() <= index {
                        self.blocks.resize(index + 1, None);
                    }
                    let n = self.tools;
                    self.tools += 1;
                    self.blocks[index] = Some(n);
                    out.push(Delta::ToolStart {
                        index: n,
                        id: t
                            .get("toolUseId")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        name: t.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
                    });
                }
            }
            "contentBlockDelta" => {
                if let Some(t) = v.pointer("/delta/text").and_then(Value::as_str) {
                    if !t.is_empty() {
                        out.push(Delta::Text(t.to_owned()));
                    }
                } else if let Some(j) = v.pointer("/delta/toolUse/input").and_then(Value::as_str) {
                    let tool = self
                        .blocks
                        .get(index)
                        .copied()
                        .flatten()
                        .ok_or(StreamFault::Malformed)?;
                    if !j.is_empty() {
                        out.push(Delta::ToolArgs {
                            index: tool,
                            json: j.to_owned(),
                        });
                    }
                }
            }
            "messageStop" => {
                let reason = v
                    .get("stopReason")
                    .and_then(Value::as_str)
                    .map_or(StopReason::EndTurn, stop_reason_from);
                self.stop = Some(reason);
                out.push(Delta::Stop {
                    reason,
                    stop_sequence: None,
                });
            }
            // Usage comes last, after messageStop: it ends the stream.
            "metadata" => {
                if let Some(u) = v.get("usage") {
                    out.push(Delta::Usage(usage_from(u)));
                }
                if self.stop.is_some() {
                    out.push(Delta::End);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{ChatResponse, Part};
    use crate::eventstream::{EventStreamParser, encode};
    use serde_json::json;

    #[test]
    fn a_converse_stream_decodes_to_deltas() {
        let mut bytes = Vec::new();
        let ev = |t: &str, p: Value| {
            encode(
                &[(":event-type", t), (":message-type", "event")],
                p.to_string().as_bytes(),
            )
        };
        bytes.extend_from_slice(&ev("messageStart", json!({"role": "assistant"})));
        bytes.extend_from_slice(&ev(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
        ));
        bytes.extend_from_slice(&ev("contentBlockStop", json!({"contentBlockIndex": 0})));
        bytes.extend_from_slice(&ev(
            "contentBlockStart",
            json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t1", "name": "f"}}}),
        ));
        bytes.extend_from_slice(&ev(
            "contentBlockDelta",
            json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"a\":1}"}}}),
        ));
        bytes.extend_from_slice(&ev("messageStop", json!({"stopReason": "tool_use"})));
        bytes.extend_from_slice(&ev(
            "metadata",
            json!({"usage": {"inputTokens": 5, "outputTokens": 7, "totalTokens": 12}}),
        ));
        let mut p = EventStreamParser::default();
        p.push(&bytes);
        let mut d = EventDecoder::default();
        let mut out = Vec::new();
        while let Some(e) = p.next_event() {
            d.decode(&e.unwrap(), &mut out).unwrap();
        }
        let r = ChatResponse::from_deltas(&out);
        assert_eq!(r.content[0], Part::Text("Hi".into()));
        assert_eq!(
            r.content[1],
            Part::ToolUse {
                id: "t1".into(),
                name: "f".into(),
                input: json!({"a": 1})
            }
        );
        assert_eq!(r.stop_reason, Some(StopReason::ToolUse));
        assert_eq!(r.usage.total_tokens, 12);
        assert_eq!(out.last(), Some(&Delta::End));
    }
}
