//! Cache keys: a scope that always holds the tenant, and a digest of the rest.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use sluice_config::CacheScope;

/// Whose answers an entry may serve: a tenant, and within it a team or a key when the route's
/// scope says. There is no way to make one without a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    tenant: Tenant,
    within: Within,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Tenant {
    Named(Arc<str>),
    /// A key that belongs to no tenant is a tenant of its own.
    OwnKey(Arc<str>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Within {
    Tenant,
    Team(Arc<str>),
    Key(Arc<str>),
}

impl Scope {
    /// The scope of a caller (its tenant, team and key id) under a route's scope setting. A
    /// key without a team, under `team`, shares with no one but itself.
    pub fn of(level: CacheScope, tenant: Option<&Arc<str>>, team: Option<&Arc<str>>, key: &Arc<str>) -> Scope {
        let tenant = match tenant {
            Some(t) => Tenant::Named(t.clone()),
            None => Tenant::OwnKey(key.clone()),
        };
        let within = match (level, team) {
            (CacheScope::Tenant, _) => Within::Tenant,
            (CacheScope::Team, Some(team)) => Within::Team(team.clone()),
            (CacheScope::Team, None) | (CacheScope::Key, _) => Within::Key(key.clone()),
        };
        Scope { tenant, within }
    }

    /// The tenant's name (a tenant-less key's id), for purges and stats.
    pub fn tenant(&self) -> &str {
        match &self.tenant {
            Tenant::Named(t) | Tenant::OwnKey(t) => t,
        }
    }

    /// Whether `other` is of the same tenant.
    pub(crate) fn same_tenant(&self, other: &Scope) -> bool {
        self.tenant == other.tenant
    }

    /// The tenant, told apart from a tenant-less key of the same name.
    pub(crate) fn tenant_id(&self) -> (bool, Arc<str>) {
        match &self.tenant {
            Tenant::Named(t) => (true, t.clone()),
            Tenant::OwnKey(k) => (false, k.clone()),
        }
    }

    fn hash_into(&self, h: &mut Sha256) {
        match &self.tenant {
            Tenant::Named(t) => field(h, b'T', t.as_bytes()),
            Tenant::OwnKey(k) => field(h, b'K', k.as_bytes()),
        }
        match &self.within {
            Within::Tenant => field(h, b'a', b""),
            Within::Team(t) => field(h, b't', t.as_bytes()),
            Within::Key(k) => field(h, b'k', k.as_bytes()),
        }
    }
}

/// Everything but the scope that shapes an answer.
#[derive(Debug, Clone, Copy)]
pub struct KeyParts<'a> {
    pub route: &'a str,
    /// A digest of the route's config that shapes its answers (and of the model alias's
    /// deployments): a config change that could change an answer starts a new set of keys.
    pub policy_version: &'a str,
    pub endpoint: &'a str,
    /// The model alias after routing and degradation.
    pub model: &'a str,
    /// Request headers that change the answer (`anthropic-version`, `anthropic-beta`, …), as
    /// the client sent them, in a fixed order.
    pub headers: &'a [(&'a str, &'a str)],
    /// The request's canonical form.
    pub body: &'a [u8],
}

/// An entry's key: its scope, and a SHA-256 of the scope and the parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    scope: Scope,
    /// The route's name (also in the digest): entries are purged by route.
    route: Arc<str>,
    digest: [u8; 32],
}

/// A key hashes (for the maps that hold it) as its digest's first eight bytes: the digest
/// already covers the scope and the route, which equality still compares in full.
impl std::hash::Hash for CacheKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.head());
    }
}

impl CacheKey {
    pub fn new(scope: &Scope, parts: &KeyParts<'_>) -> CacheKey {
        let mut h = Sha256::new();
        scope.hash_into(&mut h);
        field(&mut h, b'r', parts.route.as_bytes());
        field(&mut h, b'v', parts.policy_version.as_bytes());
        field(&mut h, b'e', parts.endpoint.as_bytes());
        field(&mut h, b'm', parts.model.as_bytes());
        for (name, value) in parts.headers {
            field(&mut h, b'h', name.as_bytes());
            field(&mut h, b'=', value.as_bytes());
        }
        field(&mut h, b'b', parts.body);
        CacheKey {
            scope: scope.clone(),
            route: Arc::from(parts.route),
            digest: h.finalize().into(),
        }
    }

    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The digest's first eight bytes: a hash already spread evenly over keys.
    pub(crate) fn head(&self) -> u64 {
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.digest[..8]);
        u64::from_le_bytes(head)
    }

    pub fn route(&self) -> &str {
        &self.route
    }

    /// A number spread evenly over keys (to shard maps of keys by).
    pub fn shard(&self) -> usize {
        usize::from(self.digest[0])
    }

    /// The digest in hex (the access log's `cache_key`, Redis's entry names).
    pub fn hex(&self) -> String {
        self.digest().to_string()
    }

    /// The digest: what names the entry in logs, a small copyable value.
    pub fn digest(&self) -> KeyDigest {
        KeyDigest(self.digest)
    }
}

/// An entry's digest, written out as 64 hex digits where it is shown (the access log's
/// `cache_key`); carried as its 32 bytes until then.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    /// The 64 hex digits.
    fn digits(&self) -> [u8; 64] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; 64];
        for (pair, b) in hex.chunks_exact_mut(2).zip(self.0) {
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 15)];
        }
        hex
    }

    /// Appends the 64 hex digits to `out`.
    pub fn write_hex(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.digits());
    }
}

impl std::fmt::Display for KeyDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(std::str::from_utf8(&self.digits()).map_err(|_| std::fmt::Error)?)
    }
}

