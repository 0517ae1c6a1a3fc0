//! Virtual keys in the config file: hashes, permissions, limits.

use chrono::{DateTime, Utc};

use crate::collect::Collector;
use crate::raw::RawKey;
use crate::types::*;

/// Parses `sha256:<64 hex digits>`.
pub fn parse_key_hash(s: &str) -> Option<[u8; 32]> {
    let hex_part = s.strip_prefix("sha256:")?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut out).ok()?;
    Some(out)
}

pub(crate) fn key(
    i: usize,
    k: &RawKey,
    model_names: &[&str],
    route_names: &[&str],
    tiers: &std::collections::HashMap<String, Vec<LimitSpec>>,
    errs: &mut Collector,
) -> Option<KeyConfig> {
    let path = format!("keys[{i}]");
    if k.id.value.is_empty() {
        errs.push(format!("{path}.id"), Some(&k.id), "must not be empty");
    }
    let hash = parse_key_hash(&k.hash.value);
    if hash.is_none() {
        errs.push(
            format!("{path}.hash"),
            Some(&k.hash),
            "must be sha256:<64 hex digits> (print one with `sluice keys hash <key>`)",
        );
    }
    let models = k.models.as_ref().map(|list| {
        list.iter()
            .enumerate()
            .map(|(j, m)| {
                let p = Pattern::parse(&m.value);
                if let Pattern::Exact(name) = &p
                    && !model_names.contains(&name.as_str())
                {
                    errs.push(
                        format!("{path}.models[{j}]"),
                        Some(m),
                        format!("unknown model alias {name:?}"),
                    );
                }
                p
            })
            .collect()
    });
    let routes = k.routes.as_ref().map(|list| {
        list.iter()
            .enumerate()
            .map(|(j, r)| {
                if !route_names.contains(&r.value.as_str()) {
                    errs.push(
                        format!("{path}.routes[{j}]"),
                        Some(r),
                        format!("unknown route {:?}", r.value),
                    );
                }
                r.value.clone()
            })
            .collect()
    });
    let expires_at = k
        .expires_at
        .as_ref()
        .and_then(|e| match DateTime::parse_from_rfc3339(&e.value) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(_) => {
                errs.push(
                    format!("{path}.expires_at"),
                    Some(e),
                    "must be an RFC 3339 time like 2027-01-31T00:00:00Z",
                );
                None
            }
        });
    let key_limits = crate::spend::limits(&k.limits, &format!("{path}.limits"), Some(&k.id), errs);
    // The tier's limits are applied at admission (run-time keys have tiers too).
    if let Some(tier) = &k.tier
        && !tiers.is_empty()
        && !tiers.contains_key(tier)
    {
        errs.push(format!("{path}.tier"), Some(&k.id), format!("unknown tier {tier:?}"));
    }
    let user_limits = crate::spend::limits(&k.user_limits, &format!("{path}.user_limits"), Some(&k.id), errs);
    Some(KeyConfig {
        priority_header: k.priority_header.unwrap_or(false),
        limits: key_limits,
        user_limits,
        trust_user: k.trust_user.unwrap_or(false),
        id: k.id.value.clone(),
        hash: hash?,
        tenant: k.tenant.clone(),
        team: k.team.clone(),
        user: k.user.clone(),
        tier: k.tier.clone(),
        models,
        routes,
        expires_at,
    })
}
