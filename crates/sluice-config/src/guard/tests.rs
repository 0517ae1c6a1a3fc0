//! The guardrails' config: built-in sets, rules, route settings, webhooks, tenants' deny lists.
#![allow(clippy::unwrap_used, clippy::panic)]
use super::*;
use crate::{Config, LoadError, load_str};

fn load(text: &str) -> Result<Config, LoadError> {
    load_str(text, &|_| None)
}

fn errors(text: &str) -> Vec<(u64, String)> {
    match load(text) {
        Err(LoadError::Invalid(errs)) => errs.0.iter().map(|e| (e.line.unwrap_or(0), e.path.clone())).collect(),
        other => panic!("expected errors, got {other:?}"),
    }
}

#[test]
fn a_route_attaches_sets_and_its_list_replaces_the_defaults() {
    let c = load(
        r#"
defaults:
  guardrails: [pii-redact]
  guard: { normalize: nfkc }
guardrail_sets:
  house:
    - name: codenames
      deny: { literals: ["Project Falcon"], regex: ["(?i)internal-[0-9]+"] }
      on: both
    - name: emails-back
      pii: [email]
      action: redact
      restore: true
routes:
  - name: a
  - name: b
    guardrails: [no-secrets, house, injection-screen]
    guard: { injection_threshold: 0.8, collapse_whitespace: text }
"#,
    )
    .unwrap();
    let a = c.routes[0].guard.as_ref().unwrap();
    assert_eq!(a.sets, ["pii-redact"]);
    assert!(a.normalize.nfkc && !a.normalize.collapse_whitespace);
    let b = c.routes[1].guard.as_ref().unwrap();
    assert_eq!(b.sets, ["no-secrets", "house", "injection-screen"]);
    let names: Vec<&str> = b.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "no-secrets/secrets",
            "house/codenames",
            "house/emails-back",
            "injection-screen/injection"
        ]
    );
    assert_eq!(b.rules[1].action, GuardAction::Block);
    assert!(b.rules[1].channels.user && b.rules[1].channels.output && !b.rules[1].channels.system);
    assert!(b.rules[2].restore && b.rules[2].check == GuardCheck::Kinds(vec![Kind::Email]));
    assert_eq!(b.rules[3].check, GuardCheck::Injection { threshold: 0.8 });
    assert!(b.normalize.nfkc && b.normalize.collapse_whitespace && !b.normalize.in_code);
    // No guardrails anywhere: none on the route.
    assert!(load("routes: [{name: x}]").unwrap().routes[0].guard.is_none());
}

#[test]
fn leak_checks_read_the_answer() {
    let c = load("guardrail_sets:\n  l:\n    - { name: c, canary: true }\n    - { name: o, overlap: { min_words: 9 }, action: flag }\nroutes: [{name: r, guardrails: [l, no-leaks]}]\n").unwrap();
    let rules = &c.routes[0].guard.as_ref().unwrap().rules;
    assert_eq!(rules[0].check, GuardCheck::Canary);
    assert!(rules[0].channels.output && !rules[0].channels.user);
    assert_eq!(rules[1].check, GuardCheck::Overlap { min_words: 9 });
    assert_eq!(rules[3].check, GuardCheck::Overlap { min_words: 12 });
    assert_eq!(
        errors(
            "guardrail_sets:\n  l:\n    - { name: c, canary: true, on: input }\n    - { name: o, overlap: {}, action: redact }\n"
        ),
        [
            (3, "guardrail_sets.l[0].on".to_owned()),
            (4, "guardrail_sets.l[1].action".to_owned())
        ]
    );
}

#[test]
fn runaway_checks_and_the_output_cap() {
    let c = load("guardrail_sets:\n  r:\n    - { name: loop, repetition: { min_repeats: 6 } }\nroutes: [{name: a, guardrails: [r, no-runaway], guard: { max_output_tokens: 300 }}]\n").unwrap();
    let g = c.routes[0].guard.as_ref().unwrap();
    assert_eq!(
        g.rules[0].check,
        GuardCheck::Repetition {
            min_repeats: 6,
            min_bytes: 256
        }
    );
    assert_eq!(
        g.rules[1].check,
        GuardCheck::Repetition {
            min_repeats: 4,
            min_bytes: 256
        }
    );
    assert_eq!(g.max_output_tokens, Some(300));
    assert_eq!(
        errors(
            "guardrail_sets:\n  r:\n    - { name: loop, repetition: { min_repeats: 1 } }\nroutes: [{name: a, guardrails: [r], guard: { max_output_tokens: 0 }}]\n"
        ),
        [
            (3, "guardrail_sets.r[0].repetition.min_repeats".to_owned()),
            (4, "routes[0].guard.max_output_tokens".to_owned())
        ]
    );
}

