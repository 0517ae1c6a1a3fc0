//! The response cache's lookup: after admission (a hit counts against request-rate limits)
//! and before the queue (a hit never waits for a place). On a hit the stored answer is the
//! reply; on a miss the key goes on, for the response stage that stores the answer once it has
//! ended well.
//!
//! Concurrent identical misses send one upstream request: the first leads, the others wait for
//! its answer to be stored (`sluice_cache::Flights`) and hit; if it is not stored (the leader
//! failed or its client left), one of them leads the next attempt.
//!
//! What the client may ask, bounded by the route: `cache-control: no-cache` (look nothing up,
//! store the fresh answer), `no-store` (do not store), `x-sluice-cache-ttl-ms` (store for less
//! than the route's TTL, and accept only entries younger than that). A request can never
//! lengthen a TTL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderMap;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sluice_cache::{CacheKey, Joined, KeyParts, MemoryTier, Scope, SharedMetrics, SharedTier, Storing, Tiers};
use sluice_config::{CachePolicy, Config, EmbedderChoice, RouteConfig};
use sluice_embed::Pool;
use sluice_providers::openai_chat::PlainChat;
use sluice_providers::{Endpoint, InboundRequest, translate};

use crate::error::{ErrorKind, GatewayError};
use crate::flow::{Decision, Flow, Live, Reply};
use crate::keys::Caller;
use crate::telemetry::Metrics;
use crate::timing::Stage;

mod control;
mod embeddings;
mod replay;
mod semantic;

use control::Control;
use replay::replay;
pub use replay::stale_answer;
pub use semantic::{EmbedUpstream, Embedders};

/// The lookup a route runs (none on a route that does not cache).
#[derive(Debug)]
pub struct CacheStage {
    on: Option<Lookup>,
}

#[derive(Debug)]
struct Lookup {
    policy: CachePolicy,
    route: Arc<str>,
    /// Per model alias (by index): a digest of the route's and the alias's config that shapes
    /// an answer. A reload that changes one starts new keys.
    versions: Box<[String]>,
    /// The route's fallback chain has a cache step (a miss then keeps its key for it).
    stale_step: bool,
    /// The model alias (by index) that embeds the route's prompts, when not in process.
    embedder_alias: Option<usize>,
}

/// What a lookup that did not answer hands on.
#[derive(Debug, Default)]
pub struct Looked {
    /// `miss` or `bypass`; `None` where the route does not cache.
    pub outcome: Option<&'static str>,
    /// The entry's key (its digest), for the access log.
    pub key: Option<sluice_cache::KeyDigest>,
    /// Where the answer is stored once it has ended well (not on `no-store`).
    pub store: Option<Storing>,
    /// The entry's key and the route's TTL, for a fallback chain's `cache` step.
    pub stale: Option<(CacheKey, Duration)>,
    /// An embeddings request cached per input: the request for the inputs not stored, and
    /// each input's slot.
    pub inputs: Option<(InboundRequest, Vec<sluice_cache::InputSlot>)>,
}

impl Looked {
    fn bypass() -> Looked {
        Looked {
            outcome: Some("bypass"),
            ..Looked::default()
        }
    }
}

impl CacheStage {
    pub fn new(route: &RouteConfig, config: &Config) -> CacheStage {
        CacheStage {
            on: route.policy.cache.clone().map(|policy| Lookup {
                policy,
                route: Arc::from(route.name.as_str()),
                versions: (0..config.models.len()).map(|m| version(route, config, m)).collect(),
                stale_step: route.fallback.cache.is_some(),
                embedder_alias: policy_alias(route, config),
            }),
        }
    }

    /// The stage's timer, when the route caches.
    pub fn timed(&self) -> Option<Stage> {
        self.on.as_ref().map(|_| Stage::Cache)
    }

