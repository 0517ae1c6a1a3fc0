//! Guardrails' config: the built-in sets (`pii-redact`, `no-secrets`, `injection-screen`), the
//! operator's own under `guardrail_sets:`, which a route attaches (`guardrails: [...]`, its own
//! list replacing the defaults'), how it normalises prompts, and tenants' deny lists.

use std::collections::{BTreeMap, HashMap};

use sluice_guard::{Kind, Label, Matcher};

use crate::collect::Collector;
use crate::raw::{RawDeny, RawEntity, RawGuard, RawGuardRule, RawPolicy, RawWebhook, S};
use crate::types::{Channels, GuardAction, GuardCheck, GuardRule, NormalizeConfig, OnInvalid, RouteGuard};

/// The injection screen's threshold when a rule or route gives none: on the evaluation set's
/// training half, the score above which ordinary prompts stay under 1 % (GUARDRAILS.md).
pub const DEFAULT_INJECTION_THRESHOLD: f64 = 0.5;
/// The run of system-prompt words in an answer that counts as a leak when a rule gives none.
pub const DEFAULT_OVERLAP_MIN_WORDS: u64 = 12;
/// Runaway generation when a rule says nothing: one span said four times over 256 bytes.
pub const DEFAULT_REPETITION_MIN_REPEATS: u64 = 4;
pub const DEFAULT_REPETITION_MIN_BYTES: u64 = 256;

/// Every set a route may attach, by name: the built-in ones and `guardrail_sets:`.
pub(crate) type GuardSets = HashMap<String, Vec<GuardRule>>;

fn input_channels() -> Channels {
    Channels {
        user: true,
        tool_results: true,
        ..Channels::default()
    }
}

fn output_channels() -> Channels {
    Channels {
        output: true,
        tool_args: true,
        ..Channels::default()
    }
}

/// The built-in sets.
fn built_in() -> GuardSets {
    let both = Channels {
        system: true,
        ..merge(input_channels(), output_channels())
    };
    let rule = |name: &str, action, channels, check| GuardRule {
        name: name.to_owned(),
        action,
        channels,
        restore: false,
        check,
    };
    HashMap::from([
        (
            "pii-redact".to_owned(),
            vec![rule(
                "pii-redact/pii",
                GuardAction::Redact,
                merge(input_channels(), output_channels()),
                GuardCheck::Kinds(Kind::PII.to_vec()),
            )],
        ),
        (
            "no-secrets".to_owned(),
            vec![rule(
                "no-secrets/secrets",
                GuardAction::Redact,
                both,
                GuardCheck::Kinds(Kind::SECRETS.to_vec()),
            )],
        ),
        (
            "no-leaks".to_owned(),
            vec![
                rule(
                    "no-leaks/canary",
                    GuardAction::Block,
                    output_channels(),
                    GuardCheck::Canary,
                ),
                rule(
                    "no-leaks/overlap",
                    GuardAction::Block,
                    Channels {
                        output: true,
                        ..Channels::default()
                    },
                    GuardCheck::Overlap {
                        min_words: DEFAULT_OVERLAP_MIN_WORDS as u32,
                    },
                ),
            ],
        ),
        (
            "no-runaway".to_owned(),
            vec![rule(
                "no-runaway/repetition",
                GuardAction::Block,
                Channels {
                    output: true,
                    ..Channels::default()
                },
                GuardCheck::Repetition {
                    min_repeats: DEFAULT_REPETITION_MIN_REPEATS as u32,
                    min_bytes: DEFAULT_REPETITION_MIN_BYTES as u32,
                },
            )],
        ),
        (
            "injection-screen".to_owned(),
            vec![rule(
                "injection-screen/injection",
                GuardAction::Block,
                input_channels(),
                GuardCheck::Injection {
                    threshold: DEFAULT_INJECTION_THRESHOLD as f32,
                },
            )],
        ),
    ])
}

fn merge(a: Channels, b: Channels) -> Channels {
    Channels {
        user: a.user || b.user,
        system: a.system || b.system,
        tool_results: a.tool_results || b.tool_results,
        tool_args: a.tool_args || b.tool_args,
        output: a.output || b.output,
    }
}

