//! The in-process tier: entries within a byte budget, each kept for its route's TTL (and
//! stale time), and within a share of the budget per tenant.
//!
//! The entries are spread over shards by their key's digest, each a CLOCK ring behind its own
//! lock (held for a table lookup and a few slot moves: no lock is shared by every request).
//! What leaves — expired, evicted to make room, replaced or purged — is counted where it
//! leaves, so the counts and the tenants' shares are exact, with nothing pending. Expired
//! entries are never served; they leave when next looked up, when the hand passes, or in the
//! background sweep ([`MemoryTier::sweep`]).

mod clock;
mod entry;
mod tenants;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

pub use entry::{Answer, Body, Entry, Whole};

use crate::key::CacheKey;
use clock::{Gone, Held, Shard};
use tenants::TenantBytes;

/// Entries in this process, within `max_bytes` (least recently read evicted first), and
/// within a share of it per tenant.
#[derive(Clone)]
pub struct MemoryTier {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Box<[Mutex<Shard>]>,
    /// Each shard's share of the budget.
    shard_bytes: u64,
    max_bytes: u64,
    /// The most one tenant's entries may take.
    tenant_max: u64,
    tenants: TenantBytes,
    entries: AtomicU64,
    bytes: AtomicU64,
    evictions: AtomicU64,
}

/// The smallest share of the budget a shard holds (so an entry of up to a route's largest
/// default size always fits one), and the most shards.
const SHARD_BYTES: u64 = 8 << 20;
const MAX_SHARDS: u64 = 64;

