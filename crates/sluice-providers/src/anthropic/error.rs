//! Anthropic's errors: what an error type means, the type for a status or a gateway stream error
//! code, and the Anthropic-shaped error body.

use bytes::Bytes;
use serde_json::json;

use crate::error::ErrorClass;

/// The Anthropic error type for an HTTP status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 | 405 | 408 | 409 | 415 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    }
}

/// An Anthropic-shaped error body.
pub fn error_body(status: u16, message: &str, request_id: &str) -> Bytes {
    let mut v = json!({"type": "error", "error": {"type": error_type(status), "message": message}});
    if !request_id.is_empty() {
        v["request_id"] = json!(request_id);
    }
    Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
}

/// What an Anthropic error means, from its status, `error.type` and message.
pub fn classify(status: u16, kind: &str, message: &str) -> ErrorClass {
    let lower = message.to_ascii_lowercase();
    match (status, kind) {
        (_, "overloaded_error") | (529, _) => ErrorClass::Overloaded,
        (_, "rate_limit_error") | (429, _) => ErrorClass::RateLimited,
        (_, "billing_error") | (402, _) => ErrorClass::QuotaExceeded,
        (_, "authentication_error" | "permission_error") | (401 | 403, _) => ErrorClass::Auth,
        (_, "not_found_error") | (404, _) => ErrorClass::NotFound,
        (400 | 413, _) if lower.contains("prompt is too long") || lower.contains("context window") => {
            ErrorClass::ContextLength
        }
        (_, "request_too_large") | (400 | 409 | 413 | 422, _) => ErrorClass::InvalidRequest,
        _ => ErrorClass::Server,
    }
}

/// The Anthropic error type for one of the gateway's stream error codes.
pub fn code_type(code: &str) -> &'static str {
    match code {
        "upstream_overloaded" => "overloaded_error",
        "upstream_rate_limited" => "rate_limit_error",
        "stream_idle_timeout" | "upstream_timeout" => "timeout_error",
        _ => "api_error",
    }
}
