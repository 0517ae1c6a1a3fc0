//! The attempts loop: pick a deployment, send with a first-byte timeout never longer than the
//! time left, classify the outcome, and retry what is retryable while attempts and time remain.
//! Transport lives here once for every provider; adapters only translate.

use std::time::{Duration, Instant};

use sluice_providers::InboundRequest;

use crate::error::{ErrorKind, GatewayError};
use crate::flow::{Decision, Upstream};
use crate::guard::output::OutputCheck;
use crate::state::Snapshot;
use crate::upstream::attempt::{AttemptRecord, Dispatched};
use crate::upstream::failure::Failure;
use crate::upstream::health::{InFlight, Outcome, ProbeSlot};
use crate::upstream::send::{Failed, attempt_once};

/// Full-jitter exponential backoff before retry `n` (1-based), never past the deadline.
fn backoff(p: &sluice_config::RetryPolicy, n: u32) -> Duration {
    let cap = p
        .backoff
        .saturating_mul(1u32 << n.saturating_sub(1).min(16))
        .min(p.backoff_max);
    if cap.is_zero() {
        return cap;
    }
    Duration::from_micros(rand::random_range(0..=cap.as_micros() as u64))
}

/// What an attempts loop needs beyond the route and the request.
#[derive(Debug, Clone, Copy)]
pub struct Attempting<'a> {
    pub telemetry: &'a crate::telemetry::Telemetry,
    /// The caller's region (geographic routing).
    pub region: Option<&'a str>,
    /// A fallback alias would take over at capacity: do not wait for a place, spill over.
    pub spill: bool,
    pub request_id: &'a str,
    /// The request's trace: each attempt is a span of it, the upstream's parent.
    pub trace: Option<&'a crate::trace::TraceCtx>,
    /// The JSON check every whole answer gets: one that fails is an attempt that failed.
    pub check: Option<&'a OutputCheck>,
}

/// The attempts loop of one alias: pick, send, classify, retry what may be retried.
pub async fn attempts(
    snap: &Snapshot,
    decision: &Decision<'_>,
    inbound: &InboundRequest,
    deadline: Instant,
    how: Attempting<'_>,
) -> (Result<Upstream, GatewayError>, Dispatched) {
    let mut done = Dispatched::default();
    let result = attempts_loop(snap, decision, inbound, deadline, how, &mut done).await;
    (result, done)
}

