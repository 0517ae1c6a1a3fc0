//! The audit log: every admin write and config reload — who, when, what, before and after —
//! append-only and hash-chained. Each entry carries the previous entry's hash and its own, a
//! SHA-256 over its sequence number, its fields and that previous hash; a separate head row
//! holds the last entry's number and hash, written in the same transaction. So an edited entry
//! no longer hashes to itself, a deleted one breaks the chain, and a cut-off tail no longer
//! reaches the head (nor the head hash each append writes to the log).

use sha2::{Digest, Sha256};

/// The previous hash of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What an append records (the store numbers, chains and hashes it).
#[derive(Debug, Clone, Default)]
pub struct NewAudit {
    /// Who: a principal's id, `bootstrap`, `local`, or `signal` / `file` for a reload.
    pub actor: String,
    pub role: Option<String>,
    /// The tenant the actor is confined to.
    pub actor_tenant: Option<String>,
    /// `key.create`, `key.revoke`, `limits.set`, `limits.clear`, `cache.purge`,
    /// `principal.create`, `principal.revoke`, `config.reload`.
    pub action: String,
    /// What it acted on (a key id, `keys/ID`, a principal id, a config version).
    pub target: Option<String>,
    /// Whose thing it was (what a tenant-confined principal may read back).
    pub tenant: Option<String>,
    /// JSON, or none.
    pub before: Option<String>,
    pub after: Option<String>,
}

/// One entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    pub seq: i64,
    /// Unix milliseconds.
    pub at: i64,
    pub actor: String,
    pub role: Option<String>,
    pub actor_tenant: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub tenant: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEntry {
    /// The entry `seq` at `at` after `prev_hash`, hashed.
    pub fn new(seq: i64, at: i64, prev_hash: String, a: &NewAudit) -> AuditEntry {
        let mut e = AuditEntry {
            seq,
            at,
            actor: a.actor.clone(),
            role: a.role.clone(),
            actor_tenant: a.actor_tenant.clone(),
            action: a.action.clone(),
            target: a.target.clone(),
            tenant: a.tenant.clone(),
            before: a.before.clone(),
            after: a.after.clone(),
            prev_hash,
            hash: String::new(),
        };
        e.hash = e.digest();
        e
    }

    /// SHA-256 (hex) over every field but the hash, each length-prefixed (an absent one
    /// marked apart from an empty one), so no two entries share a preimage.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.seq.to_be_bytes());
        h.update(self.at.to_be_bytes());
        let mut field = |v: Option<&str>| match v {
            None => h.update(u32::MAX.to_be_bytes()),
            Some(s) => {
                h.update((s.len() as u32).to_be_bytes());
                h.update(s.as_bytes());
            }
        };
        field(Some(&self.actor));
        field(self.role.as_deref());
        field(self.actor_tenant.as_deref());
        field(Some(&self.action));
        field(self.target.as_deref());
        field(self.tenant.as_deref());
        field(self.before.as_deref());
        field(self.after.as_deref());
        field(Some(&self.prev_hash));
        hex::encode(h.finalize())
    }
}

/// What `verify` found wrong, naming the first entry it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditFault {
    #[error("entry {seq} was edited: its hash does not match its contents")]
    Edited { seq: i64 },
    #[error("entries are missing before entry {seq} (expected {expected})")]
    Missing { seq: i64, expected: i64 },
    #[error("entry {seq} does not follow the entry before it (its previous hash differs)")]
    Broken { seq: i64 },
    #[error("the log ends at entry {last} but its head says {head}: entries were cut off the end")]
    Truncated { last: i64, head: i64 },
    #[error("the head names entry {head} with another hash than the log's")]
    HeadMismatch { head: i64 },
    #[error("no entry has the hash {hash} (from a log line): the log was cut or rewritten after it")]
    UnknownHash { hash: String },
}

