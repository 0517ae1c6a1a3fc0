//! The adapter boundary: what every wire format must provide so the data path can stay generic.
//!
//! The data path owns transport (connections, timeouts, retries, SSE framing); an adapter only
//! translates. Adapters for Anthropic, Gemini, Bedrock… implement the same two traits.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, Uri};

use crate::aws::AwsAuth;
use crate::error::{ErrorClass, RequestError};
use crate::eventstream::Framing;
pub use crate::fault::{MalformedResponse, ResponseFault, StreamFault};
use crate::names;
pub use crate::stream::StreamTranslator;
use crate::translate::{ParamPolicy, Translating};
use crate::usage::Usage;
use crate::view::RequestView;
pub use crate::wire::Endpoint;

/// A client request whose envelope has been read and checked; the body stays as received.
#[derive(Debug, Clone)]
pub struct InboundRequest {
    pub endpoint: Endpoint,
    pub body: Bytes,
    pub view: RequestView,
    pub headers: ClientHeaders,
}

/// The client's request headers an upstream of the same format may need.
#[derive(Debug, Clone, Default)]
pub struct ClientHeaders {
    pub anthropic_version: Option<HeaderValue>,
    pub anthropic_beta: Option<HeaderValue>,
    /// The caller's W3C trace context (`traceparent` only when well formed; `tracestate` only
    /// with it).
    pub traceparent: Option<HeaderValue>,
    pub tracestate: Option<HeaderValue>,
}

impl ClientHeaders {
    pub fn from_map(headers: &http::HeaderMap) -> ClientHeaders {
        let traceparent = headers
            .get(names::TRACEPARENT)
            .filter(|v| is_traceparent(v.as_bytes()))
            .cloned();
        let tracestate = traceparent
            .as_ref()
            .and(headers.get(names::TRACESTATE))
            .filter(|v| v.len() <= 512)
            .cloned();
        ClientHeaders {
            anthropic_version: headers.get(names::ANTHROPIC_VERSION).cloned(),
            anthropic_beta: headers.get(names::ANTHROPIC_BETA).cloned(),
            traceparent,
            tracestate,
        }
    }
}

/// A W3C `traceparent`: `version-traceid-parentid-flags` in lowercase hex, the ids not all
/// zeros, version `ff` invalid; version `00` exactly 55 characters, later ones at least that.
pub fn is_traceparent(v: &[u8]) -> bool {
    let hex = |b: &[u8]| !b.is_empty() && b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    let zeros = |b: &[u8]| b.iter().all(|c| *c == b'0');
    if v.len() < 55 || !hex(&v[0..2]) || &v[0..2] == b"ff" || (&v[0..2] == b"00" && v.len() != 55) {
        return false;
    }
    if v.len() > 55 && v[55] != b'-' {
        return false;
    }
    let (trace, parent, flags) = (&v[3..35], &v[36..52], &v[53..55]);
    v[2] == b'-'
        && v[35] == b'-'
        && v[52] == b'-'
        && hex(trace)
        && !zeros(trace)
        && hex(parent)
        && !zeros(parent)
        && hex(flags)
}

/// What the gateway passes on about a request to an upstream allowed to see it (self-hosted,
/// or a deployment with `forward_trace: true`).
#[derive(Debug, Clone, Copy)]
pub struct Forwarded<'a> {
    pub request_id: &'a str,
    pub traceparent: Option<&'a HeaderValue>,
    pub tracestate: Option<&'a HeaderValue>,
}

impl Forwarded<'_> {
    /// Adds `x-request-id` and the trace context to an upstream request's headers.
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        if let Ok(id) = HeaderValue::from_str(self.request_id) {
            headers.insert(names::X_REQUEST_ID, id);
        }
        if let Some(t) = self.traceparent {
            headers.insert(names::TRACEPARENT, t.clone());
        }
        if let Some(t) = self.tracestate {
            headers.insert(names::TRACESTATE, t.clone());
        }
    }
}

impl InboundRequest {
    /// Reads and checks the envelope of `body` for `endpoint`.
    pub fn parse(endpoint: Endpoint, body: Bytes) -> Result<InboundRequest, RequestError> {
        let view = RequestView::parse(endpoint, &body)?;
        Ok(InboundRequest {
            endpoint,
            body,
            view,
            headers: ClientHeaders::default(),
        })
    }
}

/// One upstream target, as the data path resolved it.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub base_url: &'a Uri,
    pub model: &'a str,
    pub api_key: Option<&'a str>,
    /// The request id and trace context, when this upstream may see them.
    pub forward: Option<Forwarded<'a>>,
    /// What to do with parameters a translation cannot express.
    pub params: ParamPolicy<'a>,
    /// Azure's `api-version`.
    pub api_version: Option<&'a str>,
    /// AWS credentials and region (Bedrock).
    pub aws: Option<&'a AwsAuth>,
}