/// The built-in sets and the operator's, validated.
pub(crate) fn sets(
    raw: &BTreeMap<String, Vec<RawGuardRule>>,
    env: crate::collect::EnvLookup<'_>,
    errs: &mut Collector,
) -> GuardSets {
    let mut sets = built_in();
    for (name, rules) in raw {
        let path = format!("guardrail_sets.{name}");
        if sets.contains_key(name) {
            errs.push::<()>(path.clone(), None, format!("{name:?} is a built-in set's name"));
            continue;
        }
        let rules = rules
            .iter()
            .enumerate()
            .filter_map(|(i, r)| rule(name, r, &format!("{path}[{i}]"), env, errs))
            .collect();
        crate::collect::unique(raw[name].iter().map(|r| &r.name), &path, errs);
        sets.insert(name.clone(), rules);
    }
    sets
}

/// One rule of an operator's set.
fn rule(
    set: &str,
    r: &RawGuardRule,
    path: &str,
    env: crate::collect::EnvLookup<'_>,
    errs: &mut Collector,
) -> Option<GuardRule> {
    let canary = r.canary.as_ref().is_some_and(|c| c.value);
    let checks = [
        r.pii.is_some(),
        r.secrets.is_some(),
        r.deny.is_some(),
        r.injection.is_some(),
        canary,
        r.overlap.is_some(),
        r.repetition.is_some(),
        r.webhook.is_some(),
        r.classifier.is_some(),
    ];
    if checks.iter().filter(|&&c| c).count() != 1 {
        errs.push(
            path,
            Some(&r.name),
            "a rule has exactly one check: pii, secrets, deny, injection, classifier, canary, overlap, repetition or webhook",
        );
        return None;
    }
    let leak = canary || r.overlap.is_some() || r.repetition.is_some();
    let kinds = |list: &Vec<S<String>>, all: &[Kind], what: &str, errs: &mut Collector| -> Vec<Kind> {
        let mut kinds = Vec::new();
        for s in list {
            match s.value.as_str() {
                "all" => kinds.extend_from_slice(all),
                n => match Kind::from_name(n).filter(|k| all.contains(k)) {
                    Some(k) => kinds.push(k),
                    None => {
                        let names: Vec<&str> = all.iter().map(|k| k.name()).collect();
                        errs.push(
                            format!("{path}.{what}"),
                            Some(s),
                            format!("{n:?} is not one of all, {}", names.join(", ")),
                        );
                    }
                },
            }
        }
        kinds.sort();
        kinds.dedup();
        kinds
    };
    let check = if let Some(list) = &r.pii {
        GuardCheck::Kinds(kinds(list, &Kind::PII, "pii", errs))
    } else if let Some(list) = &r.secrets {
        GuardCheck::Kinds(kinds(list, &Kind::SECRETS, "secrets", errs))
    } else if let Some(d) = &r.deny {
        deny(d, &format!("{path}.deny"), errs)?
    } else if canary {
        GuardCheck::Canary
    } else if let Some(o) = &r.overlap {
        let min_words = crate::collect::ranged(
            o.min_words.as_ref(),
            DEFAULT_OVERLAP_MIN_WORDS,
            4,
            1000,
            &format!("{path}.overlap.min_words"),
            errs,
        );
        GuardCheck::Overlap {
            min_words: min_words as u32,
        }
    } else if let Some(c) = &r.classifier {
        GuardCheck::Classifier {
            threshold: c
                .threshold
                .as_ref()
                .map(|t| threshold_of(Some(t), &format!("{path}.classifier.threshold"), errs)),
        }
    } else if let Some(w) = &r.webhook {
        webhook(w, &format!("{path}.webhook"), env, errs)?
    } else if let Some(rep) = &r.repetition {
        let p = |n: &str| format!("{path}.repetition.{n}");
        GuardCheck::Repetition {
            min_repeats: crate::collect::ranged(
                rep.min_repeats.as_ref(),
                DEFAULT_REPETITION_MIN_REPEATS,
                2,
                1000,
                &p("min_repeats"),
                errs,
            ) as u32,
            min_bytes: crate::collect::ranged(
                rep.min_bytes.as_ref(),
                DEFAULT_REPETITION_MIN_BYTES,
                16,
                1_000_000,
                &p("min_bytes"),
                errs,
            ) as u32,
        }
    } else {
        let threshold = r.injection.as_ref().and_then(|i| i.threshold.as_ref());
        GuardCheck::Injection {
            threshold: threshold_of(threshold, &format!("{path}.injection.threshold"), errs),
        }
    };
    // Leak checks read the answer; the others default to the request.
    let on =
        r.on.as_ref()
            .map_or(if leak { "output" } else { "input" }, |s| s.value.as_str());
    if leak && on != "output" {
        errs.push(
            format!("{path}.on"),
            r.on.as_ref(),
            "a leak or runaway check (canary, overlap, repetition) reads the answer: on: output",
        );
    }
    let mut channels = match on {
        "input" => input_channels(),
        "output" => output_channels(),
        "both" => merge(input_channels(), output_channels()),
        other => {
            errs.push(
                format!("{path}.on"),
                r.on.as_ref(),
                format!("{other:?} is not one of input, output, both"),
            );
            input_channels()
        }
    };
    if let Some(list) = &r.channels {
        channels = Channels::default();
        for s in list {
            if !channels.set(&s.value) {
                errs.push(
                    format!("{path}.where"),
                    Some(s),
                    format!("{:?} is not one of {}", s.value, Channels::NAMES.join(", ")),
                );
            }
        }
        let wrong_side = (on == "input" && channels.output()) || (on == "output" && channels.input());
        if wrong_side {
            errs.push(
                format!("{path}.where"),
                Some(&r.name),
                format!("a channel that is not on the rule's side ({on})"),
            );
        }
    }
    let action = match r.action.as_ref().map(|s| (s, s.value.as_str())) {
        None => GuardAction::Block,
        Some((_, "block")) => GuardAction::Block,
        Some((_, "redact")) => GuardAction::Redact,
        Some((_, "flag")) => GuardAction::Flag,
        Some((s, other)) => {
            errs.push(
                format!("{path}.action"),
                Some(s),
                format!("{other:?} is not one of block, redact, flag"),
            );
            GuardAction::Block
        }
    };
    if matches!(check, GuardCheck::Overlap { .. }) && action == GuardAction::Redact {
        errs.push(
            format!("{path}.action"),
            r.action.as_ref(),
            "an overlap rule blocks or flags",
        );
    }
    if matches!(check, GuardCheck::Injection { .. } | GuardCheck::Classifier { .. }) {
        if action == GuardAction::Redact {
            errs.push(
                format!("{path}.action"),
                r.action.as_ref(),
                "an injection rule blocks or flags (a score has nothing to redact)",
            );
        }
        if channels.output() {
            errs.push(
                format!("{path}.on"),
                Some(&r.name),
                "the injection screen reads input only",
            );
        }
    }
    let restore = r.restore.as_ref().is_some_and(|s| s.value);
    if restore && action != GuardAction::Redact {
        errs.push(
            format!("{path}.restore"),
            r.restore.as_ref(),
            "only a redacting rule restores",
        );
    }
    Some(GuardRule {
        name: format!("{set}/{}", r.name.value),
        action,
        channels,
        restore,
        check,
    })
}

