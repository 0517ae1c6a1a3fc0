//! The response cache's config: a route's policy (its own fields, else `defaults.cache`'s,
//! else the built-in defaults) and the in-process tier's size.

use std::time::Duration;

use crate::collect::{Collector, ranged};
use crate::raw::{RawCache, RawCacheStore, S};
use crate::types::{CachePolicy, CacheScope, CacheStoreConfig};

/// The in-process tier's size when `cache.memory_bytes` is not given.
pub const DEFAULT_CACHE_MEMORY_BYTES: u64 = 256 * 1024 * 1024;
/// Entries larger than this are compressed in the Redis tier when `compress_above_bytes` is
/// not given.
pub const DEFAULT_COMPRESS_ABOVE_BYTES: u64 = 1024;
/// The largest answer a route stores when `max_entry_bytes` is not given.
pub const DEFAULT_CACHE_MAX_ENTRY_BYTES: u64 = 1024 * 1024;
/// The longest TTL a route may set (30 days).
const MAX_TTL_MS: u64 = 30 * 24 * 3_600_000;

/// A route's cache policy; `None` when it does not cache (no `cache`, or `ttl_ms: 0`).
pub(crate) fn policy(
    own: Option<&RawCache>,
    defaults: Option<&RawCache>,
    path: &str,
    errs: &mut Collector,
) -> Option<CachePolicy> {
    if own.is_none() && defaults.is_none() {
        return None;
    }
    let empty = RawCache::default();
    let (own, defaults) = (own.unwrap_or(&empty), defaults.unwrap_or(&empty));
    let p = |name: &str| format!("{path}.cache.{name}");
    let pick = |a: &Option<S<u64>>, b: &Option<S<u64>>| a.clone().or_else(|| b.clone());
    let ttl = ranged(
        pick(&own.ttl_ms, &defaults.ttl_ms).as_ref(),
        0,
        0,
        MAX_TTL_MS,
        &p("ttl_ms"),
        errs,
    );
    let max_entry_bytes = ranged(
        pick(&own.max_entry_bytes, &defaults.max_entry_bytes).as_ref(),
        DEFAULT_CACHE_MAX_ENTRY_BYTES,
        1,
        u64::from(u32::MAX),
        &p("max_entry_bytes"),
        errs,
    );
    let scope = match own.scope.as_ref().or(defaults.scope.as_ref()) {
        None => CacheScope::Tenant,
        Some(s) => match s.value.as_str() {
            "tenant" => CacheScope::Tenant,
            "team" => CacheScope::Team,
            "key" => CacheScope::Key,
            other => {
                errs.push(
                    p("scope"),
                    Some(s),
                    format!("{other:?} is not one of tenant, team, key"),
                );
                CacheScope::Tenant
            }
        },
    };
    let skip_sampled = own
        .skip_sampled
        .as_ref()
        .or(defaults.skip_sampled.as_ref())
        .is_some_and(|v| v.value);
    let stale = ranged(
        pick(&own.stale_ms, &defaults.stale_ms).as_ref(),
        0,
        0,
        MAX_TTL_MS,
        &p("stale_ms"),
        errs,
    );
    let replay_chunk = pick(&own.replay_chunk_ms, &defaults.replay_chunk_ms)
        .map(|v| ranged(Some(&v), 0, 1, 10_000, &p("replay_chunk_ms"), errs))
        .map(Duration::from_millis);
    (ttl > 0).then(|| CachePolicy {
        ttl: Duration::from_millis(ttl),
        scope,
        max_entry_bytes,
        skip_sampled,
        stale: Duration::from_millis(stale),
        replay_chunk,
    })
}

/// The top-level `cache` block.
pub(crate) fn store(raw: &RawCacheStore, errs: &mut Collector) -> CacheStoreConfig {
    CacheStoreConfig {
        memory_bytes: ranged(
            raw.memory_bytes.as_ref(),
            DEFAULT_CACHE_MEMORY_BYTES,
            1024 * 1024,
            1 << 40,
            "cache.memory_bytes",
            errs,
        ),
        tenant_max_percent: ranged(
            raw.tenant_max_percent.as_ref(),
            100,
            1,
            100,
            "cache.tenant_max_percent",
            errs,
        ) as u8,
        redis: raw.redis.as_ref().is_none_or(|v| v.value),
        redis_timeout: raw
            .redis_timeout_ms
            .as_ref()
            .map(|v| Duration::from_millis(ranged(Some(v), 100, 1, 10_000, "cache.redis_timeout_ms", errs))),
        compress_above_bytes: ranged(
            raw.compress_above_bytes.as_ref(),
            DEFAULT_COMPRESS_ABOVE_BYTES,
            0,
            1 << 30,
            "cache.compress_above_bytes",
            errs,
        ),
    }
}
