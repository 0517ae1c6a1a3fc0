//! Streams between two wire formats: the upstream's events are decoded into canonical deltas
//! ([`crate::chat::Delta`]) and encoded in the client's format, event by event, as they arrive.
//! Both sides keep state (open content blocks, tool-call numbering, usage seen so far).

use bytes::Bytes;

use crate::anthropic::stream::{EventDecoder, EventEncoder};
use crate::chat::{ChatRequest, ChatResponse, Delta, StopReason};
use crate::error::RequestError;
use crate::fault::{MalformedResponse, StreamFault};
use crate::openai_chat::stream::{ChunkDecoder, ChunkEncoder};
use crate::sse::SseEvent;
use crate::stream::StreamTranslator;
use crate::usage::Usage;
pub use crate::wire::{Source, Wire};

enum Decoder {
    OpenAi(ChunkDecoder),
    Anthropic(EventDecoder),
    Gemini(crate::gemini::stream::ChunkDecoder),
    Bedrock(crate::bedrock::stream::EventDecoder),
}

enum Encoder {
    OpenAi(ChunkEncoder),
    Anthropic(EventEncoder),
    Responses(crate::responses::stream::EventEncoder),
}

/// Reads a client's chat request in its wire format into the canonical form.
pub fn read_request(wire: Wire, body: &[u8]) -> Result<ChatRequest, RequestError> {
    match wire {
        Wire::OpenAi => crate::openai_chat::request_to_chat(body),
        Wire::Anthropic => crate::anthropic::request::request_to_chat(body),
        Wire::Responses => crate::responses::request::request_to_chat(body),
    }
}

/// A canonical request as an OpenAI chat request for its own model, in JSON (one form for a
/// request from any front door).
pub fn openai_chat_value(req: &ChatRequest) -> serde_json::Value {
    crate::openai_chat::request::chat_to_value(req, &req.model)
}

/// A whole answer as the client's event stream (for answers the gateway makes itself, and
/// replays of stored ones); OpenAI's usage chunk only when the client asked for it.
pub fn write_stream(wire: Wire, r: &ChatResponse, include_usage: bool) -> Bytes {
    Bytes::from(stream_events(wire, r, include_usage, 64).concat())
}

/// A whole answer as the client's event stream, one event per item (a paced replay sends them
/// one by one), text cut into pieces of at most `piece` characters.
pub fn stream_events(wire: Wire, r: &ChatResponse, include_usage: bool, piece: usize) -> Vec<Bytes> {
    let mut encoder = match wire {
        Wire::OpenAi => Encoder::OpenAi(ChunkEncoder::new(include_usage)),
        Wire::Anthropic => Encoder::Anthropic(EventEncoder::default()),
        Wire::Responses => Encoder::Responses(crate::responses::stream::EventEncoder::default()),
    };
    // Every encoder pushes one item per event.
    let mut out = Vec::new();
    for d in r.to_deltas(piece) {
        match &mut encoder {
            Encoder::OpenAi(e) => e.encode(&d, &mut out),
            Encoder::Anthropic(e) => e.encode(&d, &mut out),
            Encoder::Responses(e) => e.encode(&d, &mut out),
        }
    }
    out
}

/// Deltas written as the client's event stream, one by one (a follower fed another request's
/// answer as it arrives).
pub struct ClientEncoder {
    encoder: Encoder,
}

impl ClientEncoder {
    pub fn new(wire: Wire, include_usage: bool) -> ClientEncoder {
        ClientEncoder {
            encoder: match wire {
                Wire::OpenAi => Encoder::OpenAi(ChunkEncoder::new(include_usage)),
                Wire::Anthropic => Encoder::Anthropic(EventEncoder::default()),
                Wire::Responses => Encoder::Responses(crate::responses::stream::EventEncoder::default()),
            },
        }
    }

    pub fn encode(&mut self, d: &Delta, out: &mut Vec<Bytes>) {
        self.encoder.encode(d, out);
    }

    /// An error event in the client's format (a stream that cannot go on).
    pub fn error_event(&self, code: &str, message: &str) -> Bytes {
        self.encoder.error_event(code, message)
    }
}

/// A whole answer in the client's wire format.
pub fn write_response(wire: Wire, r: &ChatResponse) -> Bytes {
    match wire {
        Wire::OpenAi => crate::openai_chat::response::chat_to_response(r),
        Wire::Anthropic => crate::anthropic::response::chat_to_response(r),
        Wire::Responses => crate::responses::response::chat_to_response(r),
    }
}

/// A stage over a canonical answer: sees each delta in order (`Delta::End` last) and pushes
/// what goes on to the client — the same delta, others, or nothing yet (held back) — or
/// ends the answer.
pub trait DeltaFilter: Send {
    fn on_delta(&mut self, d: Delta, out: &mut Vec<Delta>) -> Result<(), FilterStop>;
}

/// Why a filter ended an answer: the client gets an error event (streamed) or an error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterStop {
    /// The metric and log class (`guardrail_blocked`, …).
    pub class: &'static str,
    pub code: &'static str,
    pub message: String,
}

