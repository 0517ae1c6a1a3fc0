//! The in-process tier: entries within a byte budget, each kept for its route's TTL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use moka::Expiry;
use sluice_providers::chat::{ChatResponse, Part};
use sluice_providers::{Usage, Wire};

use crate::key::CacheKey;

/// What an entry holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// A chat answer in canonical form (written again in each client's format when replayed):
    /// a stream's, put together from its events.
    Chat(ChatResponse),
    /// A whole chat answer as its client got it: replayed as it is (with an id of its own) to
    /// a client of the same format that does not stream, read into canonical form for any
    /// other. Storing it costs no reading.
    Whole(Whole),
    /// Any other endpoint's whole answer as the client got it (completions, embeddings,
    /// predictions): replayed as it is.
    Body(Body),
}

/// A whole answer body.
#[derive(Debug, Clone, PartialEq)]
pub struct Body {
    pub content_type: Option<String>,
    pub bytes: bytes::Bytes,
    pub usage: Usage,
}

/// A whole chat answer's body, in the format of the client that got it.
#[derive(Debug, Clone, PartialEq)]
pub struct Whole {
    pub wire: Wire,
    pub bytes: bytes::Bytes,
    pub usage: Usage,
}

impl Answer {
    pub fn usage(&self) -> Usage {
        match self {
            Answer::Chat(c) => c.usage,
            Answer::Body(b) => b.usage,
            Answer::Whole(w) => w.usage,
        }
    }
}

/// A stored answer.
#[derive(Debug)]
pub struct Entry {
    pub answer: Answer,
    /// What the answer cost when it was made, in micro-units (what a hit saves).
    pub cost_micros: u64,
    pub stored_at: SystemTime,
    /// How long it is served.
    pub ttl: Duration,
    /// How much longer it is kept, for a fallback chain's `cache` step.
    pub stale: Duration,
    bytes: u32,
}

/// What an entry takes beyond its text: the key, the answer's fields and allocations, and
/// moka's own bookkeeping (its map, deques and timer wheel). Measured: with it, resident memory
/// grows 101–105 % of the budget whatever the entries' size (`examples/memory.rs`, BENCHMARKS.md).
const OVERHEAD: usize = 900;

impl Entry {
    pub fn new(answer: Answer, cost_micros: u64, ttl: Duration, stale: Duration) -> Entry {
        let bytes = weigh(&answer);
        Entry {
            answer,
            cost_micros,
            stored_at: SystemTime::now(),
            ttl,
            stale,
            bytes,
        }
    }

    /// How much longer it is kept (served, then stale), from now.
    pub fn remaining(&self) -> Duration {
        let age = self.stored_at.elapsed().unwrap_or_default();
        self.ttl.saturating_add(self.stale).saturating_sub(age)
    }

    /// Whether it is at most `within` old.
    pub fn younger_than(&self, within: Duration) -> bool {
        self.stored_at.elapsed().is_ok_and(|age| age <= within)
    }

    /// Its size in the cache's measure: the answer's text, tool calls and ids, and a fixed
    /// overhead.
    pub fn bytes(&self) -> u32 {
        self.bytes
    }
}

