//! The adapter for Anthropic deployments: Messages pass through with only `model` spliced, other
//! formats are translated; Anthropic to Anthropic streams are relayed as they came.

use bytes::Bytes;
use http::StatusCode;
use http::header::HeaderValue;
use serde_json::Value;

use super::error::{classify, code_type};
use super::request::chat_to_request;
use super::response::response_to_chat;
use super::stream::{EventDecoder, error_event};
use crate::adapter::{
    AdapterError, Endpoint, InboundRequest, KeyHeader, ProviderAdapter, ResponseFault, ResponseOut, StreamFault,
    StreamTranslator, Target, join_url, json_post,
};
use crate::chat::Delta;
use crate::error::{ErrorClass, scrub_credentials};
use crate::names;
use crate::sse::SseEvent;
use crate::translate::{Source, Translating, Wire};
use crate::usage::Usage;

/// The API version sent upstream when the client did not choose one.
pub const DEFAULT_VERSION: &str = "2023-06-01";

/// The adapter for Anthropic deployments.
#[derive(Debug, Default, Clone, Copy)]
pub struct AnthropicAdapter;

impl ProviderAdapter for AnthropicAdapter {
    fn name(&self) -> &'static str {
        "anthropic"
    }

    fn supports(&self, endpoint: Endpoint) -> bool {
        matches!(
            endpoint,
            Endpoint::Messages | Endpoint::ChatCompletions | Endpoint::Responses
        )
    }

    fn build_request(&self, req: &InboundRequest, target: &Target<'_>) -> Result<http::Request<Bytes>, AdapterError> {
        let uri = join_url(target.base_url, "/messages")?;
        if !self.supports(req.endpoint) {
            return Err(AdapterError::Unsupported(req.endpoint.as_str()));
        }
        let body = match req.endpoint.wire() {
            Wire::Anthropic => req.view.upstream_body(&req.body, target.model),
            wire => {
                let mut chat = crate::translate::read_request(wire, &req.body)?;
                let format = crate::format::carry(&mut chat, crate::format::Carry::Anthropic);
                target.params.apply(&mut chat)?;
                chat.extra.extend(format);
                chat_to_request(&chat, target.model)
            }
        };
        let version = req
            .headers
            .anthropic_version
            .clone()
            .unwrap_or_else(|| HeaderValue::from_static(DEFAULT_VERSION));
        let mut request = json_post(uri, req.view.stream, target, KeyHeader::Named(names::X_API_KEY), body)?;
        let headers = request.headers_mut();
        headers.insert(names::ANTHROPIC_VERSION, version);
        if let Some(beta) = &req.headers.anthropic_beta {
            headers.insert(names::ANTHROPIC_BETA, beta.clone());
        }
        Ok(request)
    }

    fn read_response(&self, req: &InboundRequest, body: Bytes) -> Result<ResponseOut, ResponseFault> {
        let chat = response_to_chat(&body)?;
        let usage = Some(chat.usage);
        let body = match req.endpoint.wire() {
            Wire::Anthropic => body,
            wire => crate::translate::write_response(wire, &chat),
        };
        Ok(ResponseOut {
            body,
            usage,
            finish_reason: chat.stop_reason.map(crate::openai_chat::finish_reason),
        })
    }

    fn stream_translator(&self, req: &InboundRequest) -> Box<dyn StreamTranslator> {
        match req.endpoint.wire() {
            Wire::Anthropic => Box::new(PassThrough::default()),
            wire => Box::new(Translating::new(Source::Anthropic, wire, req.view.include_usage)),
        }
    }

    fn canonical_translator(&self, req: &InboundRequest) -> Translating {
        Translating::new(Source::Anthropic, req.endpoint.wire(), req.view.include_usage)
    }

    fn classify_error(&self, status: StatusCode, body: &[u8]) -> ErrorClass {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let e = v.get("error").unwrap_or(&Value::Null);
        let kind = e.get("type").and_then(Value::as_str).unwrap_or("");
        let message = e.get("message").and_then(Value::as_str).unwrap_or("");
        classify(status.as_u16(), kind, message)
    }

    fn error_message(&self, body: &[u8], secrets: &[&str]) -> Option<String> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let text = v.get("error")?.get("message")?.as_str()?;
        Some(scrub_credentials(text, secrets).into_owned())
    }
}

/// Anthropic to Anthropic: every event is forwarded as it came; usage (and, when asked, the
/// generated text) is read on the way.
#[derive(Debug, Default)]
struct PassThrough {
    decoder: EventDecoder,
    usage: Option<Usage>,
    stop: Option<crate::chat::StopReason>,
    relayed: u64,
    done: bool,
    text: Option<String>,
}

impl StreamTranslator for PassThrough {
    fn on_event(&mut self, event: SseEvent, out: &mut Vec<Bytes>) -> Result<(), StreamFault> {
        let mut deltas = Vec::new();
        let result = self.decoder.decode(&event, &mut deltas);
        out.push(event.raw);
        result?;
        for d in deltas {
            match d {
                Delta::Text(t) | Delta::ToolArgs { json: t, .. } => {
                    self.relayed += 1;
                    if let Some(text) = &mut self.text {
                        text.push_str(&t);
                    }
                }
                Delta::Usage(u) => self.usage = Some(u),
                Delta::Stop { reason, .. } => self.stop = Some(reason),
                Delta::End => self.done = true,
                _ => {}
            }
        }
        Ok(())
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
        self.decoder.prompt_tokens()
    }
    fn saw_end(&self) -> bool {
        self.done
    }
    fn text_buffer(&mut self) -> Option<&mut Option<String>> {
        Some(&mut self.text)
    }
    fn error_event(&self, code: &str, message: &str) -> Bytes {
        error_event(code_type(code), message)
    }
}