/// Runs `filter` over `deltas` into `out`: what reaches the client.
pub fn run_filter(filter: &mut dyn DeltaFilter, deltas: &[Delta], out: &mut Vec<Delta>) -> Result<(), FilterStop> {
    for d in deltas {
        filter.on_delta(d.clone(), out)?;
    }
    Ok(())
}

/// Reads a whole answer in the client's wire format into the canonical form.
pub fn read_response(wire: Wire, body: &[u8]) -> Result<ChatResponse, MalformedResponse> {
    match wire {
        Wire::OpenAi => crate::openai_chat::response::response_to_chat(body),
        Wire::Anthropic => crate::anthropic::response::response_to_chat(body),
        Wire::Responses => crate::responses::response::response_to_chat(body),
    }
}

/// A stream translated from the upstream's format into the client's.
pub struct Translating {
    decoder: Decoder,
    encoder: Encoder,
    deltas: Vec<Delta>,
    usage: Option<Usage>,
    stop: Option<StopReason>,
    relayed: u64,
    done: bool,
    /// The model to name when the upstream's stream does not (Bedrock's does not).
    fallback_model: Option<String>,
    /// Generated text not yet taken (only when collecting).
    text: Option<String>,
    /// Response stages between the decoder and the encoder.
    filter: Option<Box<dyn DeltaFilter>>,
    filtered: Vec<Delta>,
    /// The source and client formats are the same, so an event the filter left alone can go
    /// as its original bytes.
    same_format: bool,
}

impl Translating {
    pub fn with_fallback_model(mut self, model: String) -> Translating {
        self.fallback_model = Some(model);
        self
    }

    /// Runs `filter` over every decoded delta before it is encoded.
    pub fn with_filter(mut self, filter: Box<dyn DeltaFilter>) -> Translating {
        self.filter = Some(filter);
        self
    }

    pub fn new(upstream: Source, client: Wire, include_usage: bool) -> Translating {
        Translating {
            same_format: upstream == Source::OpenAi && client == Wire::OpenAi,
            filter: None,
            filtered: Vec::new(),
            decoder: match upstream {
                Source::OpenAi => Decoder::OpenAi(ChunkDecoder::default()),
                Source::Anthropic => Decoder::Anthropic(EventDecoder::default()),
                Source::Gemini => Decoder::Gemini(crate::gemini::stream::ChunkDecoder::default()),
                Source::Bedrock => Decoder::Bedrock(crate::bedrock::stream::EventDecoder::default()),
            },
            encoder: match client {
                Wire::OpenAi => Encoder::OpenAi(ChunkEncoder::new(include_usage)),
                Wire::Anthropic => Encoder::Anthropic(EventEncoder::default()),
                Wire::Responses => Encoder::Responses(crate::responses::stream::EventEncoder::default()),
            },
            deltas: Vec::with_capacity(4),
            usage: None,
            stop: None,
            relayed: 0,
            done: false,
            fallback_model: None,
            text: None,
        }
    }
}

impl Encoder {
    fn encode(&mut self, d: &Delta, out: &mut Vec<Bytes>) {
        match self {
            Encoder::OpenAi(e) => e.encode(d, out),
            Encoder::Anthropic(e) => e.encode(d, out),
            Encoder::Responses(e) => e.encode(d, out),
        }
    }
}

impl StreamTranslator for Translating {
    fn on_event(&mut self, event: SseEvent, out: &mut Vec<Bytes>) -> Result<(), StreamFault> {
        self.deltas.clear();
        let decoded = match &mut self.decoder {
            Decoder::OpenAi(d) => d.decode(&event, &mut self.deltas),
            Decoder::Anthropic(d) => d.decode(&event, &mut self.deltas),
            Decoder::Gemini(d) => d.decode(&event, &mut self.deltas),
            Decoder::Bedrock(d) => d.decode(&event, &mut self.deltas),
        };
        if let Err(fault) = decoded {
            // The provider's own error event, said again in the client's format.
            if let StreamFault::UpstreamError { message, .. } = &fault {
                out.push(self.error_event(fault.code(), message));
            }
            return Err(fault);
        }
        if let Some(fallback) = &self.fallback_model {
            for d in &mut self.deltas {
                if let Delta::Start { model, .. } = d
                    && model.is_empty()
                {
                    model.clone_from(fallback);
                }
            }
        }
        for d in &self.deltas {
            match d {
                Delta::Text(t) | Delta::ToolArgs { json: t, .. } => {
                    self.relayed += 1;
                    if let Some(text) = &mut self.text {
                        text.push_str(t);
                    }
                }
                Delta::Usage(u) => self.usage = Some(*u),
                Delta::Stop { reason, .. } => self.stop = Some(*reason),
                Delta::End => self.done = true,
                _ => {}
            }
        }
        let Some(filter) = &mut self.filter else {
            for d in &self.deltas {
                self.encoder.encode(d, out);
            }
            return Ok(());
        };
        self.filtered.clear();
        let stopped = run_filter(filter.as_mut(), &self.deltas, &mut self.filtered).err();
        // An event of content deltas only that the stages left alone goes as the upstream's
        // own bytes (fields the canonical form does not carry included). Structural events
        // (start, stop, usage, end) are encoded, which keeps the encoder's state whole —
        // in the OpenAI chat format a content chunk changes none of it.
        let untouched = stopped.is_none()
            && self.same_format
            && !self.deltas.is_empty()
            && self.filtered == self.deltas
            && self
                .deltas
                .iter()
                .all(|d| matches!(d, Delta::Text(_) | Delta::ToolArgs { .. }));
        if untouched {
            out.push(event.raw);
        } else {
            for d in &self.filtered {
                self.encoder.encode(d, out);
            }
        }
        match stopped {
            // A stage ended the answer before the upstream did: the client has its end.
            None if !self.done && self.filtered.iter().any(|d| matches!(d, Delta::End)) => {
                self.done = true;
                Err(StreamFault::Ended)
            }
            None => Ok(()),
            Some(stop) => {
                out.push(self.error_event(stop.code, &stop.message));
                Err(StreamFault::Stopped {
                    class: stop.class,
                    code: stop.code,
                })
            }
        }
    }

