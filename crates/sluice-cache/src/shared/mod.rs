//! The Redis tier: entries every instance sharing `store.redis` can serve.
//!
//! An entry is one Redis string under `{prefix}:cache:{T}:{digest}` — `T` a hash of the
//! tenant's name (a hash tag: a tenant's entries share a cluster slot) — kept for its TTL plus
//! its stale time (`PX`). A lookup is one `GET`. A store is one script that also records the
//! entry in its tenant's index (a sorted set by expiry, trimmed as it goes), so a purge by
//! tenant, route or key finds what to delete without scanning the keyspace; the tenants with
//! entries are a set of their own.
//!
//! A purge is also published on `{prefix}:cache:purge`: every instance subscribed drops what
//! it holds in process that matches.
//!
//! Redis is never an error for a caller. A call that fails or times out counts, and takes the
//! tier down: lookups and stores skip it (a miss, counted) until a probe every
//! [`PROBE_EVERY`] finds it back — an outage costs one timeout per probe, not one per request.

mod encode;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sluice_store::redis::{RedisFailure, RedisLink, RedisTarget};

use crate::key::{CacheKey, WireKey};
use crate::memory::Entry;

/// How often a probe asks a tier that is down whether it is back.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Stores an entry (KEYS: the entry, its tenant's index; ARGV: the bytes, its life in ms, the
/// index member, now in unix ms). The index keeps members until their entry expires.
const PUT: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local now = tonumber(ARGV[4])
local life = tonumber(ARGV[2])
redis.call('ZADD', KEYS[2], now + life, ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('PTTL', KEYS[2]) < life then
  redis.call('PEXPIRE', KEYS[2], life)
end
return 1
";

/// Deletes a tenant's entries that match (KEYS: its index; ARGV: a route or '', a digest or '',
/// the entries' key prefix); returns how many it deleted.
const PURGE: &str = r"
local n = 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local tab = string.find(m, '\t', 1, true)
  if tab then
    local route = string.sub(m, 1, tab - 1)
    local digest = string.sub(m, tab + 1)
    if (ARGV[1] == '' or ARGV[1] == route) and (ARGV[2] == '' or ARGV[2] == digest) then
      n = n + redis.call('DEL', ARGV[3] .. digest)
      redis.call('ZREM', KEYS[1], m)
    end
  end
end
return n
";

/// The Redis tier's metrics.
#[derive(Debug, Clone, Default)]
pub struct SharedMetrics {
    /// 1 while the tier answers, 0 while it is down.
    pub up: Gauge,
    /// Lookups that reached past the in-process tier, by result: hit, miss, error (the call
    /// failed or timed out), skipped (the tier was down).
    pub lookups: Family<ResultLabel, Counter>,
    /// Calls that failed or timed out, by operation: get, put, purge, publish, probe.
    pub errors: Family<OpLabel, Counter>,
    /// Entries written.
    pub stores: Counter,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    pub op: &'static str,
}

/// Which entries a purge removes: those matching every filter given (all, with none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeFilter {
    /// A tenant's name (a key without a tenant: its key id).
    pub tenant: Option<String>,
    pub route: Option<String>,
    /// An entry's digest in hex (the access log's `cache_key`).
    pub key: Option<String>,
}

impl PurgeFilter {
    pub fn matches(&self, k: &CacheKey) -> bool {
        self.tenant.as_deref().is_none_or(|t| k.scope().tenant() == t)
            && self.route.as_deref().is_none_or(|r| k.route() == r)
            && self.key.as_deref().is_none_or(|h| k.hex() == h)
    }
}

/// A prompt one instance indexed for semantic lookups, for the others to index too (its entry
/// is in Redis).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SemanticNote {
    pub partition: WireKey,
    pub entry: WireKey,
    pub vector: Vec<f32>,
    /// The prompt (its check's features are read from it again).
    pub text: String,
    /// When the entry stops being served, unix ms.
    pub expires_at_ms: u64,
}

/// What instances tell each other.
#[derive(Debug, Clone)]
pub enum Note {
    Purge(PurgeFilter),
    Semantic(Box<SemanticNote>),
}

/// The tier: a link to Redis, and whether it is up.
pub struct SharedTier {
    link: RedisLink,
    prefix: String,
    compress_above: usize,
    up: AtomicBool,
    metrics: SharedMetrics,
    put: redis::Script,
    purge: redis::Script,
}

impl std::fmt::Debug for SharedTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedTier")
            .field("link", &self.link)
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

