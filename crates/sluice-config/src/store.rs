//! The `store` section: where run-time keys live, and where shared limit counters live.

use std::time::Duration;

use crate::collect::{Collector, EnvLookup, env_secret};
use crate::raw::{RawConfig, RawRedis};
use crate::types::{LedgerConfig, OutagePolicy, RedisConfig, StoreConfig};

pub(crate) fn store(raw: &RawConfig, env: EnvLookup<'_>, errs: &mut Collector) -> StoreConfig {
    StoreConfig {
        sqlite_path: raw
            .store
            .sqlite_path
            .as_ref()
            .map_or_else(|| "sluice.db".to_owned(), |s| s.value.clone()),
        postgres_url: postgres(raw, env, errs),
        redis: raw.store.redis.as_ref().and_then(|r| redis(r, env, errs)),
    }
}

fn postgres(raw: &RawConfig, env: EnvLookup<'_>, errs: &mut Collector) -> Option<crate::types::Secret> {
    let url = match (&raw.store.postgres_url, &raw.store.postgres_url_env) {
        (None, None) => return None,
        (Some(u), None) => crate::types::Secret::new(u.value.clone()),
        (None, Some(name)) => env_secret(name, "store.postgres_url_env", env, errs)?,
        (Some(u), Some(_)) => {
            errs.push(
                "store.postgres_url",
                Some(u),
                "give postgres_url or postgres_url_env, not both",
            );
            return None;
        }
    };
    if !(url.expose().starts_with("postgres://") || url.expose().starts_with("postgresql://")) {
        errs.push(
            "store.postgres_url",
            None::<&crate::raw::S<String>>,
            "a PostgreSQL URL starts with postgres:// or postgresql://",
        );
        return None;
    }
    Some(url)
}

/// The ledger's write-ahead directory defaults to one next to the SQLite file.
pub(crate) fn ledger(raw: &RawConfig, store: &StoreConfig, errs: &mut Collector) -> LedgerConfig {
    let dir = raw.ledger.dir.as_ref().map_or_else(
        || {
            if store.sqlite_path == ":memory:" {
                // Nothing persists with an in-memory store: a private directory per process.
                return std::env::temp_dir().join(format!("sluice-ledger-{}", std::process::id()));
            }
            std::path::PathBuf::from(format!("{}-ledger", store.sqlite_path.trim_end_matches(".db")))
        },
        |d| std::path::PathBuf::from(&d.value),
    );
    let ship_ms = match &raw.ledger.ship_interval_ms {
        None => 500,
        Some(v) if (10..=60_000).contains(&v.value) => v.value,
        Some(v) => {
            errs.push("ledger.ship_interval_ms", Some(v), "must be between 10 and 60000");
            500
        }
    };
    let days = |v: Option<&crate::raw::S<u64>>, path: &str, errs: &mut Collector| {
        v.map(|d| Duration::from_secs(86_400 * crate::collect::ranged(Some(d), 30, 1, 36_500, path, errs)))
    };
    LedgerConfig {
        enabled: raw.ledger.enabled.unwrap_or(true),
        dir,
        ship_interval: Duration::from_millis(ship_ms),
        retention: days(raw.ledger.retention_days.as_ref(), "ledger.retention_days", errs),
    }
}

fn redis(raw: &RawRedis, env: EnvLookup<'_>, errs: &mut Collector) -> Option<RedisConfig> {
    let nodes: Vec<(String, &'static str)> = match (&raw.url, &raw.url_env, &raw.cluster) {
        (Some(u), None, None) => vec![(u.value.clone(), "store.redis.url")],
        (None, Some(name), None) => {
            let url = env_secret(name, "store.redis.url_env", env, errs)?;
            vec![(url.expose().to_owned(), "store.redis.url_env")]
        }
        (None, None, Some(list)) if !list.is_empty() => {
            list.iter().map(|u| (u.value.clone(), "store.redis.cluster")).collect()
        }
        _ => {
            errs.push(
                "store.redis",
                raw.url.as_ref().or(raw.url_env.as_ref()),
                "give exactly one of url, url_env or cluster (a list of node URLs)",
            );
            return None;
        }
    };
    let mut ok = true;
    for (url, path) in &nodes {
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            // Not echoed: a URL may carry a password.
            errs.push(
                *path,
                None::<&crate::raw::S<String>>,
                "a Redis URL starts with redis:// or rediss://",
            );
            ok = false;
        }
    }
    let timeout_ms = match &raw.timeout_ms {
        None => 100,
        Some(t) if (1..=10_000).contains(&t.value) => t.value,
        Some(t) => {
            errs.push("store.redis.timeout_ms", Some(t), "must be between 1 and 10000");
            100
        }
    };
    let instances = match &raw.instances {
        None => None,
        Some(n) if (1..=10_000).contains(&n.value) => Some(n.value),
        Some(n) => {
            errs.push("store.redis.instances", Some(n), "must be between 1 and 10000");
            None
        }
    };
    let on_outage = match &raw.on_outage {
        None => OutagePolicy::Local,
        Some(w) => crate::spend::outage_policy(&w.value).unwrap_or_else(|| {
            errs.push(
                "store.redis.on_outage",
                Some(w),
                "the outage policy is local, open or closed",
            );
            OutagePolicy::Local
        }),
    };
    let prefix = raw
        .prefix
        .as_ref()
        .map_or_else(|| "sluice".to_owned(), |p| p.value.clone());
    if prefix.is_empty() || prefix.contains(['{', '}', ' ']) {
        errs.push(
            "store.redis.prefix",
            raw.prefix.as_ref(),
            "a non-empty prefix without braces or spaces",
        );
        ok = false;
    }
    ok.then(|| RedisConfig {
        cluster: raw.cluster.is_some(),
        nodes: nodes.into_iter().map(|(u, _)| u).collect(),
        timeout: Duration::from_millis(timeout_ms),
        instances,
        on_outage,
        prefix,
    })
}
