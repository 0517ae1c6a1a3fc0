//! Limits: the types every backend shares, and the front that picks a backend.
//!
//! In process (`local`): reserve a request's estimated cost against every limit that applies —
//! all or nothing — and settle with the real usage when the request finishes.
//!
//! Rates (per second, minute, hour) are GCRA: each cell keeps a theoretical arrival time; a
//! request of `n` units is admitted when the bucket, drained at `amount / window`, has room for
//! `n` within its burst. Quotas and budgets (per day, month) are calendar windows in the
//! configured time zone; a new window starts from zero.
//!
//! Cells are found in a sharded map and locked in a fixed order, so a reservation across several
//! limits is atomic without a global lock. Counters live in the gateway's live state and survive
//! config reloads. A background task ([`sweep_every`]) evicts the cells back at rest — a rate
//! whose bucket has drained, a quota whose window has ended — so every distinct user that comes
//! and goes leaves nothing behind.

use std::collections::HashMap;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use chrono::{Datelike, Offset, TimeZone};
use sluice_config::{LimitSpec, Metric, OutagePolicy, RedisConfig, Window};

mod local;
mod shared;

pub use local::Limiter;

pub(crate) const NS: u64 = 1_000_000_000;

/// Whose limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Key,
    Team,
    Tenant,
    Model,
    Route,
    /// An end user of a key (named `key/user`).
    User,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Key => "key",
            Scope::Team => "team",
            Scope::Tenant => "tenant",
            Scope::Model => "model",
            Scope::Route => "route",
            Scope::User => "user",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CellKey {
    pub scope: Scope,
    pub id: Arc<str>,
    pub metric: Metric,
    pub window: Window,
}

/// What one request counts against each metric.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Need {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Micro-units of currency.
    pub cost: u64,
}

impl Need {
    pub(crate) fn of(&self, m: Metric) -> u64 {
        match m {
            Metric::Requests => self.requests,
            Metric::Tokens => self.input_tokens + self.output_tokens,
            Metric::InputTokens => self.input_tokens,
            Metric::OutputTokens => self.output_tokens,
            Metric::Cost => self.cost,
        }
    }
}

/// A limit as it stands after an admission: for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Standing {
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until the limit is whole again.
    pub reset_s: f64,
}

/// The tightest request and token limits that applied.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RateInfo {
    pub requests: Option<Standing>,
    pub tokens: Option<Standing>,
}

/// Why a request was refused.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub scope: Scope,
    pub spec: LimitSpec,
    /// Seconds until a retry can succeed (`None`: never, the request is larger than the limit).
    pub retry_after_s: Option<u64>,
    pub info: RateInfo,
    /// The shared store is down and this limit's policy is to refuse.
    pub unavailable: bool,
}

/// Limits set at run time through the admin API; they replace a key's or team's own limits
/// from the config (a key's tier still applies).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RuntimeLimits {
    pub keys: HashMap<String, Vec<LimitSpecView>>,
    pub teams: HashMap<String, Vec<LimitSpecView>>,
    /// Each end user's limits, by key id (a key's `user_limits`).
    pub users: HashMap<String, Vec<LimitSpecView>>,
    #[serde(skip)]
    pub key_specs: HashMap<String, Arc<[LimitSpec]>>,
    #[serde(skip)]
    pub team_specs: HashMap<String, Arc<[LimitSpec]>>,
    #[serde(skip)]
    pub user_specs: HashMap<String, Arc<[LimitSpec]>>,
}

impl RuntimeLimits {
    /// Sets `scope` (`keys`, `teams`, or `users`: a key's end users) `name`'s limits.
    pub fn set(&mut self, scope: &str, name: &str, specs: Vec<LimitSpec>) {
        let view: Vec<LimitSpecView> = specs.iter().map(LimitSpecView::from).collect();
        match scope {
            "keys" => {
                self.keys.insert(name.to_owned(), view);
                self.key_specs.insert(name.to_owned(), Arc::from(specs));
            }
            "teams" => {
                self.teams.insert(name.to_owned(), view);
                self.team_specs.insert(name.to_owned(), Arc::from(specs));
            }
            "users" => {
                self.users.insert(name.to_owned(), view);
                self.user_specs.insert(name.to_owned(), Arc::from(specs));
            }
            _ => {}
        }
    }