impl std::fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// A key as it travels between instances (through Redis, which every instance trusts): the
/// scope's parts, the route and the digest. Read back, it is the same key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WireKey {
    /// The tenant's name, or (with `own`) the key id that is its own tenant.
    tenant: String,
    own: bool,
    /// `a` (the tenant), `t` (a team) or `k` (a key), and its name.
    within: (char, String),
    route: String,
    digest: String,
}

impl CacheKey {
    pub fn to_wire(&self) -> WireKey {
        let (named, tenant) = self.scope.tenant_id();
        let within = match &self.scope.within {
            Within::Tenant => ('a', String::new()),
            Within::Team(t) => ('t', t.to_string()),
            Within::Key(k) => ('k', k.to_string()),
        };
        WireKey {
            tenant: tenant.to_string(),
            own: !named,
            within,
            route: self.route.to_string(),
            digest: self.hex(),
        }
    }

    /// The key a [`WireKey`] names; `None` when it is malformed.
    pub fn from_wire(w: &WireKey) -> Option<CacheKey> {
        let tenant = Arc::from(w.tenant.as_str());
        let tenant = if w.own {
            Tenant::OwnKey(tenant)
        } else {
            Tenant::Named(tenant)
        };
        let within = match w.within.0 {
            'a' => Within::Tenant,
            't' => Within::Team(Arc::from(w.within.1.as_str())),
            'k' => Within::Key(Arc::from(w.within.1.as_str())),
            _ => return None,
        };
        let mut digest = [0u8; 32];
        hex::decode_to_slice(&w.digest, &mut digest).ok()?;
        Some(CacheKey {
            scope: Scope { tenant, within },
            route: Arc::from(w.route.as_str()),
            digest,
        })
    }
}

/// A key for the crate's tests: route `r`, `tenant` (none: key `k` is its own), `body`.
#[cfg(test)]
pub(crate) fn test_key(tenant: Option<&str>, body: &str) -> CacheKey {
    let (tenant, key): (Option<Arc<str>>, Arc<str>) = (tenant.map(Arc::from), Arc::from("k"));
    CacheKey::new(
        &Scope::of(CacheScope::Tenant, tenant.as_ref(), None, &key),
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

/// A tagged, length-prefixed field: no two sequences of fields hash the same bytes.
fn field(h: &mut Sha256, tag: u8, bytes: &[u8]) {
    h.update([tag]);
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn parts(body: &[u8]) -> KeyParts<'_> {
        KeyParts {
            route: "r",
            policy_version: "v1",
            endpoint: "chat_completions",
            model: "chat",
            headers: &[],
            body,
        }
    }

    fn arc(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[test]
    fn the_same_request_in_two_tenants_has_two_keys() {
        let (a, b) = (arc("acme"), arc("globex"));
        let k = arc("k1");
        let ka = CacheKey::new(&Scope::of(CacheScope::Tenant, Some(&a), None, &k), &parts(b"{}"));
        let kb = CacheKey::new(&Scope::of(CacheScope::Tenant, Some(&b), None, &k), &parts(b"{}"));
        assert_ne!(ka, kb);
        assert_ne!(ka.hex(), kb.hex());
        assert_eq!(ka.hex(), hex::encode(ka.digest));
        let mut logged = b"x".to_vec();
        ka.digest().write_hex(&mut logged);
        assert_eq!(logged, format!("x{}", hex::encode(ka.digest)).into_bytes());
        // A key with no tenant is its own tenant, apart from a tenant of the same name.
        let own = CacheKey::new(&Scope::of(CacheScope::Tenant, None, None, &a), &parts(b"{}"));
        assert_ne!(own, ka);
        assert_ne!(own.hex(), ka.hex());
        // Two keys of one tenant share; under `key`, they do not.
        let k2 = arc("k2");
        let shared = |level, key: &Arc<str>| CacheKey::new(&Scope::of(level, Some(&a), None, key), &parts(b"{}"));
        assert_eq!(shared(CacheScope::Tenant, &k), shared(CacheScope::Tenant, &k2));
        assert_ne!(shared(CacheScope::Key, &k), shared(CacheScope::Key, &k2));
        // Under `team`, a key without a team shares with no one.
        assert_ne!(shared(CacheScope::Team, &k), shared(CacheScope::Team, &k2));
    }

    fn who() -> impl Strategy<Value = (u8, Option<String>, Option<String>, String)> {
        let name = || "[a-c]{0,2}";
        (
            0u8..3,
            proptest::option::of(name()),
            proptest::option::of(name()),
            name(),
        )
    }

    proptest! {
        /// No two different scopes build the same key, for any request: the scope is in the key
        /// and in its digest, length-prefixed and tagged.
        #[test]
        fn no_two_scopes_build_the_same_key(a in who(), b in who(), body in "[{}a]{0,3}") {
            let scope = |(level, tenant, team, key): &(u8, Option<String>, Option<String>, String)| {
                let level = [CacheScope::Tenant, CacheScope::Team, CacheScope::Key][*level as usize];
                let (tenant, team, key) = (tenant.as_deref().map(arc), team.as_deref().map(arc), arc(key));
                Scope::of(level, tenant.as_ref(), team.as_ref(), &key)
            };
            let (sa, sb) = (scope(&a), scope(&b));
            let (ka, kb) = (CacheKey::new(&sa, &parts(body.as_bytes())), CacheKey::new(&sb, &parts(body.as_bytes())));
            prop_assert_eq!(sa == sb, ka == kb);
            prop_assert_eq!(sa == sb, ka.hex() == kb.hex());
            // A key sent to another instance is the same key there.
            prop_assert_eq!(CacheKey::from_wire(&ka.to_wire()), Some(ka));
        }
    }
}