async fn attempts_loop(
    snap: &Snapshot,
    decision: &Decision<'_>,
    inbound: &InboundRequest,
    deadline: Instant,
    how: Attempting<'_>,
    done: &mut Dispatched,
) -> Result<Upstream, GatewayError> {
    let telemetry = how.telemetry;
    let policy = &decision.route.config.policy;
    let breaker = &snap.config.breaker;
    let budget = &decision.route.retry_budget;
    budget.deposit(&policy.retry);
    let max = policy.max_attempts as usize;
    let mut last: Option<GatewayError> = None;
    let mut tried: Vec<usize> = Vec::with_capacity(max);
    // Waiting for a deployment's place (concurrency limits) ends at this time, once set.
    let mut capacity_until: Option<Instant> = None;
    for attempt in 0..max {
        if attempt > 0 {
            if !budget.withdraw(&policy.retry, Instant::now()) {
                telemetry.retry(&decision.route.name, "denied_budget");
                break;
            }
            let wait = backoff(&policy.retry, attempt as u32);
            if Instant::now() + wait >= deadline {
                telemetry.retry(&decision.route.name, "denied_deadline");
                break;
            }
            telemetry.retry(&decision.route.name, "allowed");
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let picked = match pick(snap, decision, &tried, deadline, how, &mut capacity_until, done).await {
            Picked::Deployment(picked) => picked,
            Picked::AtCapacity => {
                last = Some(at_capacity_error());
                break;
            }
            Picked::NoneHealthy => {
                // Every deployment is out (breakers, Retry-After pauses): wait for the first to
                // come back if that is within the deadline, else give up.
                let back = decision
                    .model
                    .deployments
                    .iter()
                    .filter_map(|&d| snap.deployments[d].health.open_until())
                    .min();
                match back {
                    Some(t) if t < deadline && attempt + 1 < max => {
                        tokio::time::sleep_until(t.into()).await;
                        continue;
                    }
                    _ => {
                        last.get_or_insert_with(|| no_healthy_error(back, now));
                        break;
                    }
                }
            }
        };
        // A half-open breaker's probe slot is held for this attempt and given back however it
        // ends (an outcome, a neutral answer, or this future dropped with the client gone).
        let (index, inflight, probe) = picked;
        tried.push(index);
        let dep = &snap.deployments[index];
        if attempt > 0
            && let Some(until) = dep.health.paused_until(Instant::now())
        {
            // The upstream asked for a pause and nothing else is left: honour it, or stop.
            if until >= deadline {
                telemetry.retry(&decision.route.name, "denied_deadline");
                break;
            }
            tokio::time::sleep_until(until.into()).await;
        }
        let started = Instant::now();
        let trace = how.trace.map(|ctx| {
            (
                ctx,
                crate::trace::AttemptTrace {
                    span_id: crate::trace::span_id(),
                    provider: dep.adapter.name(),
                    model: dep.upstream_model.clone(),
                },
            )
        });
        let forward = (how.request_id, trace.as_ref().map(|(ctx, t)| (*ctx, &t.span_id)));
        let result = attempt_once(dep, decision, inbound, forward, deadline).await;
        let elapsed = started.elapsed();
        done.upstream_time += elapsed;
        let outcome = result
            .as_ref()
            .map_or_else(|f| f.failure.health(), |_| Outcome::Success);
        let t = dep.health.record(breaker, outcome, elapsed, Instant::now());
        drop(probe);
        telemetry.breaker(&dep.name, t);
        // An answer that fails its JSON check came from a healthy deployment, but is no answer.
        let result = result.and_then(|up| match (how.check, &up) {
            (
                Some(check),
                Upstream::Complete {
                    status, body, usage, ..
                },
            ) if status.is_success() => {
                match check.verify(inbound.endpoint.wire(), body) {
                    Ok(()) => Ok(up),
                    Err(why) => {
                        // Thrown away, but used: charged with the answer the caller gets.
                        if let Some(u) = usage {
                            done.discarded.add(u, dep.price.as_ref());
                        }
                        Err(Failed::new(Failure::InvalidOutput(check.on_invalid), check.failed(&why)).at(*status))
                    }
                }
            }
            _ => Ok(up),
        });
        match result {
            Ok(mut up) => {
                if let Upstream::Stream { inflight: slot, .. } = &mut up {
                    // A stream stays in flight until it ends.
                    *slot = Some(inflight);
                }
                done.answered = true;
                done.price = dep.price;
                let counter = dep.answered.get_or_init(|| {
                    how.telemetry
                        .metrics
                        .attempts
                        .get_or_create_owned(&crate::telemetry::AttemptLabels {
                            deployment: dep.name.clone(),
                            outcome: "ok",
                        })
                });
                done.attempts.push(AttemptRecord {
                    deployment: dep.name.clone(),
                    outcome: "ok",
                    status: Some(200),
                    at: started,
                    ms: ms(elapsed),
                    counter: Some(counter.clone()),
                    trace: trace.map(|(_, t)| t),
                });
                return Ok(up);
            }
            Err(f) => {
                drop(inflight);
                if let Some(s) = f.retry_after {
                    dep.health.pause(Instant::now() + Duration::from_secs(s));
                }
                done.attempts.push(AttemptRecord {
                    deployment: dep.name.clone(),
                    outcome: f.failure.label(),
                    status: f.status,
                    at: started,
                    ms: ms(elapsed),
                    counter: None,
                    trace: trace.map(|(_, t)| t),
                });
                let again = f.failure.retryable() && attempt + 1 < max;
                last = Some(f.error);
                if !again {
                    break;
                }
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        GatewayError::new(
            ErrorKind::UpstreamTimeout,
            "upstream_timeout",
            "The request ran out of time before an upstream answered.",
        )
        .with_failure(Failure::OutOfTime)
    }))
}

/// The next attempt's deployment, with its place in flight and its probe slot.
enum Picked {
    Deployment((usize, InFlight, ProbeSlot)),
    /// Every deployment is at its concurrency limit, and no place freed in time.
    AtCapacity,
    /// Every deployment is out (breakers, pauses).
    NoneHealthy,
}

async fn pick(
    snap: &Snapshot,
    decision: &Decision<'_>,
    tried: &[usize],
    deadline: Instant,
    how: Attempting<'_>,
    capacity_until: &mut Option<Instant>,
    done: &mut Dispatched,
) -> Picked {
    let geo = how.region.map(|r| (r, &snap.config.geo));
    loop {
        match decision
            .model
            .pick(&snap.deployments, tried, &snap.config.breaker, Instant::now(), geo)
        {
            // Another request may have taken the last place since the pick looked.
            Some((i, probe)) => match snap.deployments[i].health.try_start() {
                Some(inflight) => return Picked::Deployment((i, inflight, probe)),
                None => continue,
            },
            None if !at_capacity(snap, decision) => return Picked::NoneHealthy,
            // A fallback alias takes over at once.
            None if how.spill => return Picked::AtCapacity,
            None => {
                let until = *capacity_until.get_or_insert_with(|| {
                    let wait = decision
                        .route
                        .config
                        .queue
                        .as_ref()
                        .map_or(CAPACITY_WAIT, |q| q.timeout);
                    deadline.min(Instant::now() + wait)
                });
                let waiting = Instant::now();
                let freed = capacity_freed(snap, decision, until).await;
                done.capacity_wait += waiting.elapsed();
                if !freed {
                    return Picked::AtCapacity;
                }
            }
        }
    }
}

fn at_capacity_error() -> GatewayError {
    GatewayError::new(
        ErrorKind::Unavailable,
        "deployments_at_capacity",
        "Every deployment of this model is at its concurrency limit.",
    )
    .with_retry_after(Some(1))
    .with_failure(Failure::AtCapacity)
}

fn no_healthy_error(back: Option<Instant>, now: Instant) -> GatewayError {
    GatewayError::new(
        ErrorKind::UpstreamUnavailable,
        "no_healthy_deployment",
        "Every deployment of this model is out of service (circuit open or paused by the upstream).",
    )
    .with_retry_after(back.map(|t| t.saturating_duration_since(now).as_secs().max(1)))
    .with_failure(Failure::NoHealthyDeployment)
}

/// How long a request waits for a place on a deployment at its concurrency limit when its route
/// has no queue (with a queue: the queue's timeout), within its deadline.
const CAPACITY_WAIT: Duration = Duration::from_secs(1);

/// Whether a deployment of the model is at its concurrency limit (so waiting may help).
fn at_capacity(snap: &Snapshot, decision: &Decision<'_>) -> bool {
    decision
        .model
        .deployments
        .iter()
        .any(|&d| snap.deployments[d].health.full())
}

/// Waits until a request ends on one of the model's deployments, up to `until`; `false` when
/// none did in time, or — on a route without a queue (a queue bounds the waiters itself: only
/// its running requests get here) — when as many wait already as the pool may hold, four times
/// its deployments' limits.
async fn capacity_freed(snap: &Snapshot, decision: &Decision<'_>, until: Instant) -> bool {
    struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);
    impl Drop for Waiting<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let model = decision.model;
    let bounded = decision.route.config.queue.is_none();
    if model
        .capacity_waiting
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        >= model.capacity_queue
        && bounded
    {
        model
            .capacity_waiting
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        return false;
    }
    let _waiting = Waiting(&model.capacity_waiting);
    let mut freed: Vec<_> = decision
        .model
        .deployments
        .iter()
        .map(|&d| Box::pin(snap.deployments[d].health.freed()))
        .collect();
    for f in &mut freed {
        f.as_mut().enable();
    }
    // Registered before looking again, so a place freed in between is not missed.
    if !at_capacity(snap, decision) {
        return true;
    }
    tokio::time::timeout_at(until.into(), futures_util::future::select_all(freed))
        .await
        .is_ok()
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}
