//! A route's retry budget: retries are a bounded share of traffic.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use sluice_config::RetryPolicy;

/// A route's retry budget: every request deposits `budget_percent` of a retry, every retry
/// withdraws one, and `budget_min_per_s` more are allowed per second; at most ten seconds'
/// worth accumulates. So retries never exceed that share of traffic, and a sick backend gets
/// no retry storm.
#[derive(Debug, Default)]
pub struct RetryBudget {
    /// Thousandths of a retry.
    milli: AtomicI64,
    /// Last time the per-second allowance was added (ms since `epoch`).
    refilled_ms: AtomicU64,
    epoch: std::sync::OnceLock<Instant>,
}

impl RetryBudget {
    fn cap(p: &RetryPolicy) -> i64 {
        i64::from(p.budget_min_per_s.max(1)) * 10_000 + i64::from(p.budget_percent) * 100
    }

    /// A request arrived.
    pub fn deposit(&self, p: &RetryPolicy) {
        let cap = Self::cap(p);
        let add = i64::from(p.budget_percent) * 10;
        let _ = self
            .milli
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| Some((m + add).min(cap)));
    }

    /// Takes one retry from the budget; `false` if there is none.
    pub fn withdraw(&self, p: &RetryPolicy, now: Instant) -> bool {
        // The budget starts with one second's minimum allowance.
        let epoch = *self.epoch.get_or_init(|| now - std::time::Duration::from_secs(1));
        let now_ms = now.saturating_duration_since(epoch).as_millis() as u64;
        let last = self.refilled_ms.swap(now_ms, Ordering::Relaxed);
        let refill = (now_ms.saturating_sub(last) as i64) * i64::from(p.budget_min_per_s);
        let cap = Self::cap(p);
        self.milli
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| {
                let m = (m + refill).min(cap);
                (m >= 1000).then_some(m - 1000)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_budget_allows_its_share_and_the_minimum_rate() {
        let p = RetryPolicy {
            backoff: Duration::ZERO,
            backoff_max: Duration::ZERO,
            budget_percent: 20,
            budget_min_per_s: 0,
        };
        let b = RetryBudget::default();
        let t = Instant::now() + Duration::from_secs(5);
        let mut retries = 0;
        for _ in 0..1000 {
            b.deposit(&p);
            if b.withdraw(&p, t) {
                retries += 1;
            }
        }
        assert_eq!(retries, 200, "a fifth of the requests");
        let p = RetryPolicy {
            budget_percent: 0,
            budget_min_per_s: 5,
            ..p
        };
        let b = RetryBudget::default();
        let first = (0..100).filter(|_| b.withdraw(&p, t)).count();
        assert_eq!(first, 5, "one second's allowance to start with");
        let allowed = (0..100).filter(|_| b.withdraw(&p, t + Duration::from_secs(2))).count();
        assert_eq!(allowed, 10, "five a second, over two seconds");
    }
}
