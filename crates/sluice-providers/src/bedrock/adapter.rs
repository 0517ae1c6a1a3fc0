//! The adapter for Bedrock deployments: Converse (or InvokeModel for embeddings), SigV4-signed,
//! streams in AWS event-stream framing.

use std::time::SystemTime;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use http::{Method, StatusCode};
use serde_json::Value;

use super::converse::{chat_to_request, response_to_chat};
use super::embeddings::{embeddings_request, embeddings_response};
use crate::adapter::{
    APPLICATION_JSON, AdapterError, Endpoint, InboundRequest, ProviderAdapter, ResponseFault, ResponseOut,
    StreamTranslator, Target, join_url,
};
use crate::aws::sign_request;
use crate::error::{ErrorClass, scrub_credentials};
use crate::eventstream::Framing;
use crate::translate::{Source, Translating};

/// The adapter for Bedrock deployments.
#[derive(Debug, Default, Clone, Copy)]
pub struct BedrockAdapter;

static EVENT_STREAM: HeaderValue = HeaderValue::from_static("application/vnd.amazon.eventstream");

/// Percent-encodes a model id for the path (ids contain `:`).
fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl ProviderAdapter for BedrockAdapter {
    fn name(&self) -> &'static str {
        "bedrock"
    }

    fn supports(&self, endpoint: Endpoint) -> bool {
        matches!(
            endpoint,
            Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::Responses | Endpoint::Embeddings
        )
    }

    fn framing(&self) -> Framing {
        Framing::EventStream
    }

    fn build_request(&self, req: &InboundRequest, target: &Target<'_>) -> Result<http::Request<Bytes>, AdapterError> {
        if !self.supports(req.endpoint) {
            return Err(AdapterError::Unsupported(req.endpoint.as_str()));
        }
        let (op, body, stream) = if req.endpoint == Endpoint::Embeddings {
            ("invoke", embeddings_request(&req.body, target.model)?, false)
        } else {
            let mut chat = crate::translate::read_request(req.endpoint.wire(), &req.body)?;
            target.params.apply(&mut chat)?;
            let op = if chat.stream { "converse-stream" } else { "converse" };
            (op, chat_to_request(&chat)?, chat.stream)
        };
        let uri = join_url(target.base_url, &format!("/model/{}/{op}", path_segment(target.model)))?;
        let mut request = http::Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(CONTENT_TYPE, APPLICATION_JSON.clone())
            .header(
                ACCEPT,
                if stream {
                    EVENT_STREAM.clone()
                } else {
                    APPLICATION_JSON.clone()
                },
            )
            .body(body)?;
        if let Some(host) = request.uri().authority().map(|a| a.as_str().to_owned())
            && let Ok(v) = HeaderValue::from_str(&host)
        {
            request.headers_mut().insert(http::header::HOST, v);
        }
        let auth = target.aws.ok_or(AdapterError::Credentials("no AWS credentials"))?;
        sign_request(&mut request, auth, "bedrock", SystemTime::now())
            .map_err(|_| AdapterError::Credentials("SigV4 signing failed"))?;
        for v in request.headers_mut().values_mut() {
            if v.as_bytes().starts_with(b"AWS4-HMAC-SHA256") {
                v.set_sensitive(true);
            }
        }
        if let Some(f) = target.forward {
            f.apply(request.headers_mut());
        }
        Ok(request)
    }

    fn read_response(&self, req: &InboundRequest, body: Bytes) -> Result<ResponseOut, ResponseFault> {
        if req.endpoint == Endpoint::Embeddings {
            let (body, usage) = embeddings_response(&req.body, &body, &req.view.model)?;
            return Ok(ResponseOut {
                body,
                usage,
                finish_reason: None,
            });
        }
        let chat = response_to_chat(&body, &req.view.model)?;
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
        Translating::new(Source::Bedrock, req.endpoint.wire(), req.view.include_usage)
            .with_fallback_model(req.view.model.clone())
    }

    fn classify_error(&self, status: StatusCode, body: &[u8]) -> ErrorClass {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let message = v
            .get("message")
            .or_else(|| v.get("Message"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_ascii_lowercase();
        match status.as_u16() {
            400 if message.contains("too long") || message.contains("context") => ErrorClass::ContextLength,
            400 | 409 | 413 | 422 => ErrorClass::InvalidRequest,
            401 | 403 => ErrorClass::Auth,
            404 => ErrorClass::NotFound,
            429 => ErrorClass::RateLimited,
            503 => ErrorClass::Overloaded,
            _ => ErrorClass::Server,
        }
    }

    fn error_message(&self, body: &[u8], secrets: &[&str]) -> Option<String> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let text = v.get("message").or_else(|| v.get("Message"))?.as_str()?;
        Some(scrub_credentials(text, secrets).into_owned())
    }
}
