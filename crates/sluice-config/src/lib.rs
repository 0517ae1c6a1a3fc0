//! Sluice's configuration: one YAML file, read into raw types that deny unknown fields, then
//! validated into a typed [`Config`] whose references are resolved and whose secrets come from
//! the environment. Validation reports *every* error with its path and line.
//!
//! This crate does no IO beyond reading the file and the environment, and never logs a secret.

mod alerts;
mod cache;
mod collect;
mod deployments;
mod error;
mod guard;
mod keys;
mod policy;
mod raw;
mod resilience;
mod routes;
mod server;
mod spend;
mod store;
mod types;
mod validate;

use std::path::Path;

use sha2::{Digest, Sha256};

pub use cache::{
    DEFAULT_CACHE_MAX_ENTRY_BYTES, DEFAULT_CACHE_MEMORY_BYTES, DEFAULT_EMBEDDER_PATH, DEFAULT_SEMANTIC_MAX_WAIT_MS,
    DEFAULT_SEMANTIC_MIN_CHARS, DEFAULT_SEMANTIC_THRESHOLD,
};
pub use error::{ConfigError, ConfigErrors, LoadError};
pub use guard::DEFAULT_INJECTION_THRESHOLD;
pub use keys::parse_key_hash;
pub use policy::{
    DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_FIRST_BYTE_TIMEOUT_MS, DEFAULT_MAX_BODY_BYTES, DEFAULT_STREAM_IDLE_TIMEOUT_MS,
    DEFAULT_TOTAL_TIMEOUT_MS,
};
pub use raw::{RawLimitValue, RawLimits};
pub use spend::parse_limits;
pub use types::*;

/// Reads, parses and validates a config file, taking secrets from the process environment.
pub fn load_file(path: &Path) -> Result<Config, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.display().to_string(),
        source,
    })?;
    load_str(&text, &|name| std::env::var(name).ok())
}

/// Parses and validates a config document; `env` resolves environment-variable references.
pub fn load_str(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, LoadError> {
    let raw: raw::RawConfig = if text.trim().is_empty() {
        serde_saphyr::from_str("{}").map_err(|e| LoadError::Parse(e.to_string()))?
    } else {
        serde_saphyr::from_str(text).map_err(|e| LoadError::Parse(e.to_string()))?
    };
    let digest = Sha256::digest(text.as_bytes());
    let version = hex::encode(&digest[..6]);
    validate::validate(raw, env, version).map_err(LoadError::Invalid)
}

/// The SHA-256 of a virtual key, as stored in config files: `sha256:<hex>`.
pub fn key_hash_string(key: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
}

#[cfg(test)]
mod tests;
