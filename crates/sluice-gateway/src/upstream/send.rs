//! One attempt at one deployment: build the request through its adapter, send it with a
//! first-byte timeout, and read the answer — or say how it failed.

use std::time::Instant;

use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use sluice_providers::adapter::{AdapterError, Forwarded, ResponseFault, Target};
use sluice_providers::eventstream::Framing;
use sluice_providers::{ErrorClass, InboundRequest, ParamPolicy};

use crate::error::{ErrorKind, GatewayError};
use crate::flow::{Decision, Upstream};
use crate::state::DeploymentRuntime;
use crate::upstream::failure::Failure;

/// Largest upstream body the gateway buffers (non-streamed responses, error bodies).
const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;
const MAX_ERROR_BODY: usize = 64 * 1024;

/// One attempt that did not succeed: how, the error the caller would see, and what the
/// upstream said about its status and a pause.
pub(super) struct Failed {
    pub(super) failure: Failure,
    pub(super) error: GatewayError,
    pub(super) status: Option<u16>,
    /// The upstream asked for a pause (`Retry-After`, seconds).
    pub(super) retry_after: Option<u64>,
}

impl Failed {
    pub(super) fn new(failure: Failure, error: GatewayError) -> Failed {
        Failed {
            error: error.with_failure(failure),
            failure,
            status: None,
            retry_after: None,
        }
    }

    pub(super) fn at(mut self, status: StatusCode) -> Failed {
        self.status = Some(status.as_u16());
        self
    }
}

/// The leading number of a header value (`12`, `3.5`, `12; unit=requests`), if non-negative.
pub(super) fn header_number(v: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(v).ok()?;
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    text[..end].parse::<f64>().ok().filter(|n| n.is_finite() && *n >= 0.0)
}

pub(super) async fn attempt_once(
    dep: &DeploymentRuntime,
    decision: &Decision<'_>,
    inbound: &InboundRequest,
    (request_id, trace): (&str, Option<(&crate::trace::TraceCtx, &[u8; 8])>),
    deadline: Instant,
) -> Result<Upstream, Failed> {
    let policy = &decision.route.config.policy;
    // A traced request's upstream gets this attempt's span as its parent; otherwise the
    // caller's context goes on as it came.
    let traceparent = match trace {
        Some((ctx, span)) if dep.forward_trace => Some(ctx.traceparent(span)),
        _ => None,
    };
    let target = Target {
        base_url: &dep.base_url,
        model: &dep.upstream_model,
        api_key: dep.api_key.as_ref().map(|s| s.expose()),
        // Self-hosted servers (or a deployment that says so) get the request id and the
        // caller's trace context; a third-party provider does not.
        forward: dep.forward_trace.then_some(Forwarded {
            request_id,
            traceparent: traceparent.as_ref().or(inbound.headers.traceparent.as_ref()),
            tracestate: inbound.headers.tracestate.as_ref(),
        }),
        params: ParamPolicy {
            drop_unsupported: policy.drop_unsupported,
            forward: &policy.forward_params,
        },
        api_version: dep.api_version.as_deref(),
        aws: dep.aws.as_ref(),
    };
    let request = dep.adapter.build_request(inbound, &target).map_err(|e| match e {
        AdapterError::Request(e) => Failed::new(Failure::Unsupported, GatewayError::from(e)),
        AdapterError::Unsupported(what) => Failed::new(
            Failure::Unsupported,
            GatewayError::bad_request(
                "unsupported_endpoint",
                format!(
                    "The model this route selected ({}) cannot serve the {what} endpoint.",
                    decision.model.name
                ),
            ),
        ),
        e => Failed::new(
            Failure::Internal,
            GatewayError::internal(format!("cannot build the upstream request: {e}")),
        ),
    })?;
    let left = deadline.saturating_duration_since(Instant::now());
    let first_byte = policy.first_byte_timeout.min(left);
    let client = decision.route.client(dep.http2_prior_knowledge);
    let response = match tokio::time::timeout(first_byte, client.request(request.map(Full::new))).await {
        Err(_) => {
            return Err(Failed::new(
                Failure::Timeout,
                GatewayError::new(
                    ErrorKind::UpstreamTimeout,
                    "upstream_timeout",
                    "The upstream did not answer in time.",
                ),
            ));
        }
        Ok(Err(e)) if e.is_connect() => {
            return Err(Failed::new(
                Failure::Connect,
                GatewayError::new(
                    ErrorKind::UpstreamUnavailable,
                    "upstream_connect_failed",
                    "The gateway could not connect to the upstream.",
                ),
            ));
        }
        Ok(Err(_)) => {
            return Err(Failed::new(
                Failure::Connection,
                GatewayError::new(
                    ErrorKind::UpstreamUnavailable,
                    "upstream_connection_error",
                    "The upstream connection failed before a response.",
                ),
            ));
        }
        Ok(Ok(r)) => r,
    };
    let (parts, body) = response.into_parts();
    let status = parts.status;
    if let Some(name) = &dep.load_header
        && let Some(depth) = parts.headers.get(name).and_then(|v| header_number(v.as_bytes()))
    {
        // The same scale as a scraped queue depth (see scrape.rs).
        dep.health.set_reported_load((depth * 1000.0) as u64);
    }
    let framing = dep.adapter.framing();
    let stream_type = match framing {
        Framing::Sse => "text/event-stream",
        Framing::EventStream => "application/vnd.amazon.eventstream",
    };
    let is_stream = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(stream_type));
    if status.is_success() && is_stream && inbound.view.stream {
        return Ok(Upstream::Stream {
            body,
            framing,
            adapter: dep.adapter,
            inflight: None,
        });
    }

    let limit = if status.is_success() {
        MAX_UPSTREAM_BODY
    } else {
        MAX_ERROR_BODY
    };
    let left = deadline.saturating_duration_since(Instant::now());
    let bytes = match tokio::time::timeout(left, Limited::new(body, limit).collect()).await {
        Err(_) => {
            return Err(Failed::new(
                Failure::BodyTimeout,
                GatewayError::new(
                    ErrorKind::UpstreamTimeout,
                    "upstream_timeout",
                    "The upstream response did not finish in time.",
                ),
            )
            .at(status));
        }
        Ok(Err(_)) => {
            return Err(Failed::new(
                Failure::Dropped,
                GatewayError::new(
                    ErrorKind::UpstreamUnavailable,
                    "upstream_connection_error",
                    "The upstream connection failed while sending the response.",
                ),
            )
            .at(status));
        }
        Ok(Ok(c)) => c.to_bytes(),
    };

    if status.is_success() {
        return match dep.adapter.read_response(inbound, bytes) {
            Ok(out) => Ok(Upstream::Complete {
                status,
                content_type: parts.headers.get(http::header::CONTENT_TYPE).cloned(),
                body: out.body,
                usage: out.usage,
                finish_reason: out.finish_reason,
            }),
            Err(ResponseFault::Malformed(e)) => Err(Failed::new(
                Failure::Malformed,
                GatewayError::new(
                    ErrorKind::UpstreamRejected,
                    "upstream_malformed_response",
                    e.to_string(),
                ),
            )
            .at(status)),
            Err(ResponseFault::Refused { class, message }) => {
                let secrets: Vec<&str> = dep.api_key.iter().map(|s| s.expose()).collect();
                let message = sluice_providers::scrub_credentials(&message, &secrets).into_owned();
                Err(Failed::new(
                    Failure::Upstream(class),
                    upstream_error(class, StatusCode::BAD_REQUEST, Some(message), None),
                )
                .at(status))
            }
        };
    }

    let class = dep.adapter.classify_error(status, &bytes);
    let secrets: Vec<&str> = dep.api_key.iter().map(|s| s.expose()).collect();
    let message = dep.adapter.error_message(&bytes, &secrets);
    let pause = retry_after(&parts.headers);
    let mut failed = Failed::new(Failure::Upstream(class), upstream_error(class, status, message, pause)).at(status);
    failed.retry_after = pause;
    Err(failed)
}

