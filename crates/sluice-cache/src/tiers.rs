//! The cache's tiers together: the in-process tier first, then (when `store.redis` is shared)
//! the Redis tier, whose hits are brought into process for the rest of their life. Live state:
//! kept across config reloads. [`Storing`] is a miss on its way into both.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_store::redis::RedisFailure;

use crate::flight::{Flights, Leading};
use crate::key::CacheKey;
use crate::memory::{Answer, Entry, MemoryTier};
use crate::semantic::{Features, SemanticIndex, SemanticSlot};
use crate::shared::{Note, PurgeFilter, SemanticNote, SharedTier};

#[derive(Debug)]
pub struct Tiers {
    pub memory: MemoryTier,
    pub shared: Option<Arc<SharedTier>>,
    pub flights: Flights,
    /// Stored prompts' embeddings, per partition (on routes with a semantic cache).
    pub semantic: Arc<SemanticIndex>,
}

/// What a purge removed.
#[derive(Debug)]
pub struct Purged {
    /// From this instance's memory (the other instances purge theirs when told).
    pub memory: u64,
    /// From Redis; `None` without a Redis tier.
    pub shared: Option<Result<u64, RedisFailure>>,
}

impl Tiers {
    /// The tiers; with a Redis tier, this instance drops what any instance purges. The semantic
    /// index holds `semantic_max_entries` prompts at most, and searches a partition of more
    /// than `semantic_graph_above` through a graph (exactly, by brute force, up to it).
    pub fn new(
        memory: MemoryTier,
        shared: Option<Arc<SharedTier>>,
        semantic_max_entries: usize,
        semantic_graph_above: usize,
    ) -> Tiers {
        let semantic = Arc::new(SemanticIndex::new(semantic_max_entries, semantic_graph_above));
        if let Some(s) = &shared {
            let (mem, index) = (memory.clone(), semantic.clone());
            s.subscribe(move |note| match note {
                Note::Purge(filter) => {
                    let (mem, index) = (mem.clone(), index.clone());
                    // A purge walks every entry: off the async threads.
                    drop(tokio::task::spawn_blocking(move || purge_local(&mem, &index, &filter)));
                }
                Note::Semantic(n) => index_note(&index, &n),
            });
        }
        Tiers {
            memory,
            shared,
            flights: Flights::default(),
            semantic,
        }
    }

    /// The entry for `key`: from memory, else from Redis (then kept in memory too). Redis
    /// failing is a miss.
    pub async fn get(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        if let Some(e) = self.memory.get(key) {
            return Some(e);
        }
        let entry = Arc::new(self.shared.as_ref()?.get(key).await?);
        if !entry.remaining().is_zero() {
            self.memory.insert(key.clone(), entry.clone());
        }
        Some(entry)
    }

    /// The entries for `keys` (all of one tenant), in order: from memory, the rest from Redis in
    /// one round trip (then kept in memory too).
    pub async fn get_many(&self, keys: &[CacheKey]) -> Vec<Option<Arc<Entry>>> {
        let mut found: Vec<Option<Arc<Entry>>> = keys.iter().map(|k| self.memory.get(k)).collect();
        let Some(shared) = &self.shared else { return found };
        let missing: Vec<usize> = (0..keys.len()).filter(|&i| found[i].is_none()).collect();
        let asked: Vec<&CacheKey> = missing.iter().map(|&i| &keys[i]).collect();
        for (i, entry) in missing.into_iter().zip(shared.get_many(&asked).await) {
            if let Some(e) = entry.map(Arc::new) {
                if !e.remaining().is_zero() {
                    self.memory.insert(keys[i].clone(), e.clone());
                }
                found[i] = Some(e);
            }
        }
        found
    }

    /// Removes what matches from this instance's memory and from Redis, and tells the other
    /// instances to drop theirs. It walks every entry in memory: call it where blocking is
    /// allowed for that long (the admin API does, on a blocking thread).
    pub async fn purge(&self, filter: PurgeFilter) -> Purged {
        let (mem, index, f) = (self.memory.clone(), self.semantic.clone(), filter.clone());
        let memory = tokio::task::spawn_blocking(move || purge_local(&mem, &index, &f))
            .await
            .unwrap_or(0);
        let shared = match &self.shared {
            None => None,
            Some(s) => Some(match s.purge(&filter).await {
                Ok(n) => s.publish_purge(&filter).await.map(|()| n),
                Err(e) => Err(e),
            }),
        };
        Purged { memory, shared }
    }
}