    /// Looks the request up: the stored answer, or the key its answer will be stored under.
    /// A miss while an identical request is in the air waits for it (until `deadline`) and
    /// looks again.
    #[allow(clippy::too_many_arguments)] // the stage's typed inputs, each used
    pub async fn run(
        &self,
        (cache, embedders, metrics): (&Tiers, Embedders<'_>, &Metrics),
        caller: &Caller,
        decision: &Decision<'_>,
        inbound: &InboundRequest,
        headers: &HeaderMap,
        request_id: &str,
        (deadline, cache_only): (Instant, bool),
    ) -> Result<Flow<Looked>, GatewayError> {
        let Some(on) = &self.on else {
            return Ok(Flow::Next(Looked::default()));
        };
        // Under overload a route may serve only what it has: anything else is refused now,
        // before it would queue.
        let refused = || {
            GatewayError::new(
                ErrorKind::Unavailable,
                "cache_only",
                "The route is overloaded and serves only cached answers; this one is not cached.",
            )
            .with_retry_after(Some(1))
        };
        // A chat answer is kept in canonical form and replays in any client's format, streams
        // included; any other endpoint's (completions, embeddings, predictions) as the client
        // got it, so only whole answers.
        let chat_shaped = matches!(
            inbound.endpoint,
            Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::Responses
        );
        if !chat_shaped && inbound.view.stream {
            return if cache_only {
                Err(refused())
            } else {
                Ok(Flow::Next(Looked::bypass()))
            };
        }
        let control = Control::read(headers, on.policy.ttl);
        // One form for a chat request from any front door (and one endpoint name for them), else
        // the body's own.
        let semantic = on.policy.semantic.as_ref();
        let chat_form = chat_shaped.then(|| chat_form(inbound, semantic.is_some())).flatten();
        let (canonical, chat, endpoint) = match chat_form {
            Some((c, chat)) => (c, chat, "chat"),
            None => match sluice_cache::canonical(&inbound.body) {
                Ok(c) => (c, None, inbound.endpoint.as_str()),
                Err(_) if cache_only => return Err(refused()),
                Err(_) => return Ok(Flow::Next(Looked::bypass())),
            },
        };
        // Several answers to choose from are not one answer to keep; a route that must not
        // reuse sampled answers leaves them out.
        let samples = !matches!(inbound.endpoint, Endpoint::Embeddings | Endpoint::Predict);
        if canonical.choices > 1 || (on.policy.skip_sampled && samples && canonical.sampled) || control.ttl.is_zero() {
            return if cache_only {
                Err(refused())
            } else {
                Ok(Flow::Next(Looked::bypass()))
            };
        }
        let scope = Scope::of(
            on.policy.scope,
            caller.tenant.as_ref(),
            caller.team.as_ref(),
            &caller.key_id,
        );
        let parts = KeyParts {
            route: &on.route,
            policy_version: on.versions.get(decision.model_index).map_or("", String::as_str),
            endpoint,
            model: &decision.model.name,
            headers: control.answer_headers(),
            body: &canonical.bytes,
        };
        let key = CacheKey::new(&scope, &parts);
        let pace = on.policy.replay_chunk;
        // Embeddings of text: each input its own entry.
        if inbound.endpoint == Endpoint::Embeddings
            && !control.no_store
            && let Some(split) = embeddings::split(&inbound.body)
        {
            let kept = (control.ttl, on.policy.stale, on.policy.max_entry_bytes);
            match embeddings::lookup(cache, &scope, &parts, split, inbound, kept, control.no_cache).await {
                Some(embeddings::Inputs::All(reply)) => return Ok(Flow::Respond(reply)),
                Some(embeddings::Inputs::Some { .. }) if cache_only => return Err(refused()),
                Some(embeddings::Inputs::Some { request, slots, key }) => {
                    return Ok(Flow::Next(Looked {
                        outcome: Some("miss"),
                        key: Some(key),
                        inputs: Some((request, slots)),
                        ..Looked::default()
                    }));
                }
                None => {}
            }
        }
        let tiers = (&cache.memory, cache.shared.as_ref());
        let kept = (control.ttl, on.policy.stale);
        let storing = |leading, slot| {
            Storing::new(tiers, key.clone(), kept, on.policy.max_entry_bytes, leading).with_semantic(slot)
        };
        let miss = |store| {
            Flow::Next(Looked {
                outcome: Some("miss"),
                key: Some(key.digest()),
                store,
                stale: on.stale_step.then(|| (key.clone(), on.policy.ttl)),
                inputs: None,
            })
        };
        let mut slot = None;
        for round in 0.. {
            if !control.no_cache
                && let Some(entry) = cache.get(&key).await
                && entry.younger_than(control.ttl)
                && let Some(reply) = replay(&entry, inbound, request_id, (key.digest(), "hit", None), pace)
            {
                return Ok(Flow::Respond(reply));
            }
            // Not this question: perhaps one that means the same (looked up once).
            if round == 0
                && let (false, Some(policy), Some(chat)) = (control.no_cache, semantic, chat.as_ref())
            {
                let embedding = (&embedders, on.embedder_alias);
                let found =
                    semantic::lookup(policy, embedding, cache, &scope, &parts, chat, control.ttl, metrics).await;
                match found {
                    semantic::Found::Hit { entry, key, similarity } => {
                        let served = (key.digest(), "semantic", Some(similarity));
                        if let Some(reply) = replay(&entry, inbound, request_id, served, pace) {
                            return Ok(Flow::Respond(reply));
                        }
                    }
                    semantic::Found::Miss(s) => slot = s,
                }
            }
            if cache_only {
                return Err(refused());
            }
            if control.no_store {
                return Ok(miss(None));
            }
            match cache.flights.join(&key, inbound.view.stream) {
                Joined::Lead(leading) => return Ok(miss(Some(storing(Some(leading), slot)))),
                // `no-cache` asked for a fresh answer; a flight that keeps failing is followed
                // only so often.
                Joined::Follow(_) if control.no_cache || round >= MAX_FOLLOWS => break,
                // A streaming follower of a streaming leader gets its answer as it arrives,
                // from its first event; if the leader breaks off before that, the followers
                // look again (and one leads the next attempt).
                Joined::Follow(flight) if inbound.view.stream && flight.tape().is_some() => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let Ok(Some(tape)) = tokio::time::timeout(left, flight.tape_started()).await else {
                        break;
                    };
                    if tape.read(0) != sluice_cache::Read::End(sluice_cache::TapeEnd::Broken) {
                        return Ok(Flow::Respond(live(tape, inbound, request_id, key.digest())));
                    }
                    flight.landed().await;
                }
                // Anything else waits for the answer to be stored, and is answered from it (a
                // streaming follower of a whole answer gets a replay).
                Joined::Follow(flight) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if tokio::time::timeout(left, flight.landed()).await.is_err() {
                        break;
                    }
                }
            }
        }
        Ok(miss(Some(storing(None, slot))))
    }
}