impl std::fmt::Debug for MemoryTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTier")
            .field("entries", &self.entries())
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl MemoryTier {
    /// A tier of `max_bytes`, of which one tenant may take `tenant_max_percent`.
    pub fn new(max_bytes: u64, tenant_max_percent: u8) -> MemoryTier {
        let shards = (max_bytes / SHARD_BYTES).clamp(1, MAX_SHARDS);
        // A power of two: a key's shard is the low bits of its digest.
        let shards = 1u64 << shards.ilog2();
        MemoryTier {
            inner: Arc::new(Inner {
                shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(),
                shard_bytes: max_bytes / shards,
                max_bytes,
                tenant_max: max_bytes / 100 * u64::from(tenant_max_percent.clamp(1, 100)),
                tenants: TenantBytes::new(),
                entries: AtomicU64::new(0),
                bytes: AtomicU64::new(0),
                evictions: AtomicU64::new(0),
            }),
        }
    }

    fn shard(&self, key: &CacheKey) -> MutexGuard<'_, Shard> {
        let shards = &self.inner.shards;
        // The digest's head is spread evenly; its high bits pick the shard (the table inside
        // uses the low ones).
        let at = (key.head() >> 58) as usize & (shards.len() - 1);
        shards[at].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts what left a shard, and gives its bytes back to its tenant.
    fn gone(&self, held: Held, why: Gone) {
        let bytes = u64::from(held.entry.bytes());
        self.inner.entries.fetch_sub(1, Ordering::Relaxed);
        self.inner.bytes.fetch_sub(bytes, Ordering::Relaxed);
        if why == Gone::Evicted {
            self.inner.evictions.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.tenants.give_back(&held.key.scope().tenant_id(), bytes);
    }

    /// The tenants holding the most bytes (their names; a tenant-less key by its id).
    pub fn largest_tenants(&self, n: usize) -> Vec<(String, u64)> {
        self.inner.tenants.largest(n)
    }

    /// The byte budget.
    pub fn max_bytes(&self) -> u64 {
        self.inner.max_bytes
    }

    /// Removes every entry whose key `matches`; returns how many. It walks every entry: call it
    /// from a thread that may block (the admin API does), never on the request path.
    pub fn purge(&self, matches: impl Fn(&CacheKey) -> bool) -> u64 {
        let mut n = 0;
        for shard in self.inner.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            shard.purge(&matches, &mut |held, why| {
                n += 1;
                self.gone(held, why);
            });
        }
        n
    }

    /// The entry for `key`, unless it expired.
    pub fn get(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        let mut dropped = None;
        let found = self.shard(key).get(key, &mut |held, why| dropped = Some((held, why)));
        // Counted (and the entry dropped) with the shard's lock released.
        if let Some((held, why)) = dropped {
            self.gone(held, why);
        }
        found
    }

    /// Stores an entry. When its tenant's entries would take more than the tenant's share,
    /// the tenant's own least recently read entries make room (never another tenant's);
    /// `false` (and nothing stored) when they cannot, or the entry is larger than a shard's
    /// part of the budget.
    pub fn insert(&self, key: CacheKey, entry: Arc<Entry>) -> bool {
        let bytes = u64::from(entry.bytes());
        // Larger than the tenant's whole share: it would only empty the tenant's room.
        if bytes > self.inner.tenant_max {
            return false;
        }
        let tenant = key.scope().tenant_id();
        // The entry's bytes are the tenant's from here (given back if it is not stored): what is
        // over its share, this insert evicts among the tenant's own entries.
        let over = self
            .inner
            .tenants
            .add(tenant.clone(), bytes)
            .saturating_sub(self.inner.tenant_max);
        let mut left = Vec::new();
        let stored = self
            .shard(&key)
            .insert(key, entry, (self.inner.shard_bytes, over), &mut |held, why| {
                left.push((held, why));
            })
            .is_ok();
        for (held, why) in left {
            self.gone(held, why);
        }
        if stored {
            self.inner.entries.fetch_add(1, Ordering::Relaxed);
            self.inner.bytes.fetch_add(bytes, Ordering::Relaxed);
        } else {
            self.inner.tenants.give_back(&tenant, bytes);
        }
        stored
    }

    /// Removes expired entries, looking at up to `budget` slots of each shard (from where the
    /// last sweep stopped): a background task's work, a shard's lock at a time. Returns how
    /// many slots it looked at.
    pub fn sweep(&self, budget: usize) -> usize {
        let mut looked = 0;
        for shard in self.inner.shards.iter() {
            let mut left = Vec::new();
            looked += shard
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .sweep(budget, &mut |held, why| left.push((held, why)));
            for (held, why) in left {
                self.gone(held, why);
            }
        }
        looked
    }

    /// Entries held.
    pub fn entries(&self) -> u64 {
        self.inner.entries.load(Ordering::Relaxed)
    }

    /// Bytes held, in the cache's measure.
    pub fn bytes(&self) -> u64 {
        self.inner.bytes.load(Ordering::Relaxed)
    }

    /// Entries evicted to make room since the start.
    pub fn evictions(&self) -> u64 {
        self.inner.evictions.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use sluice_providers::chat::{ChatResponse, Part};

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
        // A tenant at its share makes room among its own entries (it is never refused).
        for n in 0..1000 {
            assert!(tier.insert(tenant_key("greedy", n), kept(&text)), "{n}");
        }
        let greedy = tier.largest_tenants(1);
        assert_eq!(greedy[0].0, "greedy");
        assert!(greedy[0].1 <= (1 << 20) / 4, "{greedy:?}");
        assert!(
            greedy[0].1 > (1 << 20) / 4 - 2 * u64::from(kept(&text).bytes()),
            "{greedy:?}"
        );
        assert!(tier.get(&tenant_key("greedy", 999)).is_some());
        assert!(tier.get(&tenant_key("greedy", 0)).is_none());
        // Another tenant still has room, and keeps it while the first goes on storing.
        assert!(tier.insert(tenant_key("modest", 0), kept("small")));
        for n in 1000..1500 {
            assert!(tier.insert(tenant_key("greedy", n), kept(&text)));
        }
        assert!(tier.get(&tenant_key("modest", 0)).is_some());
        // What leaves gives its room back.
        let held = tier.entries() - 1;
        assert_eq!(tier.purge(|k| k.scope().tenant() == "greedy"), held);
        assert_eq!(tier.largest_tenants(5).iter().find(|(t, _)| t == "greedy"), None);
        assert!(tier.insert(tenant_key("greedy", 5000), kept(&text)));
        // An answer larger than the whole share is not stored, and takes nothing with it.
        let held = tier.entries();
        assert!(!tier.insert(tenant_key("greedy", 6000), kept(&"z".repeat(300 * 1024))));
        assert_eq!(tier.entries(), held);
        assert!(tier.get(&tenant_key("greedy", 5000)).is_some());
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

    fn kept(text: &str) -> Arc<Entry> {
        Arc::new(Entry::new(answer(text), 1, Duration::from_secs(3600), Duration::ZERO))
    }

    #[test]
    fn an_entry_read_since_the_hand_passed_outlives_one_that_was_not() {
        // Room for ten entries of ~1.4 KiB.
        let one = u64::from(kept(&"x".repeat(512)).bytes());
        let tier = MemoryTier::new(10 * one + one / 2, 100);
        for n in 0..10 {
            assert!(tier.insert(key(n), kept(&"x".repeat(512))));
        }
        assert_eq!(tier.entries(), 10);
        // The even ones are read; ten more arrive.
        for n in (0..10).step_by(2) {
            assert!(tier.get(&key(n)).is_some());
        }
        for n in 10..15 {
            assert!(tier.insert(key(n), kept(&"x".repeat(512))));
        }
        for n in (0..10).step_by(2) {
            assert!(tier.get(&key(n)).is_some(), "read entry {n} was evicted");
        }
        for n in (1..10).step_by(2) {
            assert!(tier.get(&key(n)).is_none(), "unread entry {n} outlived the read ones");
        }
        assert_eq!(tier.evictions(), 5);
        assert_eq!(tier.entries(), 10);
        assert_eq!(tier.bytes(), 10 * one);
    }

    #[test]
    fn the_counts_and_shares_are_exact_whatever_leaves() {
        let tier = MemoryTier::new(1 << 20, 100);
        let small = u64::from(kept("a").bytes());
        for n in 0..100 {
            assert!(tier.insert(tenant_key("t", n), kept("a")));
        }
        // Replacing an entry counts it once.
        let larger = u64::from(kept(&"a".repeat(100)).bytes());
        assert!(tier.insert(tenant_key("t", 0), kept(&"a".repeat(100))));
        assert_eq!(tier.entries(), 100);
        let held = 99 * small + larger;
        assert_eq!(tier.bytes(), held);
        assert_eq!(tier.largest_tenants(1), vec![("t".to_owned(), held)]);
        // Short-lived entries are swept, and give their room back.
        for n in 0..50 {
            let brief = Arc::new(Entry::new(answer("a"), 1, Duration::from_millis(1), Duration::ZERO));
            assert!(tier.insert(tenant_key("u", n), brief));
        }
        assert_eq!(tier.entries(), 150);
        std::thread::sleep(Duration::from_millis(20));
        tier.sweep(usize::MAX);
        assert_eq!(tier.entries(), 100);
        assert_eq!(tier.bytes(), held);
        assert_eq!(tier.largest_tenants(5).len(), 1, "{:?}", tier.largest_tenants(5));
        assert_eq!(tier.purge(|_| true), 100);
        assert_eq!((tier.entries(), tier.bytes(), tier.evictions()), (0, 0, 0));
        assert!(tier.largest_tenants(5).is_empty());
        // The emptied shards take entries again.
        assert!(tier.insert(tenant_key("t", 7), kept("a")));
        assert!(tier.get(&tenant_key("t", 7)).is_some());
    }

    #[test]
    fn many_shards_hold_many_entries_within_the_budget() {
        let tier = MemoryTier::new(64 << 20, 100);
        let text = "y".repeat(2048);
        let one = u64::from(kept(&text).bytes());
        for n in 0..40_000 {
            tier.insert(key(n), kept(&text));
        }
        assert!(tier.bytes() <= 64 << 20, "{}", tier.bytes());
        // Evictions begin when a shard is full: the tier ends up nearly full.
        assert!(tier.bytes() > (64 << 20) - 16 * one, "{} of {}", tier.bytes(), 64 << 20);
        assert_eq!(tier.entries() + tier.evictions(), 40_000);
        assert!(tier.get(&key(39_999)).is_some(), "the newest entry is kept");
    }
}
