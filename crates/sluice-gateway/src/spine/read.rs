//! Reading what the client sent: the body within the server's size and time limits, and the
//! request id (the client's when it is usable, else a new UUIDv7).

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::error::{ErrorKind, GatewayError};

pub(super) fn too_large(limit: u64) -> GatewayError {
    GatewayError::new(
        ErrorKind::PayloadTooLarge,
        "request_too_large",
        format!("The request body is larger than this route allows ({limit} bytes)."),
    )
}

/// Reads the body, refusing it as soon as it is known to exceed the limit — from
/// `Content-Length` before reading, or while reading when the length is not declared.
pub(super) async fn read_body(
    body: Incoming,
    headers: &HeaderMap,
    server: &sluice_config::ServerConfig,
) -> Result<Bytes, GatewayError> {
    let limit = server.max_body_bytes;
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let collect = Limited::new(body, limit as usize).collect();
    match tokio::time::timeout(server.body_read_timeout, collect).await {
        Err(_) => Err(
            GatewayError::bad_request("body_read_timeout", "The request body did not arrive in time.")
                .with_status(StatusCode::REQUEST_TIMEOUT),
        ),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large(limit)),
        Ok(Err(_)) => Err(GatewayError::bad_request(
            "body_read_error",
            "The request body could not be read.",
        )),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

/// Accepts a client's `x-request-id` when it is short and printable; otherwise makes one.
pub(super) fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(sluice_providers::names::X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(new_request_id, str::to_owned)
}

/// A UUIDv7 (time-ordered) from the thread-local RNG: no global lock, no syscall.
/// (`Uuid::now_v7` would take the uuid crate's process-wide mutex on every request.)
fn new_request_id() -> String {
    use rand::Rng;
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let (a, b): (u16, u64) = rand::rng().random();
    let hi = (ms << 16) | 0x7000 | u64::from(a & 0x0FFF);
    let lo = 0x8000_0000_0000_0000 | (b & 0x3FFF_FFFF_FFFF_FFFF);
    uuid::Uuid::from_u64_pair(hi, lo).hyphenated().to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_are_v7_and_unique() {
        let a = super::new_request_id();
        let b = super::new_request_id();
        assert_ne!(a, b);
        let u = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(u.get_version_num(), 7);
        assert_eq!(u.get_variant(), uuid::Variant::RFC4122);
    }
}
