//! The OpenAI-compatible codec: OpenAI, vLLM, Ollama, TGI and every other server that speaks
//! OpenAI's wire format (and the built-in mock).
//!
//! Same format on both sides means pass-through: the request body is forwarded byte for byte
//! except the two values the gateway must own, `model` and `stream_options`, which are spliced
//! in place. Nothing is parsed and re-serialised.

use std::borrow::Cow;

use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde::de::IgnoredAny;

pub use crate::adapter::join_url;
use crate::adapter::{
    AdapterError, Endpoint, InboundRequest, KeyHeader, MalformedResponse, ProviderAdapter, ResponseFault, ResponseOut,
    StreamFault, StreamTranslator, Target, json_post,
};
use crate::error::{ErrorClass, scrub_credentials};
use crate::sse::SseEvent;
use crate::translate::{Source, Translating, Wire};
use crate::usage::{OpenAiUsage, Usage};
pub use crate::view::RequestView;

/// The OpenAI-compatible adapter.
#[derive(Debug, Default, Clone, Copy)]
pub struct OpenAiAdapter;

#[derive(Deserialize)]
struct ResponseEnvelope<'a> {
    #[serde(default)]
    usage: Option<OpenAiUsage>,
    #[serde(default, borrow)]
    choices: Vec<ChoiceFinish<'a>>,
}

/// A whole answer's choice, for its finish reason only (the rest is skipped, not built).
#[derive(Deserialize)]
struct ChoiceFinish<'a> {
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

impl ProviderAdapter for OpenAiAdapter {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn supports(&self, endpoint: Endpoint) -> bool {
        endpoint != Endpoint::Predict
    }

    fn build_request(&self, req: &InboundRequest, target: &Target<'_>) -> Result<http::Request<Bytes>, AdapterError> {
        if !self.supports(req.endpoint) {
            return Err(AdapterError::Unsupported(req.endpoint.as_str()));
        }
        let (suffix, body) = match req.endpoint.wire() {
            Wire::OpenAi => (
                req.endpoint.upstream_suffix(),
                req.view.upstream_body(&req.body, target.model),
            ),
            wire => {
                let mut chat = crate::translate::read_request(wire, &req.body)?;
                // Chat Completions has no top_k; an OpenAI-compatible server may (vLLM), so it is
                // left to the route: refused, dropped, or forwarded as a vendor extension.
                if let Some(k) = chat.top_k.take() {
                    chat.extra.push(("top_k".to_owned(), serde_json::Value::from(k)));
                }
                let format = crate::format::carry(&mut chat, crate::format::Carry::OpenAiChat);
                target.params.apply(&mut chat)?;
                chat.extra.extend(format);
                (
                    Endpoint::ChatCompletions.upstream_suffix(),
                    crate::openai_chat::chat_to_request(&chat, target.model),
                )
            }
        };
        let uri = join_url(target.base_url, suffix)?;
        json_post(uri, req.view.stream, target, KeyHeader::Bearer, body)
    }

    fn read_response(&self, req: &InboundRequest, body: Bytes) -> Result<ResponseOut, ResponseFault> {
        if !body.trim_ascii_start().starts_with(b"{") {
            return Err(MalformedResponse("not a JSON object".to_owned()).into());
        }
        let wire = req.endpoint.wire();
        if wire != Wire::OpenAi {
            let chat = crate::openai_chat::response_to_chat(&body)?;
            return Ok(ResponseOut {
                body: crate::translate::write_response(wire, &chat),
                usage: Some(chat.usage),
                finish_reason: chat.stop_reason.map(crate::openai_chat::finish_reason),
            });
        }
        let env: ResponseEnvelope =
            serde_json::from_slice(&body).map_err(|e| ResponseFault::from(MalformedResponse(e.to_string())))?;
        let finish_reason = env
            .choices
            .iter()
            .find_map(|c| c.finish_reason.as_deref())
            .map(|r| crate::openai_chat::finish_reason(crate::openai_chat::stop_reason_from(r)));
        let usage = env.usage.map(Usage::from);
        Ok(ResponseOut {
            body,
            usage,
            finish_reason,
        })
    }

    fn stream_translator(&self, req: &InboundRequest) -> Box<dyn StreamTranslator> {
        let wire = req.endpoint.wire();
        if wire != Wire::OpenAi {
            return Box::new(Translating::new(Source::OpenAi, wire, false));
        }
        Box::new(OpenAiStream {
            client_wants_usage: req.view.include_usage,
            ..OpenAiStream::default()
        })
    }

    fn canonical_translator(&self, req: &InboundRequest) -> Translating {
        // The upstream is always asked for usage; only a client that asked gets the chunk.
        Translating::new(Source::OpenAi, req.endpoint.wire(), req.view.include_usage)
    }