    /// Removes them; `false` if there were none.
    pub fn clear(&mut self, scope: &str, name: &str) -> bool {
        match scope {
            "keys" => self.key_specs.remove(name).is_some() | self.keys.remove(name).is_some(),
            "teams" => self.team_specs.remove(name).is_some() | self.teams.remove(name).is_some(),
            "users" => self.user_specs.remove(name).is_some() | self.users.remove(name).is_some(),
            _ => false,
        }
    }
}

/// A limit as the admin API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LimitSpecView {
    pub name: String,
    pub amount: u64,
    pub burst: u64,
}

impl From<&LimitSpec> for LimitSpecView {
    fn from(s: &LimitSpec) -> Self {
        LimitSpecView {
            name: s.name(),
            amount: s.amount,
            burst: s.burst,
        }
    }
}

/// Start (unix seconds) of the calendar window holding `now_s`, and of the next one.
pub fn window_bounds(window: Window, now_s: i64, tz: i32) -> (i64, i64) {
    let offset = chrono::FixedOffset::east_opt(tz).unwrap_or_else(|| chrono::Utc.fix());
    let local = offset.timestamp_opt(now_s, 0).single();
    let Some(local) = local else {
        return (now_s, now_s + 86_400);
    };
    let day = local.date_naive();
    let start_of = |d: chrono::NaiveDate| -> i64 {
        offset
            .from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
            .single()
            .map_or(now_s, |t| t.timestamp())
    };
    match window {
        Window::Month => {
            let first = day.with_day(1).unwrap_or(day);
            let next = if first.month() == 12 {
                chrono::NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
            } else {
                chrono::NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
            }
            .unwrap_or(first);
            (start_of(first), start_of(next))
        }
        _ => {
            let next = day.succ_opt().unwrap_or(day);
            (start_of(day), start_of(next))
        }
    }
}

/// Keeps the tightest (least remaining) standing per header family.
pub(crate) fn merge(info: &mut RateInfo, metric: Metric, s: Standing) {
    let slot = match metric {
        Metric::Requests => &mut info.requests,
        Metric::Tokens | Metric::InputTokens | Metric::OutputTokens => &mut info.tokens,
        Metric::Cost => return,
    };
    if slot.is_none_or(|cur| s.remaining < cur.remaining) {
        *slot = Some(s);
    }
}

/// A budget whose spend crossed an alert threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crossing {
    pub scope: Scope,
    pub id: Arc<str>,
    pub spec: LimitSpec,
    pub used: u64,
    pub threshold: u8,
    pub window_start: i64,
}

/// What receives the budget thresholds a settlement crossed.
pub type OnCrossings = Box<dyn FnOnce(Vec<Crossing>) + Send>;

/// Metrics of the shared store.
#[derive(Debug, Clone, Default)]
pub struct StoreMetrics {
    /// 1 while the shared store answers (0 when it is down; absent without one).
    pub up: Gauge,
    /// Decisions taken under an outage, by policy and outcome.
    pub decisions: Family<OutageLabels, Counter>,
    /// Store calls that failed or timed out.
    pub errors: Counter,
    /// Settlements given up after retries (their reservation expires with its window).
    pub lost_settlements: Counter,
    /// Instances sharing the store, as counted by their heartbeats (or as configured).
    pub instances: Gauge,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct OutageLabels {
    pub policy: &'static str,
    pub decision: &'static str,
}

impl StoreMetrics {
    fn decision(&self, policy: OutagePolicy, admitted: bool) {
        self.decisions
            .get_or_create(&OutageLabels {
                policy: policy.as_str(),
                decision: if admitted { "admitted" } else { "refused" },
            })
            .inc();
    }
}

/// Reserved units, released or topped up at settlement.
#[derive(Debug)]
pub enum Reservation {
    /// Nothing was counted (no limit applied, or every one was open during an outage).
    None,
    Local(local::Reservation),
    Shared(shared::Reservation),
}

impl Reservation {
    /// Replaces what was reserved by what was used, once. Budget thresholds crossed go to `then`.
    pub fn settle(self, actual: &Need, thresholds: &[u8], then: Option<OnCrossings>) {
        match self {
            Reservation::None => {}
            Reservation::Local(r) => {
                let crossings = r.settle(actual, now_ns(), thresholds);
                if let Some(then) = then
                    && !crossings.is_empty()
                {
                    then(crossings);
                }
            }
            Reservation::Shared(r) => r.settle(actual, thresholds, then),
        }
    }
}

/// The limits front: in process, or shared through Redis when the config names a store.
/// Lives in the gateway's live state, so counters survive reloads.
#[derive(Debug, Default)]
pub struct Limits {
    local: Limiter,
    shared: arc_swap::ArcSwapOption<shared::SharedLimiter>,
    metrics: StoreMetrics,
}

impl Limits {
    pub fn new(metrics: StoreMetrics) -> Limits {
        Limits {
            local: Limiter::default(),
            shared: arc_swap::ArcSwapOption::empty(),
            metrics,
        }
    }

