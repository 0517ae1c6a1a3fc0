//! Live health of each deployment, kept across config reloads (keyed by deployment name):
//! requests in flight, a peak-EWMA of latency, and a circuit breaker.
//!
//! The breaker is passive outlier ejection and a circuit breaker in one: it opens after
//! `consecutive_failures` in a row, or when failures reach `failure_ratio_percent` of at least
//! `min_requests` in the current `window`; it stays open for `open`, doubled with each repeat up
//! to `max_open`; then it lets `half_open_probes` requests through, closing when they succeed
//! and opening again (for longer) when one fails. A 429 or 503 with `Retry-After` keeps the
//! deployment out until then without counting as a failure.

use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_config::BreakerConfig;

/// Breaker states, as the `sluice_breaker_state` gauge shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
struct Inner {
    /// Peak-EWMA latency in µs, and when it was last updated.
    ewma_us: f64,
    ewma_at: Instant,
    consecutive: u32,
    window_start: Instant,
    window_total: u32,
    window_failed: u32,
    /// Open until then (also set by a Retry-After).
    open_until: Option<Instant>,
    /// Times opened since it was last closed for good.
    ejections: u32,
    /// Half-open probes in flight, and those that succeeded, in the current half-open period.
    probes: u32,
    probe_successes: u32,
    half_open: bool,
    /// Counts half-open periods, so a probe slot from an earlier one gives nothing back.
    probe_period: u64,
}

/// What the breaker lets through now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Pass,
    /// Half-open, with a probe slot free.
    Probe,
    /// The upstream asked for a pause (`Retry-After`): use only when nothing else is left.
    Paused,
    Shut,
    /// At its concurrency limit.
    Full,
}

/// How an attempt ended, as far as health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Connect error, timeout, 5xx, overloaded, dropped or malformed answer.
    Failure,
    /// Neither (the caller's own mistake, e.g. a 400): the deployment answered properly.
    Neutral,
}

/// A state change, for metrics and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub to: BreakerState,
}

/// Time constant of the latency average.
const EWMA_DECAY: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct DeploymentHealth {
    outstanding: AtomicI64,
    /// Most in flight at once (`deployments[].max_concurrency`); 0: no limit.
    limit: AtomicI64,
    /// Told when a request ends on a deployment with a limit.
    freed: tokio::sync::Notify,
    /// The model server's own load, as last scraped (waiting × 1000 + KV-cache use in ‰).
    reported: std::sync::atomic::AtomicU64,
    state: AtomicU8,
    /// When the latency balancer last chose it (ns since [`epoch`] + 1; 0: never).
    chosen: AtomicU64,
    /// Whether `Inner::open_until` is set (an open breaker or a pause), mirrored under the lock:
    /// the balancer's pick reads it, and only a member that is not plainly closed takes the lock.
    barred: std::sync::atomic::AtomicBool,
    /// `Inner::ewma_us`'s bits, mirrored under the lock, for the balancer's cost without it.
    ewma_bits: AtomicU64,
    inner: Mutex<Inner>,
}

/// The process's reference instant for times kept in atomics.
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn stamp(now: Instant) -> u64 {
    now.saturating_duration_since(epoch()).as_nanos() as u64 + 1
}

impl Default for DeploymentHealth {
    fn default() -> Self {
        // Set before any time this deployment will be asked about.
        let _ = epoch();
        let now = Instant::now();
        DeploymentHealth {
            outstanding: AtomicI64::new(0),
            limit: AtomicI64::new(0),
            freed: tokio::sync::Notify::new(),
            reported: std::sync::atomic::AtomicU64::new(0),
            state: AtomicU8::new(BreakerState::Closed as u8),
            chosen: AtomicU64::new(0),
            barred: std::sync::atomic::AtomicBool::new(false),
            ewma_bits: AtomicU64::new(0f64.to_bits()),
            inner: Mutex::new(Inner {
                ewma_us: 0.0,
                ewma_at: now,
                consecutive: 0,
                window_start: now,
                window_total: 0,
                window_failed: 0,
                open_until: None,
                ejections: 0,
                probes: 0,
                probe_successes: 0,
                half_open: false,
                probe_period: 0,
            }),
        }
    }
}