fn weigh(a: &Answer) -> u32 {
    let a = match a {
        Answer::Chat(c) => c,
        Answer::Body(b) => {
            let n = OVERHEAD + b.bytes.len() + b.content_type.as_ref().map_or(0, String::len);
            return u32::try_from(n).unwrap_or(u32::MAX);
        }
        Answer::Whole(w) => return u32::try_from(OVERHEAD + w.bytes.len()).unwrap_or(u32::MAX),
    };
    let mut n = OVERHEAD + a.id.len() + a.model.len();
    n += a.stop_sequence.as_ref().map_or(0, String::len);
    for p in &a.content {
        n += match p {
            Part::Text(t) => t.len(),
            Part::ToolUse { id, name, input } => id.len() + name.len() + input.to_string().len(),
            _ => 64,
        };
    }
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Each entry expires after its own TTL and stale time, counted from when it was first stored
/// (an entry brought in from the Redis tier keeps only what is left of its life).
struct ByEntry;

impl Expiry<CacheKey, Arc<Entry>> for ByEntry {
    fn expire_after_create(&self, _key: &CacheKey, value: &Arc<Entry>, _created_at: Instant) -> Option<Duration> {
        Some(value.remaining())
    }
}

/// Entries in this process, within `max_bytes` (least used evicted first), and within a share
/// of it per tenant.
#[derive(Clone)]
pub struct MemoryTier {
    cache: moka::sync::Cache<CacheKey, Arc<Entry>>,
    max_bytes: u64,
    /// The most one tenant's entries may take.
    tenant_max: u64,
    tenants: Arc<TenantBytes>,
}

/// Bytes held per tenant: added when an entry is stored, taken back when it leaves (the
/// cache's eviction listener: expired, evicted, replaced or purged).
#[derive(Debug)]
struct TenantBytes {
    shards: Box<[Mutex<Shard>]>,
}

/// A tenant (named, or a key of its own) → its bytes.
type Shard = HashMap<(bool, Arc<str>), u64>;

const TENANT_SHARDS: usize = 16;

impl TenantBytes {
    fn shard(&self, tenant: &(bool, Arc<str>)) -> MutexGuard<'_, Shard> {
        let h = tenant
            .1
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(usize::from(b)));
        self.shards[h % TENANT_SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `bytes` to the tenant's share unless it would pass `max`.
    fn take(&self, tenant: (bool, Arc<str>), bytes: u64, max: u64) -> bool {
        let mut shard = self.shard(&tenant);
        let used = shard.entry(tenant).or_insert(0);
        if used.saturating_add(bytes) > max {
            return false;
        }
        *used += bytes;
        true
    }

    fn give_back(&self, tenant: &(bool, Arc<str>), bytes: u64) {
        let mut shard = self.shard(tenant);
        if let Some(used) = shard.get_mut(tenant) {
            *used = used.saturating_sub(bytes);
            if *used == 0 {
                shard.remove(tenant);
            }
        }
    }

    fn largest(&self, n: usize) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = self
            .shards
            .iter()
            .flat_map(|s| {
                let s = s.lock().unwrap_or_else(PoisonError::into_inner);
                s.iter().map(|((_, t), b)| (t.to_string(), *b)).collect::<Vec<_>>()
            })
            .collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }
}

impl std::fmt::Debug for MemoryTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTier")
            .field("entries", &self.cache.entry_count())
            .field("bytes", &self.cache.weighted_size())
            .finish()
    }
}

impl MemoryTier {
    /// A tier of `max_bytes`, of which one tenant may take `tenant_max_percent`.
    pub fn new(max_bytes: u64, tenant_max_percent: u8) -> MemoryTier {
        let tenants = Arc::new(TenantBytes {
            shards: (0..TENANT_SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        });
        let held = tenants.clone();
        MemoryTier {
            cache: moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_k: &CacheKey, v: &Arc<Entry>| v.bytes)
                .expire_after(ByEntry)
                .eviction_listener(move |k: Arc<CacheKey>, v: Arc<Entry>, _cause| {
                    held.give_back(&k.scope().tenant_id(), u64::from(v.bytes));
                })
                .build(),
            max_bytes,
            tenant_max: max_bytes / 100 * u64::from(tenant_max_percent.clamp(1, 100)),
            tenants,
        }
    }

    /// The tenants holding the most bytes (their names; a tenant-less key by its id).
    pub fn largest_tenants(&self, n: usize) -> Vec<(String, u64)> {
        self.tenants.largest(n)
    }

    /// The byte budget.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Removes every entry whose key `matches`; returns how many. It walks every entry: call it
    /// from a thread that may block (the admin API does), never on the request path.
    pub fn purge(&self, matches: impl Fn(&CacheKey) -> bool) -> u64 {
        let keys: Vec<Arc<CacheKey>> = self.cache.iter().filter(|(k, _)| matches(k)).map(|(k, _)| k).collect();
        for k in &keys {
            self.cache.invalidate(k.as_ref());
        }
        keys.len() as u64
    }

    /// The entry for `key`, unless it expired.
    pub fn get(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        self.cache.get(key)
    }

    /// Stores an entry; `false` (and nothing stored) when its tenant's share is full.
    pub fn insert(&self, key: CacheKey, entry: Arc<Entry>) -> bool {
        if !self
            .tenants
            .take(key.scope().tenant_id(), u64::from(entry.bytes), self.tenant_max)
        {
            return false;
        }
        self.cache.insert(key, entry);
        true
    }

