//! The spine: one function that reads like the request's walk.
//!
//! authenticate → read & check → route → admit → queue → guard input → cache lookup →
//! attempts loop → guard output → respond → finish.
//!
//! Every stage returns a typed value or a [`GatewayError`]; `?` is the only short-circuit. The
//! request's [`Finish`] is created first and ends up inside the response body, so however the
//! request ends, it is reported exactly once.

use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::json;
use sluice_providers::{ClientHeaders, Endpoint, InboundRequest, Usage, Wire};

use crate::body::ResponseBody;
use crate::dispatch::{self, Upstream};
use crate::error::{ErrorKind, GatewayError};
use crate::fallback;
use crate::finish::{CallerPart, Finish};
use crate::flow::{Flow, Reply, Routed, next};
use crate::keys::{Caller, KeyTable};
use crate::limits::Need;
use crate::relay::Relay;
use crate::routing::{self, Decision, RouteInput};
use crate::stages;
use crate::state::Snapshot;
use crate::timing::{Lap, Stage};
use crate::{Gateway, Serving};

static JSON: HeaderValue = HeaderValue::from_static("application/json");
static EVENT_STREAM: HeaderValue = HeaderValue::from_static("text/event-stream");
static NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");
static NO: HeaderValue = HeaderValue::from_static("no");
static FALSE: HeaderValue = HeaderValue::from_static("false");

