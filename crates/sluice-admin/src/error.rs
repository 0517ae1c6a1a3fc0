//! The admin API's one error body: OpenAI-shaped, type `admin_error`, a stable code.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub(crate) fn error(status: StatusCode, code: &'static str, message: impl Into<String>) -> Response {
    let body = json!({ "error": { "message": message.into(), "type": "admin_error", "param": null, "code": code } });
    (status, Json(body)).into_response()
}
