//! Balancing, retries and passive health: the parts of the config that keep callers served
//! when deployments are slow or failing.

use std::time::Duration;

use crate::collect::Collector;
use crate::raw::{RawBreaker, RawModel, RawRetry, RawRoute, S};
use crate::types::{Balance, BreakerConfig, FallbackConfig, FallbackReason, RetryPolicy};

fn ranged(v: Option<&S<u64>>, default: u64, min: u64, max: u64, path: &str, errs: &mut Collector) -> u64 {
    match v {
        None => default,
        Some(s) if (min..=max).contains(&s.value) => s.value,
        Some(s) => {
            errs.push(path, Some(s), format!("must be between {min} and {max}"));
            default
        }
    }
}

/// An alias's strategy and per-deployment weights.
pub(crate) fn balance(m: &RawModel, path: &str, errs: &mut Collector) -> (Balance, Vec<u32>) {
    let n = m.deployments.len();
    let weights: Vec<u32> = match &m.weights {
        None => vec![1; n],
        Some(w) => {
            if w.len() != n {
                errs.push(
                    format!("{path}.weights"),
                    Some(&m.name),
                    format!("{} weights for {n} deployments", w.len()),
                );
            }
            w.iter()
                .enumerate()
                .map(|(i, x)| ranged(Some(x), 1, 1, 1000, &format!("{path}.weights[{i}]"), errs) as u32)
                .chain(std::iter::repeat(1))
                .take(n)
                .collect()
        }
    };
    let balance = match m.balance.as_ref().map(|b| b.value.as_str()) {
        None if m.weights.is_some() => Balance::Weighted,
        None | Some("round_robin") => Balance::RoundRobin,
        Some("weighted") => Balance::Weighted,
        Some("least_outstanding") => Balance::LeastOutstanding,
        Some("latency") => Balance::Latency,
        Some("capacity") => Balance::Capacity,
        Some(other) => {
            errs.push(
                format!("{path}.balance"),
                m.balance.as_ref(),
                format!("{other:?} is not one of round_robin, weighted, least_outstanding, latency, capacity"),
            );
            Balance::RoundRobin
        }
    };
    (balance, weights)
}

/// A route's retry policy (its own, else `defaults.retry`).
pub(crate) fn retry(
    own: Option<&RawRetry>,
    defaults: Option<&RawRetry>,
    path: &str,
    errs: &mut Collector,
) -> RetryPolicy {
    let empty = RawRetry::default();
    let (own, defaults) = (own.unwrap_or(&empty), defaults.unwrap_or(&empty));
    let pick = |a: &Option<S<u64>>, b: &Option<S<u64>>| a.clone().or_else(|| b.clone());
    let p = |name: &str| format!("{path}.retry.{name}");
    let backoff = ranged(
        pick(&own.backoff_ms, &defaults.backoff_ms).as_ref(),
        25,
        0,
        60_000,
        &p("backoff_ms"),
        errs,
    );
    let backoff_max = ranged(
        pick(&own.backoff_max_ms, &defaults.backoff_max_ms).as_ref(),
        1_000,
        0,
        600_000,
        &p("backoff_max_ms"),
        errs,
    );
    RetryPolicy {
        backoff: Duration::from_millis(backoff),
        backoff_max: Duration::from_millis(backoff_max.max(backoff)),
        budget_percent: ranged(
            pick(&own.budget_percent, &defaults.budget_percent).as_ref(),
            20,
            0,
            100,
            &p("budget_percent"),
            errs,
        ) as u32,
        budget_min_per_s: ranged(
            pick(&own.budget_min_per_s, &defaults.budget_min_per_s).as_ref(),
            10,
            0,
            100_000,
            &p("budget_min_per_s"),
            errs,
        ) as u32,
    }
}