    /// Follows the config's store: connects when it names a new one, keeps the current one
    /// (and its counters) when it is unchanged, drops it when the config has none.
    pub async fn configure(&self, redis: Option<&RedisConfig>) {
        let current = self.shared.load_full();
        match (redis, current) {
            (None, None) => {}
            (None, Some(_)) => self.shared.store(None),
            (Some(cfg), Some(cur)) if cur.config() == cfg => {}
            (Some(cfg), _) => {
                let next = shared::SharedLimiter::start(cfg.clone(), self.metrics.clone()).await;
                self.shared.store(Some(next));
            }
        }
    }

    /// In-process cells held now (the local ones, and the shared store's outage fallback).
    pub fn cells(&self) -> usize {
        self.local.cells() + self.shared.load().as_ref().map_or(0, |s| s.fallback().cells())
    }

    /// Evicts the in-process cells back at rest at `now_ns`; returns how many are left.
    pub fn sweep(&self, now_ns: u64) -> usize {
        let shared = self.shared.load_full();
        self.local.sweep(now_ns) + shared.map_or(0, |s| s.fallback().sweep(now_ns))
    }

    /// Whether a shared store is configured and answering.
    pub fn shared_up(&self) -> Option<bool> {
        self.shared.load().as_ref().map(|s| s.is_up())
    }

    /// Reserves `need` against every limit in `applicable` — all or nothing — or refuses.
    pub async fn admit(
        &self,
        applicable: &[(Scope, Arc<str>, LimitSpec)],
        need: &Need,
        tz: i32,
    ) -> Result<(Reservation, RateInfo), Refusal> {
        match self.shared.load_full() {
            Some(shared) => shared.admit(applicable, need, tz).await,
            None => self
                .local
                .admit(applicable, need, now_ns(), tz)
                .map(|(r, info)| (Reservation::Local(r), info)),
        }
    }
}

/// How often [`sweep_every`] evicts the cells back at rest, at most: with few cells, a cell
/// outlives its last use by at most this much.
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// A sweep passes over every cell (a million take about a third of a second on the benchmark
/// machine, sharing its core with the request path), so the next one waits this many times as
/// long as the last took, if that is longer than [`SWEEP_EVERY`]: sweeping stays under 2 % of
/// one core however many cells there are (a million are then swept every ~15 s).
const SWEEP_BACKOFF: u32 = 50;

/// Sweeps the gateway's in-process cells every [`SWEEP_EVERY`] (or less often, see
/// [`SWEEP_BACKOFF`]) on a blocking thread, never on an async worker, and sets the
/// `sluice_limits_cells` gauge. Ends when the gateway is dropped.
pub(crate) async fn sweep_every(gw: std::sync::Weak<crate::Gateway>) {
    let mut wait = SWEEP_EVERY;
    loop {
        tokio::time::sleep(wait).await;
        let Some(gateway) = gw.upgrade() else { return };
        if gateway.live.limits.cells() == 0 {
            continue;
        }
        let swept = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let before = gateway.live.limits.cells();
            let left = gateway.live.limits.sweep(now_ns());
            gateway.telemetry.metrics.limits_cells.set(left as i64);
            let took = started.elapsed();
            tracing::debug!(
                evicted = before.saturating_sub(left),
                left,
                took_us = took.as_micros() as u64,
                "limiter cells swept"
            );
            took
        });
        match swept.await {
            Ok(took) => wait = SWEEP_EVERY.max(took.saturating_mul(SWEEP_BACKOFF)),
            Err(_) => return, // the runtime is shutting down
        }
    }
}

pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
