//! Finish: the one place a request ends. Every request that reaches the spine owns a [`Finish`];
//! it moves into the response body and reports exactly once — when the body ends, or when it is
//! dropped because the client went away, before or after the first byte.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use sluice_config::Price;
use sluice_providers::Usage;
use sluice_store::ledger::{Entry, Intent, Settlement};

use crate::error::GatewayError;
use crate::telemetry::{AttemptLabels, ClassLabel, RequestLabels, RouteModel, Telemetry, TokenLabels};

/// The label value of a request that never matched a route or model.
static EMPTY: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from(""));

/// One upstream attempt, for the log line.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptRecord {
    pub deployment: Arc<str>,
    /// `ok`, or an error class.
    pub outcome: &'static str,
    pub status: Option<u16>,
    pub ms: f64,
}

/// The access-log line: everything finish reports. No prompt or response text.
#[derive(Debug, Serialize)]
pub struct RequestRecord {
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    pub request_id: String,
    pub endpoint: &'static str,
    pub tenant: Option<Arc<str>>,
    pub team: Option<Arc<str>>,
    pub key_id: Option<Arc<str>>,
    pub route: Option<Arc<str>>,
    pub model: Option<Arc<str>>,
    pub deployment: Option<Arc<str>>,
    pub status: u16,
    pub error_class: Option<&'static str>,
    pub error_code: Option<&'static str>,
    pub stream: bool,
    pub latency_ms: f64,
    pub ttfb_ms: Option<f64>,
    pub upstream_ms: Option<f64>,
    pub overhead_ms: f64,
    pub attempts: Vec<AttemptRecord>,
    /// Each stage's time, in ms (`{"auth":0.004,"route":…}`).
    pub stages: crate::timing::StageTimes,
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
    /// What degradation under load changed (`model=…`, `max_tokens=…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
    /// Time spent waiting in the route's queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_ms: Option<f64>,
    /// Why the answer came from a fallback (`error`, `timeout`, `open_circuit`…), if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<&'static str>,
    pub config_version: Arc<str>,
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let dt: chrono::DateTime<chrono::Utc> = (*t).into();
    s.serialize_str(&dt.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// Owns a request's record until it is reported. Dropping it unreported means the client left.
#[derive(Debug)]
pub struct Finish {
    record: Option<Box<RequestRecord>>,
    telemetry: Arc<Telemetry>,
    started: Instant,
    first_byte: Option<Instant>,
    upstream: Duration,
    responded: bool,
    price: Option<Price>,
    /// The limits reservation, settled with the real usage when the request is reported.
    admission: Option<crate::stages::Admission>,
    /// The ledger holding this request's intent; its settlement is appended at completion.
    ledger: Option<Arc<crate::ledger::Ledger>>,
    /// The request's place among its route's running requests, given back when it ends.
    permit: Option<crate::queue::Permit>,
    server_timing: bool,
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
                tenant: None,
                team: None,
                key_id: None,
                route: None,
                model: None,
                deployment: None,
                status: 0,
                error_class: None,
                error_code: None,
                stream: false,
                latency_ms: 0.0,
                ttfb_ms: None,
                upstream_ms: None,
                overhead_ms: 0.0,
                attempts: Vec::new(),
                stages: crate::timing::StageTimes::default(),
                prompt_tokens: 0,
                completion_tokens: 0,
                total_tokens: 0,
                cached_tokens: 0,
                cache_write_tokens: 0,
                reasoning_tokens: 0,
                usage_estimated: false,
                cost_micros: None,
                currency: None,
                degraded: None,
                queue_ms: None,
                fallback: None,
                config_version,
            })),
            telemetry,
            started: Instant::now(),
            first_byte: None,
            upstream: Duration::ZERO,
            responded: false,
            price: None,
            admission: None,
            ledger: None,
            permit: None,
            server_timing: false,
        }
    }

    /// The record, for stages to fill in. `None` only after reporting.
    pub fn record(&mut self) -> Option<&mut RequestRecord> {
        self.record.as_deref_mut()
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn request_id(&self) -> &str {
        self.record.as_ref().map_or("", |r| r.request_id.as_str())
    }

    pub fn set_caller(&mut self, caller: &crate::keys::Caller) {
        if let Some(r) = self.record() {
            r.key_id = Some(caller.key_id.clone());
            r.tenant = caller.tenant.clone();
            r.team = caller.team.clone();
        }
    }

    pub fn set_route(&mut self, route: &Arc<str>, model: &Arc<str>, stream: bool) {
        if let Some(r) = self.record() {
            r.route = Some(route.clone());
            r.model = Some(model.clone());
            r.stream = stream;
        }
    }

    fn add_attempt(&mut self, attempt: AttemptRecord) {
        self.telemetry
            .metrics
            .attempts
            .get_or_create(&AttemptLabels {
                deployment: attempt.deployment.clone(),
                outcome: attempt.outcome,
            })
            .inc();
        if let Some(r) = self.record() {
            r.deployment = Some(attempt.deployment.clone());
            r.attempts.push(attempt);
        }
    }

    /// What an alias's attempts loop did: its attempts, the time they took, the wait for a
    /// place on a full deployment, and the answering deployment's price.
    pub fn add_dispatch(&mut self, d: crate::dispatch::Dispatched, currency: &Arc<str>) {
        self.upstream += d.upstream_time;
        if !d.capacity_wait.is_zero() {
            self.add_queue_wait(d.capacity_wait);
        }
        for a in d.attempts {
            self.add_attempt(a);
        }
        if d.answered {
            self.set_price(d.price, currency);
        }
    }

    /// Time spent waiting on or reading from the upstream after the attempts loop.
    pub fn add_upstream_time(&mut self, d: Duration) {
        self.upstream += d;
    }

    pub fn attempts(&self) -> usize {
        self.record.as_ref().map_or(0, |r| r.attempts.len())
    }

    /// The response status is decided; headers are about to go out.
    pub fn respond(&mut self, status: u16, error: Option<&GatewayError>) {
        self.responded = true;
        if let Some(r) = self.record() {
            r.status = status;
            if let Some(e) = error {
                r.error_class = Some(e.class());
                r.error_code = Some(e.code);
            }
        }
    }

    /// The walk finished `stage` after `seconds`.
    pub fn stage(&mut self, stage: crate::timing::Stage, seconds: f64) {
        if let Some(r) = self.record() {
            r.stages.set(stage, seconds);
        }
    }

    /// The route asks for a `server-timing` header on its answers.
    pub fn send_server_timing(&mut self) {
        self.server_timing = true;
    }

    /// The `server-timing` header value, when the route asks for one.
    pub fn server_timing(&self) -> Option<String> {
        self.record
            .as_deref()
            .filter(|_| self.server_timing)
            .map(|r| r.stages.server_timing())
    }

    /// The first body byte reached the client.
    pub fn first_byte(&mut self) {
        if self.first_byte.is_none() {
            self.first_byte = Some(Instant::now());
        }
    }

    pub fn set_usage(&mut self, usage: Usage, estimated: bool) {
        if let Some(r) = self.record() {
            r.prompt_tokens = usage.prompt_tokens;
            r.completion_tokens = usage.completion_tokens;
            r.total_tokens = usage.total_tokens;
            r.cached_tokens = usage.cached_tokens;
            r.cache_write_tokens = usage.cache_write_tokens;
            r.reasoning_tokens = usage.reasoning_tokens;
            r.usage_estimated = estimated;
        }
    }

    pub fn set_admission(&mut self, a: crate::stages::Admission) {
        self.admission = Some(a);
    }

    pub fn set_degraded(&mut self, what: String) {
        if let Some(r) = self.record() {
            r.degraded = Some(what);
        }
    }

    pub fn degraded(&self) -> Option<&str> {
        self.record.as_deref().and_then(|r| r.degraded.as_deref())
    }

    /// Keeps the request's place in its route's queue until it is reported.
    pub fn hold(&mut self, permit: crate::queue::Permit) {
        let waited = ms(permit.waited);
        if let Some(r) = self.record() {
            r.queue_ms = Some(waited);
        }
        self.permit = Some(permit);
    }

    /// Time spent waiting for a place on a deployment at its concurrency limit (added to the
    /// route queue's wait in `queue_ms`).
    pub fn add_queue_wait(&mut self, waited: Duration) {
        let waited = ms(waited);
        if let Some(r) = self.record() {
            r.queue_ms = Some(r.queue_ms.unwrap_or(0.0) + waited);
        }
    }

    /// Settles the current reservation now with `used` (a fallback re-admits at its own prices).
    pub fn release_admission(&mut self, used: &crate::limits::Need) {
        if let Some(mut a) = self.admission.take() {
            a.settle(used);
        }
    }

    /// The answer comes from a fallback: `model` (the alias) answered, for `why`.
    pub fn set_fallback(&mut self, model: &Arc<str>, why: sluice_config::FallbackReason) {
        if let Some(r) = self.record() {
            r.model = Some(model.clone());
            r.fallback = Some(why.as_str());
        }
    }

    /// The alias that answered, and why it was a fallback (for the response headers).
    pub fn answered(&self) -> (Option<Arc<str>>, Option<&'static str>) {
        self.record
            .as_deref()
            .map_or((None, None), |r| (r.model.clone(), r.fallback))
    }

    /// Appends the request's intent to the ledger; its settlement follows at completion.
    pub fn open_ledger(
        &mut self,
        ledger: &Arc<crate::ledger::Ledger>,
        reserved: &crate::limits::Need,
    ) -> std::io::Result<()> {
        let Some(r) = self.record.as_deref() else {
            return Ok(());
        };
        fn text(v: &Option<Arc<str>>) -> Option<std::borrow::Cow<'_, str>> {
            v.as_deref().map(std::borrow::Cow::Borrowed)
        }
        let at = chrono::DateTime::<chrono::Utc>::from(r.time).timestamp_millis();
        ledger.append(&Entry::Intent(Intent {
            id: r.request_id.as_str().into(),
            instance: ledger.instance().as_ref().into(),
            at,
            key: text(&r.key_id),
            team: text(&r.team),
            tenant: text(&r.tenant),
            route: text(&r.route),
            model: text(&r.model),
            reserved_tokens: reserved.input_tokens + reserved.output_tokens,
            reserved_cost: reserved.cost,
        }))?;
        self.ledger = Some(ledger.clone());
        Ok(())
    }

    /// Where the caller's limits stood after admission, for the response headers.
    pub fn rate_info(&self) -> Option<crate::limits::RateInfo> {
        self.admission
            .as_ref()
            .map(|a| a.info)
            .filter(|i| i.requests.is_some() || i.tokens.is_some())
    }

    /// The price of the deployment that answered; the cost is worked out when usage is final.
    pub fn set_price(&mut self, price: Option<Price>, currency: &Arc<str>) {
        self.price = price;
        if price.is_some()
            && let Some(r) = self.record()
        {
            r.currency = Some(currency.clone());
        }
    }

    /// Marks how the request ended when it did not end cleanly (after headers were sent).
    pub fn fail(&mut self, class: &'static str, code: &'static str) {
        if let Some(r) = self.record() {
            r.error_class = Some(class);
            r.error_code = Some(code);
        }
    }

    /// Reports the request. Later calls, and the drop that follows, do nothing.
    pub fn complete(&mut self) {
        let Some(mut r) = self.record.take() else { return };
        let total = self.started.elapsed();
        r.latency_ms = ms(total);
        r.ttfb_ms = self.first_byte.map(|t| ms(t - self.started));
        if !r.attempts.is_empty() {
            r.upstream_ms = Some(ms(self.upstream));
        }
        let overhead = total.saturating_sub(self.upstream);
        if let Some(p) = self.price {
            r.cost_micros = Some(p.cost_micros(
                r.prompt_tokens,
                r.cached_tokens,
                r.cache_write_tokens,
                r.completion_tokens,
            ));
        }
        // Settle: what was reserved is replaced by what was used (charged even when the
        // client left or the upstream failed mid-way: the usage here is what it produced).
        if let Some(admission) = self.admission.as_mut() {
            admission.settle(&crate::limits::Need {
                requests: 1,
                input_tokens: r.prompt_tokens,
                output_tokens: r.completion_tokens,
                cost: r.cost_micros.unwrap_or(0),
            });
        }
        r.overhead_ms = ms(overhead);
        if let Some(ledger) = self.ledger.take() {
            let settlement = Entry::Settlement(Settlement {
                id: r.request_id.as_str().into(),
                at: chrono::Utc::now().timestamp_millis(),
                deployment: r.deployment.as_deref().map(Into::into),
                // The intent named the first alias; a fallback's answer is charged to its own.
                model: r.fallback.and(r.model.as_deref()).map(Into::into),
                status: r.status,
                prompt_tokens: r.prompt_tokens,
                completion_tokens: r.completion_tokens,
                cached_tokens: r.cached_tokens,
                cost: r.cost_micros.unwrap_or(0),
                currency: r.currency.as_deref().map(Into::into),
                estimated: r.usage_estimated,
            });
            if let Err(e) = ledger.append(&settlement) {
                // The intent is there: the next start closes it as unsettled.
                tracing::error!(error = %e, request_id = %r.request_id, "cannot append a settlement to the spend ledger");
            }
        }

        let m = &self.telemetry.metrics;
        m.in_flight.dec();
        // Label values are the config's own `Arc<str>`s: no string is copied per request.
        let route = r.route.clone().unwrap_or_else(|| EMPTY.clone());
        let model = r.model.clone().unwrap_or_else(|| EMPTY.clone());
        m.requests
            .get_or_create(&RequestLabels {
                route: route.clone(),
                model: model.clone(),
                status: r.status,
            })
            .inc();
        let rm = RouteModel { route, model };
        m.duration.get_or_create(&rm).observe(total.as_secs_f64());
        if let Some(t) = self.first_byte {
            m.ttfb.get_or_create(&rm).observe((t - self.started).as_secs_f64());
        }
        m.overhead.observe(overhead.as_secs_f64());
        for (stage, t) in r.stages.iter() {
            m.stages
                .get_or_create(&crate::telemetry::StageLabels {
                    route: rm.route.clone(),
                    stage: stage.as_str(),
                })
                .observe(t);
        }
        if let Some(class) = r.error_class {
            m.errors.get_or_create(&ClassLabel { class }).inc();
        }
        if let Some(c) = r.cost_micros
            && c > 0
        {
            m.cost.get_or_create(&rm).inc_by(c);
        }
        for (kind, n) in [("prompt", r.prompt_tokens), ("completion", r.completion_tokens)] {
            if n > 0 {
                m.tokens
                    .get_or_create(&TokenLabels {
                        route: rm.route.clone(),
                        model: rm.model.clone(),
                        kind,
                    })
                    .inc_by(n);
            }
        }
        self.telemetry.log(r);
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        if let Some(r) = self.record.as_deref_mut() {
            if !self.responded {
                r.status = 499; // the client closed the connection before a response
            }
            r.error_class = Some("client_closed");
            r.error_code = Some("client_closed");
            self.complete();
        }
    }
}
