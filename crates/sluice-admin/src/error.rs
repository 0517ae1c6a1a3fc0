//! The admin API's one error body: OpenAI-shaped, type `admin_error`, a stable code — for
//! every refusal, including a query, path or body the extractors could not read, an unknown
//! path and a method a path does not take.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// `{"error": {"message", "type": "admin_error", "param": null, "code"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub message: String,
    /// Always `admin_error`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub param: Option<String>,
    /// A stable code: `invalid_admin_token`, `invalid_json`, `invalid_query`, `not_found`…
    pub code: &'static str,
}

pub(crate) fn error(status: StatusCode, code: &'static str, message: impl Into<String>) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            message: message.into(),
            kind: "admin_error",
            param: None,
            code,
        },
    };
    (status, Json(body)).into_response()
}

/// A query string the handler could not read.
pub(crate) fn bad_query(e: &axum::extract::rejection::QueryRejection) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_query", e.body_text())
}

/// A path parameter the handler could not read.
pub(crate) fn bad_path(e: &axum::extract::rejection::PathRejection) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_path", e.body_text())
}

/// A body the handler could not read (too large, or cut off).
pub(crate) fn bad_body(e: &axum::extract::rejection::BytesRejection) -> Response {
    let status = e.status();
    let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "body_too_large"
    } else {
        "invalid_body"
    };
    error(status, code, e.body_text())
}

/// Unknown admin paths.
pub(crate) async fn not_found(uri: axum::http::Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("There is no admin endpoint {}.", uri.path()),
    )
}

/// A method the path does not take.
pub(crate) async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not supported on {}.", uri.path()),
    )
}

/// The key store (or the ledger's database) did not answer.
pub(crate) fn store_unavailable(e: impl std::fmt::Display) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string())
}

/// The refusal of a call that needs the spend ledger when it is disabled.
pub(crate) fn ledger_disabled() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "ledger_disabled",
        "The spend ledger is disabled.",
    )
}

/// A page size: `given` or `default`, if within 1–`max`.
pub(crate) fn page_limit(given: Option<u32>, default: u32, max: u32) -> Option<u32> {
    Some(given.unwrap_or(default)).filter(|l| (1..=max).contains(l))
}

/// A page size past 1–`max`.
pub(crate) fn bad_limit(max: u32) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_query", format!("limit is 1–{max}."))
}
