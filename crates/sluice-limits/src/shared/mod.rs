//! Limits shared by several instances, in Redis (one node or a cluster).
//!
//! An admission is one Lua script per hash slot: on one node every cell shares the node, so it is
//! one round trip; on a cluster each scope (key, team, tenant, model, route) is its own hash tag,
//! and a refusal by a later slot's script releases what the earlier ones took. A settlement is
//! one script per slot too, and none at all when nothing changed (a request-count limit).
//!
//! Rates are GCRA on Redis's own clock (the instances' clocks may differ); quotas are counters
//! whose key names their calendar window, so a new window starts from zero by itself.
//!
//! When the store does not answer within its timeout, it counts as down: one log line, and each
//! limit's outage policy decides (count locally at limit ÷ instances, admit, or refuse) without
//! waiting on the store again until a background probe finds it back — one more log line.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use sluice_config::{LimitSpec, Metric, OutagePolicy, RedisConfig};
use sluice_store::redis::{RedisLink, RedisTarget};

mod wire;

use crate::local::{self, Limiter};
use crate::metrics::StoreMetrics;
use crate::terms::{Crossing, NS, Need, OnCrossings, RateInfo, Refusal, Scope, Standing, merge, now_ns, window_bounds};
use wire::{Answer, StoreError, escape, ints, metric_str, now_us, slot, window_str};

const PROBE_EVERY: Duration = Duration::from_millis(250);
/// How often an instance announces itself in the store; one silent for three is gone.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// Announces an instance (a member of a sorted set scored by Redis's clock in ms), drops those
/// silent for ARGV[2] ms, and counts the rest.
const HEARTBEAT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return redis.call('ZCARD', KEYS[1])
";
const SETTLE_ATTEMPTS: u32 = 5;

/// One limit in a shared reservation.
#[derive(Debug, Clone)]
struct Item {
    key: String,
    scope: Scope,
    id: Arc<str>,
    spec: LimitSpec,
    units: u64,
    /// A rate's period in µs, or a quota window's end in unix seconds.
    x: i64,
    window_start: i64,
}

/// The cells of one hash slot: one script call.
#[derive(Debug, Clone)]
struct Group {
    items: Vec<Item>,
}

pub struct SharedLimiter {
    config: RedisConfig,
    link: RedisLink,
    up: AtomicBool,
    down_since: std::sync::Mutex<Option<Instant>>,
    /// Redis's clock minus ours, in µs.
    skew_us: AtomicI64,
    /// Counts while the store is down, at limit ÷ instances.
    fallback: Limiter,
    /// Instances sharing the store: configured, or the last count of heartbeats.
    instances: std::sync::atomic::AtomicU64,
    /// This instance's name in the heartbeat set.
    me: String,
    heartbeat_script: redis::Script,
    metrics: StoreMetrics,
    admit_script: redis::Script,
    settle_script: redis::Script,
}

impl std::fmt::Debug for SharedLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimiter")
            .field("config", &self.config)
            .field("up", &self.up)
            .finish_non_exhaustive()
    }
}

impl SharedLimiter {
    /// The in-process cells counted during outages (swept like the local ones).
    pub(super) fn fallback(&self) -> &Limiter {
        &self.fallback
    }

    /// Connects (waiting at most the store timeout); a store that does not answer starts down.
    pub async fn start(config: RedisConfig, metrics: StoreMetrics) -> Arc<SharedLimiter> {
        let limiter = Arc::new(SharedLimiter {
            config: config.clone(),
            link: RedisLink::new(RedisTarget {
                nodes: config.nodes.clone(),
                cluster: config.cluster,
                timeout: config.timeout,
            }),
            up: AtomicBool::new(true),
            down_since: std::sync::Mutex::new(None),
            skew_us: AtomicI64::new(0),
            fallback: Limiter::default(),
            instances: std::sync::atomic::AtomicU64::new(config.instances.unwrap_or(1)),
            me: format!("{:016x}", rand::random::<u64>()),
            heartbeat_script: redis::Script::new(HEARTBEAT),
            metrics,
            admit_script: redis::Script::new(include_str!("../admit.lua")),
            settle_script: redis::Script::new(include_str!("../settle.lua")),
        });
        match limiter.probe().await {
            Ok(()) => {
                limiter.metrics.up.set(1);
                tracing::info!(
                    nodes = limiter.config.nodes.len(),
                    cluster = limiter.config.cluster,
                    "shared limits store connected"
                );
            }
            Err(e) => limiter.went_down(&e),
        }
        limiter.metrics.instances.set(limiter.instances() as i64);
        if limiter.config.instances.is_none() {
            limiter.heartbeat().await;
            tokio::spawn(heartbeats(Arc::downgrade(&limiter)));
        }
        limiter
    }

