//! The spine: one function that reads like the request's walk.
//!
//! authenticate → read & check → route → admit → cache lookup → queue → attempts loop →
//! response stages (the cache's store among them) → respond → finish.
//!
//! Every stage returns a typed value or a [`GatewayError`]; `?` is the only short-circuit. The
//! request's [`Finish`] is created first and ends up inside the response body, so however the
//! request ends, it is reported exactly once.

mod chain;
mod embed;
mod models;
mod read;
mod respond;

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use sluice_providers::{ClientHeaders, Endpoint, InboundRequest, Usage, Wire};

use crate::error::{ErrorKind, GatewayError};
use crate::finish::{CallerPart, Finish};
use crate::flow::Decision;
use crate::flow::Upstream;
use crate::flow::{Reply, Routed, next};
use crate::guard::hook::Site;
use crate::guard::output::Held;
use crate::response::store::Store;
use crate::response::{AnswerPlan, Keeping};
use crate::stages::admit::admit;
use crate::stages::auth::authenticate;
use crate::stages::guard::GuardStage;
use crate::stages::routing::{self, RouteInput};
use crate::state::Snapshot;
use crate::stream::body::ResponseBody;
use crate::stream::relay::Relay;
use crate::timing::{Lap, Stage};
use crate::upstream::dispatch;
use crate::upstream::failure::Failure;
use crate::{Gateway, Serving};
use sluice_limits::Need;