/// Entry point for every request on the public listener.
pub async fn handle(gw: Arc<Gateway>, req: Request<Incoming>) -> Response<ResponseBody> {
    let path = req.uri().path();
    match (req.method(), path) {
        (&Method::GET, "/healthz") => plain(StatusCode::OK, r#"{"status":"ok"}"#),
        (&Method::GET, "/readyz") if gw.is_ready() => plain(StatusCode::OK, r#"{"status":"ready"}"#),
        (&Method::GET, "/readyz") => plain(StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"draining"}"#),
        (&Method::GET, "/v1/models") => api(gw, req, "models", Api::Models).await,
        (&Method::GET, p) if p.starts_with("/v1/models/") => api(gw, req, "models", Api::Model).await,
        (&Method::POST, p) => match Endpoint::from_path(p) {
            Some(e) => api(gw, req, e.as_str(), Api::Infer(e)).await,
            None => not_found(&gw, p),
        },
        (_, p) if Endpoint::from_path(p).is_some() || p == "/v1/models" => {
            let err = GatewayError::bad_request(
                "method_not_allowed",
                format!("{} is not supported on {p}.", req.method()),
            )
            .with_status(StatusCode::METHOD_NOT_ALLOWED);
            count_error(&gw, &err);
            error_response(&err, None, "", Wire::OpenAi)
        }
        (_, p) => not_found(&gw, p),
    }
}

enum Api {
    Models,
    Model,
    Infer(Endpoint),
}

async fn api(gw: Arc<Gateway>, req: Request<Incoming>, endpoint: &'static str, api: Api) -> Response<ResponseBody> {
    let serving = gw.serving();
    let snap = &serving.snapshot;
    let request_id = request_id(req.headers());
    let mut finish = Finish::new(gw.telemetry.clone(), request_id, endpoint, snap.version.clone());
    let wire = match api {
        Api::Infer(e) => e.wire(),
        _ => Wire::OpenAi,
    };
    let result = match api {
        Api::Models => list_models(&serving, &req, &mut finish),
        Api::Model => one_model(&serving, &req, &mut finish),
        Api::Infer(e) => walk(&gw, &serving, req, e, &mut finish).await,
    };
    match result {
        Ok(reply) => respond(reply, finish),
        Err(e) => {
            finish.respond(e.status().as_u16(), Some(&e));
            let id = finish.request_id().to_owned();
            error_response(&e, Some(finish), &id, wire)
        }
    }
}

/// The request's walk. Authentication and routing run for every request; the route's plan
/// holds the stages after routing, each ending in `Flow::Next` or an early answer.
async fn walk(
    gw: &Gateway,
    serving: &Serving,
    req: Request<Incoming>,
    endpoint: Endpoint,
    finish: &mut Finish,
) -> Result<Reply, GatewayError> {
    let mut clock = Lap::start();
    let (parts, body) = req.into_parts();
    let snap: &Snapshot = &serving.snapshot;

    let caller = authenticate(&serving.keys, &parts.headers, finish)?;
    finish.stage(Some(Stage::Auth), clock.lap());

    let body = read_body(body, &parts.headers, &snap.config.server).await?;
    let mut inbound = InboundRequest::parse(endpoint, body)?;
    inbound.headers = ClientHeaders::from_map(&parts.headers);
    finish.stage(Some(Stage::Read), clock.lap());

    let decision = routing::decide(
        snap,
        &RouteInput {
            path: parts.uri.path(),
            model: &inbound.view.model,
            caller: &caller,
            headers: &parts.headers,
            metadata: &inbound.view.metadata,
        },
    )?;
    let plan = &decision.route.plan;
    let policy = &decision.route.config.policy;
    // Under load, a cheaper model or fewer tokens rather than a longer wait or a refusal.
    let routed = Routed {
        decision,
        inbound,
        degraded: None,
    };
    let routed = next!(plan.degrade.run(snap, &caller, routed));
    finish.routed(&routed);
    finish.stage(Some(Stage::Route), clock.lap());
    let Routed { decision, inbound, .. } = routed;
    if inbound.body.len() as u64 > policy.max_body_bytes {
        return Err(too_large(policy.max_body_bytes));
    }

    let (inbound, answering) = next!(plan.predict.run(inbound));
    finish.stage(plan.predict.timed(), clock.lap());

    let admission = next!(stages::admit::admit(gw, snap, &caller, &decision, &inbound).await);
    let reserved = admission.reserved;
    finish.admitted(admission);
    // The ledger's intent is written before the request goes anywhere.
    finish.open_ledger(gw.ledger.as_ref(), &reserved)?;
    finish.stage(Some(Stage::Admit), clock.lap());

    // The cache's lookup comes here, before the queue: a hit never waits for a place.

    let deadline = finish.started() + policy.total_timeout;
    let permit = plan
        .queue
        .run(snap, &caller, &parts.headers, deadline)
        .await
        // Turned away: not served, so the reservation goes back, its request count included.
        .inspect_err(|_| finish.release_admission(&Need::default()));
    finish.hold(next!(permit));
    finish.stage(plan.queue.timed(), clock.lap());

    // Where the caller is: its region's deployments first (geographic routing).
    let geo = &snap.config.geo;
    let region = geo.region(
        parts.headers.get(geo.header.as_str()).and_then(|v| v.to_str().ok()),
        parts.extensions.get::<crate::edge::ClientIp>().map(|c| c.0),
    );
    let chain = &decision.route.config.fallback;
    let how = attempting(gw, region, !chain.models.is_empty(), chain, finish.request_id());
    let (first, done) = dispatch::attempts(snap, &decision, &inbound, deadline, how).await;
    finish.add_dispatch(done, &snap.currency);
    let upstream = match first {
        Ok(up) => up,
        Err(err) => next!(
            fall_back(gw, snap, &decision, &caller, &inbound, finish, (deadline, region), err)
                .await
                .map_err(|e| retried(e, finish.attempts()))
        ),
    };
    finish.stage(Some(Stage::UpstreamTtfb), clock.lap());
    let upstream = answering.answer(upstream)?;
    reply(snap, &decision, &inbound, upstream, finish)
}

/// The answer as the reply the client gets, through the route's response stages: a whole
/// body with its usage recorded (estimated from the prompt's size when the upstream reported
/// none), or the stream relay.
fn reply(
    snap: &Snapshot,
    decision: &Decision<'_>,
    inbound: &InboundRequest,
    upstream: Upstream,
    finish: &mut Finish,
) -> Result<Reply, GatewayError> {
    let answer = &decision.route.plan.answer;
    let prompt_estimate = (inbound.body.len() as u64).div_ceil(4);
    match upstream {
        Upstream::Complete {
            status,
            content_type,
            body,
            usage,
        } => {
            match usage {
                Some(u) => finish.set_usage(u, false),
                None => finish.set_usage(
                    Usage {
                        prompt_tokens: prompt_estimate,
                        total_tokens: prompt_estimate,
                        ..Usage::default()
                    },
                    true,
                ),
            }
            Ok(Reply::Json {
                status,
                content_type,
                body: answer.whole(inbound.endpoint, body)?,
            })
        }
        Upstream::Stream {
            body,
            framing,
            adapter,
            inflight,
        } => {
            let translator = answer.translator(adapter, inbound);
            let idle = decision.route.config.policy.stream_idle_timeout;
            let mut relay = Relay::new(body, framing, translator, idle, prompt_estimate);
            relay.hold(inflight);
            if snap.config.counts_tokens() {
                // Token and cost limits apply: a stream cut short is counted with the tokenizer.
                relay.count_output();
            }
            Ok(Reply::Stream(relay))
        }
    }
}

/// How an alias's attempts loop runs: with the caller's region, spilling over to the next
/// alias at capacity when the chain falls back for capacity and `more` aliases follow.
fn attempting<'a>(
    gw: &'a Gateway,
    region: Option<&'a str>,
    more: bool,
    chain: &sluice_config::FallbackConfig,
    request_id: &'a str,
) -> dispatch::Attempting<'a> {
    dispatch::Attempting {
        telemetry: &gw.telemetry,
        region,
        spill: more && chain.on.contains(&sluice_config::FallbackReason::Capacity),
        request_id,
    }
}

