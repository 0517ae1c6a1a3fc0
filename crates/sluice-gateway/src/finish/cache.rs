//! The response cache's part of a request's record: what the lookup found, and (on a hit)
//! what the stored answer saved.

use std::sync::Arc;

use sluice_providers::Usage;

use crate::telemetry::{CacheLabels, Metrics, RouteLabel};

/// What the response cache did (on routes that cache).
#[derive(Debug, Default)]
pub struct CachePart {
    /// `hit`, `semantic`, `stale`, `miss` or `bypass`; `None` on a route that does not cache.
    pub outcome: Option<&'static str>,
    /// The entry's key (its digest, written as hex into the log line).
    pub key: Option<sluice_cache::KeyDigest>,
    /// On a hit: what the stored answer cost when it was made.
    pub saved_cost_micros: Option<u64>,
    /// On a semantic hit: the cosine similarity of the two prompts.
    pub similarity: Option<f32>,
}

/// A stored answer served.
#[derive(Debug)]
pub struct CacheHit {
    /// `hit`, `semantic`, or `stale` (a fallback chain's `cache` step, past the TTL).
    pub outcome: &'static str,
    /// The stored answer's usage: shown to the client, charged to no one.
    pub usage: Usage,
    pub saved_cost_micros: u64,
    pub key: sluice_cache::KeyDigest,
    pub similarity: Option<f32>,
}

impl CachePart {
    /// The answer came from the cache (a hit, or a fallback's stale answer): charged nothing.
    pub(super) fn served(&self) -> bool {
        matches!(self.outcome, Some("hit" | "semantic" | "stale"))
    }

    /// The cache's metrics: the lookup's result, and what a hit saved.
    /// `tokens`: the stored answer's prompt and completion tokens (what a hit did not spend).
    pub(super) fn observe(&self, m: &Metrics, route: &Arc<str>, tokens: u64) {
        if let Some(result) = self.outcome {
            m.cache_lookups
                .get_or_create(&CacheLabels {
                    route: route.clone(),
                    result,
                })
                .inc();
        }
        if self.served() {
            let label = RouteLabel { route: route.clone() };
            m.cache_saved_cost
                .get_or_create(&label)
                .inc_by(self.saved_cost_micros.unwrap_or(0));
            m.cache_saved_tokens.get_or_create(&label).inc_by(tokens);
        }
    }
}