fn retry_after(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Maps a classified upstream error to what the caller sees. The caller's own mistakes keep the
/// provider's status; the gateway's problems (our credential, our config) become 502s.
fn upstream_error(
    class: ErrorClass,
    status: StatusCode,
    message: Option<String>,
    retry_after: Option<u64>,
) -> GatewayError {
    let msg = |fallback: &'static str| {
        message
            .clone()
            .map_or(std::borrow::Cow::Borrowed(fallback), std::borrow::Cow::Owned)
    };
    match class {
        ErrorClass::InvalidRequest => GatewayError::new(
            ErrorKind::BadRequest,
            "upstream_invalid_request",
            msg("The upstream rejected the request."),
        )
        .with_status(status)
        .no_retry(),
        ErrorClass::ContextLength => GatewayError::new(
            ErrorKind::BadRequest,
            "context_length_exceeded",
            msg("The request exceeds the model's context length."),
        )
        .with_status(status)
        .no_retry(),
        ErrorClass::ContentPolicy => GatewayError::new(
            ErrorKind::BadRequest,
            "content_policy_violation",
            msg("The upstream refused the request under its content policy."),
        )
        .with_status(status)
        .no_retry(),
        ErrorClass::Auth => GatewayError::new(
            ErrorKind::UpstreamRejected,
            "upstream_auth_failed",
            "The upstream rejected the gateway's credentials. This is a gateway configuration problem.",
        )
        .no_retry(),
        ErrorClass::NotFound => GatewayError::new(
            ErrorKind::UpstreamRejected,
            "upstream_not_found",
            "The upstream does not know the configured model or path. This is a gateway configuration problem.",
        )
        .no_retry(),
        ErrorClass::QuotaExceeded => GatewayError::new(
            ErrorKind::UpstreamRejected,
            "upstream_quota_exceeded",
            "The upstream account has exhausted its quota.",
        )
        .no_retry(),
        ErrorClass::RateLimited => GatewayError::new(
            ErrorKind::UpstreamRateLimited,
            "upstream_rate_limited",
            msg("The upstream is rate limiting requests."),
        )
        .with_retry_after(retry_after),
        ErrorClass::Overloaded => GatewayError::new(
            ErrorKind::UpstreamOverloaded,
            "upstream_overloaded",
            msg("The upstream is overloaded."),
        )
        .with_retry_after(retry_after),
        ErrorClass::Server => GatewayError::new(
            ErrorKind::UpstreamUnavailable,
            "upstream_error",
            msg("The upstream failed to answer."),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::header_number;

    #[test]
    fn a_load_header_is_its_leading_number() {
        assert_eq!(header_number(b"12"), Some(12.0));
        assert_eq!(header_number(b"3.5; unit=requests"), Some(3.5));
        assert_eq!(header_number(b"-1"), None);
        assert_eq!(header_number(b"many"), None);
        assert_eq!(header_number(b""), None);
    }
}