/// The hash tag of a tenant's entries.
fn tenant_tag(tenant: &str) -> String {
    hex::encode(&Sha256::digest(tenant.as_bytes())[..8])
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl SharedTier {
    pub fn new(target: RedisTarget, prefix: &str, compress_above: u64, metrics: SharedMetrics) -> Arc<SharedTier> {
        metrics.up.set(1);
        Arc::new(SharedTier {
            link: RedisLink::new(target),
            prefix: format!("{prefix}:cache"),
            compress_above: usize::try_from(compress_above).unwrap_or(usize::MAX),
            up: AtomicBool::new(true),
            metrics,
            put: redis::Script::new(PUT),
            purge: redis::Script::new(PURGE),
        })
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub fn metrics(&self) -> &SharedMetrics {
        &self.metrics
    }

    fn entry_key(&self, tag: &str, digest: &str) -> String {
        format!("{}:{{{tag}}}:{digest}", self.prefix)
    }

    fn index_key(&self, tag: &str) -> String {
        format!("{}:{{{tag}}}:index", self.prefix)
    }

    fn tenants_key(&self) -> String {
        format!("{}:tenants", self.prefix)
    }

    /// The channel purges are published on.
    pub fn purge_channel(&self) -> String {
        format!("{}:purge", self.prefix)
    }

    /// The channel indexed prompts are published on.
    pub fn semantic_channel(&self) -> String {
        format!("{}:semantic", self.prefix)
    }

    /// Tells every instance to index a prompt (in the background).
    pub fn publish_semantic(self: &Arc<Self>, note: &SemanticNote) {
        if !self.is_up() {
            return;
        }
        let Ok(message) = serde_json::to_string(note) else {
            return;
        };
        let tier = self.clone();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            let cmd = redis::cmd("PUBLISH").arg(tier.semantic_channel()).arg(message).clone();
            if let Err(e) = tier.link.query::<i64>(&cmd).await {
                tier.failed("publish", &e);
            }
        });
    }

    fn count(&self, result: &'static str) {
        self.metrics.lookups.get_or_create(&ResultLabel { result }).inc();
    }

    /// A call failed: counted, and the tier is down until a probe finds it back.
    fn failed(self: &Arc<Self>, op: &'static str, e: &RedisFailure) {
        self.metrics.errors.get_or_create(&OpLabel { op }).inc();
        if !self.up.swap(false, Ordering::AcqRel) {
            return;
        }
        self.metrics.up.set(0);
        tracing::warn!(error = %e, op, "the cache's Redis tier is unreachable: serving from memory until it is back");
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(probe_until_up(Arc::downgrade(self)));
        }
    }

    /// The entry stored under `key`, if Redis has it and answers in time. Never an error: a
    /// failure is a miss (counted), and takes the tier down.
    pub async fn get(self: &Arc<Self>, key: &CacheKey) -> Option<Entry> {
        if !self.is_up() {
            self.count("skipped");
            return None;
        }
        let name = self.entry_key(&tenant_tag(key.scope().tenant()), &key.hex());
        match self.link.query::<Option<Vec<u8>>>(redis::cmd("GET").arg(name)).await {
            Ok(Some(bytes)) => {
                let entry = encode::decode(&bytes);
                self.count(if entry.is_some() { "hit" } else { "miss" });
                entry
            }
            Ok(None) => {
                self.count("miss");
                None
            }
            Err(e) => {
                self.count("error");
                self.failed("get", &e);
                None
            }
        }
    }

    /// The entries under `keys` (of one tenant: they share a hash slot), in one `MGET`. A
    /// failure is all misses (counted), and takes the tier down.
    pub async fn get_many(self: &Arc<Self>, keys: &[&CacheKey]) -> Vec<Option<Entry>> {
        let none = || keys.iter().map(|_| None).collect();
        if keys.is_empty() {
            return Vec::new();
        }
        if !self.is_up() {
            self.count("skipped");
            return none();
        }
        let mut cmd = redis::cmd("MGET");
        for k in keys {
            cmd.arg(self.entry_key(&tenant_tag(k.scope().tenant()), &k.hex()));
        }
        match self.link.query::<Vec<Option<Vec<u8>>>>(&cmd).await {
            Ok(values) => values
                .into_iter()
                .map(|v| {
                    let entry = v.as_deref().and_then(encode::decode);
                    self.count(if entry.is_some() { "hit" } else { "miss" });
                    entry
                })
                .collect(),
            Err(e) => {
                self.count("error");
                self.failed("get", &e);
                none()
            }
        }
    }

    /// Stores `entry` in the background (the answer's end never waits for Redis).
    pub fn put(self: &Arc<Self>, key: &CacheKey, entry: &Entry) {
        if !self.is_up() {
            return;
        }
        let Some(bytes) = encode::encode(entry, self.compress_above) else {
            return;
        };
        let life = entry.ttl.saturating_add(entry.stale).as_millis().max(1);
        let tag = tenant_tag(key.scope().tenant());
        let (name, index) = (self.entry_key(&tag, &key.hex()), self.index_key(&tag));
        let member = format!("{}\t{}", key.route(), key.hex());
        let tier = self.clone();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            let mut put = tier.put.key(name);
            put.key(index).arg(bytes).arg(life as u64).arg(member).arg(now_ms());
            let stored = match tier.link.invoke::<i64>(&put).await {
                Ok(_) => {
                    tier.link
                        .query::<i64>(redis::cmd("SADD").arg(tier.tenants_key()).arg(&tag))
                        .await
                }
                Err(e) => Err(e),
            };
            match stored {
                Ok(_) => {
                    tier.metrics.stores.inc();
                }
                Err(e) => tier.failed("put", &e),
            }
        });
    }

    /// Deletes the entries that match from Redis; how many.
    pub async fn purge(self: &Arc<Self>, filter: &PurgeFilter) -> Result<u64, RedisFailure> {
        let result = self.purge_in_redis(filter).await;
        if let Err(e) = &result {
            self.failed("purge", e);
        }
        result
    }

    async fn purge_in_redis(&self, filter: &PurgeFilter) -> Result<u64, RedisFailure> {
        let tags = match &filter.tenant {
            Some(t) => vec![tenant_tag(t)],
            None => {
                self.link
                    .query::<Vec<String>>(redis::cmd("SMEMBERS").arg(self.tenants_key()))
                    .await?
            }
        };
        let mut n = 0;
        for tag in tags {
            let mut purge = self.purge.key(self.index_key(&tag));
            purge
                .arg(filter.route.as_deref().unwrap_or(""))
                .arg(filter.key.as_deref().unwrap_or(""))
                .arg(format!("{}:{{{tag}}}:", self.prefix));
            n += self.link.invoke::<u64>(&purge).await?;
        }
        Ok(n)
    }

    /// Tells every instance subscribed to drop what matches from its in-process tier.
    pub async fn publish_purge(self: &Arc<Self>, filter: &PurgeFilter) -> Result<(), RedisFailure> {
        let message = serde_json::to_string(filter).unwrap_or_default();
        let published = self
            .link
            .query::<i64>(redis::cmd("PUBLISH").arg(self.purge_channel()).arg(message))
            .await;
        match published {
            Ok(_) => Ok(()),
            Err(e) => {
                self.failed("purge", &e);
                Err(e)
            }
        }
    }

    /// Listens for what any instance publishes (purges, indexed prompts), and hands each to
    /// `apply`, for as long as the tier lives (reconnecting after a lost connection; what is
    /// published meanwhile is not heard).
    pub fn subscribe(self: &Arc<Self>, apply: impl Fn(Note) + Send + Sync + 'static) {
        let weak = Arc::downgrade(self);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            loop {
                let Some(tier) = weak.upgrade() else { return };
                let client = tier.link.subscriber_client();
                let channels = [tier.purge_channel(), tier.semantic_channel()];
                drop(tier);
                if let Ok(client) = client {
                    listen(&client, &channels, &weak, &apply).await;
                }
                tokio::time::sleep(PROBE_EVERY).await;
            }
        });
    }
}