    fn classify_error(&self, status: StatusCode, body: &[u8]) -> ErrorClass {
        let parsed: Option<ErrorBody> = serde_json::from_slice::<ErrorEnvelope>(body).ok().map(|e| e.error);
        let code = parsed
            .as_ref()
            .and_then(|e| e.code.as_ref())
            .and_then(|c| c.as_str())
            .unwrap_or("");
        let kind = parsed.as_ref().and_then(|e| e.kind.as_deref()).unwrap_or("");
        match status.as_u16() {
            400 | 413 | 422 if code == "context_length_exceeded" => ErrorClass::ContextLength,
            400 | 422 if code == "content_policy_violation" || code == "content_filter" => ErrorClass::ContentPolicy,
            400 | 409 | 413 | 415 | 422 => ErrorClass::InvalidRequest,
            401 | 403 => ErrorClass::Auth,
            404 => ErrorClass::NotFound,
            429 if code == "insufficient_quota" || kind == "insufficient_quota" => ErrorClass::QuotaExceeded,
            429 => ErrorClass::RateLimited,
            503 | 529 => ErrorClass::Overloaded,
            s if s >= 500 || s == 408 => ErrorClass::Server,
            _ => ErrorClass::InvalidRequest,
        }
    }

    fn error_message(&self, body: &[u8], secrets: &[&str]) -> Option<String> {
        let text = match serde_json::from_slice::<ErrorEnvelope>(body) {
            Ok(env) => env.error.message?,
            Err(_) => {
                let s = String::from_utf8_lossy(body);
                let s = s.trim();
                if s.is_empty() {
                    return None;
                }
                s.chars().take(512).collect()
            }
        };
        Some(scrub_credentials(&text, secrets).into_owned())
    }
}

/// Pass-through stream state: forwards every event, reads usage from the final chunk, and hides
/// that chunk from clients that did not ask for it.
#[derive(Debug, Default)]
struct OpenAiStream {
    client_wants_usage: bool,
    usage: Option<Usage>,
    stop: Option<crate::chat::StopReason>,
    relayed: u64,
    done: bool,
    /// Generated text not yet taken (only when collecting).
    text: Option<String>,
}

#[derive(Deserialize)]
struct ChunkEnvelope<'a> {
    #[serde(default)]
    usage: Option<OpenAiUsage>,
    #[serde(default, borrow)]
    choices: Option<Vec<ChoiceLite<'a>>>,
    #[serde(default)]
    error: Option<ErrorBody>,
}

/// Just enough of a streamed choice to tell whether it carried generated output.
#[derive(Deserialize)]
struct ChoiceLite<'a> {
    #[serde(default, borrow)]
    delta: Option<DeltaLite<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct DeltaLite<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(default)]
    tool_calls: Option<IgnoredAny>,
}

impl ChoiceLite<'_> {
    fn has_output(&self) -> bool {
        let nonempty = |s: &Option<Cow<'_, str>>| s.as_deref().is_some_and(|s| !s.is_empty());
        nonempty(&self.text)
            || self
                .delta
                .as_ref()
                .is_some_and(|d| nonempty(&d.content) || nonempty(&d.reasoning_content) || d.tool_calls.is_some())
    }
}

impl StreamTranslator for OpenAiStream {
    fn on_event(&mut self, event: SseEvent, out: &mut Vec<Bytes>) -> Result<(), StreamFault> {
        let Some(data) = event.data.as_deref() else {
            out.push(event.raw); // comments and keep-alives
            return Ok(());
        };
        if data == b"[DONE]" {
            self.done = true;
            out.push(event.raw);
            return Ok(());
        }
        let env: ChunkEnvelope = serde_json::from_slice(data).map_err(|_| StreamFault::Malformed)?;
        if let Some(err) = env.error {
            out.push(event.raw);
            let class = crate::openai_chat::stream_error_class(&serde_json::json!({
                "type": err.kind, "code": err.code,
            }));
            return Err(StreamFault::UpstreamError {
                class,
                message: err.message.unwrap_or_default(),
            });
        }
        let no_choices = env.choices.as_ref().is_none_or(Vec::is_empty);
        if let Some(r) = env.choices.iter().flatten().find_map(|c| c.finish_reason.as_deref()) {
            self.stop = Some(crate::openai_chat::stop_reason_from(r));
        }
        if let Some(u) = env.usage {
            self.usage = Some(u.into());
            if no_choices && !self.client_wants_usage {
                return Ok(()); // the usage chunk the gateway asked for on its own behalf
            }
        }
        if env
            .choices
            .as_ref()
            .is_some_and(|c| c.iter().any(ChoiceLite::has_output))
        {
            self.relayed += 1;
            if let (Some(text), Some(choices)) = (&mut self.text, &env.choices) {
                for c in choices {
                    let d = c.delta.as_ref();
                    for part in [
                        c.text.as_deref(),
                        d.and_then(|d| d.content.as_deref()),
                        d.and_then(|d| d.reasoning_content.as_deref()),
                    ]
                    .into_iter()
                    .flatten()
                    {
                        text.push_str(part);
                    }
                }
            }
        }
        out.push(event.raw);
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

    fn saw_end(&self) -> bool {
        self.done
    }

    fn text_buffer(&mut self) -> Option<&mut Option<String>> {
        Some(&mut self.text)
    }

    fn error_event(&self, code: &str, message: &str) -> Bytes {
        let body = serde_json::json!({
            "error": { "message": message, "type": "server_error", "param": null, "code": code }
        });
        Bytes::from(format!("data: {body}\n\n"))
    }
}

#[cfg(test)]
mod tests;