fn threshold_of(value: Option<&S<f64>>, path: &str, errs: &mut Collector) -> f32 {
    match value {
        None => DEFAULT_INJECTION_THRESHOLD as f32,
        Some(s) if (0.0..=1.0).contains(&s.value) && s.value > 0.0 => s.value as f32,
        Some(s) => {
            errs.push(path, Some(s), "must be greater than 0 and at most 1");
            DEFAULT_INJECTION_THRESHOLD as f32
        }
    }
}

/// A deny list: its regular expressions must compile (as the guard's matcher compiles them).
fn deny(d: &RawDeny, path: &str, errs: &mut Collector) -> Option<GuardCheck> {
    if d.literals.is_empty() && d.regex.is_empty() {
        errs.push::<()>(path, None, "a deny list needs literals or regex");
        return None;
    }
    let mut ok = true;
    for (i, p) in d.regex.iter().enumerate() {
        let label = Label {
            kind: Kind::Denied,
            rule: 0,
        };
        if let Err(e) = Matcher::new(&[(label, p.value.as_str())]) {
            errs.push(format!("{path}.regex[{i}]"), Some(p), e.to_string());
            ok = false;
        }
    }
    for (i, l) in d.literals.iter().enumerate() {
        if l.value.trim().is_empty() {
            errs.push(
                format!("{path}.literals[{i}]"),
                Some(l),
                "an empty literal would match everywhere",
            );
            ok = false;
        }
    }
    ok.then(|| GuardCheck::Deny {
        literals: d.literals.iter().map(|l| l.value.clone()).collect(),
        patterns: d.regex.iter().map(|p| p.value.clone()).collect(),
    })
}

