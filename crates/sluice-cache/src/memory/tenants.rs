//! Bytes held per tenant, so one tenant's entries cannot take more than its share of the tier.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Bytes held per tenant: added when an entry is stored, taken back when it leaves (expired,
/// evicted, replaced or purged).
#[derive(Debug)]
pub(super) struct TenantBytes {
    shards: Box<[Mutex<Shard>]>,
}

/// A tenant (named, or a key of its own) → its bytes.
type Shard = foldhash::HashMap<(bool, Arc<str>), u64>;

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

    /// Adds an entry's bytes to its tenant's; the tenant's bytes with them.
    pub(super) fn add(&self, tenant: (bool, Arc<str>), bytes: u64) -> u64 {
        let mut shard = self.shard(&tenant);
        let used = shard.entry(tenant).or_insert(0);
        *used += bytes;
        *used
    }

    /// Takes a departed entry's bytes back from its tenant's.
    pub(super) fn give_back(&self, tenant: &(bool, Arc<str>), bytes: u64) {
        let mut shard = self.shard(tenant);
        if let Some(used) = shard.get_mut(tenant) {
            *used = used.saturating_sub(bytes);
            if *used == 0 {
                shard.remove(tenant);
            }
        }
    }

    /// The `n` tenants holding the most bytes.
    pub(super) fn largest(&self, n: usize) -> Vec<(String, u64)> {
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

impl TenantBytes {
    pub(super) fn new() -> TenantBytes {
        TenantBytes {
            shards: (0..TENANT_SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }
}
