//! Plain prediction models: any JSON HTTP endpoint (KServe v2 / Triton `infer`, a custom API).
//! Transport only — the deployment's `base_url` is the endpoint, the body is what the route's
//! request template built (or the caller's body as is), and the answer must be JSON. Schemas and
//! templates belong to the route and are applied by the gateway.

use bytes::Bytes;
use http::StatusCode;

use crate::adapter::{
    AdapterError, Endpoint, InboundRequest, KeyHeader, MalformedResponse, ProviderAdapter, ResponseFault, ResponseOut,
    StreamTranslator, Target, json_post,
};
use crate::error::{ErrorClass, scrub_credentials};
use crate::usage::Usage;

#[derive(Debug, Default, Clone, Copy)]
pub struct PredictionAdapter;

impl ProviderAdapter for PredictionAdapter {
    fn name(&self) -> &'static str {
        "prediction"
    }

    fn supports(&self, endpoint: Endpoint) -> bool {
        endpoint == Endpoint::Predict
    }

    fn build_request(&self, req: &InboundRequest, target: &Target<'_>) -> Result<http::Request<Bytes>, AdapterError> {
        if !self.supports(req.endpoint) {
            return Err(AdapterError::Unsupported(req.endpoint.as_str()));
        }
        json_post(
            target.base_url.clone(),
            false,
            target,
            KeyHeader::Bearer,
            req.body.clone(),
        )
    }

    fn read_response(&self, _req: &InboundRequest, body: Bytes) -> Result<ResponseOut, ResponseFault> {
        serde_json::from_slice::<serde::de::IgnoredAny>(&body).map_err(|e| MalformedResponse(e.to_string()))?;
        // A prediction has no tokens; its cost is the price table's per-request price.
        Ok(ResponseOut {
            finish_reason: None,
            body,
            usage: Some(Usage::default()),
        })
    }

    fn stream_translator(&self, req: &InboundRequest) -> Box<dyn StreamTranslator> {
        Box::new(self.canonical_translator(req))
    }

    fn canonical_translator(&self, _req: &InboundRequest) -> crate::translate::Translating {
        crate::translate::Translating::new(crate::translate::Source::OpenAi, crate::translate::Wire::OpenAi, false)
    }

    fn classify_error(&self, status: StatusCode, _body: &[u8]) -> ErrorClass {
        match status.as_u16() {
            400 | 409 | 413 | 422 => ErrorClass::InvalidRequest,
            401 | 403 => ErrorClass::Auth,
            404 => ErrorClass::NotFound,
            429 => ErrorClass::RateLimited,
            503 => ErrorClass::Overloaded,
            _ => ErrorClass::Server,
        }
    }

    fn error_message(&self, body: &[u8], secrets: &[&str]) -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let text = v
            .get("error")
            .and_then(|e| e.as_str().or_else(|| e.get("message")?.as_str()))
            .or_else(|| v.get("message")?.as_str())?;
        Some(scrub_credentials(text, secrets).into_owned())
    }
}