/// A half-open breaker's probe slot, held for one attempt; dropping it gives the slot back.
/// Empty when the breaker was not half-open (nothing to give back).
#[derive(Debug)]
#[must_use = "dropping the slot gives it back at once"]
pub struct ProbeSlot(Option<(Arc<DeploymentHealth>, u64)>);

impl ProbeSlot {
    /// No slot: the breaker was not asked (closed, or panic mode).
    pub fn none() -> ProbeSlot {
        ProbeSlot(None)
    }

    /// Whether this is a half-open breaker's probe.
    pub fn is_probe(&self) -> bool {
        self.0.is_some()
    }
}

impl Drop for ProbeSlot {
    fn drop(&mut self) {
        if let Some((health, period)) = self.0.take() {
            health.give_back(period);
        }
    }
}

/// A request in flight on a deployment; dropping it ends it.
#[derive(Debug)]
pub struct InFlight(Arc<DeploymentHealth>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::AcqRel);
        if self.0.limit.load(Ordering::Relaxed) > 0 {
            self.0.freed.notify_waiters();
        }
    }
}

impl DeploymentHealth {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn outstanding(&self) -> i64 {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// The model server's reported load (lower is emptier); 0 until scraped.
    pub fn reported_load(&self) -> u64 {
        self.reported.load(Ordering::Relaxed)
    }

    pub fn set_reported_load(&self, load: u64) {
        self.reported.store(load, Ordering::Relaxed);
    }

    pub fn state(&self) -> BreakerState {
        match self.state.load(Ordering::Relaxed) {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    /// Sets the concurrency limit (from the current config; `None`: no limit).
    pub fn set_limit(&self, limit: Option<u32>) {
        self.limit.store(limit.map_or(0, i64::from), Ordering::Relaxed);
    }

    /// Its concurrency limit, if it has one.
    pub fn limit(&self) -> Option<i64> {
        Some(self.limit.load(Ordering::Relaxed)).filter(|l| *l > 0)
    }

    /// Whether it is at its concurrency limit.
    pub fn full(&self) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        limit > 0 && self.outstanding() >= limit
    }

    /// A place in flight, unless the deployment is at its concurrency limit.
    pub fn try_start(self: &Arc<Self>) -> Option<InFlight> {
        let limit = self.limit.load(Ordering::Relaxed);
        if limit <= 0 {
            self.outstanding.fetch_add(1, Ordering::AcqRel);
            return Some(InFlight(self.clone()));
        }
        self.outstanding
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1))
            .ok()
            .map(|_| InFlight(self.clone()))
    }