    /// Instances sharing the store (the `local` outage policy's divisor).
    pub fn instances(&self) -> u64 {
        self.instances.load(Ordering::Relaxed).max(1)
    }

    /// Announces this instance and takes the count of live ones; while the store is down the
    /// last count stands.
    async fn heartbeat(&self) {
        if !self.is_up() {
            return;
        }
        let key = format!("{}:{{instances}}", self.config.prefix);
        let window = (HEARTBEAT_EVERY * 3).as_millis() as u64;
        let mut invocation = self.heartbeat_script.key(key);
        invocation.arg(&self.me).arg(window);
        if let Ok(redis::Value::Int(n)) = self.run(&invocation).await
            && n > 0
        {
            self.instances.store(n as u64, Ordering::Relaxed);
            self.metrics.instances.set(n);
        }
    }

    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Runs a script with the store timeout.
    async fn run(&self, invocation: &redis::ScriptInvocation<'_>) -> Result<redis::Value, StoreError> {
        Ok(self.link.invoke::<redis::Value>(invocation).await?)
    }

    /// One TIME round trip: measures the clock skew; an error means the store is down.
    async fn probe(&self) -> Result<(), StoreError> {
        let before = now_us();
        let (s, us) = self.link.query::<(i64, i64)>(&redis::cmd("TIME")).await?;
        let after = now_us();
        self.skew_us
            .store(s * 1_000_000 + us - (before + after) / 2, Ordering::Relaxed);
        Ok(())
    }

