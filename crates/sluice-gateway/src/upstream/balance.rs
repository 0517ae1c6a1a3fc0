//! Which deployment an attempt goes to, and whether a retry may happen at all.
//!
//! `ModelRuntime::pick` leaves out deployments at their concurrency limit, those already tried
//! by this request (while others remain) and those whose breaker is shut — unless more than `max_ejected_percent` of the pool
//! (and more than one) is shut, in which case breakers are ignored rather than failing
//! everything (panic mode) — then applies the alias's strategy.

use std::sync::atomic::Ordering;
use std::time::Instant;

use rand::Rng;
use sluice_config::{Balance, BreakerConfig, GeoConfig};

use crate::state::{DeploymentRuntime, ModelRuntime};
use crate::upstream::health::{BreakerState, Gate, ProbeSlot};

impl ModelRuntime {
    /// The deployment (index into the snapshot's) for the next attempt, with its probe slot
    /// when its breaker is half-open (hold it for the attempt), or `None` when every
    /// candidate's breaker is shut and panic mode does not apply.
    pub fn pick(
        &self,
        deployments: &[DeploymentRuntime],
        tried: &[usize],
        breaker: &BreakerConfig,
        now: Instant,
        geo: Option<(&str, &GeoConfig)>,
    ) -> Option<(usize, ProbeSlot)> {
        let n = self.deployments.len();
        if let Some((region, cfg)) = geo
            && self.deployments.iter().any(|&d| deployments[d].geo.is_some())
            && let Some(d) = self.pick_by_region(deployments, tried, breaker, now, region, cfg)
        {
            return Some(d);
        }
        // The common case: a first attempt with every breaker closed — no allocation.
        if tried.is_empty()
            && self
                .deployments
                .iter()
                .all(|&d| gate(&deployments[d], breaker, now) == Gate::Pass)
        {
            let i = self.choose(deployments, n, &|i| (self.deployments[i], self.weights[i]), true, now);
            return Some((self.deployments[i], ProbeSlot::none()));
        }
        let fresh: Vec<(usize, u32)> = self
            .deployments
            .iter()
            .zip(&self.weights)
            .filter(|(d, _)| !tried.contains(d))
            .map(|(d, w)| (*d, *w))
            .collect();
        let candidates = if fresh.is_empty() {
            self.deployments
                .iter()
                .copied()
                .zip(self.weights.iter().copied())
                .collect()
        } else {
            fresh
        };
        let gates: Vec<Gate> = candidates
            .iter()
            .map(|(d, _)| gate(&deployments[*d], breaker, now))
            .collect();
        // Half-open members count as out too: they take only their probes.
        let shut = self
            .deployments
            .iter()
            .filter(|d| deployments[**d].health.state() != BreakerState::Closed)
            .count();
        // At least one may always be out (so a one-deployment alias still has a breaker).
        let may_be_out = (n * breaker.max_ejected_percent as usize / 100).max(1);
        let panic = shut > may_be_out;
        let with = |ok: &dyn Fn(Gate) -> bool| -> Vec<(usize, u32, Gate)> {
            candidates
                .iter()
                .zip(&gates)
                .filter(|(_, g)| ok(**g))
                .map(|(c, g)| (c.0, c.1, *g))
                .collect()
        };
        // Healthy (or probing) first; then those paused by a Retry-After; in panic mode, any.
        let mut open = with(&|g| matches!(g, Gate::Pass | Gate::Probe));
        if open.is_empty() {
            open = with(&|g| g == Gate::Paused);
        }
        if open.is_empty() && panic {
            open = with(&|g| g != Gate::Full);
        }
        self.take_one(deployments, open, tried.is_empty(), breaker, now, panic)
    }

    /// Chooses among `open` by the strategy; a half-open one must get a probe slot, else the
    /// next choice is made without it. In panic mode breakers are not asked.
    fn take_one(
        &self,
        deployments: &[DeploymentRuntime],
        mut open: Vec<(usize, u32, Gate)>,
        first: bool,
        breaker: &BreakerConfig,
        now: Instant,
        panic: bool,
    ) -> Option<(usize, ProbeSlot)> {
        while !open.is_empty() {
            let i = self.choose(deployments, open.len(), &|i| (open[i].0, open[i].1), first, now);
            let (d, _, gate) = open[i];
            if panic || gate != Gate::Probe {
                return Some((d, ProbeSlot::none()));
            }
            if let Some(slot) = deployments[d].health.take_probe(breaker) {
                return Some((d, slot));
            }
            open.remove(i);
        }
        None
    }

