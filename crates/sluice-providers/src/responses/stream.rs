//! Canonical deltas → Responses stream events (`response.created` … `response.completed`), and
//! the error event that ends a stream.

use bytes::Bytes;
use serde_json::{Value, json};

use super::response::{call_item, envelope, message_item, now, response_id};
use crate::chat::{Delta, StopReason};
use crate::usage::Usage;

/// An open output item of a streamed Response.
#[derive(Debug)]
enum Item {
    Message {
        id: String,
        text: String,
    },
    Call {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// Canonical deltas → Responses stream events.
#[derive(Debug, Default)]
pub struct EventEncoder {
    id: String,
    model: String,
    created: u64,
    seq: u64,
    /// Output items so far; the last one may be open.
    items: Vec<Item>,
    open: bool,
    stop: Option<StopReason>,
    usage: Option<Usage>,
}

impl EventEncoder {
    fn event(&mut self, kind: &str, mut v: Value) -> Bytes {
        v["type"] = json!(kind);
        v["sequence_number"] = json!(self.seq);
        self.seq += 1;
        let mut out = Vec::with_capacity(192);
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        let _ = serde_json::to_writer(&mut out, &v);
        out.extend_from_slice(b"\n\n");
        Bytes::from(out)
    }

    fn item_value(item: &Item, done: bool) -> Value {
        match item {
            Item::Message { id, text } => message_item(id, text, done),
            Item::Call {
                id,
                call_id,
                name,
                arguments,
            } => call_item(id, call_id, name, arguments, done),
        }
    }

    /// Closes the open item with its `.done` events.
    fn close(&mut self, out: &mut Vec<Bytes>) {
        if !self.open {
            return;
        }
        self.open = false;
        let index = self.items.len() - 1;
        let Some(item) = self.items.last() else { return };
        let done_item = Self::item_value(item, true);
        match item {
            Item::Message { id, text } => {
                let (id, text) = (id.clone(), text.clone());
                let e = self.event(
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0, "text": text}),
                );
                out.push(e);
                let e = self.event(
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": index, "content_index": 0,
                           "part": {"type": "output_text", "text": text, "annotations": []}}),
                );
                out.push(e);
            }
            Item::Call { id, arguments, .. } => {
                let (id, arguments) = (id.clone(), arguments.clone());
                let e = self.event(
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": index, "arguments": arguments}),
                );
                out.push(e);
            }
        }
        let e = self.event(
            "response.output_item.done",
            json!({"output_index": index, "item": done_item}),
        );
        out.push(e);
    }

    fn response(&self, stop: Option<StopReason>, usage: Option<&Usage>) -> Value {
        let output = self.items.iter().map(|i| Self::item_value(i, true)).collect();
        envelope(&self.id, &self.model, self.created, output, stop, usage)
    }

    pub fn encode(&mut self, d: &Delta, out: &mut Vec<Bytes>) {
        match d {
            Delta::Start { id, model } => {
                self.id = response_id(id);
                self.model = model.clone();
                self.created = now();
                let r = envelope(&self.id, &self.model, self.created, Vec::new(), None, None);
                let e = self.event("response.created", json!({"response": r}));
                out.push(e);
                let r = envelope(&self.id, &self.model, self.created, Vec::new(), None, None);
                let e = self.event("response.in_progress", json!({"response": r}));
                out.push(e);
            }
            Delta::Text(t) => {
                let is_message_open = self.open && matches!(self.items.last(), Some(Item::Message { .. }));
                if !is_message_open {
                    self.close(out);
                    let id = format!("msg_{}_{}", self.items.len(), self.id.trim_start_matches("resp_"));
                    let index = self.items.len();
                    self.items.push(Item::Message {
                        id: id.clone(),
                        text: String::new(),
                    });
                    self.open = true;
                    let e = self.event(
                        "response.output_item.added",
                        json!({"output_index": index, "item": message_item(&id, "", false)}),
                    );
                    out.push(e);
                    let e = self.event(
                        "response.content_part.added",
                        json!({"item_id": id, "output_index": index, "content_index": 0,
                               "part": {"type": "output_text", "text": "", "annotations": []}}),
                    );
                    out.push(e);
                }
                let index = self.items.len() - 1;
                let mut item_id = String::new();
                if let Some(Item::Message { id, text }) = self.items.last_mut() {
                    text.push_str(t);
                    item_id = id.clone();
                }
                let e = self.event(
                    "response.output_text.delta",
                    json!({"item_id": item_id, "output_index": index, "content_index": 0, "delta": t}),
                );
                out.push(e);
            }
            Delta::ToolStart { id: call_id, name, .. } => {
                self.close(out);
                let index = self.items.len();
                let id = format!("fc_{index}_{}", self.id.trim_start_matches("resp_"));
                let item = Item::Call {
                    id,
                    call_id: call_id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                };
                let added = Self::item_value(&item, false);
                self.items.push(item);
                self.open = true;
                let e = self.event(
                    "response.output_item.added",
                    json!({"output_index": index, "item": added}),
                );
                out.push(e);
            }
            Delta::ToolArgs { json, .. } => {
                let index = self.items.len().saturating_sub(1);
                let mut item_id = None;
                if self.open
                    && let Some(Item::Call { id, arguments, .. }) = self.items.last_mut()
                {
                    arguments.push_str(json);
                    item_id = Some(id.clone());
                }
                if let Some(item_id) = item_id {
                    let e = self.event(
                        "response.function_call_arguments.delta",
                        json!({"item_id": item_id, "output_index": index, "delta": json}),
                    );
                    out.push(e);
                }
            }
            Delta::Stop { reason, .. } => self.stop = Some(*reason),
            Delta::Usage(u) => self.usage = Some(*u),
            Delta::End => {
                self.close(out);
                let stop = self.stop.unwrap_or(StopReason::EndTurn);
                let r = self.response(Some(stop), self.usage.as_ref());
                let kind = if r["status"] == "incomplete" {
                    "response.incomplete"
                } else {
                    "response.completed"
                };
                let e = self.event(kind, json!({"response": r}));
                out.push(e);
            }
        }
    }

    /// An error event that ends the stream. It carries an `error` object too, which is what
    /// OpenAI's SDKs look for in a streamed event to raise.
    pub fn error_event(&self, code: &str, message: &str) -> Bytes {
        let v = json!({"type": "error", "code": code, "message": message, "param": null,
                       "sequence_number": self.seq,
                       "error": {"type": "server_error", "code": code, "message": message, "param": null}});
        Bytes::from(format!("event: error\ndata: {v}\n\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_text_then_a_call_with_matching_done_events() {
        let mut e = EventEncoder::default();
        let mut out = Vec::new();
        for d in [
            Delta::Start {
                id: "chatcmpl-1".into(),
                model: "m".into(),
            },
            Delta::Text("Hel".into()),
            Delta::Text("lo".into()),
            Delta::ToolStart {
                index: 0,
                id: "call_1".into(),
                name: "f".into(),
            },
            Delta::ToolArgs {
                index: 0,
                json: "{}".into(),
            },
            Delta::Stop {
                reason: StopReason::ToolUse,
                stop_sequence: None,
            },
            Delta::Usage(Usage {
                prompt_tokens: 3,
                completion_tokens: 2,
                total_tokens: 5,
                ..Usage::default()
            }),
            Delta::End,
        ] {
            e.encode(&d, &mut out);
        }
        let text: String = out.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect();
        let kinds: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        let data = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .next_back()
            .unwrap();
        let last: Value = serde_json::from_str(data).unwrap();
        assert_eq!(last["response"]["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(last["response"]["output"][1]["call_id"], "call_1");
        assert_eq!(last["response"]["usage"]["total_tokens"], 5);
        assert_eq!(last["sequence_number"], 13);
    }
}
