//! Raw → typed. Collects every error (with its path and line) instead of stopping at the first.
//! This module only composes: each section is validated in its own module.

use std::collections::HashSet;

use crate::collect::{Collector, EnvLookup, unique};
use crate::deployments::deployment;
use crate::error::ConfigErrors;
use crate::policy::policy;
use crate::raw::{RawConfig, RawPolicy};
use crate::routes::route;
use crate::server::{admin, logging, server, telemetry};
use crate::types::*;

pub fn validate(raw: RawConfig, env: EnvLookup<'_>, version: String) -> Result<Config, ConfigErrors> {
    let mut errs = Collector(Vec::new());

    let server = server(&raw, &mut errs);
    let admin = admin(&raw, env, &mut errs);
    let store = crate::store::store(&raw, env, &mut errs);
    let ledger = crate::store::ledger(&raw, &store, &mut errs);
    let logging = logging(&raw, &mut errs);
    let telemetry = telemetry(&raw, env, &mut errs);

    let mut deployments: Vec<DeploymentConfig> = raw
        .deployments
        .iter()
        .enumerate()
        .filter_map(|(i, d)| deployment(i, d, env, &mut errs))
        .collect();
    let currency = crate::spend::apply_prices(&raw, &mut deployments, &mut errs);

    unique(raw.deployments.iter().map(|d| &d.name), "deployments", &mut errs);

    let mut models = Vec::new();
    for (i, m) in raw.models.iter().enumerate() {
        let path = format!("models[{i}]");
        if m.name.value.is_empty() {
            errs.push(format!("{path}.name"), Some(&m.name), "must not be empty");
        }
        if m.deployments.is_empty() {
            errs.push(
                format!("{path}.deployments"),
                Some(&m.name),
                "needs at least one deployment",
            );
        }
        let mut idx = Vec::new();
        for (j, d) in m.deployments.iter().enumerate() {
            match raw.deployments.iter().position(|x| x.name.value == d.value) {
                Some(k) => idx.push(k),
                None => errs.push(
                    format!("{path}.deployments[{j}]"),
                    Some(d),
                    format!("unknown deployment {:?}", d.value),
                ),
            }
        }
        let (balance, weights) = crate::resilience::balance(m, &path, &mut errs);
        models.push(ModelConfig {
            balance,
            weights,
            name: m.name.value.clone(),
            deployments: idx,
            limits: crate::spend::limits(&m.limits, &format!("{path}.limits"), Some(&m.name), &mut errs),
        });
    }
    unique(raw.models.iter().map(|m| &m.name), "models", &mut errs);

    let model_names: Vec<&str> = raw.models.iter().map(|m| m.name.value.as_str()).collect();
    let route_names: Vec<&str> = raw.routes.iter().map(|r| r.name.value.as_str()).collect();
    let defaults = policy(
        &RawPolicy::default(),
        &raw.defaults,
        "defaults",
        (server.max_body_bytes, &model_names),
        &mut errs,
    );

    let guard_sets = crate::guard::sets(&raw.guardrail_sets, env, &mut errs);
    let mut routes: Vec<RouteConfig> = raw
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            route(
                i,
                r,
                &raw.defaults,
                (&model_names, &guard_sets),
                server.max_body_bytes,
                &mut errs,
            )
        })
        .collect();
    unique(raw.routes.iter().map(|r| &r.name), "routes", &mut errs);
    if routes.is_empty() {
        routes.push(RouteConfig {
            name: "default".to_owned(),
            matcher: RouteMatch::default(),
            model: None,
            allowed_models: None,
            policy: defaults,
            prediction: None,
            limits: Vec::new(),
            fallback: FallbackConfig::default(),
            queue: None,
            degrade: Vec::new(),
            debug_rewrite: None,
            guard: crate::guard::route(&RawPolicy::default(), &raw.defaults, &guard_sets, "defaults", &mut errs),
            payloads: None,
        });
    }

    // Payload rows live in the ledger's database.
    if !ledger.enabled
        && let Some(r) = routes.iter().find(|r| r.payloads.is_some())
    {
        errs.push::<bool>(
            "ledger.enabled",
            None,
            format!(
                "route {:?} logs payloads, which are stored in the ledger's database: enable the ledger",
                r.name
            ),
        );
    }

    let crate::spend::LimitSections {
        tiers,
        tier_priorities,
        tenant_weights,
        teams,
        tenants,
        time_zone_offset_s,
        budget_alerts,
    } = crate::spend::limit_sections(&raw, env, &mut errs);

    let alerts = crate::alerts::alerts(&raw, budget_alerts.is_some(), &mut errs);

    let keys: Vec<KeyConfig> = raw
        .keys
        .iter()
        .enumerate()
        .filter_map(|(i, k)| crate::keys::key(i, k, &model_names, &route_names, &tiers, &mut errs))
        .collect();
    unique(raw.keys.iter().map(|k| &k.id), "keys", &mut errs);
    let mut hashes = HashSet::new();
    for (i, k) in keys.iter().enumerate() {
        if !hashes.insert(k.hash) {
            errs.push::<()>(format!("keys[{i}].hash"), None, "the same key hash appears twice");
        }
    }

    // Every section is validated before the errors are looked at (one validated inside the
    // `Ok` below would have its errors dropped and its defaults served).
    let breaker = crate::resilience::breaker(&raw.breaker, &mut errs);
    let geo = crate::resilience::geo(raw.geo.as_ref(), &mut errs);
    let cache = crate::cache::store(&raw.cache, &mut errs);
    let embedder = crate::cache::embedder(&raw.embedder, &mut errs);
    let tenant_deny = crate::guard::tenant_deny(&raw.tenants, &raw.teams, &mut errs);

    if errs.0.is_empty() {
        Ok(Config {
            server,
            admin,
            store,
            logging,
            telemetry,
            deployments,
            models,
            routes,
            keys,
            currency,
            tiers,
            tier_priorities,
            tenant_weights,
            teams,
            tenants,
            time_zone_offset_s,
            alerts,
            budget_alerts,
            ledger,
            breaker,
            geo,
            cache,
            embedder,
            tenant_deny,
            version,
        })
    } else {
        errs.0.sort_by_key(|e| e.line.unwrap_or(u64::MAX));
        Err(ConfigErrors(errs.0))
    }
}