/// A streaming follower's reply: the leader's tape in this client's format, with an id of its
/// own.
fn live(
    tape: Arc<sluice_cache::Tape>,
    inbound: &InboundRequest,
    request_id: &str,
    key: sluice_cache::KeyDigest,
) -> Reply {
    let wire = inbound.endpoint.wire();
    Reply::Live(Live {
        tape,
        wire,
        include_usage: inbound.view.include_usage,
        id: replay::fresh_answer_id(wire, request_id),
        key,
    })
}

/// How many landed flights a miss follows before it goes upstream on its own.
const MAX_FOLLOWS: usize = 3;

/// The cache's tiers: in process, and in Redis when `store.redis` is configured and
/// `cache.redis` is not turned off. Live state, built once at start (a reload keeps them).
pub fn tiers(config: &Config, metrics: SharedMetrics) -> Tiers {
    let c = &config.cache;
    let memory = MemoryTier::new(c.memory_bytes, c.tenant_max_percent);
    let shared = config.store.redis.as_ref().filter(|_| c.redis).map(|r| {
        let target = sluice_store::redis::RedisTarget {
            nodes: r.nodes.clone(),
            cluster: r.cluster,
            timeout: c.redis_timeout.unwrap_or(r.timeout),
        };
        SharedTier::new(target, &r.prefix, c.compress_above_bytes, metrics)
    });
    Tiers::new(memory, shared, c.semantic_max_entries, c.semantic_graph_above)
}

