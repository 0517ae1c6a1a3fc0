//! What every section's validation shares: the error collector, the environment lookup, and the
//! small checks (names unique, addresses, numbers in range, references to model aliases, secrets
//! from the environment). Imports no section module.

use std::collections::HashSet;
use std::net::SocketAddr;

use crate::error::ConfigError;
use crate::raw::S;
use crate::types::Secret;

/// Looks up environment variables; injectable so tests do not touch the process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub(crate) struct Collector(pub(crate) Vec<ConfigError>);

impl Collector {
    pub(crate) fn push<T>(&mut self, path: impl Into<String>, at: Option<&S<T>>, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.into(),
            line: at.map(|s| s.referenced.line()),
            message: message.into(),
        });
    }
}

pub(crate) fn unique<'a>(names: impl Iterator<Item = &'a S<String>>, section: &str, errs: &mut Collector) {
    let mut seen = HashSet::new();
    for (i, n) in names.enumerate() {
        if !seen.insert(n.value.as_str()) {
            errs.push(
                format!("{section}[{i}]"),
                Some(n),
                format!("duplicate name {:?}", n.value),
            );
        }
    }
}

pub(crate) fn addr(value: Option<&S<String>>, default: &str, path: &str, errs: &mut Collector) -> SocketAddr {
    let fallback: SocketAddr = ([127, 0, 0, 1], 0).into();
    match value {
        None => default.parse().unwrap_or(fallback),
        Some(s) => s.value.parse().unwrap_or_else(|_| {
            errs.push(
                path,
                Some(s),
                format!("{:?} is not a socket address like 127.0.0.1:8080", s.value),
            );
            fallback
        }),
    }
}

pub(crate) fn positive(value: Option<&S<u64>>, default: u64, path: &str, errs: &mut Collector) -> u64 {
    match value {
        None => default,
        Some(s) if s.value == 0 => {
            errs.push(path, Some(s), "must be greater than zero");
            default
        }
        Some(s) => s.value,
    }
}

pub(crate) fn ranged(
    value: Option<&S<u64>>,
    default: u64,
    min: u64,
    max: u64,
    path: &str,
    errs: &mut Collector,
) -> u64 {
    match value {
        None => default,
        Some(s) if s.value < min || s.value > max => {
            errs.push(path, Some(s), format!("must be between {min} and {max}"));
            default
        }
        Some(s) => s.value,
    }
}

pub(crate) fn env_secret(name: &S<String>, path: &str, env: EnvLookup<'_>, errs: &mut Collector) -> Option<Secret> {
    match env(&name.value) {
        Some(v) if !v.is_empty() => Some(Secret::new(v)),
        _ => {
            errs.push(
                path,
                Some(name),
                format!("environment variable {} is not set", name.value),
            );
            None
        }
    }
}

pub(crate) fn resolve_models(list: &[S<String>], names: &[&str], path: &str, errs: &mut Collector) -> Vec<usize> {
    let mut out = Vec::new();
    for (j, m) in list.iter().enumerate() {
        match names.iter().position(|n| *n == m.value) {
            Some(k) => out.push(k),
            None => errs.push(
                format!("{path}[{j}]"),
                Some(m),
                format!("unknown model alias {:?}", m.value),
            ),
        }
    }
    out
}