/// An external hook's check: an http(s) URL, a timeout, what an error does.
fn webhook(w: &RawWebhook, path: &str, env: crate::collect::EnvLookup<'_>, errs: &mut Collector) -> Option<GuardCheck> {
    let url = match w.url.value.parse::<http::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some() => Some(u),
        _ => {
            errs.push(format!("{path}.url"), Some(&w.url), "not an http(s) URL");
            None
        }
    };
    let timeout_ms = crate::collect::ranged(
        w.timeout_ms.as_ref(),
        1000,
        1,
        60_000,
        &format!("{path}.timeout_ms"),
        errs,
    );
    let fail_closed = match w.on_error.as_ref().map(|s| (s, s.value.as_str())) {
        None | Some((_, "allow")) => false,
        Some((_, "block")) => true,
        Some((s, other)) => {
            errs.push(
                format!("{path}.on_error"),
                Some(s),
                format!("{other:?} is not one of allow, block"),
            );
            false
        }
    };
    let secret = w
        .secret_env
        .as_ref()
        .and_then(|n| crate::collect::env_secret(n, &format!("{path}.secret_env"), env, errs));
    Some(GuardCheck::Webhook {
        url: url?,
        timeout: std::time::Duration::from_millis(timeout_ms),
        fail_closed,
        secret,
    })
}

