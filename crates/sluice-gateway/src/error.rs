//! The one boundary error. Every failure on the request path becomes a `GatewayError`, and this
//! file alone maps it to a status, a stable code, a metric label and an OpenAI-shaped body.

use std::borrow::Cow;

use bytes::Bytes;
use http::StatusCode;
use sluice_providers::{RequestError, Wire};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    BadRequest,
    Unauthenticated,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    /// The gateway's own limits refused the request.
    RateLimited,
    GuardrailBlocked,
    /// The upstream refused the request under its rate limit (429).
    UpstreamRateLimited,
    UpstreamTimeout,
    /// The upstream could not be reached, dropped us, or answered with a server error.
    UpstreamUnavailable,
    /// The upstream refused our credential or answered with something unusable.
    UpstreamRejected,
    /// The upstream is overloaded (503/529).
    UpstreamOverloaded,
    /// The gateway is not serving (draining, not ready).
    Unavailable,
    Internal,
}

/// Who caused the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Client,
    Gateway,
    Upstream,
}

#[derive(Debug, Clone)]
pub struct GatewayError {
    pub kind: ErrorKind,
    /// Stable machine-readable code, e.g. `invalid_api_key`.
    pub code: &'static str,
    pub message: Cow<'static, str>,
    pub param: Option<Cow<'static, str>>,
    /// Replaces the kind's status, for upstream 4xx passed through as they were.
    pub status: Option<StatusCode>,
    /// Seconds, for `Retry-After`.
    pub retry_after: Option<u64>,
    /// Tell SDKs not to retry (the gateway already did, or retrying cannot help).
    pub no_retry: bool,
    /// Where the caller's limits stand, for `x-ratelimit-*` headers on a refusal.
    pub rate: Option<Box<sluice_limits::RateInfo>>,
    /// How the upstream attempt failed, when that is what this error reports: what the
    /// fallback chain reads.
    pub failure: Option<crate::upstream::failure::Failure>,
}

impl GatewayError {
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        GatewayError {
            kind,
            code,
            message: message.into(),
            param: None,
            status: None,
            retry_after: None,
            no_retry: false,
            rate: None,
            failure: None,
        }
    }
    pub fn with_failure(mut self, failure: crate::upstream::failure::Failure) -> Self {
        self.failure = Some(failure);
        self
    }
    pub fn with_param(mut self, param: impl Into<Cow<'static, str>>) -> Self {
        self.param = Some(param.into());
        self
    }
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }
    pub fn with_retry_after(mut self, secs: Option<u64>) -> Self {
        self.retry_after = secs;
        self
    }
    pub fn no_retry(mut self) -> Self {
        self.no_retry = true;
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::BadRequest, code, message)
    }
    pub fn internal(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Internal, "internal_error", message)
    }

    pub fn status(&self) -> StatusCode {
        self.status.unwrap_or(match self.kind {
            ErrorKind::BadRequest | ErrorKind::GuardrailBlocked => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::RateLimited | ErrorKind::UpstreamRateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::UpstreamUnavailable | ErrorKind::UpstreamRejected => StatusCode::BAD_GATEWAY,
            ErrorKind::UpstreamOverloaded | ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        })
    }

    pub fn origin(&self) -> Origin {
        match self.kind {
            ErrorKind::BadRequest
            | ErrorKind::Unauthenticated
            | ErrorKind::Forbidden
            | ErrorKind::NotFound
            | ErrorKind::PayloadTooLarge
            | ErrorKind::GuardrailBlocked
            | ErrorKind::RateLimited => Origin::Client,
            ErrorKind::UpstreamTimeout
            | ErrorKind::UpstreamRateLimited
            | ErrorKind::UpstreamUnavailable
            | ErrorKind::UpstreamRejected
            | ErrorKind::UpstreamOverloaded => Origin::Upstream,
            ErrorKind::Unavailable | ErrorKind::Internal => Origin::Gateway,
        }
    }

    /// The error class: the label on metrics and in the log line.
    pub fn class(&self) -> &'static str {
        match self.kind {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "not_found",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::UpstreamRateLimited => "upstream_rate_limited",
            ErrorKind::GuardrailBlocked => "guardrail_blocked",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::UpstreamUnavailable => "upstream_unavailable",
            ErrorKind::UpstreamRejected => "upstream_rejected",
            ErrorKind::UpstreamOverloaded => "upstream_overloaded",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }

    /// OpenAI's `error.type`.
    fn openai_type(&self) -> &'static str {
        match self.kind {
            ErrorKind::BadRequest | ErrorKind::NotFound | ErrorKind::PayloadTooLarge | ErrorKind::GuardrailBlocked => {
                "invalid_request_error"
            }
            ErrorKind::Unauthenticated => "authentication_error",
            ErrorKind::Forbidden => "permission_error",
            ErrorKind::RateLimited | ErrorKind::UpstreamRateLimited => "rate_limit_error",
            _ => "server_error",
        }
    }

    /// The body in the client's wire format.
    pub fn body_for(&self, wire: Wire, request_id: &str) -> Bytes {
        match wire {
            Wire::OpenAi | Wire::Responses => self.body(),
            Wire::Anthropic => {
                sluice_providers::anthropic::error_body(self.status().as_u16(), &self.message, request_id)
            }
        }
    }

    /// The OpenAI-shaped body: `{"error": {"message", "type", "param", "code"}}`.
    pub fn body(&self) -> Bytes {
        let v = serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.openai_type(),
                "param": self.param,
                "code": self.code,
            }
        });
        Bytes::from(v.to_string())
    }
}

impl From<RequestError> for GatewayError {
    fn from(e: RequestError) -> Self {
        let err = GatewayError::bad_request(e.code(), e.to_string());
        match e.param() {
            Some(p) => err.with_param(p),
            None => err,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_bodies() {
        let cases = [
            (
                GatewayError::bad_request("invalid_json", "x"),
                400,
                "invalid_request_error",
            ),
            (
                GatewayError::new(ErrorKind::Unauthenticated, "invalid_api_key", "x"),
                401,
                "authentication_error",
            ),
            (
                GatewayError::new(ErrorKind::PayloadTooLarge, "body_too_large", "x"),
                413,
                "invalid_request_error",
            ),
            (
                GatewayError::new(ErrorKind::UpstreamTimeout, "upstream_timeout", "x"),
                504,
                "server_error",
            ),
            (
                GatewayError::new(ErrorKind::UpstreamRejected, "upstream_auth_failed", "x"),
                502,
                "server_error",
            ),
            (
                GatewayError::new(ErrorKind::BadRequest, "upstream_invalid_request", "x")
                    .with_status(StatusCode::UNPROCESSABLE_ENTITY),
                422,
                "invalid_request_error",
            ),
        ];
        for (err, status, kind) in cases {
            assert_eq!(err.status().as_u16(), status, "{err:?}");
            let body: serde_json::Value = serde_json::from_slice(&err.body()).unwrap();
            assert_eq!(body["error"]["type"], kind);
            assert_eq!(body["error"]["code"], err.code);
        }
    }
}
