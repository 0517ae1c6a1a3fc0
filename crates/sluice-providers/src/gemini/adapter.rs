//! The adapter for Gemini deployments.

use bytes::Bytes;
use http::StatusCode;
use serde_json::Value;

use super::embeddings::{embeddings_request, embeddings_response};
use super::generate::{chat_to_request, response_to_chat};
use crate::adapter::{
    AdapterError, Endpoint, InboundRequest, KeyHeader, ProviderAdapter, ResponseFault, ResponseOut, StreamTranslator,
    Target, join_url, json_post,
};
use crate::error::{ErrorClass, scrub_credentials};
use crate::translate::{Source, Translating};

/// The adapter for Gemini deployments (`base_url` like `https://host/v1beta`).
#[derive(Debug, Default, Clone, Copy)]
pub struct GeminiAdapter;

impl ProviderAdapter for GeminiAdapter {
    fn name(&self) -> &'static str {
        "gemini"
    }

    fn supports(&self, endpoint: Endpoint) -> bool {
        !matches!(endpoint, Endpoint::Completions)
    }

    fn build_request(&self, req: &InboundRequest, target: &Target<'_>) -> Result<http::Request<Bytes>, AdapterError> {
        if !self.supports(req.endpoint) {
            return Err(AdapterError::Unsupported(req.endpoint.as_str()));
        }
        let (op, body) = if req.endpoint == Endpoint::Embeddings {
            (":batchEmbedContents", embeddings_request(&req.body, target.model)?)
        } else {
            let mut chat = crate::translate::read_request(req.endpoint.wire(), &req.body)?;
            target.params.apply(&mut chat)?;
            let op = if chat.stream {
                ":streamGenerateContent?alt=sse"
            } else {
                ":generateContent"
            };
            (op, chat_to_request(&chat)?)
        };
        let uri = join_url(target.base_url, &format!("/models/{}{op}", target.model))?;
        json_post(
            uri,
            req.view.stream,
            target,
            KeyHeader::Named(crate::names::X_GOOG_API_KEY),
            body,
        )
    }

    fn read_response(&self, req: &InboundRequest, body: Bytes) -> Result<ResponseOut, ResponseFault> {
        if req.endpoint == Endpoint::Embeddings {
            return Ok(ResponseOut {
                body: embeddings_response(&req.body, &body, &req.view.model)?,
                usage: None, // Gemini does not count embedding tokens; the gateway estimates
                finish_reason: None,
            });
        }
        let chat = response_to_chat(&body)?;
        Ok(ResponseOut {
            finish_reason: chat.stop_reason.map(crate::openai_chat::finish_reason),
            body: crate::translate::write_response(req.endpoint.wire(), &chat),
            usage: Some(chat.usage),
        })
    }

    fn stream_translator(&self, req: &InboundRequest) -> Box<dyn StreamTranslator> {
        Box::new(self.canonical_translator(req))
    }

    fn canonical_translator(&self, req: &InboundRequest) -> Translating {
        Translating::new(Source::Gemini, req.endpoint.wire(), req.view.include_usage)
    }

    fn classify_error(&self, status: StatusCode, body: &[u8]) -> ErrorClass {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let s = v.pointer("/error/status").and_then(Value::as_str).unwrap_or("");
        let message = v
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_ascii_lowercase();
        match (status.as_u16(), s) {
            (_, "RESOURCE_EXHAUSTED") | (429, _) => ErrorClass::RateLimited,
            (_, "UNAUTHENTICATED" | "PERMISSION_DENIED") | (401 | 403, _) => ErrorClass::Auth,
            (_, "NOT_FOUND") | (404, _) => ErrorClass::NotFound,
            (400, _) if message.contains("token") && (message.contains("exceed") || message.contains("limit")) => {
                ErrorClass::ContextLength
            }
            (_, "UNAVAILABLE") | (503, _) => ErrorClass::Overloaded,
            (400 | 409 | 413 | 422, _) => ErrorClass::InvalidRequest,
            _ => ErrorClass::Server,
        }
    }

    fn error_message(&self, body: &[u8], secrets: &[&str]) -> Option<String> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let text = v.pointer("/error/message")?.as_str()?;
        Some(scrub_credentials(text, secrets).into_owned())
    }
}