/// The route's fallback chain after its model failed with `err`: each alias re-admitted
/// against the limits at its own prices, then its attempts; then the fixed answer. An alias
/// the caller may not use, or whose admission is refused, is skipped — and the caller still
/// sees the upstream's error, not the refusal.
#[allow(clippy::too_many_arguments)]
async fn fall_back(
    gw: &Gateway,
    snap: &Snapshot,
    decision: &Decision<'_>,
    caller: &Caller,
    inbound: &InboundRequest,
    finish: &mut Finish,
    (deadline, region): (std::time::Instant, Option<&str>),
    mut err: GatewayError,
) -> Result<Flow<Upstream>, GatewayError> {
    let chain = &decision.route.config.fallback;
    let Some(why) = fallback::reason(&err, chain) else {
        return Err(err);
    };
    let aliases = chain.models.len();
    for (k, step) in fallback::steps(chain).enumerate() {
        let index = match step {
            fallback::Step::Answer(text) => {
                finish.set_fallback(&decision.model.name, why);
                finish.release_admission(&Need::default());
                return Ok(Flow::Respond(fallback::degraded(inbound, text, &decision.model.name)));
            }
            fallback::Step::Alias(index) => index,
        };
        if std::time::Instant::now() >= deadline {
            continue; // out of time for another alias; the fixed answer, if any, still goes
        }
        let next = Decision {
            route: decision.route,
            model_index: index,
            model: &snap.models[index],
        };
        if !caller.may_use_model(&next.model.name) {
            continue;
        }
        // The first reservation goes back; the fallback reserves at its own prices and limits.
        finish.release_admission(&Need::default());
        match stages::admit::admit(gw, snap, caller, &next, inbound).await {
            Ok(Flow::Next(admission)) => finish.admitted(admission),
            Ok(Flow::Respond(reply)) => return Ok(Flow::Respond(reply)),
            Err(refused) => {
                tracing::debug!(alias = %next.model.name, code = refused.code, "fallback alias not admitted");
                continue;
            }
        }
        finish.set_fallback(&next.model.name, why);
        let how = attempting(gw, region, k + 1 < aliases, chain, finish.request_id());
        let (result, done) = dispatch::attempts(snap, &next, inbound, deadline, how).await;
        finish.add_dispatch(done, &snap.currency);
        match result {
            Ok(up) => return Ok(Flow::Next(up)),
            Err(e) if fallback::reason(&e, chain).is_some() => err = e,
            Err(e) => return Err(e),
        }
    }
    Err(err)
}

/// The error a caller gets after the gateway's own retries: SDKs should not multiply them.
fn retried(mut e: GatewayError, attempts: usize) -> GatewayError {
    if attempts > 1 {
        e.no_retry = true;
    }
    e
}

fn too_large(limit: u64) -> GatewayError {
    GatewayError::new(
        ErrorKind::PayloadTooLarge,
        "request_too_large",
        format!("The request body is larger than this route allows ({limit} bytes)."),
    )
}