/// Checks the whole log, in sequence order, from its anchor (where retention left it; none:
/// the first entry) to its head `(seq, hash)` and, when given, a hash the log lines reported
/// (it must be one of the entries', or the anchor's).
pub fn verify(
    entries: &[AuditEntry],
    anchor: Option<(i64, String)>,
    head: Option<(i64, String)>,
    seen: Option<&str>,
) -> Result<(), AuditFault> {
    let (start_seq, start_hash) = anchor.clone().unwrap_or((0, GENESIS.to_owned()));
    let mut prev: Option<&AuditEntry> = None;
    for e in entries {
        let expected = prev.map_or(start_seq + 1, |p| p.seq + 1);
        if e.seq != expected {
            return Err(AuditFault::Missing { seq: e.seq, expected });
        }
        let prev_hash = prev.map_or(start_hash.as_str(), |p| p.hash.as_str());
        if e.prev_hash != prev_hash {
            return Err(AuditFault::Broken { seq: e.seq });
        }
        if e.digest() != e.hash {
            return Err(AuditFault::Edited { seq: e.seq });
        }
        prev = Some(e);
    }
    let last = prev.map_or(start_seq, |p| p.seq);
    if let Some((seq, hash)) = head {
        if seq > last {
            return Err(AuditFault::Truncated { last, head: seq });
        }
        let named = entries.iter().find(|e| e.seq == seq);
        if seq < last || named.is_none_or(|e| e.hash != hash) {
            return Err(AuditFault::HeadMismatch { head: seq });
        }
    }
    if let Some(h) = seen
        && !entries.iter().any(|e| e.hash == h)
        && anchor.as_ref().is_none_or(|(_, a)| a != h)
    {
        return Err(AuditFault::UnknownHash { hash: h.to_owned() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditEntry> {
        let mut out: Vec<AuditEntry> = Vec::new();
        for seq in 1..=n {
            let prev = out.last().map_or(GENESIS.to_owned(), |e| e.hash.clone());
            let a = NewAudit {
                actor: "admin".into(),
                action: "key.create".into(),
                target: Some(format!("k{seq}")),
                after: Some(format!("{{\"id\":\"k{seq}\"}}")),
                ..NewAudit::default()
            };
            out.push(AuditEntry::new(seq, 1_000 + seq, prev, &a));
        }
        out
    }

    fn head(c: &[AuditEntry]) -> Option<(i64, String)> {
        c.last().map(|e| (e.seq, e.hash.clone()))
    }

    #[test]
    fn an_intact_log_verifies_and_each_kind_of_tampering_is_named() {
        let c = chain(5);
        assert_eq!(verify(&c, None, head(&c), Some(&c[2].hash)), Ok(()));
        assert_eq!(verify(&[], None, None, None), Ok(()));

        let mut edited = c.clone();
        edited[2].after = Some("{\"id\":\"other\"}".into());
        assert_eq!(
            verify(&edited, None, head(&c), None),
            Err(AuditFault::Edited { seq: 3 })
        );

        let mut rehashed = edited.clone();
        rehashed[2].hash = rehashed[2].digest(); // edited and re-hashed: the next link breaks
        assert_eq!(
            verify(&rehashed, None, head(&c), None),
            Err(AuditFault::Broken { seq: 4 })
        );

        let mut deleted = c.clone();
        deleted.remove(1);
        assert_eq!(
            verify(&deleted, None, head(&c), None),
            Err(AuditFault::Missing { seq: 3, expected: 2 })
        );

        let truncated = &c[..3];
        assert_eq!(
            verify(truncated, None, head(&c), None),
            Err(AuditFault::Truncated { last: 3, head: 5 })
        );
        // Cut off and the head rewritten to match: the hash a log line reported is gone.
        assert_eq!(
            verify(truncated, None, head(truncated), Some(&c[4].hash)),
            Err(AuditFault::UnknownHash {
                hash: c[4].hash.clone()
            })
        );
    }

    #[test]
    fn a_pruned_log_verifies_from_its_anchor_and_only_from_it() {
        let c = chain(6);
        let anchor = Some((2, c[1].hash.clone()));
        assert_eq!(verify(&c[2..], anchor.clone(), head(&c), Some(&c[1].hash)), Ok(()));
        // Without the anchor, the first entry left looks like a deletion.
        assert_eq!(
            verify(&c[2..], None, head(&c), None),
            Err(AuditFault::Missing { seq: 3, expected: 1 })
        );
        // An anchor moved past an entry that is still there: that entry no longer links.
        assert_eq!(
            verify(&c[2..], Some((2, c[0].hash.clone())), head(&c), None),
            Err(AuditFault::Broken { seq: 3 })
        );
    }

    #[test]
    fn absent_and_empty_fields_hash_apart() {
        let a = NewAudit {
            actor: "x".into(),
            action: "y".into(),
            target: None,
            ..NewAudit::default()
        };
        let b = NewAudit {
            target: Some(String::new()),
            ..a.clone()
        };
        assert_ne!(
            AuditEntry::new(1, 0, GENESIS.into(), &a).hash,
            AuditEntry::new(1, 0, GENESIS.into(), &b).hash
        );
    }
}
