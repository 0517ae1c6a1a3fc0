//! The alert rules' evaluator: one task that keeps each model's and tenant's recent traffic in
//! time buckets (requests, 5xx answers, cost, a latency histogram), evaluates every rule each
//! `alerts.every_ms`, and sends a rule's breach once and its recovery once — once across
//! instances sharing Redis: the first to claim `{prefix}alert:{rule}:{group}` (SET NX) sends
//! the breach, the first to delete it sends the recovery.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::json;
use sluice_config::{AlertBy, AlertMetric, AlertRule, AlertsConfig};
use sluice_store::redis::RedisLink;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::feed::Observation;
use super::{Alert, Payload};
use crate::Gateway;

/// Buckets per shortest window (its resolution), and the most a group keeps.
const BUCKETS_PER_WINDOW: u64 = 20;
const MAX_BUCKETS: usize = 1_200;
/// Latency bins: the ledger analytics' (`sluice_store::ledger::analytics::LatencyHistogram`),
/// counted in `u32`s here (a group keeps up to 1 200 buckets).
const BINS: usize = sluice_store::ledger::analytics::BINS;

fn bin_of(latency_us: u64) -> usize {
    sluice_store::ledger::analytics::LatencyHistogram::bin(latency_us)
}

fn bin_ms(i: usize) -> f64 {
    sluice_store::ledger::analytics::LatencyHistogram::edge_ms(i)
}

#[derive(Clone)]
struct Bucket {
    at: u64,
    requests: u64,
    errors: u64,
    cost_micros: u64,
    latency: [u32; BINS],
}

impl Bucket {
    fn new(at: u64) -> Bucket {
        Bucket {
            at,
            requests: 0,
            errors: 0,
            cost_micros: 0,
            latency: [0; BINS],
        }
    }
}

/// One group's recent buckets, oldest first.
#[derive(Default)]
struct Series(VecDeque<Bucket>);

impl Series {
    fn add(&mut self, bucket: u64, o: &Observation) {
        if self.0.back().is_none_or(|b| b.at != bucket) {
            self.0.push_back(Bucket::new(bucket));
            if self.0.len() > MAX_BUCKETS {
                self.0.pop_front();
            }
        }
        if let Some(b) = self.0.back_mut() {
            b.requests += 1;
            b.errors += u64::from(o.error);
            b.cost_micros += o.cost_micros;
            b.latency[bin_of(o.latency_us)] += 1;
        }
    }

    /// The buckets from `since` on, merged.
    fn since(&self, since: u64) -> Bucket {
        let mut sum = Bucket::new(since);
        for b in self.0.iter().filter(|b| b.at >= since) {
            sum.requests += b.requests;
            sum.errors += b.errors;
            sum.cost_micros += b.cost_micros;
            for (s, n) in sum.latency.iter_mut().zip(b.latency) {
                *s += n;
            }
        }
        sum
    }
}

/// The metric's value over `sum` (`None`: too few requests to tell).
fn value(rule: &AlertRule, sum: &Bucket) -> Option<f64> {
    match rule.metric {
        AlertMetric::SpendPerHour => {
            let hours = rule.window.as_secs_f64() / 3600.0;
            Some(sum.cost_micros as f64 / 1e6 / hours)
        }
        _ if sum.requests < rule.min_requests => None,
        AlertMetric::ErrorRate => Some(sum.errors as f64 / sum.requests as f64),
        AlertMetric::LatencyP95Ms => {
            let want = (sum.requests as f64 * 0.95).ceil() as u64;
            let mut seen = 0u64;
            for (i, n) in sum.latency.iter().enumerate() {
                seen += u64::from(*n);
                if seen >= want {
                    return Some(bin_ms(i));
                }
            }
            Some(bin_ms(BINS - 1))
        }
    }
}

