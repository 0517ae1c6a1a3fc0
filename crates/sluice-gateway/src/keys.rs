//! Virtual keys: an in-memory table of SHA-256 digests, swapped whole on every change, so a check
//! is one hash and one map lookup — never a database read. YAML keys come from the config
//! snapshot and are read-only; run-time keys come from the store and can never shadow them.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use http::HeaderMap;
use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};
use sluice_config::{KeyConfig, Pattern};
use sluice_store::StoredKey;

use crate::error::{ErrorKind, GatewayError};

pub const KEY_PREFIX: &str = "sk-sluice-";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeySource {
    Yaml,
    Runtime,
}

/// Who is calling, as the key says.
#[derive(Debug)]
pub struct Caller {
    pub key_id: Arc<str>,
    pub source: KeySource,
    pub tenant: Option<Arc<str>>,
    pub team: Option<Arc<str>>,
    pub user: Option<Arc<str>>,
    pub tier: Option<Arc<str>>,
    pub models: Option<Vec<Pattern>>,
    pub routes: Option<Vec<String>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The key's own limits (its tier's come from the config at admission).
    pub limits: Arc<[sluice_config::LimitSpec]>,
    /// Limits per end user, and whether the request may name the user.
    pub user_limits: Arc<[sluice_config::LimitSpec]>,
    pub trust_user: bool,
    /// May set its requests' queue priority with `x-sluice-priority`.
    pub priority_header: bool,
}

impl Caller {
    pub fn may_use_model(&self, alias: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|ps| ps.iter().any(|p| p.matches(alias)))
    }
    pub fn may_use_route(&self, route: &str) -> bool {
        self.routes.as_ref().is_none_or(|rs| rs.iter().any(|r| r == route))
    }
}

fn arc(s: &Option<String>) -> Option<Arc<str>> {
    s.as_deref().map(Arc::from)
}

impl From<&KeyConfig> for Caller {
    fn from(k: &KeyConfig) -> Self {
        Caller {
            key_id: Arc::from(k.id.as_str()),
            source: KeySource::Yaml,
            tenant: arc(&k.tenant),
            team: arc(&k.team),
            user: arc(&k.user),
            tier: arc(&k.tier),
            models: k.models.clone(),
            routes: k.routes.clone(),
            expires_at: k.expires_at,
            limits: Arc::from(k.limits.as_slice()),
            user_limits: Arc::from(k.user_limits.as_slice()),
            trust_user: k.trust_user,
            priority_header: k.priority_header,
        }
    }
}

impl From<&StoredKey> for Caller {
    fn from(k: &StoredKey) -> Self {
        Caller {
            key_id: Arc::from(k.id.as_str()),
            source: KeySource::Runtime,
            tenant: arc(&k.tenant),
            team: arc(&k.team),
            user: arc(&k.user),
            tier: arc(&k.tier),
            models: k.models.as_ref().map(|m| m.iter().map(|s| Pattern::parse(s)).collect()),
            routes: k.routes.clone(),
            expires_at: k.expires_at,
            limits: Arc::from([]),
            user_limits: Arc::from([]),
            trust_user: k.trust_user,
            priority_header: false,
        }
    }
}

type Table = HashMap<[u8; 32], Arc<Caller>>;

/// The key table at one moment: built whole from a config's keys and the store's, never
/// changed (a change builds a new table, swapped in with its config snapshot — see
/// `Gateway::serving`).
#[derive(Debug, Default)]
pub struct KeyTable {
    table: Table,
}

