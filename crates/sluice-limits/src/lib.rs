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
//! config reloads. A background task (the gateway's, every [`SWEEP_EVERY`]) evicts the cells back at rest — a rate
//! whose bucket has drained, a quota whose window has ended — so every distinct user that comes
//! and goes leaves nothing behind.

use std::sync::Arc;

use sluice_config::{LimitSpec, RedisConfig};

mod local;
mod metrics;
mod runtime;
mod shared;
mod terms;

pub use local::Limiter;
pub use metrics::{OutageLabels, StoreMetrics};
pub use runtime::{LimitSpecView, RuntimeLimits};
pub use shared::Reservation;
pub use terms::{CellKey, Crossing, Need, OnCrossings, RateInfo, Refusal, Scope, Standing, now_ns, window_bounds};

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

/// How often the sweep evicts the cells back at rest, at most: with few cells, a cell
/// outlives its last use by at most this much.
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// A sweep passes over every cell (a million take about a third of a second on the benchmark
/// machine, sharing its core with the request path), so the next one waits this many times as
/// long as the last took, if that is longer than [`SWEEP_EVERY`]: sweeping stays under 2 % of
/// one core however many cells there are (a million are then swept every ~15 s).
pub const SWEEP_BACKOFF: u32 = 50;