    /// The caller's region first, then its failover regions in order: the first with a
    /// deployment not yet tried whose breaker lets it through. `None`: none of them has one.
    fn pick_by_region(
        &self,
        deployments: &[DeploymentRuntime],
        tried: &[usize],
        breaker: &BreakerConfig,
        now: Instant,
        region: &str,
        cfg: &GeoConfig,
    ) -> Option<(usize, ProbeSlot)> {
        let order = std::iter::once(region).chain(cfg.failover.get(region).into_iter().flatten().map(String::as_str));
        for r in order {
            let tier: Vec<(usize, u32, Gate)> = self
                .deployments
                .iter()
                .zip(&self.weights)
                .filter(|(d, _)| !tried.contains(d) && deployments[**d].geo.as_deref() == Some(r))
                .map(|(d, w)| (*d, *w, gate(&deployments[*d], breaker, now)))
                .filter(|(_, _, g)| matches!(g, Gate::Pass | Gate::Probe))
                .collect();
            if let Some(picked) = self.take_one(deployments, tier, tried.is_empty(), breaker, now, false) {
                return Some(picked);
            }
        }
        None
    }

    /// An index below `n` by the alias's strategy; `at(i)` is candidate `i`'s deployment and
    /// weight.
    fn choose(
        &self,
        deployments: &[DeploymentRuntime],
        n: usize,
        at: &dyn Fn(usize) -> (usize, u32),
        first: bool,
        now: Instant,
    ) -> usize {
        if n <= 1 {
            return 0;
        }
        let turn = if first {
            self.cursor.fetch_add(1, Ordering::Relaxed)
        } else {
            self.cursor.load(Ordering::Relaxed)
        };
        match self.balance {
            Balance::RoundRobin => turn % n,
            Balance::Weighted => {
                let total: u64 = (0..n).map(|i| u64::from(at(i).1)).sum();
                let mut pos = (turn as u64) % total.max(1);
                for i in 0..n {
                    let w = u64::from(at(i).1);
                    if pos < w {
                        return i;
                    }
                    pos -= w;
                }
                0
            }
            Balance::LeastOutstanding => {
                // The fewest in flight; ties go round the pool.
                (0..n)
                    .map(|k| (turn + k) % n)
                    .min_by_key(|&i| deployments[at(i).0].health.outstanding())
                    .unwrap_or(0)
            }
            Balance::Capacity => {
                // The emptiest model server (its own queue, then its KV cache), then the fewest
                // in flight from here; ties go round the pool.
                (0..n)
                    .map(|k| (turn + k) % n)
                    .min_by_key(|&i| {
                        let h = &deployments[at(i).0].health;
                        (h.reported_load(), h.outstanding())
                    })
                    .unwrap_or(0)
            }
            Balance::Latency => {
                // A member not chosen for a while takes this request, so a slow one is measured
                // again on a schedule (and comes back when it recovers); otherwise power of two
                // choices on peak-EWMA latency × (in flight + 1).
                let health = |i: usize| &deployments[at(i).0].health;
                if let Some(i) = (0..n).find(|&i| health(i).claim_reprobe(now, REPROBE_EVERY)) {
                    return i;
                }
                let mut rng = rand::rng();
                let a = rng.random_range(0..n);
                let b = (a + rng.random_range(1..n)) % n;
                let chosen = if health(a).cost() <= health(b).cost() { a } else { b };
                health(chosen).mark_chosen(now);
                chosen
            }
        }
    }
}

/// How long the latency balancer goes without sending a member a request: at most one request
/// per member per period goes to a member the costs would pass over.
const REPROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether `d` may take an attempt: its breaker's gate, unless it is at its concurrency limit.
fn gate(d: &DeploymentRuntime, breaker: &BreakerConfig, now: Instant) -> Gate {
    if d.health.full() {
        Gate::Full
    } else {
        d.health.gate(breaker, now)
    }
}
