//! Sluice's configuration: one YAML file, read into raw types that deny unknown fields, then
//! validated into a typed [`Config`] whose references are resolved and whose secrets come from
//! the environment. Validation reports *every* error with its path and line.
//!
//! This crate does no IO beyond reading the file and the environment, and never logs a secret.

mod keys;
mod raw;
mod resilience;
mod spend;
mod store;
mod types;
mod validate;

use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};

pub use keys::parse_key_hash;
pub use raw::{RawLimitValue, RawLimits};
pub use spend::parse_limits;
pub use types::*;
pub use validate::{
    DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_FIRST_BYTE_TIMEOUT_MS, DEFAULT_MAX_BODY_BYTES, DEFAULT_STREAM_IDLE_TIMEOUT_MS,
    DEFAULT_TOTAL_TIMEOUT_MS,
};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where in the document, e.g. `routes[2].model`.
    pub path: String,
    pub line: Option<u64>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}: {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// Every problem found in a config file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("invalid YAML: {0}")]
    Parse(String),
    #[error("{count} error(s) in the config:\n{0}", count = .0.0.len())]
    Invalid(ConfigErrors),
}

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