/// A route's guardrails: its own list, else the defaults'; `None` when it has none.
pub(crate) fn route(
    own: &RawPolicy,
    defaults: &RawPolicy,
    sets: &GuardSets,
    path: &str,
    errs: &mut Collector,
) -> Option<RouteGuard> {
    let list = own.guardrails.as_ref().or(defaults.guardrails.as_ref());
    if list.is_none() && own.guard.is_none() && defaults.guard.is_none() {
        return None;
    }
    let mut guard = RouteGuard::default();
    for s in list.into_iter().flatten() {
        match sets.get(&s.value) {
            Some(rules) => {
                if guard.sets.contains(&s.value) {
                    errs.push(
                        format!("{path}.guardrails"),
                        Some(s),
                        format!("{:?} is attached twice", s.value),
                    );
                }
                guard.sets.push(s.value.clone());
                guard.rules.extend(rules.iter().cloned());
            }
            None => {
                let mut known: Vec<&str> = sets.keys().map(String::as_str).collect();
                known.sort_unstable();
                errs.push(
                    format!("{path}.guardrails"),
                    Some(s),
                    format!("unknown guardrail set {:?} (known: {})", s.value, known.join(", ")),
                );
            }
        }
    }
    let empty = RawGuard::default();
    let own_guard = own.guard.as_ref().unwrap_or(&empty);
    let defaults_guard = defaults.guard.as_ref().unwrap_or(&empty);
    let gpath = |name: &str| format!("{path}.guard.{name}");
    let mut normalize = NormalizeConfig {
        on: true,
        ..NormalizeConfig::default()
    };
    if let Some(s) = own_guard.normalize.as_ref().or(defaults_guard.normalize.as_ref()) {
        match s.value.as_str() {
            "nfc" => {}
            "nfkc" => normalize.nfkc = true,
            "off" => normalize.on = false,
            other => errs.push(
                gpath("normalize"),
                Some(s),
                format!("{other:?} is not one of nfc, nfkc, off"),
            ),
        }
    }
    if let Some(s) = own_guard
        .collapse_whitespace
        .as_ref()
        .or(defaults_guard.collapse_whitespace.as_ref())
    {
        match s.value.as_str() {
            "off" => {}
            "text" => normalize.collapse_whitespace = true,
            "all" => {
                normalize.collapse_whitespace = true;
                normalize.in_code = true;
            }
            other => errs.push(
                gpath("collapse_whitespace"),
                Some(s),
                format!("{other:?} is not one of off, text, all"),
            ),
        }
    }
    if let Some(t) = own_guard
        .injection_threshold
        .as_ref()
        .or(defaults_guard.injection_threshold.as_ref())
    {
        let threshold = threshold_of(Some(t), &gpath("injection_threshold"), errs);
        for r in &mut guard.rules {
            if let GuardCheck::Injection { threshold: own } = &mut r.check {
                *own = threshold;
            }
        }
    }
    guard.normalize = normalize;
    guard.max_output_tokens = own_guard
        .max_output_tokens
        .as_ref()
        .or(defaults_guard.max_output_tokens.as_ref())
        .map(|v| crate::collect::ranged(Some(v), 0, 1, 10_000_000, &gpath("max_output_tokens"), errs) as u32);
    guard.max_prompt_tokens = own_guard
        .max_prompt_tokens
        .as_ref()
        .or(defaults_guard.max_prompt_tokens.as_ref())
        .map(|v| crate::collect::ranged(Some(v), 0, 1, 100_000_000, &gpath("max_prompt_tokens"), errs) as u32);
    // A JSON Schema that compiles, the route's own or the defaults'.
    let schema = |own: Option<&S<serde_json::Value>>, name: &str, errs: &mut Collector| {
        let s = own?;
        match jsonschema::validator_for(&s.value) {
            Ok(_) => Some(s.value.clone()),
            Err(e) => {
                errs.push(gpath(name), Some(s), format!("not a valid JSON Schema: {e}"));
                None
            }
        }
    };
    guard.request_schema = schema(
        own_guard
            .request_schema
            .as_ref()
            .or(defaults_guard.request_schema.as_ref()),
        "request_schema",
        errs,
    );
    guard.output_schema = schema(
        own_guard
            .output_schema
            .as_ref()
            .or(defaults_guard.output_schema.as_ref()),
        "output_schema",
        errs,
    );
    if let Some(s) = own_guard.on_invalid.as_ref().or(defaults_guard.on_invalid.as_ref()) {
        match [OnInvalid::Retry, OnInvalid::Fallback, OnInvalid::Error, OnInvalid::Pass]
            .into_iter()
            .find(|o| o.as_str() == s.value)
        {
            Some(o) => guard.on_invalid = o,
            None => errs.push(
                gpath("on_invalid"),
                Some(s),
                format!("{:?} is not one of retry, fallback, error, pass", s.value),
            ),
        }
    }
    Some(guard)
}

/// Tenants' deny lists (teams have none).
pub(crate) fn tenant_deny(
    tenants: &[RawEntity],
    teams: &[RawEntity],
    errs: &mut Collector,
) -> HashMap<String, GuardRule> {
    for (i, t) in teams.iter().enumerate() {
        if t.deny.is_some() {
            errs.push(
                format!("teams[{i}].deny"),
                Some(&t.name),
                "deny lists belong to tenants",
            );
        }
    }
    let both = merge(input_channels(), output_channels());
    tenants
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let check = deny(t.deny.as_ref()?, &format!("tenants[{i}].deny"), errs)?;
            let rule = GuardRule {
                name: format!("tenant/{}", t.name.value),
                action: GuardAction::Block,
                channels: Channels { system: true, ..both },
                restore: false,
                check,
            };
            Some((t.name.value.clone(), rule))
        })
        .collect()
}

#[cfg(test)]
mod tests;