    fn went_down(self: &Arc<Self>, e: &StoreError) {
        self.metrics.errors.inc();
        if !self.up.swap(false, Ordering::AcqRel) {
            return;
        }
        self.metrics.up.set(0);
        *self
            .down_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
        tracing::warn!(
            error = %e,
            default_policy = self.config.on_outage.as_str(),
            "shared limits store unreachable: each limit follows its outage policy until it is back"
        );
        let weak = Arc::downgrade(self);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(probe_until_up(weak));
        }
    }

    /// The Redis key of a limit's cell (a quota's names its window).
    fn key(&self, scope: Scope, id: &str, spec: &LimitSpec, window_start: i64) -> String {
        let (m, w) = (metric_str(spec.metric), window_str(spec.window));
        let p = &self.config.prefix;
        let id = escape(id);
        if spec.window.is_rate() {
            format!("{p}:{{{}:{id}}}:{m}:{w}", scope.as_str())
        } else {
            format!("{p}:{{{}:{id}}}:{m}:{w}:{window_start}", scope.as_str())
        }
    }

    fn groups(&self, applicable: &[(Scope, Arc<str>, LimitSpec)], need: &Need, now_s: i64, tz: i32) -> Vec<Group> {
        let mut items: Vec<(u16, Item)> = Vec::with_capacity(applicable.len());
        for (scope, id, spec) in applicable {
            let units = need.of(spec.metric);
            if units == 0 && spec.metric != Metric::Requests {
                continue;
            }
            let (window_start, x) = if spec.window.is_rate() {
                (0, (spec.window.seconds() * 1_000_000) as i64)
            } else {
                window_bounds(spec.window, now_s, tz)
            };
            let key = self.key(*scope, id, spec, window_start);
            if items.iter().any(|(_, i)| i.key == key && i.spec == *spec) {
                continue;
            }
            let slot = if self.config.cluster { slot(&key) } else { 0 };
            items.push((
                slot,
                Item {
                    key,
                    scope: *scope,
                    id: id.clone(),
                    spec: *spec,
                    units,
                    x,
                    window_start,
                },
            ));
        }
        items.sort_by_key(|(slot, _)| *slot);
        let mut groups: Vec<Group> = Vec::new();
        let mut last = None;
        for (s, item) in items {
            if last == Some(s)
                && let Some(g) = groups.last_mut()
            {
                g.items.push(item);
            } else {
                groups.push(Group { items: vec![item] });
                last = Some(s);
            }
        }
        groups
    }

    async fn admit_group(&self, g: &Group) -> Result<Answer, StoreError> {
        let deadline = now_us() + self.skew_us.load(Ordering::Relaxed) + self.config.timeout.as_micros() as i64;
        let mut inv = self.admit_script.prepare_invoke();
        inv.arg(deadline);
        for i in &g.items {
            inv.key(&i.key)
                .arg(if i.spec.window.is_rate() { "r" } else { "q" })
                .arg(i.units)
                .arg(i.spec.amount)
                .arg(i.spec.burst)
                .arg(i.x)
                .arg(if i.spec.soft { "1" } else { "0" });
        }
        let v = ints(self.run(&inv).await?)?;
        let standings = |from: usize, items: &[Item]| -> Vec<Standing> {
            v[from..]
                .chunks(2)
                .zip(items)
                .map(|(p, i)| Standing {
                    limit: i.spec.amount,
                    remaining: p.first().copied().unwrap_or(0).max(0) as u64,
                    reset_s: p.get(1).copied().unwrap_or(0).max(0) as f64 / 1000.0,
                })
                .collect()
        };
        match v.first() {
            Some(1) => Ok(Answer::Taken(standings(1, &g.items))),
            Some(0) if v.len() >= 3 => Ok(Answer::Refused {
                index: (v[1].max(1) - 1) as usize,
                retry_s: u64::try_from(v[2]).ok(),
                standings: standings(3, &g.items),
            }),
            Some(-1) => Err(StoreError::Late),
            _ => Err(StoreError::Shape(format!("{v:?}"))),
        }
    }

    /// Adds `delta(item)` to each cell of a group; returns the budget crossings.
    async fn settle_group(
        &self,
        g: &Group,
        deltas: &[i64],
        thresholds: &[u8],
        alerts: bool,
    ) -> Result<Vec<Crossing>, StoreError> {
        let mut inv = self.settle_script.prepare_invoke();
        inv.arg(thresholds.len());
        for t in thresholds {
            inv.arg(*t);
        }
        for (i, d) in g.items.iter().zip(deltas) {
            let alert = alerts && i.spec.metric == Metric::Cost && !i.spec.window.is_rate();
            inv.key(&i.key)
                .arg(if i.spec.window.is_rate() { "r" } else { "q" })
                .arg(*d)
                .arg(i.spec.amount)
                .arg(i.x)
                .arg(if alert { "1" } else { "0" });
        }
        let v = ints(self.run(&inv).await?)?;
        Ok(v.chunks(3)
            .filter_map(|c| {
                let item = g.items.get(usize::try_from(*c.first()?).ok()?.checked_sub(1)?)?;
                let threshold = *thresholds.get(usize::try_from(*c.get(1)?).ok()?.checked_sub(1)?)?;
                Some(Crossing {
                    scope: item.scope,
                    id: item.id.clone(),
                    spec: item.spec,
                    used: u64::try_from(*c.get(2)?).ok()?,
                    threshold,
                    window_start: item.window_start,
                })
            })
            .collect())
    }

    /// Reserves against every limit in the store, or follows the outage policies when it is down.
    pub async fn admit(
        self: &Arc<Self>,
        applicable: &[(Scope, Arc<str>, LimitSpec)],
        need: &Need,
        tz: i32,
    ) -> Result<(Reservation, RateInfo), Refusal> {
        if !self.is_up() {
            return self.admit_in_outage(applicable, need, tz);
        }
        let now_s = (now_ns() / NS) as i64;
        let groups = self.groups(applicable, need, now_s, tz);
        let mut info = RateInfo::default();
        for (gi, g) in groups.iter().enumerate() {
            match self.admit_group(g).await {
                Ok(Answer::Taken(standings)) => {
                    for (s, i) in standings.into_iter().zip(&g.items) {
                        merge(&mut info, i.spec.metric, s);
                    }
                }
                Ok(Answer::Refused {
                    index,
                    retry_s,
                    standings,
                }) => {
                    self.release(&groups[..gi]);
                    for (s, i) in standings.into_iter().zip(&g.items) {
                        merge(&mut info, i.spec.metric, s);
                    }
                    let item = g.items.get(index).unwrap_or(&g.items[0]);
                    return Err(Refusal {
                        scope: item.scope,
                        spec: item.spec,
                        retry_after_s: retry_s,
                        info,
                        unavailable: false,
                    });
                }
                Err(e) => {
                    self.release(&groups[..gi]);
                    self.went_down(&e);
                    return self.admit_in_outage(applicable, need, tz);
                }
            }
        }
        Ok((
            Reservation::Shared(Held {
                limiter: self.clone(),
                groups,
            }),
            info,
        ))
    }

    /// Gives back what earlier slots took when a later one refused.
    fn release(self: &Arc<Self>, groups: &[Group]) {
        if groups.is_empty() {
            return;
        }
        let groups = groups.to_vec();
        let deltas: Vec<Vec<i64>> = groups
            .iter()
            .map(|g| g.items.iter().map(|i| -(i.units as i64)).collect())
            .collect();
        spawn_settle(self.clone(), groups, deltas, Vec::new(), None);
    }

    /// While the store is down: each limit's policy decides; `local` ones count in process at
    /// their share of the limit.
    fn admit_in_outage(
        &self,
        applicable: &[(Scope, Arc<str>, LimitSpec)],
        need: &Need,
        tz: i32,
    ) -> Result<(Reservation, RateInfo), Refusal> {
        let instances = self.instances();
        let mut local = Vec::with_capacity(applicable.len());
        let mut open = false;
        for (scope, id, spec) in applicable {
            match spec.on_outage.unwrap_or(self.config.on_outage) {
                OutagePolicy::Closed => {
                    self.metrics.decision(OutagePolicy::Closed, false);
                    return Err(Refusal {
                        scope: *scope,
                        spec: *spec,
                        retry_after_s: Some(1),
                        info: RateInfo::default(),
                        unavailable: true,
                    });
                }
                OutagePolicy::Open => open = true,
                OutagePolicy::Local => {
                    let mut share = *spec;
                    share.amount = spec.amount / instances;
                    share.burst = (spec.burst / instances).max(1);
                    local.push((*scope, id.clone(), share));
                }
            }
        }
        if open {
            self.metrics.decision(OutagePolicy::Open, true);
        }
        if local.is_empty() {
            return Ok((Reservation::None, RateInfo::default()));
        }
        let result = self.fallback.admit(&local, need, now_ns(), tz);
        self.metrics.decision(OutagePolicy::Local, result.is_ok());
        result.map(|(r, info)| (Reservation::Local(r), info))
    }
}