    /// A future told when a request ends here (register it, then check [`Self::full`]).
    pub fn freed(&self) -> tokio::sync::futures::Notified<'_> {
        self.freed.notified()
    }

    #[cfg(test)]
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Latency cost for the balancer: peak-EWMA (µs) times the requests in flight plus one.
    /// It does not decay while the deployment is idle: a slow member is measured again on a
    /// schedule ([`Self::claim_reprobe`]), not when chance brings it back.
    pub fn cost(&self) -> f64 {
        let ewma = f64::from_bits(self.ewma_bits.load(Ordering::Relaxed));
        (ewma + 1.0) * (self.outstanding() as f64 + 1.0)
    }

    /// Whether the latency balancer should send this request here because it has not chosen
    /// this deployment for `every` (or ever); true for one caller per period.
    pub fn claim_reprobe(&self, now: Instant, every: Duration) -> bool {
        let last = self.chosen.load(Ordering::Relaxed);
        let now = stamp(now);
        if last != 0 && now.saturating_sub(last) < every.as_nanos() as u64 {
            return false;
        }
        self.chosen
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// The latency balancer chose it.
    pub fn mark_chosen(&self, now: Instant) {
        self.chosen.store(stamp(now), Ordering::Relaxed);
    }

    pub fn ewma_ms(&self) -> f64 {
        f64::from_bits(self.ewma_bits.load(Ordering::Relaxed)) / 1000.0
    }

    /// Sets `open_until` (under the lock) and its mirror.
    fn set_open_until(&self, i: &mut Inner, until: Option<Instant>) {
        i.open_until = until;
        self.barred.store(until.is_some(), Ordering::Release);
    }

    pub fn ejections(&self) -> u32 {
        self.lock().ejections
    }

    /// Whether a request may go here now. An open breaker whose time is over turns half-open.
    pub fn gate(&self, cfg: &BreakerConfig, now: Instant) -> Gate {
        // Closed and not paused (every member, nearly always): no lock.
        if !self.barred.load(Ordering::Acquire) {
            return Gate::Pass;
        }
        let mut i = self.lock();
        match i.open_until {
            None => Gate::Pass,
            Some(until) if now < until && (i.ejections == 0 || !cfg.enabled) => Gate::Paused,
            Some(until) if now < until => Gate::Shut,
            Some(_) if !cfg.enabled || i.ejections == 0 => {
                // A Retry-After pause (not a breaker opening) is simply over.
                self.set_open_until(&mut i, None);
                Gate::Pass
            }
            Some(_) => {
                if !i.half_open {
                    i.half_open = true;
                    i.probes = 0;
                    i.probe_successes = 0;
                    i.probe_period += 1;
                    self.state.store(BreakerState::HalfOpen as u8, Ordering::Relaxed);
                }
                if i.probes + i.probe_successes < cfg.half_open_probes {
                    Gate::Probe
                } else {
                    Gate::Shut
                }
            }
        }
    }

    /// Takes one of a half-open breaker's probe slots (an empty slot when it is not half-open);
    /// `None` if they are all taken. The slot is given back when it is dropped, however the
    /// attempt ended: a success recorded meanwhile counts towards closing, a failure re-opens,
    /// anything else (the caller's 4xx, an upstream 429, the client gone) leaves it half-open
    /// with the slot free for the next request.
    pub fn take_probe(self: &Arc<Self>, cfg: &BreakerConfig) -> Option<ProbeSlot> {
        // Only a half-open breaker has slots (its state is written under the lock with it).
        if self.state() != BreakerState::HalfOpen {
            return Some(ProbeSlot::none());
        }
        let mut i = self.lock();
        if !i.half_open {
            return Some(ProbeSlot::none());
        }
        if i.probes + i.probe_successes < cfg.half_open_probes {
            i.probes += 1;
            Some(ProbeSlot(Some((self.clone(), i.probe_period))))
        } else {
            None
        }
    }

    fn give_back(&self, period: u64) {
        let mut i = self.lock();
        if i.half_open && i.probe_period == period {
            i.probes = i.probes.saturating_sub(1);
        }
    }

    /// When it would be available again (for waiting out an open breaker).
    pub fn open_until(&self) -> Option<Instant> {
        self.lock().open_until
    }

    /// The end of a pause the upstream asked for (`Retry-After`), if one is running.
    pub fn paused_until(&self, now: Instant) -> Option<Instant> {
        let i = self.lock();
        i.open_until.filter(|u| i.ejections == 0 && *u > now)
    }

    /// Records an attempt's outcome; returns a breaker transition if one happened.
    pub fn record(&self, cfg: &BreakerConfig, outcome: Outcome, latency: Duration, now: Instant) -> Option<Transition> {
        let mut i = self.lock();
        // Peak-EWMA: a slower sample is taken at once, a faster one blended in.
        let sample = latency.as_secs_f64() * 1e6;
        let idle = now.saturating_duration_since(i.ewma_at).as_secs_f64();
        let w = (-idle / EWMA_DECAY.as_secs_f64()).exp();
        i.ewma_us = if sample > i.ewma_us {
            sample
        } else {
            i.ewma_us * w + sample * (1.0 - w)
        };
        i.ewma_at = now;
        self.ewma_bits.store(i.ewma_us.to_bits(), Ordering::Relaxed);
        if !cfg.enabled || outcome == Outcome::Neutral {
            return None;
        }
        if now.saturating_duration_since(i.window_start) >= cfg.window {
            i.window_start = now;
            i.window_total = 0;
            i.window_failed = 0;
        }
        i.window_total += 1;
        let failed = outcome == Outcome::Failure;
        if failed {
            i.window_failed += 1;
            i.consecutive += 1;
        } else {
            i.consecutive = 0;
        }
        if i.half_open {
            if failed {
                return Some(self.open(&mut i, cfg, now));
            }
            i.probe_successes += 1;
            if i.probe_successes >= cfg.half_open_probes {
                i.half_open = false;
                self.set_open_until(&mut i, None);
                i.ejections = 0;
                i.consecutive = 0;
                i.window_start = now;
                i.window_total = 0;
                i.window_failed = 0;
                self.state.store(BreakerState::Closed as u8, Ordering::Relaxed);
                return Some(Transition {
                    to: BreakerState::Closed,
                });
            }
            return None;
        }
        let open = i.ejections > 0 && i.open_until.is_some_and(|u| now < u);
        let tripped = i.consecutive >= cfg.consecutive_failures
            || (i.window_total >= cfg.min_requests
                && u64::from(i.window_failed) * 100
                    >= u64::from(i.window_total) * u64::from(cfg.failure_ratio_percent));
        if failed && tripped && !open {
            return Some(self.open(&mut i, cfg, now));
        }
        None
    }

    fn open(&self, i: &mut Inner, cfg: &BreakerConfig, now: Instant) -> Transition {
        let factor = 1u32 << i.ejections.min(16);
        let open_for = cfg.open.saturating_mul(factor).min(cfg.max_open);
        self.set_open_until(i, Some(now + open_for));
        i.ejections = i.ejections.saturating_add(1);
        i.half_open = false;
        i.consecutive = 0;
        i.window_start = now;
        i.window_total = 0;
        i.window_failed = 0;
        self.state.store(BreakerState::Open as u8, Ordering::Relaxed);
        Transition { to: BreakerState::Open }
    }

    /// The upstream asked for a pause (`Retry-After`): out of the pool until then.
    pub fn pause(&self, until: Instant) {
        let mut i = self.lock();
        if i.open_until.is_none_or(|u| u < until) {
            self.set_open_until(&mut i, Some(until));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            enabled: true,
            consecutive_failures: 3,
            failure_ratio_percent: 50,
            window: Duration::from_secs(10),
            min_requests: 10,
            open: Duration::from_millis(100),
            max_open: Duration::from_millis(350),
            half_open_probes: 2,
            max_ejected_percent: 50,
        }
    }

    #[test]
    fn opens_half_opens_and_closes_with_growing_open_times() {
        let h = Arc::new(DeploymentHealth::default());
        let c = cfg();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        assert!(h.record(&c, Outcome::Failure, ms(1), t0).is_none());
        assert!(h.record(&c, Outcome::Failure, ms(1), t0).is_none());
        let t = h.record(&c, Outcome::Failure, ms(1), t0).unwrap();
        assert_eq!(t.to, BreakerState::Open);
        assert_eq!(h.gate(&c, t0 + ms(50)), Gate::Shut);
        // After 100 ms: two probes, then nothing until they answer.
        assert_eq!(h.gate(&c, t0 + ms(101)), Gate::Probe);
        assert_eq!(h.state(), BreakerState::HalfOpen);
        let (p1, p2) = (h.take_probe(&c).unwrap(), h.take_probe(&c).unwrap());
        assert!(p1.is_probe() && p2.is_probe());
        assert!(h.take_probe(&c).is_none());
        assert_eq!(h.gate(&c, t0 + ms(101)), Gate::Shut);
        // A probe fails: open again, for twice as long.
        assert_eq!(
            h.record(&c, Outcome::Failure, ms(1), t0 + ms(110)).unwrap().to,
            BreakerState::Open
        );
        drop((p1, p2));
        assert_eq!(h.gate(&c, t0 + ms(300)), Gate::Shut);
        assert_eq!(h.gate(&c, t0 + ms(311)), Gate::Probe);
        let (p1, p2) = (h.take_probe(&c).unwrap(), h.take_probe(&c).unwrap());
        assert!(h.record(&c, Outcome::Success, ms(1), t0 + ms(312)).is_none());
        drop(p1);
        assert!(h.take_probe(&c).is_none(), "one succeeded, one in flight");
        assert_eq!(
            h.record(&c, Outcome::Success, ms(1), t0 + ms(313)).unwrap().to,
            BreakerState::Closed
        );
        drop(p2);
        assert_eq!(h.gate(&c, t0 + ms(314)), Gate::Pass);
        assert!(!h.take_probe(&c).unwrap().is_probe(), "closed: nothing to hold");
    }

    #[test]
    fn a_probe_that_ends_neither_way_gives_its_slot_back() {
        let h = Arc::new(DeploymentHealth::default());
        let c = BreakerConfig {
            half_open_probes: 1,
            ..cfg()
        };
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        for _ in 0..3 {
            h.record(&c, Outcome::Failure, ms(1), t0);
        }
        assert_eq!(h.gate(&c, t0 + ms(101)), Gate::Probe);
        // The caller's own 400 (or an upstream 429): neither closes nor re-opens.
        let slot = h.take_probe(&c).unwrap();
        assert_eq!(h.gate(&c, t0 + ms(102)), Gate::Shut);
        assert!(h.record(&c, Outcome::Neutral, ms(1), t0 + ms(102)).is_none());
        drop(slot);
        assert_eq!(h.state(), BreakerState::HalfOpen);
        assert_eq!(h.gate(&c, t0 + ms(103)), Gate::Probe, "the slot is free again");
        // The client went away: the attempt is dropped without an outcome.
        drop(h.take_probe(&c).unwrap());
        assert_eq!(h.gate(&c, t0 + ms(104)), Gate::Probe);
        // A slot from an earlier half-open period gives nothing back to this one.
        let stale = h.take_probe(&c).unwrap();
        h.record(&c, Outcome::Failure, ms(1), t0 + ms(105));
        assert_eq!(h.gate(&c, t0 + ms(306)), Gate::Probe);
        let current = h.take_probe(&c).unwrap();
        drop(stale);
        assert!(h.take_probe(&c).is_none(), "the stale slot freed nothing");
        assert_eq!(
            h.record(&c, Outcome::Success, ms(1), t0 + ms(307)).unwrap().to,
            BreakerState::Closed
        );
        drop(current);
    }

    #[test]
    fn a_failure_ratio_opens_it_too() {
        let h = DeploymentHealth::default();
        let c = cfg();
        let t0 = Instant::now();
        let mut opened = false;
        for k in 0..11 {
            let outcome = if k % 2 == 0 { Outcome::Failure } else { Outcome::Success };
            opened |= h.record(&c, outcome, Duration::from_millis(1), t0).is_some();
        }
        assert!(opened, "6 of 11 failed, never 5 in a row");
    }

    #[test]
    fn a_member_not_chosen_for_a_period_is_reprobed_once_per_period() {
        let h = DeploymentHealth::default();
        let every = Duration::from_secs(1);
        let t0 = Instant::now();
        assert!(h.claim_reprobe(t0, every), "never chosen: due at once");
        assert!(!h.claim_reprobe(t0, every), "one caller per period");
        assert!(!h.claim_reprobe(t0 + Duration::from_millis(999), every));
        assert!(h.claim_reprobe(t0 + Duration::from_millis(1000), every));
        h.mark_chosen(t0 + Duration::from_millis(1500));
        assert!(
            !h.claim_reprobe(t0 + Duration::from_millis(2400), every),
            "chosen meanwhile"
        );
        assert!(h.claim_reprobe(t0 + Duration::from_millis(2500), every));
    }

    #[test]
    fn peak_ewma_takes_a_slow_sample_at_once() {
        let h = DeploymentHealth::default();
        let c = cfg();
        let t0 = Instant::now();
        h.record(&c, Outcome::Success, Duration::from_millis(10), t0);
        h.record(&c, Outcome::Success, Duration::from_millis(200), t0);
        assert!(h.ewma_ms() >= 199.0);
    }
}
