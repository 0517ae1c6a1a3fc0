//! The semantic lookup, after an exact miss on a route with `cache.semantic`: the last user
//! turn is embedded and its partition searched on the embedder's threads (never the async
//! workers), within the route's `max_wait_ms` — a lookup that would take longer, or finds the
//! embedder's queue full, is given up and counted: the cache never makes a request slower by
//! more than that. A similar stored prompt answers only when its check agrees (numbers, names,
//! negation, order, format…) and its entry is still served.
//!
//! The embedder is the in-process model, or an embedding deployment behind a model alias,
//! reached through the gateway's own provider layer ([`EmbedUpstream`], which the spine
//! implements) within the same `max_wait_ms`; its vector is then searched on the embedder's
//! threads too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_cache::semantic::{Features, SemanticSlot, question};
use sluice_cache::{CacheKey, Entry, KeyParts, Scope, Tiers};
use sluice_config::{EmbedderChoice, SemanticPolicy};
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

/// An embedding deployment reached through the gateway's own provider layer, for a semantic
/// route whose embedder is a model alias. The spine implements it: stages never import the
/// upstream layer.
pub trait EmbedUpstream: Send + Sync {
    /// `text`'s embedding from the alias at `model` (its index in the config), by
    /// `deadline`; `None` when the deployment failed or answered something else.
    fn embed<'a>(
        &'a self,
        model: usize,
        text: &'a str,
        deadline: Instant,
    ) -> std::pin::Pin<Box<dyn Future<Output = Option<Vec<f32>>> + Send + 'a>>;
}

/// What embeds a semantic route's prompts: the embedder's threads (with the in-process model
/// when a route uses it) and the gateway's own way to an embedding deployment.
#[derive(Clone, Copy)]
pub struct Embedders<'a> {
    pub pool: Option<&'a Pool>,
    pub upstream: &'a dyn EmbedUpstream,
}

#[allow(clippy::too_many_arguments)] // the lookup's inputs, each used
pub(super) async fn lookup(
    policy: &SemanticPolicy,
    (embedders, alias): (&Embedders<'_>, Option<usize>),
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
    // The pool's threads search (and embed, with the in-process model); an alias embeds
    // through the provider layer.
    let Some(pool) = embedders.pool else {
        return skip("no_embedder");
    };
    let (alias, embedder_id) = match (&policy.embedder, alias) {
        (EmbedderChoice::MiniLm, _) => match pool.model_id() {
            Some(id) => (None, id.to_owned()),
            None => return skip("no_embedder"),
        },
        (EmbedderChoice::Model(name), Some(i)) => (Some(i), format!("model:{name}")),
        (EmbedderChoice::Model(_), None) => return skip("no_embedder"),
    };
    let Some(q) = question(scope, parts, chat, &embedder_id) else {
        return skip("not_text");
    };
    if q.text.chars().count() < policy.min_chars {
        return skip("short");
    }
    let started = Instant::now();
    let deadline = started + policy.max_wait;
    let (index, partition, threshold) = (tiers.semantic.clone(), q.partition.clone(), policy.threshold);
    let text = q.text.clone();
    // The deployment's vector, when it embeds: fetched first, within the same wait.
    let fetched = match alias {
        None => None,
        Some(i) => {
            let asked = embedders.upstream.embed(i, &q.text, deadline);
            match tokio::time::timeout_at(deadline.into(), asked).await {
                Err(_) => return skip("late"),
                Ok(v) => match v.and_then(unit) {
                    Some(v) => Some(v),
                    // The attempts loop gives up at the deadline too.
                    None if Instant::now() >= deadline => return skip("late"),
                    None => return skip("error"),
                },
            }
        }
    };
    let job = move |m: Option<&sluice_embed::MiniLm>| {
        let vector = match fetched {
            Some(v) => v,
            None => m?.embed(&[text.as_str()]).ok()?.pop()?,
        };
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
    let searched = match tokio::time::timeout_at(deadline.into(), answer).await {
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

/// A vector scaled to unit length (the index compares by dot product); `None` for an empty
/// or zero vector, or one with a value that is not a number.
fn unit(mut v: Vec<f32>) -> Option<Vec<f32>> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if v.is_empty() || !norm.is_normal() {
        return None;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    Some(v)
}