/// One subscription, until its connection ends or the tier is gone.
async fn listen(
    client: &redis::Client,
    [purge, semantic]: &[String; 2],
    weak: &std::sync::Weak<SharedTier>,
    apply: &(impl Fn(Note) + Send + Sync),
) {
    use futures_util::StreamExt;
    let Ok(mut pubsub) = client.get_async_pubsub().await else {
        return;
    };
    if pubsub.subscribe(purge).await.is_err() || pubsub.subscribe(semantic).await.is_err() {
        return;
    }
    let mut messages = pubsub.on_message();
    while let Some(m) = messages.next().await {
        if weak.strong_count() == 0 {
            return;
        }
        let payload = m.get_payload_bytes();
        let note = if m.get_channel_name() == purge {
            serde_json::from_slice(payload).ok().map(Note::Purge)
        } else {
            serde_json::from_slice(payload)
                .ok()
                .map(|n| Note::Semantic(Box::new(n)))
        };
        if let Some(note) = note {
            apply(note);
        }
    }
}

/// Pings a tier that is down every [`PROBE_EVERY`] until it answers (or the tier is gone).
async fn probe_until_up(weak: std::sync::Weak<SharedTier>) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        let Some(tier) = weak.upgrade() else { return };
        match tier.link.query::<String>(&redis::cmd("PING")).await {
            Ok(_) => {
                tier.up.store(true, Ordering::Release);
                tier.metrics.up.set(1);
                tracing::info!("the cache's Redis tier is back");
                return;
            }
            Err(_) => {
                tier.metrics.errors.get_or_create(&OpLabel { op: "probe" }).inc();
            }
        }
    }
}