pub(crate) fn breaker(raw: &RawBreaker, errs: &mut Collector) -> BreakerConfig {
    let r = |v: &Option<S<u64>>, d: u64, min: u64, max: u64, name: &str, errs: &mut Collector| {
        ranged(v.as_ref(), d, min, max, &format!("breaker.{name}"), errs)
    };
    let open = r(&raw.open_ms, 5_000, 1, 3_600_000, "open_ms", errs);
    BreakerConfig {
        enabled: raw.enabled.unwrap_or(true),
        consecutive_failures: r(&raw.consecutive_failures, 5, 1, 10_000, "consecutive_failures", errs) as u32,
        failure_ratio_percent: r(&raw.failure_ratio_percent, 50, 1, 100, "failure_ratio_percent", errs) as u32,
        window: Duration::from_millis(r(&raw.window_ms, 10_000, 100, 3_600_000, "window_ms", errs)),
        min_requests: r(&raw.min_requests, 20, 1, 1_000_000, "min_requests", errs) as u32,
        open: Duration::from_millis(open),
        max_open: Duration::from_millis(r(&raw.max_open_ms, 60_000, 1, 86_400_000, "max_open_ms", errs).max(open)),
        half_open_probes: r(&raw.half_open_probes, 1, 1, 1_000, "half_open_probes", errs) as u32,
        max_ejected_percent: r(&raw.max_ejected_percent, 50, 0, 100, "max_ejected_percent", errs) as u32,
    }
}

/// A route's fallback chain.
pub(crate) fn fallback(
    r: &RawRoute,
    cache: Option<&crate::types::CachePolicy>,
    model_names: &[&str],
    path: &str,
    errs: &mut Collector,
) -> FallbackConfig {
    let mut models = Vec::new();
    let mut stale_step = None;
    for (j, step) in r.fallback.iter().flatten().enumerate() {
        let at = format!("{path}.fallback[{j}]");
        match &step.value {
            crate::raw::RawFallbackStep::Alias(name) => match model_names.iter().position(|n| *n == name) {
                Some(i) => models.push(i),
                None => errs.push(at, Some(step), format!("unknown model alias {name:?}")),
            },
            crate::raw::RawFallbackStep::Cache { cache: c } => {
                let Some(policy) = cache else {
                    errs.push(
                        at,
                        Some(step),
                        "a cache step needs the route's `cache` (with `stale_ms`)",
                    );
                    continue;
                };
                if stale_step.is_some() {
                    errs.push(at, Some(step), "one cache step per chain");
                    continue;
                }
                let stale = c.stale_ms.map_or(policy.stale, Duration::from_millis);
                if stale > policy.stale {
                    errs.push(
                        at,
                        Some(step),
                        format!(
                            "stale_ms must not exceed the route's cache.stale_ms ({}): entries are kept no longer",
                            policy.stale.as_millis()
                        ),
                    );
                    continue;
                }
                stale_step = Some(crate::types::StaleStep {
                    after: models.len(),
                    stale,
                });
            }
        }
    }
    let on = match &r.fallback_on {
        None => vec![
            FallbackReason::Error,
            FallbackReason::Timeout,
            FallbackReason::OpenCircuit,
            FallbackReason::RateLimit,
            FallbackReason::Capacity,
        ],
        Some(list) => list
            .iter()
            .enumerate()
            .filter_map(|(j, w)| {
                let found = FallbackReason::ALL.into_iter().find(|f| f.as_str() == w.value);
                if found.is_none() {
                    errs.push(
                        format!("{path}.fallback_on[{j}]"),
                        Some(w),
                        "one of error, timeout, open_circuit, rate_limit, capacity, context_length, content_policy",
                    );
                }
                found
            })
            .collect(),
    };
    FallbackConfig {
        models,
        cache: stale_step,
        on,
        response: r.fallback_response.as_ref().map(|f| f.content.value.clone()),
    }
}

/// A route's concurrency limit and queue.
pub(crate) fn queue(r: &RawRoute, path: &str, errs: &mut Collector) -> Option<crate::types::QueueConfig> {
    let q = r.queue.as_ref()?;
    let p = |name: &str| format!("{path}.queue.{name}");
    let max_concurrency = ranged(Some(&q.max_concurrency), 1, 1, 1_000_000, &p("max_concurrency"), errs);
    Some(crate::types::QueueConfig {
        max_concurrency: max_concurrency as usize,
        max_queued: ranged(
            q.max_queued.as_ref(),
            max_concurrency * 4,
            0,
            10_000_000,
            &p("max_queued"),
            errs,
        ) as usize,
        timeout: Duration::from_millis(ranged(
            q.timeout_ms.as_ref(),
            5_000,
            1,
            3_600_000,
            &p("timeout_ms"),
            errs,
        )),
    })
}

