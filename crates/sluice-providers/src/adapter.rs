//! The adapter boundary: what every wire format must provide so the data path can stay generic.
//!
//! The data path owns transport (connections, timeouts, retries, SSE framing); an adapter only
//! translates. Adapters for Anthropic, Gemini, Bedrock… implement the same two traits.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, Uri};

use crate::error::{ErrorClass, RequestError};
use crate::openai::RequestView;
use crate::sse::SseEvent;
use crate::translate::{ParamPolicy, Wire};
use crate::usage::Usage;

/// The client-facing operation a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    /// Anthropic Messages.
    Messages,
    /// OpenAI's Responses API.
    Responses,
    /// A prediction model's JSON endpoint (`/v1/predict/{name}`).
    Predict,
}

impl Endpoint {
    pub fn from_path(path: &str) -> Option<Endpoint> {
        match path {
            "/v1/chat/completions" => Some(Endpoint::ChatCompletions),
            "/v1/completions" => Some(Endpoint::Completions),
            "/v1/embeddings" => Some(Endpoint::Embeddings),
            "/v1/messages" => Some(Endpoint::Messages),
            "/v1/responses" => Some(Endpoint::Responses),
            p if p.len() > "/v1/predict/".len() && p.starts_with("/v1/predict/") => Some(Endpoint::Predict),
            _ => None,
        }
    }
    /// The wire format the client speaks on this endpoint (its errors come back in it too).
    pub fn wire(self) -> Wire {
        match self {
            Endpoint::Messages => Wire::Anthropic,
            Endpoint::Responses => Wire::Responses,
            _ => Wire::OpenAi,
        }
    }
    /// The path below an OpenAI-compatible base URL.
    pub fn upstream_suffix(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Messages => "/messages",
            Endpoint::Responses => "/responses",
            Endpoint::Predict => "",
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat_completions",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Messages => "messages",
            Endpoint::Responses => "responses",
            Endpoint::Predict => "predict",
        }
    }
}

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
            .get("traceparent")
            .filter(|v| is_traceparent(v.as_bytes()))
            .cloned();
        let tracestate = traceparent
            .as_ref()
            .and(headers.get("tracestate"))
            .filter(|v| v.len() <= 512)
            .cloned();
        ClientHeaders {
            anthropic_version: headers.get("anthropic-version").cloned(),
            anthropic_beta: headers.get("anthropic-beta").cloned(),
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
            headers.insert("x-request-id", id);
        }
        if let Some(t) = self.traceparent {
            headers.insert("traceparent", t.clone());
        }
        if let Some(t) = self.tracestate {
            headers.insert("tracestate", t.clone());
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
    pub aws: Option<&'a crate::bedrock::AwsAuth>,
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
/// header of its own (`x-api-key`, `api-key`, `x-goog-api-key`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum KeyHeader {
    Bearer,
    Named(&'static str),
}

/// The start of every JSON POST upstream: content type, accept (the event stream when
/// streaming), user agent, the request id, and the credential (marked sensitive).
pub(crate) fn json_post(
    uri: Uri,
    stream: bool,
    target: &Target<'_>,
    key: KeyHeader,
) -> Result<http::request::Builder, AdapterError> {
    use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
    let mut builder = http::Request::builder()
        .method(http::Method::POST)
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
        .header(USER_AGENT, SLUICE_AGENT.clone());
    if let (Some(f), Some(headers)) = (target.forward, builder.headers_mut()) {
        f.apply(headers);
    }
    if let Some(secret) = target.api_key {
        let (name, text) = match key {
            KeyHeader::Bearer => (AUTHORIZATION.as_str(), format!("Bearer {secret}")),
            KeyHeader::Named(name) => (name, secret.to_owned()),
        };
        let mut value = HeaderValue::from_str(&text).map_err(|e| AdapterError::Http(http::Error::from(e)))?;
        value.set_sensitive(true);
        builder = builder.header(name, value);
    }
    Ok(builder)
}

/// A successful non-streamed response, in the client's format.
#[derive(Debug, Clone)]
pub struct ResponseOut {
    pub body: Bytes,
    pub usage: Option<Usage>,
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
    fn framing(&self) -> crate::eventstream::Framing {
        crate::eventstream::Framing::Sse
    }

    /// A fresh translator for one streamed response.
    fn stream_translator(&self, req: &InboundRequest) -> Box<dyn StreamTranslator>;

    /// A translator that decodes every event into canonical deltas and encodes them in the
    /// client's format even when the two formats are the same: what response stages run over
    /// (see [`crate::translate::Translating::with_filter`]).
    fn canonical_translator(&self, req: &InboundRequest) -> crate::translate::Translating;

    /// What an upstream error response means.
    fn classify_error(&self, status: StatusCode, body: &[u8]) -> ErrorClass;

    /// The provider's error message, cleaned of credentials, for an OpenAI-shaped client error.
    fn error_message(&self, body: &[u8], secrets: &[&str]) -> Option<String>;
}

/// Per-stream state: sees every upstream event in order and decides what the client receives.
pub trait StreamTranslator: Send {
    /// Handles one upstream event, appending what the client should receive to `out`.
    fn on_event(&mut self, event: SseEvent, out: &mut Vec<Bytes>) -> Result<(), StreamFault>;
    /// Usage the upstream reported, if it did.
    fn reported_usage(&self) -> Option<Usage>;
    /// Completion chunks relayed so far (an estimate of completion tokens when none is reported).
    fn relayed_chunks(&self) -> u64;
    /// Prompt tokens the upstream counted before its final usage (Anthropic says them in
    /// `message_start`): what a stream cut short is charged for its prompt.
    fn prompt_tokens(&self) -> Option<u64> {
        None
    }
    /// Whether the upstream said it was done (e.g. `data: [DONE]`).
    fn saw_end(&self) -> bool;
    /// Where the translator keeps generated text (content, reasoning, tool arguments) when
    /// asked to. Required: a translator that kept none would charge a stream cut short under
    /// token limits no output at all.
    fn text_buffer(&mut self) -> Option<&mut Option<String>>;
    /// From now on, keep the generated text for [`StreamTranslator::take_text`]: a stream cut
    /// short is then counted with a tokenizer.
    fn collect_text(&mut self) {
        if let Some(b) = self.text_buffer() {
            b.get_or_insert_with(String::new);
        }
    }
    /// Moves the text generated since the last call into `into` (nothing unless collecting).
    fn take_text(&mut self, into: &mut String) {
        if let Some(Some(t)) = self.text_buffer() {
            into.push_str(t);
            t.clear();
        }
    }
    /// An event telling the client the stream failed, in the client's protocol.
    fn error_event(&self, code: &str, message: &str) -> Bytes;
}

impl StreamFault {
    /// The gateway's code for the error event that ends the client's stream.
    pub fn code(&self) -> &'static str {
        match self {
            StreamFault::Malformed => "upstream_malformed_stream",
            StreamFault::UpstreamError {
                class: ErrorClass::Overloaded,
                ..
            } => "upstream_overloaded",
            StreamFault::UpstreamError {
                class: ErrorClass::RateLimited,
                ..
            } => "upstream_rate_limited",
            StreamFault::UpstreamError { .. } => "upstream_stream_error",
            StreamFault::Stopped { code, .. } => code,
        }
    }
}

/// A successful upstream response whose body is not what the protocol promises.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed response body from upstream: {0}")]
pub struct MalformedResponse(pub String);

/// Why a successful (2xx) upstream response cannot be given to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseFault {
    #[error(transparent)]
    Malformed(#[from] MalformedResponse),
    /// The provider answered 200 but refused, e.g. a prompt blocked by a safety filter.
    #[error("{message}")]
    Refused { class: ErrorClass, message: String },
}

/// The upstream sent something inside a stream that is not a valid event of its protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamFault {
    #[error("malformed stream event from upstream")]
    Malformed,
    #[error("the upstream reported an error inside the stream: {message}")]
    UpstreamError { class: ErrorClass, message: String },
    /// A response stage ended the answer (its error event already went to the client).
    #[error("a response stage ended the stream ({code})")]
    Stopped { class: &'static str, code: &'static str },
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
