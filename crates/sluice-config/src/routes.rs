//! One `routes[]` entry: its match rule, the alias it serves, its prediction contract, limits,
//! fallback, queue, degradation steps and the test response stage.

use http::HeaderName;

use crate::collect::{Collector, resolve_models};
use crate::policy::policy;
use crate::raw::{RawPolicy, RawRoute, S};
use crate::types::*;

fn patterns(list: &[String]) -> Vec<Pattern> {
    list.iter().map(|s| Pattern::parse(s)).collect()
}

pub(crate) fn route(
    i: usize,
    r: &RawRoute,
    defaults: &RawPolicy,
    (model_names, sets): (&[&str], &crate::guard::GuardSets),
    server_max_body: u64,
    errs: &mut Collector,
) -> RouteConfig {
    let path = format!("routes[{i}]");
    if r.name.value.is_empty() {
        errs.push(format!("{path}.name"), Some(&r.name), "must not be empty");
    }
    let m = &r.matcher;
    for (j, p) in m.paths.iter().enumerate() {
        if !p.value.starts_with('/') {
            errs.push(format!("{path}.match.paths[{j}]"), Some(p), "a path starts with /");
        }
    }
    for (j, p) in m.models.iter().enumerate() {
        if let Pattern::Exact(name) = Pattern::parse(&p.value)
            && !model_names.contains(&name.as_str())
        {
            errs.push(
                format!("{path}.match.models[{j}]"),
                Some(p),
                format!("unknown model alias {name:?}"),
            );
        }
    }
    let mut headers = Vec::new();
    for (name, value) in &m.headers {
        match HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
            Ok(h) => headers.push((h, Pattern::parse(value))),
            Err(_) => errs.push(
                format!("{path}.match.headers.{name}"),
                Some(&r.name),
                "not a valid header name",
            ),
        }
    }
    let model = r.model.as_ref().and_then(|m| {
        let found = model_names.iter().position(|n| *n == m.value);
        if found.is_none() {
            errs.push(
                format!("{path}.model"),
                Some(m),
                format!("unknown model alias {:?}", m.value),
            );
        }
        found
    });
    let allowed_models = r
        .allowed_models
        .as_ref()
        .map(|list| resolve_models(list, model_names, &format!("{path}.allowed_models"), errs));
    let prediction = r.prediction.as_ref().map(|p| {
        if model.is_none() {
            errs.push(
                format!("{path}.model"),
                Some(p),
                "a prediction route names the model alias it serves",
            );
        }
        let mut compile = |name: &str, schema: &Option<serde_json::Value>| {
            let schema = schema.as_ref()?;
            match jsonschema::validator_for(schema) {
                Ok(v) => Some(std::sync::Arc::new(v)),
                Err(e) => {
                    errs.push(
                        format!("{path}.prediction.{name}"),
                        Some(p),
                        format!("not a valid JSON Schema: {e}"),
                    );
                    None
                }
            }
        };
        PredictionConfig {
            request_schema: compile("request_schema", &p.value.request_schema),
            response_schema: compile("response_schema", &p.value.response_schema),
            request_transform: p.value.request_transform.clone(),
            response_transform: p.value.response_transform.clone(),
        }
    });
    let own = r.policy();
    let route_policy = policy(&own, defaults, &path, (server_max_body, model_names), errs);
    let fallback = crate::resilience::fallback(r, route_policy.cache.as_ref(), model_names, &path, errs);
    let caches = route_policy.cache.is_some();
    let guard = crate::guard::route(&own, defaults, sets, &path, errs);
    let payloads = payloads(r, guard.as_ref(), &path, errs);
    RouteConfig {
        name: r.name.value.clone(),
        matcher: RouteMatch {
            paths: m.paths.iter().map(|p| Pattern::parse(&p.value)).collect(),
            models: m.models.iter().map(|p| Pattern::parse(&p.value)).collect(),
            keys: patterns(&m.keys),
            tenants: patterns(&m.tenants),
            teams: patterns(&m.teams),
            tiers: patterns(&m.tiers),
            headers,
            metadata: m.metadata.iter().map(|(k, v)| (k.clone(), Pattern::parse(v))).collect(),
        },
        model,
        allowed_models,
        policy: route_policy,
        prediction,
        limits: crate::spend::limits(&r.limits, &format!("{path}.limits"), Some(&r.name), errs),
        fallback,
        queue: crate::resilience::queue(r, &path, errs),
        degrade: crate::resilience::degrade(r, caches, model_names, &path, errs),
        debug_rewrite: r.debug_rewrite.as_ref().and_then(|d| debug_rewrite(d, &path, errs)),
        guard,
        payloads,
    }
}

/// The route's payload log: only where its guardrails redact, unless the operator allows
/// unredacted rows ("redact before you store").
fn payloads(r: &RawRoute, guard: Option<&RouteGuard>, path: &str, errs: &mut Collector) -> Option<PayloadLogConfig> {
    let on = r.log_payloads.as_ref().is_some_and(|v| v.value);
    if !on {
        for (field, set) in [
            ("payload_retention_days", r.payload_retention_days.is_some()),
            ("allow_unredacted", r.allow_unredacted.is_some()),
        ] {
            if set {
                errs.push::<bool>(format!("{path}.{field}"), None, "applies only with log_payloads: true");
            }
        }
        return None;
    }
    let redacted = guard.is_some_and(|g| g.rules.iter().any(|rule| rule.action == GuardAction::Redact));
    if !redacted && !r.allow_unredacted.as_ref().is_some_and(|v| v.value) {
        errs.push(
            format!("{path}.log_payloads"),
            r.log_payloads.as_ref(),
            "the route's guardrails redact nothing, so prompts and answers would be stored as sent: attach a set with a redact rule (e.g. guardrails: [pii-redact]) or set allow_unredacted: true",
        );
        return None;
    }
    let retention_days = crate::collect::ranged(
        r.payload_retention_days.as_ref(),
        30,
        1,
        3650,
        &format!("{path}.payload_retention_days"),
        errs,
    ) as u32;
    Some(PayloadLogConfig {
        retention_days,
        redacted,
    })
}

/// The most a response stage may hold back (characters).
const MAX_HOLD_CHARS: u64 = 65_536;

fn debug_rewrite(d: &S<crate::raw::RawDebugRewrite>, path: &str, errs: &mut Collector) -> Option<DebugRewriteConfig> {
    let v = &d.value;
    let from = v.replace.from.chars().count() as u64;
    let problem = if from == 0 {
        Some("replace.from must not be empty".to_owned())
    } else if v.hold_chars < from {
        Some(format!(
            "hold_chars must be at least the length of replace.from ({from})"
        ))
    } else if v.hold_chars > MAX_HOLD_CHARS {
        Some(format!("hold_chars must be at most {MAX_HOLD_CHARS}"))
    } else {
        None
    };
    if let Some(p) = problem {
        errs.push(format!("{path}.debug_rewrite"), Some(d), p);
        return None;
    }
    Some(DebugRewriteConfig {
        hold_chars: v.hold_chars as usize,
        from: v.replace.from.clone(),
        to: v.replace.to.clone(),
    })
}