/// The bucket width for a set of rules: a twentieth of the shortest window.
fn width_ms(cfg: &AlertsConfig) -> u64 {
    let shortest = cfg
        .rules
        .iter()
        .map(|r| r.window.as_millis() as u64)
        .min()
        .unwrap_or(60_000);
    (shortest / BUCKETS_PER_WINDOW).max(50)
}

/// Where breaches are claimed so that one instance sends each.
struct Claims {
    redis: Option<(RedisLink, String)>,
}

impl Claims {
    fn key(&self, prefix: &str, rule: &str, by: AlertBy, group: &str) -> String {
        format!("{prefix}alert:{rule}:{}:{group}", by.as_str())
    }

    /// Whether this instance sends the breach (the first to claim it).
    async fn claim(&self, rule: &str, by: AlertBy, group: &str, ttl: Duration) -> bool {
        let Some((link, prefix)) = &self.redis else { return true };
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(prefix, rule, by, group))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis() as u64);
        match link.query::<Option<String>>(&cmd).await {
            Ok(set) => set.is_some(),
            // Redis down: better a duplicate than a missed alert.
            Err(_) => true,
        }
    }

    /// Keeps a claim alive while the breach lasts.
    async fn renew(&self, rule: &str, by: AlertBy, group: &str, ttl: Duration) {
        if let Some((link, prefix)) = &self.redis {
            let mut cmd = redis::cmd("PEXPIRE");
            cmd.arg(self.key(prefix, rule, by, group)).arg(ttl.as_millis() as u64);
            let _ = link.query::<i64>(&cmd).await;
        }
    }

    /// Whether this instance sends the recovery (the first to clear the claim).
    async fn clear(&self, rule: &str, by: AlertBy, group: &str) -> bool {
        let Some((link, prefix)) = &self.redis else { return true };
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.key(prefix, rule, by, group));
        match link.query::<i64>(&cmd).await {
            Ok(n) => n == 1,
            Err(_) => true,
        }
    }
}