use chain::{attempting, fall_back, limiting};
use models::{list_models, one_model};
use read::{read_body, request_id, too_large};
use respond::{count_error, error_response, not_found, plain, respond};

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
    finish.set_trace(gw.telemetry.traces.begin(req.headers()));
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
    let mut clock = Lap::from(finish.started());
    let (parts, body) = req.into_parts();
    let snap: &Snapshot = &serving.snapshot;

    let caller = authenticate(&serving.keys, &parts.headers)?;
    finish.caller(CallerPart::of(&caller));
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
    let plan = serving.plans.of(decision.route).ok_or_else(|| {
        GatewayError::new(
            ErrorKind::Internal,
            "internal_error",
            "The route has no plan in this config.",
        )
    })?;
    let policy = &decision.route.config.policy;
    // Under load, a cheaper model or fewer tokens rather than a longer wait or a refusal.
    let routed = Routed {
        decision,
        inbound,
        degraded: None,
        cache_only: false,
    };
    let routed = next!(plan.degrade.run(snap, &caller, routed));
    let d = &routed.decision;
    let meter = plan.meters.get(d.model_index, &d.route.name, &d.model.name);
    finish.routed(routed.record(), policy.server_timing, meter);
    finish.stage(Some(Stage::Route), clock.lap());
    let Routed {
        decision,
        inbound,
        cache_only,
        ..
    } = routed;
    if inbound.body.len() as u64 > policy.max_body_bytes {
        return Err(too_large(policy.max_body_bytes));
    }

    let (inbound, answering) = next!(plan.predict.run(inbound));
    finish.stage(plan.predict.timed(), clock.lap());

    let runtime_limits = gw.runtime_limits.load();
    let limiting = limiting(gw, &runtime_limits);
    let admission = next!(admit(&limiting, snap, &caller, &decision, &inbound).await);
    let reserved = admission.reserved;
    finish.admitted(admission);
    // The ledger's intent is written before the request goes anywhere.
    finish.open_ledger(gw.ledger.as_ref(), &reserved)?;
    finish.stage(Some(Stage::Admit), clock.lap());

    // The input guardrails: after admission (a blocked request counts as one), before the
    // cache (its key is the guarded request's).
    let deadline = finish.started() + policy.total_timeout;
    let report = plan.guard.report();
    finish.guard(report.clone());
    let hooks = Site {
        route: &decision.route.name,
        tenant: caller.tenant.as_deref(),
        endpoint: endpoint.as_str(),
        deadline,
    };
    let guarded = match plan.guard.run(&caller, inbound, report.as_ref()) {
        Ok(g) => {
            let id = finish.request_id();
            plan.guard
                .after(g, report.as_ref(), hooks.call(id), gw.embedder.as_ref())
                .await
        }
        Err(e) => Err(e),
    };
    if guarded.is_err() {
        // Refused: nothing was used but the request itself.
        finish.release_admission(&Need {
            requests: 1,
            ..Need::default()
        });
    }
    let (inbound, guarded) = guarded?;
    let check = guarded.check;
    // What cannot be decided on a window holds a streamed answer until it is complete: asked
    // for whole, checked, then written to the client as a stream.
    let held = Held::of(&inbound, plan.guard.holds(endpoint, check.is_some()), report.as_ref())?;
    let answer_guard = report.map(|report| crate::response::AnswerGuard {
        report,
        tenant: plan.guard.tenant(&caller),
        names: guarded.names,
        restore: guarded.restore,
        system: guarded.system,
    });
    finish.stage(plan.guard.timed(), clock.lap());

    // The cache's lookup: after admission (a hit counts as a request), before the queue (a
    // hit never waits for a place).
    let embedding = embed::Embedding {
        snap,
        route: decision.route,
        how: dispatch::Attempting {
            telemetry: &gw.telemetry,
            region: None,
            spill: false,
            request_id: finish.request_id(),
            trace: finish.trace(),
            check: None,
        },
    };
    let embedders = crate::stages::cache::Embedders {
        pool: gw.embedder.as_ref(),
        upstream: &embedding,
    };
    // Boxed, as is the fallback chain below: the walk's future is moved whole into its box
    // once per request (`edge`), so a large state it holds only sometimes is kept apart.
    let looked = Box::pin(plan.cache.run(
        (&gw.cache, embedders, &gw.telemetry.metrics),
        &caller,
        &decision,
        &inbound,
        &parts.headers,
        finish.request_id(),
        (deadline, cache_only),
    ))
    .await;
    if looked.is_err() {
        // Refused under overload (cache only): not served, so the reservation goes back.
        finish.release_admission(&Need::default());
    }
    let mut looked = next!(looked);
    finish.cache(looked.outcome, looked.key.take());
    // An embeddings request cached per input sends only the inputs that were not stored.
    let (inbound, inputs) = match looked.inputs.take() {
        Some((request, slots)) => (request, Some(slots)),
        None => (inbound, None),
    };
    finish.stage(plan.cache.timed(), clock.lap());

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
        parts.extensions.get::<crate::flow::ClientIp>().map(|c| c.0),
    );
    let sent = Held::request(&held, &inbound);
    let chain = &decision.route.config.fallback;
    let how = attempting(
        gw,
        region,
        !chain.models.is_empty(),
        chain,
        (finish.request_id(), finish.trace(), check.as_ref()),
    );
    let (first, done) = dispatch::attempts(snap, &decision, sent, deadline, how).await;
    finish.add_dispatch(done, &snap.currency);
    let upstream = match first {
        Ok(up) => up,
        Err(err) => next!(
            Box::pin(fall_back(
                gw,
                snap,
                &decision,
                &caller,
                (&inbound, sent, check.as_ref()),
                finish,
                (deadline, region),
                looked.stale.as_ref(),
                err
            ))
            .await
            .map_err(|e| {
                if let (Some(c), Some(Failure::InvalidOutput(_))) = (&check, e.failure) {
                    c.refused();
                }
                retried(e, finish.attempts())
            })
        ),
    };
    finish.stage(Some(Stage::UpstreamTtfb), clock.lap());
    let upstream = answering.answer(upstream)?;
    // A fallback alias's answer is not the answer to this key.
    let keeping = match (looked.store, inputs) {
        _ if finish.answered().1.is_some() => None,
        (_, Some(slots)) => Some(Keeping::Inputs {
            slots,
            price: finish.price(),
        }),
        (Some(s), None) => Some(Keeping::Whole(Box::new(Store::new(s, finish.price())))),
        (None, None) => None,
    };
    let capture = capture(gw, decision.route, &caller, &inbound, finish.request_id());
    let reply = reply(
        snap,
        &decision,
        (&plan.answer, &plan.guard, hooks),
        &inbound,
        upstream,
        (keeping, answer_guard, capture),
        finish,
    )
    .await?;
    Held::reply(held, reply, &inbound)
}