/// An embeddings request cached per input string: each input's stored embedding, or where its
/// embedding is stored once the upstream has answered the inputs that were missing.
#[derive(Debug)]
pub enum InputSlot {
    Hit(Arc<Entry>),
    /// Sent upstream; `chars`, its length, shares out the answer's tokens among the inputs.
    Miss {
        storing: Box<Storing>,
        chars: usize,
    },
}

/// Indexes a prompt another instance (or this one) published, for what is left of its life.
fn index_note(index: &SemanticIndex, n: &SemanticNote) {
    let (Some(partition), Some(entry)) = (CacheKey::from_wire(&n.partition), CacheKey::from_wire(&n.entry)) else {
        return;
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let life = Duration::from_millis(n.expires_at_ms).saturating_sub(now);
    if !life.is_zero() {
        index.insert(partition, entry, &n.vector, Features::of(&n.text), life);
    }
}

/// Removes what matches from this process: entries, and the prompts indexed for them.
fn purge_local(memory: &MemoryTier, index: &SemanticIndex, filter: &PurgeFilter) -> u64 {
    index.purge(|k| filter.matches(k));
    memory.purge(|k| filter.matches(k))
}

/// A miss on its way to being stored: the key the lookup made, and how the answer is kept.
/// The response stage commits it once the answer has ended well.
#[derive(Debug)]
pub struct Storing {
    tiers: (MemoryTier, Option<Arc<SharedTier>>),
    key: CacheKey,
    ttl: Duration,
    stale: Duration,
    max_bytes: u64,
    /// The prompt's embedding, indexed once the answer is stored (a semantic route's miss).
    semantic: Option<Box<SemanticSlot>>,
    /// The flight this miss leads, if it does: landed (its followers woken) when this is
    /// committed or dropped — after the entry is in the tier, or when the answer will not be.
    leading: Option<Leading>,
}

impl Storing {
    pub fn new(
        tiers: (&MemoryTier, Option<&Arc<SharedTier>>),
        key: CacheKey,
        (ttl, stale): (Duration, Duration),
        max_bytes: u64,
        leading: Option<Leading>,
    ) -> Storing {
        Storing {
            tiers: (tiers.0.clone(), tiers.1.cloned()),
            key,
            ttl,
            stale,
            max_bytes,
            semantic: None,
            leading,
        }
    }

    /// Also indexes the prompt for semantic lookups when the answer is stored.
    #[must_use]
    pub fn with_semantic(mut self, slot: Option<Box<SemanticSlot>>) -> Storing {
        self.semantic = slot;
        self
    }

    /// The pen of the tape a streaming leader's followers read.
    pub fn take_tape(&mut self) -> Option<crate::tape::TapeWriter> {
        self.leading.as_mut()?.take_tape()
    }

    /// The largest answer kept (in the cache's measure).
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Stores the answer in process (and, in the background, in the Redis tier); `false` (and
    /// nothing stored) when it is larger than the route allows or its tenant's share is full.
    pub fn commit(mut self, answer: Answer, cost_micros: u64) -> bool {
        let entry = Entry::new(answer, cost_micros, self.ttl, self.stale);
        if u64::from(entry.bytes()) > self.max_bytes {
            return false;
        }
        if let Some(shared) = &self.tiers.1 {
            shared.put(&self.key, &entry);
        }
        // `self` (and the flight it leads) is dropped only after, with the entry in place.
        let stored = self.tiers.0.insert(self.key.clone(), Arc::new(entry));
        if stored && let Some(slot) = self.semantic.take() {
            if let Some(shared) = &self.tiers.1 {
                let expires = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default() + self.ttl;
                shared.publish_semantic(&SemanticNote {
                    partition: slot.partition.to_wire(),
                    entry: self.key.to_wire(),
                    vector: slot.vector.clone(),
                    text: slot.text.clone(),
                    expires_at_ms: u64::try_from(expires.as_millis()).unwrap_or(u64::MAX),
                });
            }
            slot.insert(self.key.clone(), self.ttl);
        }
        stored
    }
}
