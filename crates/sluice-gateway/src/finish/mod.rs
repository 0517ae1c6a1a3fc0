//! Finish: the one place a request ends. Every request that reaches the spine owns a [`Finish`];
//! it moves into the response body and reports exactly once — when the body ends, or when it is
//! dropped because the client went away, before or after the first byte.

pub mod admission;
mod cache;
mod line;
mod report;
mod traced;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sluice_config::Price;
use sluice_providers::Usage;
use sluice_store::ledger::{Entry, Intent};

use crate::error::GatewayError;
use crate::finish::admission::Admission;
use crate::meter::Meter;
use crate::telemetry::{AttemptLabels, Telemetry};
use crate::upstream::attempt::AttemptRecord;

pub use cache::{CacheHit, CachePart};

/// The label value of a request that never matched a route or model.
static EMPTY: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from(""));

/// The access-log line: everything finish reports, in typed parts each stage's output fills
/// (written as one flat JSON object, `line.rs`). No prompt or response text.
#[derive(Debug)]
pub struct RequestRecord {
    pub time: SystemTime,
    pub request_id: String,
    pub endpoint: &'static str,
    pub caller: CallerPart,
    pub route: RoutePart,
    pub outcome: OutcomePart,
    pub timing: TimingPart,
    pub attempts: Vec<AttemptRecord>,
    pub usage: UsagePart,
    pub cache: CachePart,
    /// What the guardrails did (shared with the answer's guard stage while it streams).
    pub guard: Option<crate::guard::GuardReport>,
    pub config_version: Arc<str>,
    /// The request's place in a trace (when traces are on).
    pub trace: Option<crate::trace::TraceCtx>,
}

/// Who called (from authentication).
#[derive(Debug, Default)]
pub struct CallerPart {
    pub tenant: Option<Arc<str>>,
    pub team: Option<Arc<str>>,
    pub key_id: Option<Arc<str>>,
}

/// Where the request went (from routing, degradation, dispatch and the fallback chain).
#[derive(Debug, Default)]
pub struct RoutePart {
    pub route: Option<Arc<str>>,
    pub model: Option<Arc<str>>,
    pub deployment: Option<Arc<str>>,
    pub stream: bool,
    /// What degradation under load changed (`model=…`, `max_tokens=…`).
    pub degraded: Option<String>,
    /// Why the answer came from a fallback (`error`, `timeout`, `open_circuit`…), if it did.
    pub fallback: Option<&'static str>,
}

/// How it ended.
#[derive(Debug, Default)]
pub struct OutcomePart {
    pub status: u16,
    pub error_class: Option<&'static str>,
    pub error_code: Option<&'static str>,
    /// Why the answer stopped (OpenAI's words: `stop`, `length`, `tool_calls`,
    /// `content_filter`), when the upstream said.
    pub finish_reason: Option<&'static str>,
}

/// Where the time went.
#[derive(Debug, Default)]
pub struct TimingPart {
    pub latency_ms: f64,
    pub ttfb_ms: Option<f64>,
    /// A stream's first content token from the upstream, and its time per output token after
    /// it (ms).
    pub ttft_ms: Option<f64>,
    pub tpot_ms: Option<f64>,
    pub upstream_ms: Option<f64>,
    pub overhead_ms: f64,
    /// Time spent waiting in the route's queue (and for a place on a full deployment).
    pub queue_ms: Option<f64>,
    /// Each stage's time, in ms (`{"auth":0.004,"route":…}`).
    pub stages: crate::timing::StageTimes,
    /// Time spent waiting on or reading from upstreams.
    upstream: Duration,
    first_byte: Option<Instant>,
    first_token: Option<Instant>,
    /// The route asks for a `server-timing` header.
    server_timing: bool,
}

/// What it used and cost.
#[derive(Debug, Default)]
pub struct UsagePart {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub cached_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
    pub usage_estimated: bool,
    /// What the request cost, in micro-units of `currency` (when the model has a price).
    pub cost_micros: Option<u64>,
    pub currency: Option<Arc<str>>,
    /// The answering deployment's price; the cost is worked out when usage is final.
    price: Option<Price>,
    /// Answers thrown away on the way (failed their JSON check): charged with this one.
    pub discarded: crate::upstream::attempt::Discarded,
}