    /// Entries held (approximate until pending work is applied).
    pub fn entries(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Bytes held, in the cache's measure.
    pub fn bytes(&self) -> u64 {
        self.cache.weighted_size()
    }

    /// Applies pending inserts, evictions and expiries now (tests and stats).
    pub fn sync(&self) {
        self.cache.run_pending_tasks();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::key::test_key;

    fn key(n: usize) -> CacheKey {
        test_key(None, &format!("{{\"n\":{n}}}"))
    }

    fn answer(text: &str) -> Answer {
        Answer::Chat(ChatResponse {
            id: "id".into(),
            model: "m".into(),
            content: vec![Part::Text(text.into())],
            stop_reason: None,
            stop_sequence: None,
            usage: Default::default(),
        })
    }

    #[test]
    fn entries_expire_with_their_ttl_and_stay_within_the_budget() {
        let tier = MemoryTier::new(64 * 1024, 100);
        tier.insert(
            key(0),
            Arc::new(Entry::new(
                answer("short-lived"),
                1,
                Duration::from_millis(1),
                Duration::ZERO,
            )),
        );
        tier.insert(
            key(1),
            Arc::new(Entry::new(answer("kept"), 1, Duration::from_secs(3600), Duration::ZERO)),
        );
        std::thread::sleep(Duration::from_millis(20));
        assert!(tier.get(&key(0)).is_none(), "past its TTL");
        assert_eq!(tier.get(&key(1)).unwrap().answer, answer("kept"));
        // 1 000 entries of ~1.3 KiB into a 64 KiB budget.
        let text = "x".repeat(1024);
        for n in 2..1002 {
            tier.insert(
                key(n),
                Arc::new(Entry::new(answer(&text), 1, Duration::from_secs(3600), Duration::ZERO)),
            );
        }
        tier.sync();
        assert!(tier.bytes() <= 64 * 1024, "{} bytes held", tier.bytes());
        assert!(tier.entries() < 100);
    }

    fn tenant_key(tenant: &str, n: usize) -> CacheKey {
        test_key(Some(tenant), &n.to_string())
    }

    #[test]
    fn one_tenant_cannot_take_more_than_its_share() {
        let tier = MemoryTier::new(1 << 20, 25);
        let text = "x".repeat(4096);
        let stored = (0..1000)
            .filter(|n| {
                tier.insert(
                    tenant_key("greedy", *n),
                    Arc::new(Entry::new(answer(&text), 1, Duration::from_secs(3600), Duration::ZERO)),
                )
            })
            .count();
        tier.sync();
        let greedy = tier.largest_tenants(1);
        assert_eq!(greedy[0].0, "greedy");
        assert!(greedy[0].1 <= (1 << 20) / 4, "{greedy:?}");
        assert!((50..=64).contains(&stored), "{stored} stored");
        // Another tenant still has room.
        assert!(tier.insert(
            tenant_key("modest", 0),
            Arc::new(Entry::new(
                answer("small"),
                1,
                Duration::from_secs(3600),
                Duration::ZERO
            ))
        ));
        assert!(tier.get(&tenant_key("modest", 0)).is_some());
        // What leaves gives its room back.
        assert_eq!(tier.purge(|k| k.scope().tenant() == "greedy"), stored as u64);
        tier.sync();
        assert_eq!(tier.largest_tenants(5).iter().find(|(t, _)| t == "greedy"), None);
        assert!(tier.insert(
            tenant_key("greedy", 5000),
            Arc::new(Entry::new(answer(&text), 1, Duration::from_secs(3600), Duration::ZERO))
        ));
    }

    #[test]
    fn purge_removes_what_matches_and_says_how_many() {
        let tier = MemoryTier::new(1 << 20, 100);
        for n in 0..10 {
            tier.insert(
                key(n),
                Arc::new(Entry::new(answer("a"), 1, Duration::from_secs(3600), Duration::ZERO)),
            );
        }
        let odd: Vec<String> = (0..10).filter(|n| n % 2 == 1).map(|n| key(n).hex()).collect();
        assert_eq!(tier.purge(|k| odd.contains(&k.hex())), 5);
        assert!(tier.get(&key(1)).is_none());
        assert!(tier.get(&key(2)).is_some());
        assert_eq!(tier.purge(|k| k.route() == "r"), 5);
        assert!(tier.get(&key(2)).is_none());
    }
}