/// The embedder's threads, when a route has a semantic cache, with the in-process model
/// loaded (off the async threads) when a route embeds with it.
pub async fn embedder(config: &Config) -> Result<Option<Pool>, crate::StartError> {
    let semantic: Vec<&sluice_config::SemanticPolicy> = config
        .routes
        .iter()
        .filter_map(|r| r.policy.cache.as_ref()?.semantic.as_ref())
        .collect();
    // The injection classifier runs on the same in-process model.
    let classifier = config.routes.iter().any(|r| {
        r.guard.as_ref().is_some_and(|g| {
            g.rules
                .iter()
                .any(|rule| matches!(rule.check, sluice_config::GuardCheck::Classifier { .. }))
        })
    });
    if semantic.is_empty() && !classifier {
        return Ok(None);
    }
    let e = config.embedder.clone();
    let model = if classifier || semantic.iter().any(|s| s.embedder == EmbedderChoice::MiniLm) {
        let path = e.path.clone();
        let model = tokio::task::spawn_blocking(move || sluice_embed::MiniLm::load(&path))
            .await
            .map_err(|j| crate::StartError::EmbedderThreads(std::io::Error::other(j)))??;
        tracing::info!(path = %e.path.display(), threads = e.threads, "embedding model loaded (semantic cache, injection classifier)");
        Some(model)
    } else {
        None
    };
    let pool = Pool::start(model, e.threads, e.queue).map_err(crate::StartError::EmbedderThreads)?;
    Ok(Some(pool))
}

/// The model alias a route's semantic cache embeds with, by index (`None` in process).
fn policy_alias(route: &RouteConfig, config: &Config) -> Option<usize> {
    match &route.policy.cache.as_ref()?.semantic.as_ref()?.embedder {
        EmbedderChoice::Model(name) => config.models.iter().position(|m| m.name == *name),
        EmbedderChoice::MiniLm => None,
    }
}

/// A chat request's canonical form whatever its front door (chat completions, messages,
/// responses): read into the canonical request, whose form is written straight from it. The
/// same question asked through two front doors is then one entry, replayed in each client's
/// format. `None` when the request cannot be read so (its own body's form is used then).
/// With `keep`, the request as one OpenAI chat request too (with what that format has no
/// field for, `top_k`): a semantic route finds its last user turn there.
fn chat_form(inbound: &InboundRequest, keep: bool) -> Option<(sluice_cache::Canonical, Option<Value>)> {
    // The usual OpenAI request (text turns, the common parameters) is read without copying,
    // straight into its form (the same bytes as through the canonical request).
    if !keep
        && inbound.endpoint == Endpoint::ChatCompletions
        && let Some(plain) = PlainChat::read(&inbound.body)
    {
        return Some((sluice_cache::canonical::of_plain_chat(&plain), None));
    }
    let req = translate::read_request(inbound.endpoint.wire(), &inbound.body).ok()?;
    let kept = keep.then(|| {
        let mut value = translate::openai_chat_value(&req);
        if let (Some(k), Some(map)) = (req.top_k, value.as_object_mut()) {
            map.insert("top_k".to_owned(), k.into());
        }
        value
    });
    Some((sluice_cache::canonical::of_chat(&req), kept))
}

/// A digest of what in the route's and the alias's config shapes an answer: the route's model
/// override, parameters it forwards or drops, its response stage, and the alias's deployments
/// (provider, server, upstream model).
fn version(route: &RouteConfig, config: &Config, model: usize) -> String {
    let mut h = Sha256::new();
    let mut part = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    part(format!("{:?}", route.model).as_bytes());
    part(format!("{:?}", route.policy.forward_params).as_bytes());
    part(&[u8::from(route.policy.drop_unsupported)]);
    part(format!("{:?}", route.debug_rewrite).as_bytes());
    // The guardrails shape the request the upstream sees and the answer the client gets.
    part(format!("{:?}", route.guard).as_bytes());
    if let Some(m) = config.models.get(model) {
        for d in m.deployments.iter().filter_map(|&d| config.deployments.get(d)) {
            part(d.provider.as_str().as_bytes());
            part(
                d.base_url
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default()
                    .as_bytes(),
            );
            part(d.upstream_model.as_bytes());
        }
    }
    hex::encode(&h.finalize()[..8])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_policy_version_changes_with_the_guardrails() {
        let load = |guardrails: &str| {
            let yaml = format!(
                "models: [{{name: m, deployments: [d]}}]\ndeployments: [{{name: d, provider: mock}}]\nroutes: [{{name: r{guardrails}}}]\n"
            );
            sluice_config::load_str(&yaml, &|_| None).unwrap()
        };
        let v = |c: &Config| version(&c.routes[0], c, 0);
        let plain = load("");
        let pii = load(", guardrails: [pii-redact]");
        let both = load(", guardrails: [pii-redact, no-secrets]");
        assert_eq!(v(&plain), v(&load("")));
        assert_ne!(v(&plain), v(&pii));
        assert_ne!(v(&pii), v(&both));
    }
}