/// Reads the body, refusing it as soon as it is known to exceed the limit — from
/// `Content-Length` before reading, or while reading when the length is not declared.
async fn read_body(
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

fn respond(reply: Reply, mut finish: Finish) -> Response<ResponseBody> {
    let id = header_value(finish.request_id());
    let timing = finish.server_timing();
    let rate = finish.rate_info();
    let (model, fallback) = finish.answered();
    let degraded = finish.degraded().and_then(|d| HeaderValue::from_str(d).ok());
    let mut r = match reply {
        Reply::Json {
            status,
            content_type,
            body,
        } => {
            finish.respond(status.as_u16(), None);
            let mut r = Response::new(ResponseBody::full(body, finish));
            *r.status_mut() = status;
            r.headers_mut()
                .insert(CONTENT_TYPE, content_type.unwrap_or_else(|| JSON.clone()));
            r.headers_mut().insert("x-request-id", id);
            r
        }
        Reply::Stream(relay) => {
            finish.respond(200, None);
            let mut r = Response::new(ResponseBody::relay(relay, finish));
            let h = r.headers_mut();
            h.insert(CONTENT_TYPE, EVENT_STREAM.clone());
            h.insert(http::header::CACHE_CONTROL, NO_CACHE.clone());
            h.insert("x-accel-buffering", NO.clone());
            h.insert("x-request-id", id);
            r
        }
    };
    if let Some(info) = rate {
        rate_headers(r.headers_mut(), &info);
    }
    if let Some(v) = timing.and_then(|t| HeaderValue::from_str(&t).ok()) {
        r.headers_mut().insert("server-timing", v);
    }
    // Which alias answered, and whether (and why) it was a fallback.
    if let Some(m) = model.and_then(|m| HeaderValue::from_str(&m).ok()) {
        r.headers_mut().insert("x-sluice-model", m);
    }
    if let Some(d) = degraded {
        r.headers_mut().insert("x-sluice-degraded", d);
    }
    if let Some(why) = fallback {
        r.headers_mut()
            .insert("x-sluice-fallback", HeaderValue::from_static("true"));
        r.headers_mut()
            .insert("x-sluice-fallback-reason", HeaderValue::from_static(why));
    }
    r
}

/// OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` headers.
pub fn rate_headers(h: &mut HeaderMap, info: &crate::limits::RateInfo) {
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
        h.insert("x-request-id", header_value(request_id));
    }
    if let Some(s) = e.retry_after {
        h.insert(http::header::RETRY_AFTER, HeaderValue::from(s));
    }
    if let Some(info) = &e.rate {
        rate_headers(h, info);
    }
    if e.no_retry {
        h.insert("x-should-retry", FALSE.clone());
    }
    r
}

fn plain(status: StatusCode, body: &'static str) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::plain(body));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, JSON.clone());
    r
}

fn count_error(gw: &Gateway, e: &GatewayError) {
    gw.telemetry
        .metrics
        .errors
        .get_or_create(&crate::telemetry::ClassLabel { class: e.class() })
        .inc();
}

fn not_found(gw: &Gateway, path: &str) -> Response<ResponseBody> {
    let shown: String = path.chars().take(128).collect();
    let err = GatewayError::new(ErrorKind::NotFound, "unknown_path", format!("Unknown path {shown}."));
    count_error(gw, &err);
    error_response(&err, None, "", Wire::OpenAi)
}

/// Accepts a client's `x-request-id` when it is short and printable; otherwise makes one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
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

/// Stage 1 of every API request: who is calling, recorded for finish.
fn authenticate(keys: &KeyTable, headers: &HeaderMap, finish: &mut Finish) -> Result<Arc<Caller>, GatewayError> {
    let caller = keys.authenticate(headers, Utc::now())?;
    finish.caller(CallerPart::of(&caller));
    Ok(caller)
}

fn ok_json(v: &serde_json::Value) -> Reply {
    Reply::Json {
        status: StatusCode::OK,
        content_type: None,
        body: Bytes::from(v.to_string()),
    }
}

fn model_object(name: &str) -> serde_json::Value {
    json!({ "id": name, "object": "model", "created": 0, "owned_by": "sluice" })
}

fn list_models(serving: &Serving, req: &Request<Incoming>, finish: &mut Finish) -> Result<Reply, GatewayError> {
    let caller = authenticate(&serving.keys, req.headers(), finish)?;
    let data: Vec<_> = serving
        .snapshot
        .models
        .iter()
        .filter(|m| caller.may_use_model(&m.name))
        .map(|m| model_object(&m.name))
        .collect();
    Ok(ok_json(&json!({ "object": "list", "data": data })))
}

fn one_model(serving: &Serving, req: &Request<Incoming>, finish: &mut Finish) -> Result<Reply, GatewayError> {
    let caller = authenticate(&serving.keys, req.headers(), finish)?;
    let name = req.uri().path().trim_start_matches("/v1/models/");
    match serving.snapshot.model(name) {
        Some((_, m)) if caller.may_use_model(&m.name) => Ok(ok_json(&model_object(&m.name))),
        _ => Err(GatewayError::new(
            ErrorKind::NotFound,
            "model_not_found",
            format!("The model '{name}' does not exist or you do not have access to it."),
        )
        .with_param("model")),
    }
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
