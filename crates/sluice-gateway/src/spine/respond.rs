//! The one place a reply or an error becomes a response: status, body, the request id, the
//! rate-limit standing, `server-timing`, and which alias answered.

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use sluice_providers::{Usage, Wire, names};

use crate::Gateway;
use crate::error::{ErrorKind, GatewayError};
use crate::finish::{CacheHit, Finish};
use crate::flow::{Replayed, Reply};
use crate::stream::body::ResponseBody;
use crate::stream::live::LiveBody;

static JSON: HeaderValue = HeaderValue::from_static("application/json");
static EVENT_STREAM: HeaderValue = HeaderValue::from_static("text/event-stream");
static NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");
static NO: HeaderValue = HeaderValue::from_static("no");
static FALSE: HeaderValue = HeaderValue::from_static("false");

pub(super) fn respond(reply: Reply, mut finish: Finish) -> Response<ResponseBody> {
    let id = header_value(finish.request_id());
    let timing = finish.server_timing();
    let rate = finish.rate_info();
    let (model, fallback) = finish.answered();
    let degraded = finish.degraded().and_then(|d| HeaderValue::from_str(d).ok());
    let cache = finish.cache_outcome();
    let mut r = match reply {
        Reply::Json {
            status,
            content_type,
            body,
        } => {
            finish.respond(status.as_u16(), None);
            let mut r = Response::new(ResponseBody::full(body, finish));
            *r.status_mut() = status;
            let h = r.headers_mut();
            if content_type.as_ref() == Some(&EVENT_STREAM) {
                // A stream written whole (an answer held for its JSON check).
                h.insert(http::header::CACHE_CONTROL, NO_CACHE.clone());
                h.insert(names::X_ACCEL_BUFFERING, NO.clone());
            }
            h.insert(CONTENT_TYPE, content_type.unwrap_or_else(|| JSON.clone()));
            h.insert(names::X_REQUEST_ID, id);
            r
        }
        Reply::Cached(hit) => {
            finish.cache_hit(CacheHit {
                outcome: hit.outcome,
                usage: hit.usage,
                saved_cost_micros: hit.saved_cost_micros,
                key: hit.key,
                similarity: hit.similarity,
            });
            finish.respond(200, None);
            let body = match hit.body {
                Replayed::Whole(b) => ResponseBody::full(b, finish),
                Replayed::Paced(events, every) => ResponseBody::paced(events, every, finish),
            };
            let mut r = Response::new(body);
            let h = r.headers_mut();
            if hit.stream {
                h.insert(CONTENT_TYPE, EVENT_STREAM.clone());
                h.insert(http::header::CACHE_CONTROL, NO_CACHE.clone());
                h.insert(names::X_ACCEL_BUFFERING, NO.clone());
            } else {
                h.insert(CONTENT_TYPE, JSON.clone());
            }
            h.insert(names::X_REQUEST_ID, id);
            h.insert(names::X_SLUICE_CACHE, HeaderValue::from_static(hit.outcome));
            if let Some(v) = hit
                .similarity
                .and_then(|s| HeaderValue::from_str(&format!("{s:.4}")).ok())
            {
                h.insert(names::X_SLUICE_CACHE_SIMILARITY, v);
            }
            r
        }
        Reply::Live(live) => {
            finish.cache_hit(CacheHit {
                outcome: "hit",
                usage: Usage::default(),
                saved_cost_micros: 0,
                key: live.key,
                similarity: None,
            });
            finish.respond(200, None);
            let mut r = Response::new(ResponseBody::live(LiveBody::new(live), finish));
            let h = r.headers_mut();
            h.insert(CONTENT_TYPE, EVENT_STREAM.clone());
            h.insert(http::header::CACHE_CONTROL, NO_CACHE.clone());
            h.insert(names::X_ACCEL_BUFFERING, NO.clone());
            h.insert(names::X_REQUEST_ID, id);
            h.insert(names::X_SLUICE_CACHE, HeaderValue::from_static("hit"));
            r
        }
        Reply::Stream(relay) => {
            finish.respond(200, None);
            let mut r = Response::new(ResponseBody::relay(relay, finish));
            let h = r.headers_mut();
            h.insert(CONTENT_TYPE, EVENT_STREAM.clone());
            h.insert(http::header::CACHE_CONTROL, NO_CACHE.clone());
            h.insert(names::X_ACCEL_BUFFERING, NO.clone());
            h.insert(names::X_REQUEST_ID, id);
            r
        }
    };
    if let Some(info) = rate {
        rate_headers(r.headers_mut(), &info);
    }
    if let Some(v) = timing.and_then(|t| HeaderValue::from_str(&t).ok()) {
        r.headers_mut().insert(names::SERVER_TIMING, v);
    }
    // Which alias answered, and whether (and why) it was a fallback.
    if let Some(m) = model.and_then(|m| HeaderValue::from_str(&m).ok()) {
        r.headers_mut().insert(names::X_SLUICE_MODEL, m);
    }
    if let Some(outcome) = cache {
        r.headers_mut()
            .entry(names::X_SLUICE_CACHE)
            .or_insert(HeaderValue::from_static(outcome));
    }
    if let Some(d) = degraded {
        r.headers_mut().insert(names::X_SLUICE_DEGRADED, d);
    }
    if let Some(why) = fallback {
        r.headers_mut()
            .insert(names::X_SLUICE_FALLBACK, HeaderValue::from_static("true"));
        r.headers_mut()
            .insert(names::X_SLUICE_FALLBACK_REASON, HeaderValue::from_static(why));
    }
    r
}

/// OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` headers.
pub fn rate_headers(h: &mut HeaderMap, info: &sluice_limits::RateInfo) {
    for (family, standing) in [("requests", info.requests), ("tokens", info.tokens)] {
        let Some(s) = standing else { continue };
        let pairs = [
            ("limit", s.limit.to_string()),
            ("remaining", s.remaining.to_string()),
            ("reset", duration_text(s.reset_s)),
        ];
        for (what, value) in pairs {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(format!("x-ratelimit-{what}-{family}").as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                h.insert(name, value);
            }
        }
    }
}

/// `1m30s`, `250ms`, `0s`: how OpenAI writes reset times.
fn duration_text(secs: f64) -> String {
    if secs < 1.0 {
        return format!("{}ms", (secs * 1000.0).round() as u64);
    }
    let total = secs.ceil() as u64;
    let (h, m, s) = (total / 3600, total % 3600 / 60, total % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// The one place an error becomes a response.
pub fn error_response(
    e: &GatewayError,
    finish: Option<Finish>,
    request_id: &str,
    wire: Wire,
) -> Response<ResponseBody> {
    let body = e.body_for(wire, request_id);
    let mut r = Response::new(match finish {
        Some(f) => ResponseBody::full(body, f),
        None => ResponseBody::plain(body),
    });
    *r.status_mut() = e.status();
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, JSON.clone());
    if !request_id.is_empty() {
        h.insert(names::X_REQUEST_ID, header_value(request_id));
    }
    if let Some(s) = e.retry_after {
        h.insert(http::header::RETRY_AFTER, HeaderValue::from(s));
    }
    if let Some(info) = &e.rate {
        rate_headers(h, info);
    }
    if e.no_retry {
        h.insert(names::X_SHOULD_RETRY, FALSE.clone());
    }
    r
}

pub(super) fn plain(status: StatusCode, body: &'static str) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::plain(body));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, JSON.clone());
    r
}

pub(super) fn count_error(gw: &Gateway, e: &GatewayError) {
    gw.telemetry
        .metrics
        .errors
        .get_or_create(&crate::telemetry::ClassLabel { class: e.class() })
        .inc();
}

pub(super) fn not_found(gw: &Gateway, path: &str) -> Response<ResponseBody> {
    let shown: String = path.chars().take(128).collect();
    let err = GatewayError::new(ErrorKind::NotFound, "unknown_path", format!("Unknown path {shown}."));
    count_error(gw, &err);
    error_response(&err, None, "", Wire::OpenAi)
}