impl KeyTable {
    /// Builds the table from the config's keys and the store's active keys. A run-time key
    /// whose id or hash a YAML key already uses is left out (returned): YAML always wins.
    pub fn build(yaml: &[KeyConfig], runtime: &[StoredKey]) -> (KeyTable, Vec<String>) {
        let mut table: Table = HashMap::with_capacity(yaml.len() + runtime.len());
        for k in yaml {
            table.insert(k.hash, Arc::new(Caller::from(k)));
        }
        let mut shadowed = Vec::new();
        for k in runtime.iter().filter(|k| k.revoked_at.is_none()) {
            if yaml.iter().any(|y| y.id == k.id) || table.contains_key(&k.hash) {
                shadowed.push(k.id.clone());
                continue;
            }
            table.insert(k.hash, Arc::new(Caller::from(k)));
        }
        (KeyTable { table }, shadowed)
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Finds the caller for the request's key: `Authorization: Bearer …` or `x-api-key`.
    pub fn authenticate(&self, headers: &HeaderMap, now: DateTime<Utc>) -> Result<Arc<Caller>, GatewayError> {
        let presented = presented_key(headers).ok_or_else(|| {
            GatewayError::new(
                ErrorKind::Unauthenticated,
                "missing_api_key",
                "You didn't provide an API key. Send it as 'Authorization: Bearer sk-sluice-…'.",
            )
        })?;
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let caller = self.table.get(&digest).cloned().ok_or_else(|| {
            GatewayError::new(
                ErrorKind::Unauthenticated,
                "invalid_api_key",
                "Incorrect API key provided.",
            )
        })?;
        if caller.expires_at.is_some_and(|t| t <= now) {
            return Err(GatewayError::new(
                ErrorKind::Unauthenticated,
                "expired_api_key",
                "This API key has expired.",
            ));
        }
        Ok(caller)
    }
}

fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        let token = match v.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
            None if v.eq_ignore_ascii_case("bearer") => "",
            _ => v,
        };
        return (!token.is_empty()).then_some(token);
    }
    headers
        .get(sluice_providers::names::X_API_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// A new random key: `sk-sluice-` and 40 alphanumerics (≈238 bits).
pub fn generate_key() -> String {
    let body: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    format!("{KEY_PREFIX}{body}")
}

pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// A short id for a run-time key created without one.
pub fn generate_key_id() -> String {
    let body: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(12)
        .map(char::from)
        .collect();
    format!("key-{}", body.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn yaml_key(id: &str, secret: &str) -> KeyConfig {
        KeyConfig {
            id: id.to_owned(),
            hash: hash_key(secret),
            tenant: Some("t".to_owned()),
            team: None,
            user: None,
            tier: None,
            models: None,
            routes: None,
            expires_at: None,
            limits: Vec::new(),
            user_limits: Vec::new(),
            trust_user: false,
            priority_header: false,
        }
    }

    fn stored(id: &str, secret: &str) -> StoredKey {
        StoredKey {
            id: id.to_owned(),
            hash: hash_key(secret),
            prefix: String::new(),
            tenant: None,
            team: None,
            user: None,
            tier: None,
            models: None,
            routes: None,
            expires_at: None,
            created_at: Utc::now(),
            revoked_at: None,
            trust_user: false,
        }
    }

    fn auth(t: &KeyTable, header: Option<&str>) -> Result<Arc<Caller>, &'static str> {
        let mut h = HeaderMap::new();
        if let Some(v) = header {
            h.insert(http::header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        t.authenticate(&h, Utc::now()).map_err(|e| e.code)
    }

    #[test]
    fn yaml_wins_and_lookups_work() {
        let (t, shadowed) = KeyTable::build(
            &[yaml_key("a", "sk-sluice-a")],
            &[stored("a", "sk-sluice-b"), stored("c", "sk-sluice-c")],
        );
        assert_eq!(shadowed, vec!["a".to_owned()]);
        assert_eq!(
            auth(&t, Some("Bearer sk-sluice-a")).map(|c| c.source),
            Ok(KeySource::Yaml)
        );
        assert_eq!(
            auth(&t, Some("Bearer sk-sluice-b")).map(|c| c.source),
            Err("invalid_api_key")
        );
        assert_eq!(
            auth(&t, Some("Bearer sk-sluice-c")).map(|c| c.source),
            Ok(KeySource::Runtime)
        );
        assert_eq!(auth(&t, None).map(|c| c.source), Err("missing_api_key"));
        assert_eq!(auth(&t, Some("Bearer ")).map(|c| c.source), Err("missing_api_key"));
    }

    #[test]
    fn expired_and_revoked_keys_fail() {
        let mut k = yaml_key("old", "sk-sluice-old");
        k.expires_at = Some(Utc::now() - chrono::Duration::seconds(1));
        let mut r = stored("gone", "sk-sluice-gone");
        r.revoked_at = Some(Utc::now());
        let (t, _) = KeyTable::build(&[k], &[r]);
        assert_eq!(
            auth(&t, Some("Bearer sk-sluice-old")).map(|_| ()),
            Err("expired_api_key")
        );
        assert_eq!(
            auth(&t, Some("Bearer sk-sluice-gone")).map(|_| ()),
            Err("invalid_api_key")
        );
    }

    #[test]
    fn generated_keys_look_right() {
        let k = generate_key();
        assert!(k.starts_with(KEY_PREFIX) && k.len() == KEY_PREFIX.len() + 40);
        assert_ne!(k, generate_key());
    }
}