/// Starts the evaluator over the feed's observations.
pub fn start(gw: Weak<Gateway>, mut rx: mpsc::Receiver<Observation>, redis: Option<(RedisLink, String)>) {
    tokio::spawn(async move {
        let claims = Claims { redis };
        let epoch = Instant::now();
        let mut series: HashMap<(AlertBy, Arc<str>), Series> = HashMap::new();
        let mut firing: HashSet<(String, AlertBy, Arc<str>)> = HashSet::new();
        let mut batch = Vec::with_capacity(1024);
        let mut next = Instant::now();
        loop {
            let evaluate = tokio::select! {
                n = rx.recv_many(&mut batch, 1024) => {
                    if n == 0 {
                        return;
                    }
                    false
                }
                _ = tokio::time::sleep_until(next) => true,
            };
            let Some(gw) = gw.upgrade() else { return };
            let snap = gw.snapshot();
            let cfg = &snap.config.alerts;
            let width = width_ms(cfg);
            let now_ms = epoch.elapsed().as_millis() as u64;
            let bucket = now_ms / width * width;
            for o in batch.drain(..) {
                if let Some(m) = &o.model {
                    series.entry((AlertBy::Model, m.clone())).or_default().add(bucket, &o);
                }
                if let Some(t) = &o.tenant {
                    series.entry((AlertBy::Tenant, t.clone())).or_default().add(bucket, &o);
                }
            }
            if !evaluate {
                continue;
            }
            next = Instant::now() + cfg.every;
            let Some(hook) = snap.config.budget_alerts.as_ref() else {
                continue;
            };
            let longest = cfg.rules.iter().map(|r| r.window.as_millis() as u64).max().unwrap_or(0);
            // Groups with nothing in the longest window are forgotten (a firing one recovers first).
            series.retain(|key, s| {
                let live = s.0.back().is_some_and(|b| b.at + longest >= now_ms);
                live || firing.iter().any(|(_, by, g)| (*by, g) == (key.0, &key.1))
            });
            for rule in &cfg.rules {
                let since = now_ms.saturating_sub(rule.window.as_millis() as u64);
                let ttl = rule.window * 2 + cfg.every * 3;
                for ((by, group), s) in series.iter().filter(|((by, _), _)| *by == rule.by) {
                    let sum = s.since(since);
                    let v = value(rule, &sum);
                    let breached = v.is_some_and(|v| v > rule.above);
                    let id = (rule.name.clone(), *by, group.clone());
                    let was = firing.contains(&id);
                    let payload = |kind: &str| {
                        json!({
                            "type": kind,
                            "rule": rule.name,
                            "metric": rule.metric.as_str(),
                            "by": by.as_str(),
                            "group": &**group,
                            "value": v,
                            "threshold": rule.above,
                            "window_ms": rule.window.as_millis() as u64,
                            "requests": sum.requests,
                            "errors": sum.errors,
                        })
                    };
                    match (was, breached) {
                        (false, true) => {
                            firing.insert(id);
                            if claims.claim(&rule.name, *by, group, ttl).await {
                                tracing::warn!(rule = %rule.name, group = %group, value = ?v, "alert firing");
                                gw.alerts.send(Alert {
                                    what: Payload::Rule(payload("alert_firing")),
                                    url: hook.url.clone(),
                                    secret: hook.secret.as_ref().map(|s| s.expose().to_owned()),
                                });
                            }
                        }
                        (true, true) => claims.renew(&rule.name, *by, group, ttl).await,
                        (true, false) => {
                            firing.remove(&id);
                            if claims.clear(&rule.name, *by, group).await {
                                tracing::info!(rule = %rule.name, group = %group, "alert recovered");
                                gw.alerts.send(Alert {
                                    what: Payload::Rule(payload("alert_recovered")),
                                    url: hook.url.clone(),
                                    secret: hook.secret.as_ref().map(|s| s.expose().to_owned()),
                                });
                            }
                        }
                        (false, false) => {}
                    }
                }
            }
            // Rules removed by a reload: their firing alerts are dropped silently.
            firing.retain(|(name, _, _)| cfg.rules.iter().any(|r| &r.name == name));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(metric: AlertMetric) -> AlertRule {
        AlertRule {
            name: "r".into(),
            metric,
            by: AlertBy::Model,
            window: Duration::from_secs(60),
            above: 0.0,
            min_requests: 4,
        }
    }

    fn obs(error: bool, latency_us: u64, cost_micros: u64) -> Observation {
        Observation {
            model: Some(Arc::from("m")),
            tenant: None,
            error,
            latency_us,
            cost_micros,
        }
    }

    #[test]
    fn metrics_over_the_window() {
        let mut s = Series::default();
        for i in 0..20 {
            // 1 in 4 fails; latencies 10 ms, except one of 2 s.
            let latency = if i == 7 { 2_000_000 } else { 10_000 };
            s.add(1_000 + i * 10, &obs(i % 4 == 0, latency, 500_000));
        }
        let sum = s.since(0);
        assert_eq!((sum.requests, sum.errors), (20, 5));
        assert_eq!(value(&rule(AlertMetric::ErrorRate), &sum), Some(0.25));
        // p95 of 20: the 19th — 10 ms (within the bin's 30 %), not the one slow request.
        let p95 = value(&rule(AlertMetric::LatencyP95Ms), &sum).unwrap();
        assert!((10.0..=13.0).contains(&p95), "{p95}");
        // 10 currency units over a one-minute window: 600 an hour.
        assert_eq!(value(&rule(AlertMetric::SpendPerHour), &sum), Some(600.0));
        // Too few requests to tell a rate.
        let few = s.since(1_000 + 18 * 10);
        assert_eq!(few.requests, 2);
        assert_eq!(value(&rule(AlertMetric::ErrorRate), &few), None);
        // Bins cover 100 µs to minutes.
        assert_eq!(bin_of(50), 0);
        assert!(bin_ms(bin_of(2_000_000)) >= 2_000.0);
    }
}