/// The answer as the reply the client gets, through the route's response stages: a whole
/// body with its usage recorded (estimated from the prompt's size when the upstream reported
/// none), or the stream relay.
async fn reply(
    snap: &Snapshot,
    decision: &Decision<'_>,
    (answer, hooked, call): (&AnswerPlan, &GuardStage, Site<'_>),
    inbound: &InboundRequest,
    upstream: Upstream,
    (keeping, mut guard, capture): (
        Option<Keeping>,
        Option<crate::response::AnswerGuard>,
        Option<crate::response::payload::Capture>,
    ),
    finish: &mut Finish,
) -> Result<Reply, GatewayError> {
    let prompt_estimate = (inbound.body.len() as u64).div_ceil(4);
    match upstream {
        Upstream::Complete {
            status,
            content_type,
            body,
            usage,
            finish_reason,
        } => {
            finish.finish_reason(finish_reason);
            let used = usage.unwrap_or(Usage {
                prompt_tokens: prompt_estimate,
                total_tokens: prompt_estimate,
                ..Usage::default()
            });
            finish.set_usage(used, usage.is_none());
            // The external hooks that read the answer, before anything else sees it.
            let body = match &mut guard {
                Some(g) if status.is_success() && hooked.holds_answers(inbound.endpoint) => {
                    let id = finish.request_id().to_owned();
                    hooked
                        .answered(inbound.endpoint, body, (&mut g.names, &g.report), call.call(&id))
                        .await?
                }
                _ => body,
            };
            let kept = (status.is_success(), content_type.as_ref());
            let body = answer.complete(inbound.endpoint, kept, body, used, (keeping, guard, capture))?;
            Ok(Reply::Json {
                status,
                content_type,
                body,
            })
        }
        Upstream::Stream {
            body,
            framing,
            adapter,
            inflight,
        } => {
            let translator = answer.translator(adapter, inbound, keeping.and_then(Keeping::into_store), guard, capture);
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

/// The error a caller gets after the gateway's own retries: SDKs should not multiply them.
fn retried(mut e: GatewayError, attempts: usize) -> GatewayError {
    if attempts > 1 {
        e.no_retry = true;
    }
    e
}

/// The payload log's capture of this request, on a route that logs payloads (chat-shaped
/// endpoints: the answer is read by the response stages): the request as the input
/// guardrails let it through, bounded.
fn capture(
    gw: &Gateway,
    route: &crate::state::RouteRuntime,
    caller: &crate::keys::Caller,
    inbound: &InboundRequest,
    request_id: &str,
) -> Option<crate::response::payload::Capture> {
    let policy = route.config.payloads?;
    let sink = gw.payloads.as_ref()?;
    if !matches!(
        inbound.endpoint,
        Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::Responses
    ) {
        return None;
    }
    let at = chrono::Utc::now().timestamp_millis();
    let mut request = String::new();
    crate::response::payload::push_bounded(&mut request, &String::from_utf8_lossy(&inbound.body));
    let row = sluice_store::ledger::PayloadRow {
        request_id: request_id.to_owned(),
        at,
        expires_at: at + i64::from(policy.retention_days) * 86_400_000,
        route: Some(route.name.to_string()),
        tenant: caller.tenant.as_deref().map(str::to_owned),
        key_id: Some(caller.key_id.to_string()),
        endpoint: inbound.endpoint.as_str().to_owned(),
        redacted: policy.redacted,
        request,
        response: String::new(),
    };
    Some(crate::response::payload::Capture::new(row, sink.clone()))
}
