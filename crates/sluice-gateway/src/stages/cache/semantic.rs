//! The semantic lookup, after an exact miss on a route with `cache.semantic`: the last user
//! turn is embedded and its partition searched on the embedder's threads (never the async
//! workers), within the route's `max_wait_ms` — a lookup that would take longer, or finds the
//! embedder's queue full, is given up and counted: the cache never makes a request slower by
//! more than that. A similar stored prompt answers only when its check agrees (numbers, names,
//! negation, order, format…) and its entry is still served.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_cache::semantic::{Features, SemanticSlot, question};
use sluice_cache::{CacheKey, Entry, KeyParts, Scope, Tiers};
use sluice_config::SemanticPolicy;
use sluice_embed::Pool;

use crate::telemetry::{Metrics, ReasonLabel};

/// What a semantic lookup found.
pub(super) enum Found {
    Hit {
        entry: Arc<Entry>,
        key: CacheKey,
        similarity: f32,
    },
    /// Nothing similar enough that agrees: the prompt's slot, to index with its answer.
    Miss(Option<Box<SemanticSlot>>),
}

/// The job the embedder's thread runs: embed, search the partition, read the prompt's check
/// features (tens of microseconds: not on the async workers either).
struct Searched {
    vector: Vec<f32>,
    candidates: Vec<sluice_cache::semantic::Candidate>,
    features: Features,
}

/// How many similar prompts are checked, most similar first.
const CANDIDATES: usize = 4;

#[allow(clippy::too_many_arguments)] // the lookup's inputs, each used
pub(super) async fn lookup(
    policy: &SemanticPolicy,
    pool: Option<&Pool>,
    tiers: &Tiers,
    scope: &Scope,
    parts: &KeyParts<'_>,
    chat: &Value,
    ttl: Duration,
    metrics: &Metrics,
) -> Found {
    let skip = |reason: &'static str| {
        metrics
            .cache_semantic_skips
            .get_or_create(&ReasonLabel { reason })
            .inc();
        Found::Miss(None)
    };
    let Some(pool) = pool else {
        return skip("no_embedder");
    };
    let Some(q) = question(scope, parts, chat, pool.model_id()) else {
        return skip("not_text");
    };
    if q.text.chars().count() < policy.min_chars {
        return skip("short");
    }
    let started = Instant::now();
    let deadline = started + policy.max_wait;
    let (index, partition, threshold) = (tiers.semantic.clone(), q.partition.clone(), policy.threshold);
    let text = q.text.clone();
    let job = move |m: &sluice_embed::MiniLm| {
        let vector = m.embed(&[text.as_str()]).ok()?.pop()?;
        let candidates = index.search(&partition, &vector, threshold, CANDIDATES);
        Some(Searched {
            vector,
            candidates,
            features: Features::of(&text),
        })
    };
    let Ok(answer) = pool.submit(deadline, job) else {
        return skip("busy");
    };
    let searched = match tokio::time::timeout(policy.max_wait, answer).await {
        Err(_) | Ok(Err(_)) => return skip("late"),
        Ok(Ok(None)) => return skip("error"),
        Ok(Ok(Some(s))) => s,
    };
    metrics.cache_embed.observe(started.elapsed().as_secs_f64());
    let features = searched.features;
    for c in &searched.candidates {
        if policy.verify
            && let Err(why) = features.agree(&c.features)
        {
            metrics
                .cache_semantic_rejected
                .get_or_create(&ReasonLabel { reason: why.as_str() })
                .inc();
            continue;
        }
        if let Some(entry) = tiers.get(&c.entry).await
            && entry.younger_than(ttl)
        {
            return Found::Hit {
                entry,
                key: c.entry.clone(),
                similarity: c.similarity,
            };
        }
    }
    Found::Miss(Some(Box::new(SemanticSlot {
        index: tiers.semantic.clone(),
        partition: q.partition,
        vector: searched.vector,
        text: q.text,
        features,
    })))
}