pub(crate) fn geo(raw: Option<&crate::raw::RawGeo>, errs: &mut Collector) -> crate::types::GeoConfig {
    let Some(raw) = raw else {
        return crate::types::GeoConfig {
            header: "x-sluice-region".to_owned(),
            ..Default::default()
        };
    };
    let mut networks = Vec::new();
    for (region, list) in &raw.networks {
        for (j, n) in list.iter().enumerate() {
            match crate::types::IpNet::parse(&n.value) {
                Some(net) => networks.push((net, region.clone())),
                None => errs.push(
                    format!("geo.networks.{region}[{j}]"),
                    Some(n),
                    "not a network like 10.1.0.0/16 or 2001:db8::/32",
                ),
            }
        }
    }
    let header = raw
        .header
        .as_ref()
        .map_or_else(|| "x-sluice-region".to_owned(), |h| h.value.to_ascii_lowercase());
    if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
        errs.push("geo.header", raw.header.as_ref(), "not a header name");
    }
    crate::types::GeoConfig {
        header,
        networks,
        failover: raw.failover.clone().into_iter().collect(),
    }
}

/// A route's degradation steps (they measure load by its queue).
pub(crate) fn degrade(
    r: &RawRoute,
    caches: bool,
    model_names: &[&str],
    path: &str,
    errs: &mut Collector,
) -> Vec<crate::types::DegradeStep> {
    let Some(steps) = &r.degrade else {
        return Vec::new();
    };
    if r.queue.is_none() && !steps.is_empty() {
        errs.push(
            format!("{path}.degrade"),
            Some(&r.name),
            "degradation is by queue depth: the route needs a queue",
        );
    }
    let mut out: Vec<crate::types::DegradeStep> = steps
        .iter()
        .enumerate()
        .map(|(j, s)| {
            let model = s.model.as_ref().and_then(|m| {
                crate::collect::resolve_models(
                    std::slice::from_ref(m),
                    model_names,
                    &format!("{path}.degrade[{j}].model"),
                    errs,
                )
                .first()
                .copied()
            });
            let cache_only = s.cache_only.unwrap_or(false);
            if s.model.is_none() && s.max_tokens.is_none() && !cache_only {
                errs.push(
                    format!("{path}.degrade[{j}]"),
                    Some(&s.when_queued),
                    "a step names a model, a max_tokens cap, cache_only, or a mix",
                );
            }
            if cache_only && !caches {
                errs.push(
                    format!("{path}.degrade[{j}].cache_only"),
                    Some(&s.when_queued),
                    "cache_only needs the route's `cache`",
                );
            }
            crate::types::DegradeStep {
                when_queued: s.when_queued.value as usize,
                cache_only,
                model,
                max_tokens: s.max_tokens.as_ref().map(|m| {
                    ranged(
                        Some(m),
                        1,
                        1,
                        10_000_000,
                        &format!("{path}.degrade[{j}].max_tokens"),
                        errs,
                    )
                }),
            }
        })
        .collect();
    out.sort_by_key(|s| s.when_queued);
    out
}

/// A deployment's Prometheus endpoint.
pub(crate) fn scrape(d: &crate::raw::RawDeployment, path: &str, errs: &mut Collector) -> Option<(http::Uri, Duration)> {
    let m = d.metrics.as_ref()?;
    let url = match m.url.value.parse::<http::Uri>() {
        Ok(u) if u.scheme_str() == Some("http") || u.scheme_str() == Some("https") => u,
        _ => {
            errs.push(format!("{path}.metrics.url"), Some(&m.url), "not an http(s) URL");
            return None;
        }
    };
    let every = ranged(
        m.interval_ms.as_ref(),
        1_000,
        50,
        600_000,
        &format!("{path}.metrics.interval_ms"),
        errs,
    );
    Some((url, Duration::from_millis(every)))
}

/// A deployment's active health check.
pub(crate) fn health_check(
    d: &crate::raw::RawDeployment,
    path: &str,
    errs: &mut Collector,
) -> Option<(String, Duration)> {
    let h = d.health_check.as_ref()?;
    if !h.path.value.starts_with('/') {
        errs.push(
            format!("{path}.health_check.path"),
            Some(&h.path),
            "a path starts with /",
        );
        return None;
    }
    let every = ranged(
        h.interval_ms.as_ref(),
        5_000,
        50,
        3_600_000,
        &format!("{path}.health_check.interval_ms"),
        errs,
    );
    Some((h.path.value.clone(), Duration::from_millis(every)))
}
