//! The canonical chat exchange every translation passes through.
//!
//! A request in one wire format is read into a [`ChatRequest`], and the upstream's format is
//! built from it; responses and stream events travel back the same way ([`ChatResponse`],
//! [`Delta`]). Same-format traffic never comes here: it is passed through byte for byte.
//!
//! The shape follows what both OpenAI Chat Completions and Anthropic Messages can express: a
//! system prompt, turns of content parts (text, images, tool calls, tool results), tools,
//! sampling parameters and stop conditions. Whatever a source format has beyond that is kept in
//! [`ChatRequest::extra`] by name, so the target can refuse it (or drop it where the route says
//! so) instead of losing it silently.

use serde_json::Value;

use crate::usage::Usage;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatRequest {
    pub model: String,
    /// System prompt parts (text), in order.
    pub system: Vec<String>,
    pub messages: Vec<Message>,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<u64>,
    pub stop: Vec<String>,
    pub stream: bool,
    /// The client asked for usage at the end of a stream (OpenAI's `include_usage`).
    pub include_usage: bool,
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
    /// `Some(false)` forbids several tool calls in one turn.
    pub parallel_tool_calls: Option<bool>,
    /// The end user, for the provider's abuse monitoring.
    pub user: Option<String>,
    /// Parameters of the source format with no canonical home, by name, in source order.
    pub extra: Vec<(String, Value)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub content: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    Image(Image),
    /// A tool call the assistant made; `input` is a JSON object.
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    /// The result of a tool call, sent back by the user side.
    ToolResult {
        tool_use_id: String,
        content: Vec<Part>,
        is_error: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Image {
    Url(String),
    Base64 { media_type: String, data: String },
}

impl Image {
    /// Reads a `data:` URL into its base64 form; any other URL stays a URL.
    pub fn from_url(url: &str) -> Image {
        if let Some(rest) = url.strip_prefix("data:")
            && let Some((meta, data)) = rest.split_once(',')
            && let Some(media_type) = meta.strip_suffix(";base64")
        {
            return Image::Base64 {
                media_type: media_type.to_owned(),
                data: data.to_owned(),
            };
        }
        Image::Url(url.to_owned())
    }
    pub fn to_url(&self) -> String {
        match self {
            Image::Url(u) => u.clone(),
            Image::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the tool's input.
    pub parameters: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    None,
    /// Some tool must be called.
    Required,
    /// This tool must be called.
    Tool(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    EndTurn,
    MaxTokens,
    StopSequence,
    ToolUse,
    ContentFilter,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    pub id: String,
    pub model: String,
    /// Text and tool-use parts, in order.
    pub content: Vec<Part>,
    pub stop_reason: Option<StopReason>,
    pub stop_sequence: Option<String>,
    pub usage: Usage,
}

/// One step of a streamed answer, in order. Text goes to the current text block; tool calls
/// are numbered from 0 in the order they start.
#[derive(Debug, Clone, PartialEq)]
pub enum Delta {
    Start {
        id: String,
        model: String,
    },
    Text(String),
    ToolStart {
        index: u32,
        id: String,
        name: String,
    },
    ToolArgs {
        index: u32,
        json: String,
    },
    Stop {
        reason: StopReason,
        stop_sequence: Option<String>,
    },
    Usage(Usage),
    /// The upstream finished the stream.
    End,
}

impl ChatResponse {
    /// The deltas of this answer as a stream, text cut into pieces of at most `piece` chars
    /// (a whole answer replayed as a stream, e.g. from a cache).
    pub fn to_deltas(&self, piece: usize) -> Vec<Delta> {
        let piece = piece.max(1);
        let mut out = vec![Delta::Start {
            id: self.id.clone(),
            model: self.model.clone(),
        }];
        let mut tools = 0u32;
        for p in &self.content {
            match p {
                Part::Text(t) => {
                    let chars: Vec<char> = t.chars().collect();
                    for c in chars.chunks(piece) {
                        out.push(Delta::Text(c.iter().collect()));
                    }
                }
                Part::ToolUse { id, name, input } => {
                    out.push(Delta::ToolStart {
                        index: tools,
                        id: id.clone(),
                        name: name.clone(),
                    });
                    let args = arguments_text(input);
                    let chars: Vec<char> = args.chars().collect();
                    for c in chars.chunks(piece) {
                        out.push(Delta::ToolArgs {
                            index: tools,
                            json: c.iter().collect(),
                        });
                    }
                    tools += 1;
                }
                _ => {}
            }
        }
        if let Some(reason) = self.stop_reason {
            out.push(Delta::Stop {
                reason,
                stop_sequence: self.stop_sequence.clone(),
            });
        }
        out.push(Delta::Usage(self.usage));
        out.push(Delta::End);
        out
    }

    /// The response a complete stream describes: what a client folding the deltas ends up with.
    pub fn from_deltas(deltas: &[Delta]) -> ChatResponse {
        let mut r = ChatResponse {
            id: String::new(),
            model: String::new(),
            content: Vec::new(),
            stop_reason: None,
            stop_sequence: None,
            usage: Usage::default(),
        };
        let mut args: Vec<(usize, String)> = Vec::new();
        for d in deltas {
            match d {
                Delta::Start { id, model } => {
                    r.id = id.clone();
                    r.model = model.clone();
                }
                Delta::Text(t) => match r.content.last_mut() {
                    Some(Part::Text(s)) => s.push_str(t),
                    _ => r.content.push(Part::Text(t.clone())),
                },
                Delta::ToolStart { id, name, .. } => {
                    args.push((r.content.len(), String::new()));
                    r.content.push(Part::ToolUse {
                        id: id.clone(),
                        name: name.clone(),
                        input: Value::Null,
                    });
                }
                Delta::ToolArgs { index, json } => {
                    if let Some((_, s)) = args.get_mut(*index as usize) {
                        s.push_str(json);
                    }
                }
                Delta::Stop { reason, stop_sequence } => {
                    r.stop_reason = Some(*reason);
                    r.stop_sequence = stop_sequence.clone();
                }
                Delta::Usage(u) => r.usage = *u,
                Delta::End => {}
            }
        }
        for (at, json) in args {
            if let Some(Part::ToolUse { input, .. }) = r.content.get_mut(at) {
                *input = parse_arguments(&json);
            }
        }
        r
    }
}

/// Tool-call arguments as a JSON object: empty means `{}`; text that is not JSON is kept as a
/// string so nothing is lost.
pub fn parse_arguments(json: &str) -> Value {
    if json.trim().is_empty() {
        return Value::Object(Default::default());
    }
    serde_json::from_str(json).unwrap_or_else(|_| Value::String(json.to_owned()))
}

/// Tool-call arguments as the JSON text OpenAI carries.
pub fn arguments_text(input: &Value) -> String {
    match input {
        Value::String(s) => s.clone(),
        Value::Null => "{}".to_owned(),
        v => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls_become_base64_and_back() {
        let i = Image::from_url("data:image/png;base64,iVBORw0KGgo=");
        assert_eq!(
            i,
            Image::Base64 {
                media_type: "image/png".into(),
                data: "iVBORw0KGgo=".into()
            }
        );
        assert_eq!(i.to_url(), "data:image/png;base64,iVBORw0KGgo=");
        assert_eq!(Image::from_url("https://x/y.png"), Image::Url("https://x/y.png".into()));
    }

    #[test]
    fn folding_deltas_rebuilds_text_and_tool_calls() {
        let r = ChatResponse::from_deltas(&[
            Delta::Start {
                id: "m1".into(),
                model: "x".into(),
            },
            Delta::Text("Hel".into()),
            Delta::Text("lo".into()),
            Delta::ToolStart {
                index: 0,
                id: "t1".into(),
                name: "f".into(),
            },
            Delta::ToolArgs {
                index: 0,
                json: "{\"a\":".into(),
            },
            Delta::ToolArgs {
                index: 0,
                json: "1}".into(),
            },
            Delta::Stop {
                reason: StopReason::ToolUse,
                stop_sequence: None,
            },
            Delta::End,
        ]);
        assert_eq!(r.content.len(), 2);
        assert_eq!(r.content[0], Part::Text("Hello".into()));
        assert_eq!(
            r.content[1],
            Part::ToolUse {
                id: "t1".into(),
                name: "f".into(),
                input: serde_json::json!({"a": 1})
            }
        );
        assert_eq!(r.stop_reason, Some(StopReason::ToolUse));
    }
}