impl CallerPart {
    pub fn of(caller: &crate::keys::Caller) -> CallerPart {
        CallerPart {
            key_id: Some(caller.key_id.clone()),
            tenant: caller.tenant.clone(),
            team: caller.team.clone(),
        }
    }
}

impl UsagePart {
    fn set(&mut self, usage: Usage, estimated: bool) {
        self.prompt_tokens = usage.prompt_tokens;
        self.completion_tokens = usage.completion_tokens;
        self.total_tokens = usage.total_tokens;
        self.cached_tokens = usage.cached_tokens;
        self.cache_write_tokens = usage.cache_write_tokens;
        self.reasoning_tokens = usage.reasoning_tokens;
        self.usage_estimated = estimated;
    }

    fn cost(&mut self) {
        let own = self.price.map(|p| {
            p.cost_micros(
                self.prompt_tokens,
                self.cached_tokens,
                self.cache_write_tokens,
                self.completion_tokens,
            )
        });
        let discarded = Some(self.discarded.cost_micros).filter(|&c| c > 0);
        self.cost_micros = match (own, discarded) {
            (Some(a), Some(b)) => Some(a.saturating_add(b)),
            (a, b) => a.or(b),
        };
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// Owns a request's record until it is reported, and what must settle exactly once with it:
/// the limits reservation, the ledger's intent and the route-queue place. Dropping it
/// unreported means the client left.
#[derive(Debug)]
pub struct Finish {
    record: Option<Box<RequestRecord>>,
    telemetry: Arc<Telemetry>,
    started: Instant,
    responded: bool,
    /// The limits reservation, settled with the real usage when the request is reported.
    admission: Option<Admission>,
    /// The ledger holding this request's intent; its settlement is appended at completion.
    ledger: Option<Arc<sluice_ledger::Ledger>>,
    /// The request's place among its route's running requests, given back when it ends.
    permit: Option<crate::state::queue::Permit>,
    /// The series its route and model report to (from the route's plan).
    meter: Option<Arc<Meter>>,
}

impl Finish {
    pub fn new(
        telemetry: Arc<Telemetry>,
        request_id: String,
        endpoint: &'static str,
        config_version: Arc<str>,
    ) -> Finish {
        telemetry.metrics.in_flight.inc();
        Finish {
            record: Some(Box::new(RequestRecord {
                time: SystemTime::now(),
                request_id,
                endpoint,
                caller: CallerPart::default(),
                route: RoutePart::default(),
                outcome: OutcomePart::default(),
                timing: TimingPart::default(),
                attempts: Vec::new(),
                usage: UsagePart::default(),
                cache: CachePart::default(),
                guard: None,
                config_version,
                trace: None,
            })),
            telemetry,
            started: Instant::now(),
            responded: false,
            admission: None,
            ledger: None,
            permit: None,
            meter: None,
        }
    }

    fn record(&mut self) -> Option<&mut RequestRecord> {
        self.record.as_deref_mut()
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn request_id(&self) -> &str {
        self.record.as_ref().map_or("", |r| r.request_id.as_str())
    }

    /// The request's trace context (when traces are on).
    pub fn trace(&self) -> Option<&crate::trace::TraceCtx> {
        self.record.as_ref().and_then(|r| r.trace.as_ref())
    }

    pub fn set_trace(&mut self, ctx: Option<crate::trace::TraceCtx>) {
        if let Some(r) = self.record() {
            r.trace = ctx;
        }
    }

    /// Authentication's output.
    pub fn caller(&mut self, caller: CallerPart) {
        if let Some(r) = self.record() {
            r.caller = caller;
        }
    }

    /// Routing's (and degradation's) output.
    /// Where routing (and degradation) sent the request, and whether its route reports its
    /// stage times in `server-timing`.
    pub fn routed(&mut self, route: RoutePart, server_timing: bool, meter: Option<Arc<Meter>>) {
        self.meter = meter;
        if let Some(r) = self.record() {
            r.route = route;
            r.timing.server_timing = server_timing;
        }
    }

    fn add_attempt(&mut self, attempt: AttemptRecord) {
        match &attempt.counter {
            Some(c) => {
                c.inc();
            }
            None => {
                self.telemetry
                    .metrics
                    .attempts
                    .get_or_create(&AttemptLabels {
                        deployment: attempt.deployment.clone(),
                        outcome: attempt.outcome,
                    })
                    .inc();
            }
        }
        if let Some(r) = self.record() {
            r.route.deployment = Some(attempt.deployment.clone());
            r.attempts.push(attempt);
        }
    }

    /// What an alias's attempts loop did: its attempts, the time they took, the wait for a
    /// place on a full deployment, and the answering deployment's price.
    pub fn add_dispatch(&mut self, d: crate::upstream::attempt::Dispatched, currency: &Arc<str>) {
        if let Some(r) = self.record() {
            r.timing.upstream += d.upstream_time;
            if !d.capacity_wait.is_zero() {
                r.timing.queue_ms = Some(r.timing.queue_ms.unwrap_or(0.0) + ms(d.capacity_wait));
            }
            if d.answered {
                r.usage.price = d.price;
                r.usage.currency = d.price.map(|_| currency.clone());
            }
            r.usage.discarded.merge(d.discarded);
            if r.usage.currency.is_none() && d.discarded.cost_micros > 0 {
                r.usage.currency = Some(currency.clone());
            }
        }
        for a in d.attempts {
            self.add_attempt(a);
        }
    }

    /// Time spent waiting on or reading from the upstream after the attempts loop.
    pub fn add_upstream_time(&mut self, d: Duration) {
        if let Some(r) = self.record() {
            r.timing.upstream += d;
        }
    }

    pub fn attempts(&self) -> usize {
        self.record.as_ref().map_or(0, |r| r.attempts.len())
    }

    /// The response status is decided; headers are about to go out.
    pub fn respond(&mut self, status: u16, error: Option<&GatewayError>) {
        self.responded = true;
        if let Some(r) = self.record() {
            r.outcome.status = status;
            if let Some(e) = error {
                r.outcome.error_class = Some(e.class());
                r.outcome.error_code = Some(e.code);
            }
        }
    }

    /// The walk finished `stage` (when the route runs it) after `seconds`.
    pub fn stage(&mut self, stage: Option<crate::timing::Stage>, lap: crate::timing::Lapped) {
        if let (Some(stage), Some(r)) = (stage, self.record()) {
            r.timing.stages.set(stage, lap);
        }
    }

    /// The `server-timing` header value, when the route asks for one.
    pub fn server_timing(&self) -> Option<String> {
        self.record
            .as_deref()
            .filter(|r| r.timing.server_timing)
            .map(|r| r.timing.stages.server_timing())
    }

    /// The first body byte reached the client.
    pub fn first_byte(&mut self) {
        if let Some(r) = self.record()
            && r.timing.first_byte.is_none()
        {
            r.timing.first_byte = Some(Instant::now());
        }
    }

    /// A stream's first content token arrived from the upstream.
    pub fn first_token(&mut self) {
        if let Some(r) = self.record()
            && r.timing.first_token.is_none()
        {
            r.timing.first_token = Some(Instant::now());
        }
    }

    pub fn set_usage(&mut self, usage: Usage, estimated: bool) {
        if let Some(r) = self.record() {
            r.usage.set(usage, estimated);
        }
    }

    /// Why the answer stopped, as the upstream said.
    pub fn finish_reason(&mut self, reason: Option<&'static str>) {
        if let (Some(r), Some(reason)) = (self.record(), reason) {
            r.outcome.finish_reason = Some(reason);
        }
    }

    /// The route's guardrails report here (the input stage and the answer's stage fill it).
    pub fn guard(&mut self, report: Option<crate::guard::GuardReport>) {
        if let Some(r) = self.record() {
            r.guard = report;
        }
    }

    /// The cache lookup's outcome (`miss` or `bypass`; a hit is [`Finish::cache_hit`]).
    pub fn cache(&mut self, outcome: Option<&'static str>, key: Option<sluice_cache::KeyDigest>) {
        if let Some(r) = self.record() {
            r.cache.outcome = outcome;
            r.cache.key = key;
        }
    }

    /// The answer is a stored one: its usage is the original answer's (what the client is
    /// shown), but the request is charged no tokens and no cost.
    pub fn cache_hit(&mut self, hit: CacheHit) {
        if let Some(r) = self.record() {
            r.usage.set(hit.usage, false);
            r.cache = CachePart {
                outcome: Some(hit.outcome),
                key: Some(hit.key),
                saved_cost_micros: Some(hit.saved_cost_micros),
                similarity: hit.similarity,
            };
        }
    }

    /// What a stored (or shared) answer saved, once known (a streaming follower's, at its end).
    pub fn cache_saved(&mut self, cost_micros: u64) {
        if let Some(r) = self.record() {
            r.cache.saved_cost_micros = Some(cost_micros);
        }
    }

    /// What the cache did, for the `x-sluice-cache` header.
    pub fn cache_outcome(&self) -> Option<&'static str> {
        self.record.as_deref().and_then(|r| r.cache.outcome)
    }

    /// The answering deployment's price (what a stored answer cost is worked out with).
    pub fn price(&self) -> Option<Price> {
        self.record.as_deref().and_then(|r| r.usage.price)
    }

    /// Admission's output: the reservation to settle, and where the caller's limits stand.
    pub fn admitted(&mut self, a: Admission) {
        self.admission = Some(a);
    }

    pub fn degraded(&self) -> Option<&str> {
        self.record.as_deref().and_then(|r| r.route.degraded.as_deref())
    }

    /// The queue stage's output: the request's place, kept until it is reported.
    pub fn hold(&mut self, permit: Option<crate::state::queue::Permit>) {
        let Some(permit) = permit else { return };
        let waited = ms(permit.waited);
        if let Some(r) = self.record() {
            r.timing.queue_ms = Some(waited);
        }
        self.permit = Some(permit);
    }

    /// Settles the current reservation now with `used` (a fallback re-admits at its own
    /// prices; a request turned away gives everything back).
    pub fn release_admission(&mut self, used: &sluice_limits::Need) {
        if let Some(mut a) = self.admission.take() {
            a.settle(used);
        }
    }

    /// The answer comes from a fallback: `model` (the alias) answered, for `why`.
    pub fn set_fallback(&mut self, model: &Arc<str>, why: sluice_config::FallbackReason) {
        if let Some(r) = self.record() {
            r.route.model = Some(model.clone());
            r.route.fallback = Some(why.as_str());
        }
    }

    /// The alias that answered, and why it was a fallback (for the response headers).
    pub fn answered(&self) -> (Option<Arc<str>>, Option<&'static str>) {
        self.record
            .as_deref()
            .map_or((None, None), |r| (r.route.model.clone(), r.route.fallback))
    }

    /// Appends the request's intent to the ledger (when there is one): a crash from here on
    /// leaves a record to close as unsettled. Its settlement follows at completion.
    pub fn open_ledger(
        &mut self,
        ledger: Option<&Arc<sluice_ledger::Ledger>>,
        reserved: &sluice_limits::Need,
    ) -> Result<(), GatewayError> {
        let (Some(ledger), Some(r)) = (ledger, self.record.as_deref()) else {
            return Ok(());
        };
        fn text(v: &Option<Arc<str>>) -> Option<std::borrow::Cow<'_, str>> {
            v.as_deref().map(std::borrow::Cow::Borrowed)
        }
        let at = chrono::DateTime::<chrono::Utc>::from(r.time).timestamp_millis();
        let appended = ledger.append(&Entry::Intent(Intent {
            id: r.request_id.as_str().into(),
            instance: ledger.instance().as_ref().into(),
            at,
            key: text(&r.caller.key_id),
            team: text(&r.caller.team),
            tenant: text(&r.caller.tenant),
            route: text(&r.route.route),
            model: text(&r.route.model),
            reserved_tokens: reserved.input_tokens + reserved.output_tokens,
            reserved_cost: reserved.cost,
        }));
        if let Err(e) = appended {
            tracing::error!(error = %e, "cannot append to the spend ledger");
            return Err(GatewayError::new(
                crate::error::ErrorKind::Unavailable,
                "ledger_unavailable",
                "The gateway cannot record spend right now; the request was not sent.",
            ));
        }
        self.ledger = Some(ledger.clone());
        Ok(())
    }

    /// Where the caller's limits stood after admission, for the response headers.
    pub fn rate_info(&self) -> Option<sluice_limits::RateInfo> {
        self.admission
            .as_ref()
            .map(|a| a.info)
            .filter(|i| i.requests.is_some() || i.tokens.is_some())
    }

    /// Marks how the request ended when it did not end cleanly (after headers were sent).
    pub fn fail(&mut self, class: &'static str, code: &'static str) {
        if let Some(r) = self.record() {
            r.outcome.error_class = Some(class);
            r.outcome.error_code = Some(code);
        }
    }

    /// Reports the request: its times closed, its cost worked out, its reservation settled
    /// with the real usage, its ledger settlement appended, its metrics observed and its line
    /// logged. Later calls, and the drop that follows, do nothing.
    pub fn complete(&mut self) {
        let Some(mut r) = self.record.take() else { return };
        let total = self.started.elapsed();
        let overhead = r.timing.close(self.started, total, !r.attempts.is_empty());
        r.timing.per_token(self.started, total, r.usage.completion_tokens);
        r.usage.cost();
        let hit = r.cache.served();
        if hit {
            // A stored answer costs nothing: its usage is shown, not charged.
            r.usage.cost_micros = Some(0);
        }
        // What was reserved is replaced by what was used (charged even when the client left or
        // the upstream failed mid-way: the usage here is what it produced).
        if let Some(admission) = self.admission.as_mut() {
            let charged = if hit {
                sluice_limits::Need {
                    requests: 1,
                    ..sluice_limits::Need::default()
                }
            } else {
                sluice_limits::Need {
                    requests: 1,
                    input_tokens: r.usage.prompt_tokens + r.usage.discarded.input_tokens,
                    output_tokens: r.usage.completion_tokens + r.usage.discarded.output_tokens,
                    cost: r.usage.cost_micros.unwrap_or(0),
                }
            };
            admission.settle(&charged);
        }
        if let Some(ledger) = self.ledger.take() {
            report::settle_ledger(&ledger, &r);
        }
        report::observe(&self.telemetry, self.meter.as_deref(), &r, total, overhead);
        if let Some(traced) = traced::traced(&r, self.started, total) {
            self.telemetry.traces.send(traced);
        }
        self.telemetry.log(r);
    }
}

impl TimingPart {
    /// A stream's time to its first content token, and its time per output token after it
    /// (when it had more than one).
    fn per_token(&mut self, started: Instant, total: Duration, completion_tokens: u64) {
        let Some(first) = self.first_token else { return };
        let to_first = first.saturating_duration_since(started);
        self.ttft_ms = Some(ms(to_first));
        if completion_tokens > 1 {
            let after = total.saturating_sub(to_first);
            self.tpot_ms = Some(ms(after) / (completion_tokens - 1) as f64);
        }
    }

    /// Closes the times at `total` after `started`; returns the gateway's own share.
    fn close(&mut self, started: Instant, total: Duration, attempted: bool) -> Duration {
        self.latency_ms = ms(total);
        self.ttfb_ms = self.first_byte.map(|t| ms(t - started));
        if attempted {
            self.upstream_ms = Some(ms(self.upstream));
        }
        let overhead = total.saturating_sub(self.upstream);
        self.overhead_ms = ms(overhead);
        overhead
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        if let Some(r) = self.record.as_deref_mut() {
            if !self.responded {
                r.outcome.status = 499; // the client closed the connection before a response
            }
            r.outcome.error_class = Some("client_closed");
            r.outcome.error_code = Some("client_closed");
            self.complete();
        }
    }
}