#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("cannot build the upstream URL from {base}: {reason}")]
    BadUrl { base: String, reason: String },
    #[error("cannot build the upstream request: {0}")]
    Http(#[from] http::Error),
    /// The client's request cannot be translated for this upstream.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The upstream's provider has no such operation.
    #[error("this deployment's provider does not offer the {0} endpoint")]
    Unsupported(&'static str),
    /// The deployment's credentials are missing or unusable.
    #[error("cannot authenticate to the upstream: {0}")]
    Credentials(&'static str),
}

pub(crate) static APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
pub(crate) static EVENT_STREAM: HeaderValue = HeaderValue::from_static("text/event-stream");
pub(crate) static SLUICE_AGENT: HeaderValue = HeaderValue::from_static(concat!("sluice/", env!("CARGO_PKG_VERSION")));

/// How a provider wants its credential: `Authorization: Bearer <key>`, or the key as is in a
/// header of its own (`x-api-key`, `x-goog-api-key`).
#[derive(Debug, Clone)]
pub(crate) enum KeyHeader {
    Bearer,
    Named(http::HeaderName),
}

/// Every JSON POST upstream: content type, accept (the event stream when streaming), user
/// agent, the request id, and the credential (marked sensitive). The request is built in place
/// (a `Builder` moves the whole request through every `.header()` call).
pub(crate) fn json_post(
    uri: Uri,
    stream: bool,
    target: &Target<'_>,
    key: KeyHeader,
    body: Bytes,
) -> Result<http::Request<Bytes>, AdapterError> {
    use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
    let mut request = http::Request::new(body);
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    headers.insert(CONTENT_TYPE, APPLICATION_JSON.clone());
    headers.insert(
        ACCEPT,
        if stream {
            EVENT_STREAM.clone()
        } else {
            APPLICATION_JSON.clone()
        },
    );
    headers.insert(USER_AGENT, SLUICE_AGENT.clone());
    if let Some(f) = target.forward {
        f.apply(headers);
    }
    if let Some(secret) = target.api_key {
        let (name, text) = match key {
            KeyHeader::Bearer => (AUTHORIZATION, format!("Bearer {secret}")),
            KeyHeader::Named(name) => (name, secret.to_owned()),
        };
        let mut value = HeaderValue::from_str(&text).map_err(|e| AdapterError::Http(http::Error::from(e)))?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    Ok(request)
}

/// A successful non-streamed response, in the client's format.
#[derive(Debug, Clone)]
pub struct ResponseOut {
    pub body: Bytes,
    pub usage: Option<Usage>,
    /// Why the answer stopped, in OpenAI's words (`stop`, `length`, `tool_calls`,
    /// `content_filter`) whatever the provider said (for traces).
    pub finish_reason: Option<&'static str>,
}

/// Translation between the client's format and one provider family's wire format.
pub trait ProviderAdapter: Send + Sync + 'static {
    fn name(&self) -> &'static str;

    /// Whether this provider can serve requests arriving on `endpoint` (natively or translated).
    fn supports(&self, endpoint: Endpoint) -> bool;

    /// The request to send upstream: URL, headers and body.
    fn build_request(&self, req: &InboundRequest, target: &Target<'_>) -> Result<http::Request<Bytes>, AdapterError>;

    /// Checks a complete, successful, non-streamed response body, reads its usage, and puts it
    /// in the client's format.
    fn read_response(&self, req: &InboundRequest, body: Bytes) -> Result<ResponseOut, ResponseFault>;

    /// How this provider frames its streams.
    fn framing(&self) -> Framing {
        Framing::Sse
    }

    /// A fresh translator for one streamed response.
    fn stream_translator(&self, req: &InboundRequest) -> Box<dyn StreamTranslator>;

    /// A translator that decodes every event into canonical deltas and encodes them in the
    /// client's format even when the two formats are the same: what response stages run over
    /// (see [`crate::translate::Translating::with_filter`]).
    fn canonical_translator(&self, req: &InboundRequest) -> Translating;

    /// What an upstream error response means.
    fn classify_error(&self, status: StatusCode, body: &[u8]) -> ErrorClass;

    /// The provider's error message, cleaned of credentials, for an OpenAI-shaped client error.
    fn error_message(&self, body: &[u8], secrets: &[&str]) -> Option<String>;
}

/// Joins a base URL such as `https://host/v1` with an endpoint suffix (straight from the
/// parts: a `Uri` builder moves its parts through every step).
pub fn join_url(base: &Uri, suffix: &str) -> Result<Uri, AdapterError> {
    let path = base.path().trim_end_matches('/');
    let mut joined = String::with_capacity(path.len() + suffix.len());
    joined.push_str(path);
    joined.push_str(suffix);
    let bad = |reason: String| AdapterError::BadUrl {
        base: base.to_string(),
        reason,
    };
    let mut parts = http::uri::Parts::default();
    parts.scheme = base.scheme().cloned();
    parts.authority = base.authority().cloned();
    parts.path_and_query =
        Some(http::uri::PathAndQuery::from_maybe_shared(Bytes::from(joined)).map_err(|e| bad(e.to_string()))?);
    Uri::from_parts(parts).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn traceparents_are_checked_as_w3c_says() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        for (v, expected) in [
            (ok, true),
            ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later", true),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", false),
            ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false),
            ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", false),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false),
            ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false),
            ("00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false),
            ("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", false),
            ("", false),
        ] {
            assert_eq!(super::is_traceparent(v.as_bytes()), expected, "{v}");
        }
    }
}