#[test]
fn a_route_schema_and_prompt_size() {
    let c = load("routes: [{name: a, guardrails: [pii-redact], guard: { max_prompt_tokens: 4000, request_schema: { type: object } }}]\n").unwrap();
    let g = c.routes[0].guard.as_ref().unwrap();
    assert_eq!(g.max_prompt_tokens, Some(4000));
    assert!(g.request_schema.is_some());
    assert_eq!(
        errors("routes: [{name: a, guardrails: [pii-redact], guard: { request_schema: { type: 12 } }}]\n"),
        [(1, "routes[0].guard.request_schema".to_owned())]
    );
}

#[test]
fn an_output_schema_and_what_an_invalid_answer_gets() {
    // A `guard:` block alone gives a route its guardrails (no set attached).
    let c =
        load("routes: [{name: a, guard: { output_schema: { type: object, required: [x] }, on_invalid: fallback }}]\n")
            .unwrap();
    let g = c.routes[0].guard.as_ref().unwrap();
    assert!(g.sets.is_empty() && g.output_schema.is_some());
    assert_eq!(g.on_invalid, OnInvalid::Fallback);
    let c = load("routes: [{name: a, guardrails: [pii-redact]}]\n").unwrap();
    assert_eq!(c.routes[0].guard.as_ref().unwrap().on_invalid, OnInvalid::Retry);
    assert!(load("routes: [{name: a}]\n").unwrap().routes[0].guard.is_none());
    assert_eq!(
        errors("routes: [{name: a, guard: { output_schema: { type: 12 }, on_invalid: twice }}]\n"),
        [
            (1, "routes[0].guard.output_schema".to_owned()),
            (1, "routes[0].guard.on_invalid".to_owned())
        ]
    );
}

#[test]
fn webhooks_are_checked_at_load() {
    let c = load("guardrail_sets:\n  h:\n    - { name: m, on: both, webhook: { url: \"http://127.0.0.1:9/v\", timeout_ms: 250, on_error: block } }\nroutes: [{name: a, guardrails: [h]}]\n").unwrap();
    let rule = &c.routes[0].guard.as_ref().unwrap().rules[0];
    assert!(matches!(
        &rule.check,
        GuardCheck::Webhook { timeout, fail_closed: true, .. } if timeout.as_millis() == 250
    ));
    assert!(rule.channels.user && rule.channels.output);
    let bad = "guardrail_sets:\n  h:\n    - { name: m, webhook: { url: \"ftp://x\", timeout_ms: 0, on_error: maybe } }\nroutes: [{name: a, guardrails: [h]}]\n";
    assert_eq!(
        errors(bad),
        [
            (3, "guardrail_sets.h[0].webhook.url".to_owned()),
            (3, "guardrail_sets.h[0].webhook.timeout_ms".to_owned()),
            (3, "guardrail_sets.h[0].webhook.on_error".to_owned())
        ]
    );
}

#[test]
fn tenants_have_deny_lists() {
    let c = load("tenants:\n  - name: acme\n    deny: { literals: [Bluebird] }\n").unwrap();
    let rule = &c.tenant_deny["acme"];
    assert_eq!(rule.name, "tenant/acme");
    assert!(rule.channels.user && rule.channels.system && rule.channels.output);
}

#[test]
fn bad_guardrails_are_refused_with_their_lines() {
    let text = r#"guardrail_sets:
  pii-redact: []
  mine:
    - name: two-checks
      pii: [email]
      secrets: [all]
    - name: bad-regex
      deny: { regex: ["(unclosed"] }
    - name: bad-kind
      pii: [emial]
    - name: inj
      injection: { threshold: 1.5 }
      action: redact
    - name: side
      pii: [email]
      on: input
      where: [output]
    - name: inj
      deny: { literals: [""] }
teams:
  - name: t
    deny: { literals: [x] }
routes:
  - name: r
    guardrails: [mine, nope]
    guard: { normalize: nfd }
"#;
    assert_eq!(
        errors(text),
        [
            (4, "guardrail_sets.mine[0]".to_owned()),
            (8, "guardrail_sets.mine[1].deny.regex[0]".to_owned()),
            (10, "guardrail_sets.mine[2].pii".to_owned()),
            (12, "guardrail_sets.mine[3].injection.threshold".to_owned()),
            (13, "guardrail_sets.mine[3].action".to_owned()),
            (14, "guardrail_sets.mine[4].where".to_owned()),
            (18, "guardrail_sets.mine[5]".to_owned()),
            (19, "guardrail_sets.mine[5].deny.literals[0]".to_owned()),
            (21, "teams[0].deny".to_owned()),
            (25, "routes[0].guardrails".to_owned()),
            (26, "routes[0].guard.normalize".to_owned()),
            // A map key carries no line.
            (0, "guardrail_sets.pii-redact".to_owned()),
        ]
    );
}

#[test]
fn a_hook_secret_comes_from_the_environment() {
    let yaml = "guardrail_sets:\n  h:\n    - { name: w, webhook: { url: \"http://127.0.0.1:9/v\", secret_env: HOOK_SECRET } }\n";
    let c = load_str(yaml, &|n| (n == "HOOK_SECRET").then(|| "s3cret".to_owned())).unwrap();
    drop(c);
    assert_eq!(errors(yaml), [(3, "guardrail_sets.h[0].webhook.secret_env".to_owned())]);
}
