//! The response cache's config: a route's policy (its own fields, else `defaults.cache`'s,
//! else the built-in defaults) and the in-process tier's size.

use std::time::Duration;

use crate::collect::{Collector, ranged};
use crate::raw::{RawCache, RawCacheStore, RawEmbedder, RawSemantic, S};
use crate::types::{CachePolicy, CacheScope, CacheStoreConfig, EmbedderChoice, EmbedderConfig, SemanticPolicy};

/// The semantic threshold when a route gives none. On the labelled pairs in
/// `crates/sluice-cache/eval/pairs.jsonl`, with the hit check, false hits stay at 0.6 % from
/// 0.62 up and the hit rate peaks (88 %) at 0.65; 0.70 gives up two points of it (86 %) to sit
/// 0.1 above the most similar *different* question in the set (0.60), where only similarity
/// guards (BENCHMARKS.md, `sluice cache eval`).
pub const DEFAULT_SEMANTIC_THRESHOLD: f64 = 0.70;
/// Partitions with more prompts than this are searched through an HNSW graph, not exactly.
pub const DEFAULT_SEMANTIC_GRAPH_ABOVE: u64 = 50_000;
/// How long a semantic lookup may take when a route does not say.
pub const DEFAULT_SEMANTIC_MAX_WAIT_MS: u64 = 50;
/// Shorter last user turns are not looked up semantically when a route does not say.
pub const DEFAULT_SEMANTIC_MIN_CHARS: u64 = 8;
/// Where `scripts/fetch-models.sh` puts the model by default (relative to the working
/// directory).
pub const DEFAULT_EMBEDDER_PATH: &str = "models/all-minilm-l6-v2";

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
    (path, model_names): (&str, &[&str]),
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
    let semantic = semantic(
        own.semantic.as_ref(),
        defaults.semantic.as_ref(),
        (&p("semantic"), model_names),
        errs,
    );
    (ttl > 0).then(|| CachePolicy {
        ttl: Duration::from_millis(ttl),
        scope,
        max_entry_bytes,
        skip_sampled,
        stale: Duration::from_millis(stale),
        replay_chunk,
        semantic,
    })
}

/// A route's semantic policy, its own fields else the defaults'.
fn semantic(
    own: Option<&RawSemantic>,
    defaults: Option<&RawSemantic>,
    (path, model_names): (&str, &[&str]),
    errs: &mut Collector,
) -> Option<SemanticPolicy> {
    if own.is_none() && defaults.is_none() {
        return None;
    }
    let empty = RawSemantic::default();
    let (own, defaults) = (own.unwrap_or(&empty), defaults.unwrap_or(&empty));
    let p = |name: &str| format!("{path}.{name}");
    let threshold = match own.threshold.as_ref().or(defaults.threshold.as_ref()) {
        None => DEFAULT_SEMANTIC_THRESHOLD,
        Some(t) if (0.5..=1.0).contains(&t.value) => t.value,
        Some(t) => {
            errs.push(p("threshold"), Some(t), "a cosine similarity between 0.5 and 1.0");
            DEFAULT_SEMANTIC_THRESHOLD
        }
    };
    let embedder = match own.embedder.as_ref().or(defaults.embedder.as_ref()) {
        None => EmbedderChoice::MiniLm,
        Some(e) if e.value == "minilm" => EmbedderChoice::MiniLm,
        Some(e) if model_names.contains(&e.value.as_str()) => EmbedderChoice::Model(e.value.clone()),
        Some(e) => {
            errs.push(
                p("embedder"),
                Some(e),
                "minilm (in process) or the name of a model alias that serves embeddings",
            );
            EmbedderChoice::MiniLm
        }
    };
    let pick = |a: &Option<S<u64>>, b: &Option<S<u64>>| a.clone().or_else(|| b.clone());
    let max_wait = ranged(
        pick(&own.max_wait_ms, &defaults.max_wait_ms).as_ref(),
        DEFAULT_SEMANTIC_MAX_WAIT_MS,
        1,
        60_000,
        &p("max_wait_ms"),
        errs,
    );
    let min_chars = ranged(
        pick(&own.min_chars, &defaults.min_chars).as_ref(),
        DEFAULT_SEMANTIC_MIN_CHARS,
        0,
        100_000,
        &p("min_chars"),
        errs,
    );
    Some(SemanticPolicy {
        threshold: threshold as f32,
        embedder,
        max_wait: Duration::from_millis(max_wait),
        min_chars: min_chars as usize,
        verify: own.verify.as_ref().or(defaults.verify.as_ref()).is_none_or(|v| v.value),
    })
}

/// The top-level `embedder` block.
pub(crate) fn embedder(raw: &RawEmbedder, errs: &mut Collector) -> EmbedderConfig {
    EmbedderConfig {
        path: raw
            .path
            .as_ref()
            .map_or_else(|| DEFAULT_EMBEDDER_PATH.into(), |p| p.value.clone().into()),
        threads: ranged(raw.threads.as_ref(), 1, 1, 64, "embedder.threads", errs) as usize,
        queue: ranged(raw.queue.as_ref(), 64, 1, 100_000, "embedder.queue", errs) as usize,
    }
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
        semantic_max_entries: ranged(
            raw.semantic_max_entries.as_ref(),
            100_000,
            1,
            10_000_000,
            "cache.semantic_max_entries",
            errs,
        ) as usize,
        semantic_graph_above: ranged(
            raw.semantic_graph_above.as_ref(),
            DEFAULT_SEMANTIC_GRAPH_ABOVE,
            1,
            10_000_000,
            "cache.semantic_graph_above",
            errs,
        ) as usize,
    }
}