    fn reported_usage(&self) -> Option<Usage> {
        self.usage
    }

    fn finish_reason(&self) -> Option<&'static str> {
        self.stop.map(crate::openai_chat::finish_reason)
    }

    fn relayed_chunks(&self) -> u64 {
        self.relayed
    }

    fn prompt_tokens(&self) -> Option<u64> {
        match &self.decoder {
            Decoder::Anthropic(d) => d.prompt_tokens(),
            _ => None,
        }
    }

    fn saw_end(&self) -> bool {
        self.done
    }

    fn text_buffer(&mut self) -> Option<&mut Option<String>> {
        Some(&mut self.text)
    }

    fn error_event(&self, code: &str, message: &str) -> Bytes {
        self.encoder.error_event(code, message)
    }
}

impl Encoder {
    fn error_event(&self, code: &str, message: &str) -> Bytes {
        match self {
            Encoder::OpenAi(_) => ChunkEncoder::error_event(code, message),
            Encoder::Anthropic(_) => {
                crate::anthropic::stream::error_event(crate::anthropic::error::code_type(code), message)
            }
            Encoder::Responses(e) => e.error_event(code, message),
        }
    }
}

/// What to do with request parameters the target format cannot express.
#[derive(Debug, Clone, Copy, Default)]
pub struct ParamPolicy<'a> {
    /// Drop them (the route said so) instead of refusing the request.
    pub drop_unsupported: bool,
    /// Parameters forwarded to the target as they are (vendor extensions the target knows).
    pub forward: &'a [String],
}

impl ParamPolicy<'_> {
    /// Applies the policy to the parameters a translation could not place.
    pub fn apply(&self, req: &mut ChatRequest) -> Result<(), RequestError> {
        let forward = self.forward;
        req.extra
            .retain(|(k, _)| forward.iter().any(|f| f == k) || !self.drop_unsupported);
        match req.extra.iter().find(|(k, _)| !forward.iter().any(|f| f == k)) {
            Some((k, _)) => Err(RequestError::Unsupported { param: k.clone() }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseParser;

    /// Passes every delta as it is, or upper-cases text when asked.
    struct Shout(bool);

    impl DeltaFilter for Shout {
        fn on_delta(&mut self, d: Delta, out: &mut Vec<Delta>) -> Result<(), FilterStop> {
            out.push(match d {
                Delta::Text(t) if self.0 => Delta::Text(t.to_uppercase()),
                d => d,
            });
            Ok(())
        }
    }

    fn relay(filter: Shout) -> String {
        let upstream = concat!(
            "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"system_fingerprint\":\"fp\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
            "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"system_fingerprint\":\"fp\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"logprobs\":{\"content\":[]},\"finish_reason\":null}]}\n\n",
            "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            "data: [DONE]\n\n",
        );
        let mut t = Translating::new(Source::OpenAi, Wire::OpenAi, false).with_filter(Box::new(filter));
        let mut parser = SseParser::new();
        parser.push(upstream.as_bytes());
        let mut out = Vec::new();
        while let Some(event) = parser.next_event() {
            t.on_event(event, &mut out).unwrap();
        }
        out.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect()
    }

    #[test]
    fn a_content_event_no_stage_changed_goes_as_its_original_bytes() {
        let passed = relay(Shout(false));
        // The upstream's own chunk, fields the canonical form does not carry included.
        assert!(
            passed.contains(r#""delta":{"content":"hi"},"logprobs":{"content":[]}"#),
            "{passed}"
        );
        assert!(passed.ends_with("data: [DONE]\n\n"), "{passed}");
        let changed = relay(Shout(true));
        assert!(changed.contains(r#""content":"HI""#), "{changed}");
        assert!(!changed.contains(r#""content":"hi""#), "{changed}");
        assert!(changed.ends_with("data: [DONE]\n\n"), "{changed}");
    }
}
