//! Azure OpenAI: OpenAI's wire format (this adapter reuses the OpenAI codec, pass-through and
//! translations alike) at Azure's addresses — `{base}/openai/deployments/{deployment}/{op}` with
//! an `api-version` query parameter — authenticated with an `api-key` header. The deployment's
//! `model` is the Azure deployment name.

use bytes::Bytes;
use http::header::{AUTHORIZATION, HeaderValue};
use http::{StatusCode, Uri};

use crate::adapter::{
    AdapterError, Endpoint, InboundRequest, ProviderAdapter, ResponseFault, ResponseOut, StreamTranslator, Target,
};
use crate::error::ErrorClass;
use crate::openai::OpenAiAdapter;
use crate::translate::Wire;

#[derive(Debug, Default, Clone, Copy)]
pub struct AzureAdapter;

/// The Azure URL of `suffix` (e.g. `/chat/completions`) for `deployment`.
pub fn azure_url(base: &Uri, deployment: &str, suffix: &str, api_version: &str) -> Result<Uri, AdapterError> {
    let encode = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let path = format!(
        "/openai/deployments/{}{suffix}?api-version={}",
        encode(deployment),
        encode(api_version)
    );
    crate::adapter::join_url(base, &path)
}

impl ProviderAdapter for AzureAdapter {
    fn name(&self) -> &'static str {
        "azure"
    }

    fn supports(&self, endpoint: Endpoint) -> bool {
        OpenAiAdapter.supports(endpoint)
    }

    fn build_request(&self, req: &InboundRequest, target: &Target<'_>) -> Result<http::Request<Bytes>, AdapterError> {
        let mut request = OpenAiAdapter.build_request(req, target)?;
        let suffix = match req.endpoint.wire() {
            Wire::OpenAi => req.endpoint.upstream_suffix(),
            _ => Endpoint::ChatCompletions.upstream_suffix(),
        };
        let version = target.api_version.unwrap_or("2024-10-21");
        *request.uri_mut() = azure_url(target.base_url, target.model, suffix, version)?;
        let headers = request.headers_mut();
        headers.remove(AUTHORIZATION);
        if let Some(key) = target.api_key {
            let mut value = HeaderValue::from_str(key).map_err(|e| AdapterError::Http(http::Error::from(e)))?;
            value.set_sensitive(true);
            headers.insert("api-key", value);
        }
        Ok(request)
    }

    fn read_response(&self, req: &InboundRequest, body: Bytes) -> Result<ResponseOut, ResponseFault> {
        OpenAiAdapter.read_response(req, body)
    }

    fn stream_translator(&self, req: &InboundRequest) -> Box<dyn StreamTranslator> {
        OpenAiAdapter.stream_translator(req)
    }

    fn canonical_translator(&self, req: &InboundRequest) -> crate::translate::Translating {
        OpenAiAdapter.canonical_translator(req)
    }

    fn classify_error(&self, status: StatusCode, body: &[u8]) -> ErrorClass {
        OpenAiAdapter.classify_error(status, body)
    }

    fn error_message(&self, body: &[u8], secrets: &[&str]) -> Option<String> {
        OpenAiAdapter.error_message(body, secrets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_azure_addresses() {
        let base: Uri = "https://res.openai.azure.com".parse().unwrap();
        let u = azure_url(&base, "gpt 4o", "/chat/completions", "2024-10-21").unwrap();
        assert_eq!(
            u.to_string(),
            "https://res.openai.azure.com/openai/deployments/gpt%204o/chat/completions?api-version=2024-10-21"
        );
    }
}
