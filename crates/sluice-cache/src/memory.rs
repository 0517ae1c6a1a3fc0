//! The in-process tier: entries within a byte budget, each kept for its route's TTL.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use moka::Expiry;
use sluice_providers::chat::{ChatResponse, Part};

use crate::flight::Leading;
use crate::key::CacheKey;

/// A stored answer.
#[derive(Debug)]
pub struct Entry {
    /// The canonical answer (written again in each client's format when replayed).
    pub answer: ChatResponse,
    /// What the answer cost when it was made, in micro-units (what a hit saves).
    pub cost_micros: u64,
    pub stored_at: SystemTime,
    /// How long it is served.
    pub ttl: Duration,
    /// How much longer it is kept, for a fallback chain's `cache` step.
    pub stale: Duration,
    bytes: u32,
}

/// What an entry takes beyond its text (the key, the answer's fields, the map's slot).
const OVERHEAD: usize = 256;

impl Entry {
    pub fn new(answer: ChatResponse, cost_micros: u64, ttl: Duration, stale: Duration) -> Entry {
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

fn weigh(a: &ChatResponse) -> u32 {
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

/// Each entry expires after its own TTL.
struct ByEntry;

impl Expiry<CacheKey, Arc<Entry>> for ByEntry {
    fn expire_after_create(&self, _key: &CacheKey, value: &Arc<Entry>, _created_at: Instant) -> Option<Duration> {
        Some(value.ttl.saturating_add(value.stale))
    }
}

/// Entries in this process, within `max_bytes` (least used evicted first).
#[derive(Clone)]
pub struct MemoryTier {
    cache: moka::sync::Cache<CacheKey, Arc<Entry>>,
    max_bytes: u64,
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
    pub fn new(max_bytes: u64) -> MemoryTier {
        MemoryTier {
            cache: moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_k: &CacheKey, v: &Arc<Entry>| v.bytes)
                .expire_after(ByEntry)
                .build(),
            max_bytes,
        }
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

    pub fn insert(&self, key: CacheKey, entry: Entry) {
        self.cache.insert(key, Arc::new(entry));
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

/// A miss on its way to being stored: the key the lookup made, and how the answer is kept.
/// The response stage commits it once the answer has ended well.
#[derive(Debug)]
pub struct Storing {
    tier: MemoryTier,
    key: CacheKey,
    ttl: Duration,
    stale: Duration,
    max_bytes: u64,
    /// The flight this miss leads, if it does: landed (its followers woken) when this is
    /// committed or dropped — after the entry is in the tier, or when the answer will not be.
    _leading: Option<Leading>,
}

impl Storing {
    pub fn new(
        tier: &MemoryTier,
        key: CacheKey,
        (ttl, stale): (Duration, Duration),
        max_bytes: u64,
        leading: Option<Leading>,
    ) -> Storing {
        Storing {
            tier: tier.clone(),
            key,
            ttl,
            stale,
            max_bytes,
            _leading: leading,
        }
    }

    /// The largest answer kept (in the cache's measure).
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Stores the answer; `false` (and nothing stored) when it is larger than the route allows.
    pub fn commit(self, answer: ChatResponse, cost_micros: u64) -> bool {
        let entry = Entry::new(answer, cost_micros, self.ttl, self.stale);
        if u64::from(entry.bytes()) > self.max_bytes {
            return false;
        }
        self.tier.insert(self.key.clone(), entry);
        // `self` (and the flight it leads) is dropped only now, with the entry in place.
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::key::{KeyParts, Scope};
    use sluice_config::CacheScope;

    fn key(n: usize) -> CacheKey {
        let body = format!("{{\"n\":{n}}}");
        let k: Arc<str> = Arc::from("k");
        CacheKey::new(
            &Scope::of(CacheScope::Tenant, None, None, &k),
            &KeyParts {
                route: "r",
                policy_version: "v",
                endpoint: "e",
                model: "m",
                headers: &[],
                body: body.as_bytes(),
            },
        )
    }

    fn answer(text: &str) -> ChatResponse {
        ChatResponse {
            id: "id".into(),
            model: "m".into(),
            content: vec![Part::Text(text.into())],
            stop_reason: None,
            stop_sequence: None,
            usage: Default::default(),
        }
    }

    #[test]
    fn entries_expire_with_their_ttl_and_stay_within_the_budget() {
        let tier = MemoryTier::new(64 * 1024);
        tier.insert(
            key(0),
            Entry::new(answer("short-lived"), 1, Duration::from_millis(1), Duration::ZERO),
        );
        tier.insert(
            key(1),
            Entry::new(answer("kept"), 1, Duration::from_secs(3600), Duration::ZERO),
        );
        std::thread::sleep(Duration::from_millis(20));
        assert!(tier.get(&key(0)).is_none(), "past its TTL");
        assert_eq!(
            tier.get(&key(1)).unwrap().answer.content,
            vec![Part::Text("kept".into())]
        );
        // 1 000 entries of ~1.3 KiB into a 64 KiB budget.
        let text = "x".repeat(1024);
        for n in 2..1002 {
            tier.insert(
                key(n),
                Entry::new(answer(&text), 1, Duration::from_secs(3600), Duration::ZERO),
            );
        }
        tier.sync();
        assert!(tier.bytes() <= 64 * 1024, "{} bytes held", tier.bytes());
        assert!(tier.entries() < 100);
    }

    #[test]
    fn purge_removes_what_matches_and_says_how_many() {
        let tier = MemoryTier::new(1 << 20);
        for n in 0..10 {
            tier.insert(
                key(n),
                Entry::new(answer("a"), 1, Duration::from_secs(3600), Duration::ZERO),
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