async fn heartbeats(weak: Weak<SharedLimiter>) {
    loop {
        tokio::time::sleep(HEARTBEAT_EVERY).await;
        let Some(limiter) = weak.upgrade() else { return };
        limiter.heartbeat().await;
    }
}

async fn probe_until_up(weak: Weak<SharedLimiter>) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        let Some(limiter) = weak.upgrade() else { return };
        if limiter.probe().await.is_ok() {
            let since = limiter
                .down_since
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            limiter.up.store(true, Ordering::Release);
            limiter.metrics.up.set(1);
            tracing::info!(
                down_for_ms = since.map_or(0, |s| s.elapsed().as_millis() as u64),
                "shared limits store reachable again"
            );
            return;
        }
    }
}

/// Units reserved in the store, settled once when the request finishes.
#[derive(Debug)]
pub struct Held {
    limiter: Arc<SharedLimiter>,
    groups: Vec<Group>,
}

impl Held {
    /// Adds (used − reserved) to every cell in the background: a store round trip per slot,
    /// none when nothing changed; retried while the store is down. Budget crossings go to `then`.
    pub fn settle(self, actual: &Need, thresholds: &[u8], then: Option<OnCrossings>) {
        let alerts = then.is_some() && !thresholds.is_empty();
        let mut groups = Vec::new();
        let mut deltas = Vec::new();
        for g in self.groups {
            let d: Vec<i64> = g
                .items
                .iter()
                .map(|i| actual.of(i.spec.metric) as i64 - i.units as i64)
                .collect();
            let needed = g
                .items
                .iter()
                .zip(&d)
                .any(|(i, d)| *d != 0 || (alerts && i.spec.metric == Metric::Cost && !i.spec.window.is_rate()));
            if needed {
                groups.push(g);
                deltas.push(d);
            }
        }
        if groups.is_empty() {
            return;
        }
        spawn_settle(self.limiter, groups, deltas, thresholds.to_vec(), then);
    }
}

fn spawn_settle(
    limiter: Arc<SharedLimiter>,
    groups: Vec<Group>,
    deltas: Vec<Vec<i64>>,
    thresholds: Vec<u8>,
    then: Option<OnCrossings>,
) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("settlement outside the runtime: the shared reservation expires with its window");
        return;
    };
    rt.spawn(async move {
        let mut crossings = Vec::new();
        let alerts = then.is_some();
        for (g, d) in groups.iter().zip(&deltas) {
            let mut attempt = 0;
            loop {
                match limiter.settle_group(g, d, &thresholds, alerts).await {
                    Ok(c) => {
                        crossings.extend(c);
                        break;
                    }
                    Err(e) => {
                        attempt += 1;
                        if attempt >= SETTLE_ATTEMPTS {
                            limiter.metrics.lost_settlements.inc();
                            tracing::warn!(error = %e, "a settlement could not reach the shared limits store");
                            break;
                        }
                        limiter.went_down(&e);
                        tokio::time::sleep(PROBE_EVERY * (1 << attempt)).await;
                    }
                }
            }
        }
        if let Some(then) = then
            && !crossings.is_empty()
        {
            then(crossings);
        }
    });
}

/// Reserved units, released or topped up at settlement.
#[derive(Debug)]
pub enum Reservation {
    /// Nothing was counted (no limit applied, or every one was open during an outage).
    None,
    Local(local::Reservation),
    Shared(Held),
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

#[cfg(test)]
mod tests;
