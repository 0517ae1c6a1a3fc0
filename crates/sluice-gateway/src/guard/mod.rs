//! Guardrails as the data path runs them: a route's rules compiled once with the snapshot —
//! one matcher per channel holding every pattern its rules read there (one pass over a text),
//! the injection screen's rules, how prompts are normalised — and what a request's guardrails
//! did, reported once into its log line and metrics. The input stage (`stages::guard`) and the
//! output stage (`response::guard`) both run from here; neither imports the other.

pub mod hook;
pub mod output;
pub mod texts;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use sluice_config::{Channels, Config, GuardAction, GuardCheck, GuardRule, RouteGuard};
use sluice_guard::{Kind, Label, Matcher, patterns};

use crate::error::{ErrorKind, GatewayError};

/// Where a text is, in a request or an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    User,
    System,
    ToolResults,
    ToolArgs,
    Output,
}

impl Channel {
    const ALL: [Channel; 5] = [
        Channel::User,
        Channel::System,
        Channel::ToolResults,
        Channel::ToolArgs,
        Channel::Output,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// Its name in the config's `where` and in a hook's request.
    pub fn name(self) -> &'static str {
        Channels::NAMES[self.index()]
    }

    pub fn of(self, c: &Channels) -> bool {
        match self {
            Channel::User => c.user,
            Channel::System => c.system,
            Channel::ToolResults => c.tool_results,
            Channel::ToolArgs => c.tool_args,
            Channel::Output => c.output,
        }
    }
}

/// A rule's index in [`Guards::rules`]; a tenant's deny list is the one past the end.
pub type RuleIndex = u32;

/// A route's guardrails, compiled.
#[derive(Debug)]
pub struct Guards {
    pub rules: Vec<GuardRule>,
    /// Per channel, every pattern the rules read there (`None`: no pattern rule reads it).
    matchers: [Option<Arc<Matcher>>; 5],
    /// The injection rules, by index.
    pub injection: Vec<RuleIndex>,
    pub normalize: sluice_config::NormalizeConfig,
    /// The canary written after the system prompt, when a rule looks for it: one per route
    /// and config version.
    pub canary: Option<String>,
    /// The overlap rule (the first), and its run of words.
    pub overlap: Option<(RuleIndex, usize)>,
    /// The repetition rule (the first), its repeats and bytes.
    pub repetition: Option<(RuleIndex, usize, usize)>,
    /// The answer's most output tokens (the route's `guard.max_output_tokens`).
    pub max_output_tokens: Option<u32>,
    /// The request's most prompt tokens.
    pub max_prompt_tokens: Option<u32>,
    /// The schema every request body must match (compiled; checked to compile at load).
    pub request_schema: Option<Arc<jsonschema::Validator>>,
    /// The schema every answer's text must match as JSON (compiled; checked at load).
    pub output_schema: Option<Arc<jsonschema::Validator>>,
    /// What an answer that fails its JSON check gets.
    pub on_invalid: sluice_config::OnInvalid,
    /// The external hooks among the rules.
    pub hooks: Option<hook::Hooks>,
    /// The classifier rules, by index, and the head they run.
    pub classifier: Vec<RuleIndex>,
}

/// What a finding does (see [`Guards::judge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judged<'a> {
    /// Stopped by this rule.
    Block(&'a str),
    /// Replaced by its placeholder (put back in the answer when a rule says `restore`).
    Redact {
        restore: bool,
    },
    Flag,
}

/// A tenant's deny list: its rule, and the rule's patterns compiled.
pub type TenantRule = (GuardRule, Arc<Matcher>);

/// Tenants' deny lists, compiled once per snapshot.
#[derive(Debug, Default)]
pub struct TenantDeny(HashMap<String, TenantRule>);

impl TenantDeny {
    pub fn build(config: &Config) -> Arc<TenantDeny> {
        Arc::new(TenantDeny(
            config
                .tenant_deny
                .iter()
                .filter_map(|(tenant, rule)| {
                    Some((
                        tenant.clone(),
                        (rule.clone(), compile(std::slice::from_ref(rule), None)?),
                    ))
                })
                .collect(),
        ))
    }

    /// A tenant's list, when it has one.
    pub fn of(&self, tenant: Option<&str>) -> Option<&TenantRule> {
        self.0.get(tenant?)
    }
}

impl Guards {
    /// `None` when the route has no guardrails.
    pub fn build(
        guard: Option<&RouteGuard>,
        route: &str,
        version: &str,
        client: Option<&Arc<crate::upstream::client::HttpClient>>,
    ) -> Option<Arc<Guards>> {
        let g = guard?;
        let canary = g.rules.iter().any(|r| r.check == GuardCheck::Canary).then(|| {
            use sha2::{Digest, Sha256};
            let digest = Sha256::digest(format!("{route}\n{version}").as_bytes());
            format!("SLUICE-CANARY-{}", hex::encode(&digest[..6]))
        });
        let overlap = g.rules.iter().enumerate().find_map(|(i, r)| match r.check {
            GuardCheck::Overlap { min_words } => Some((i as RuleIndex, min_words as usize)),
            _ => None,
        });
        let repetition = g.rules.iter().enumerate().find_map(|(i, r)| match r.check {
            GuardCheck::Repetition { min_repeats, min_bytes } => {
                Some((i as RuleIndex, min_repeats as usize, min_bytes as usize))
            }
            _ => None,
        });
        let matchers = Channel::ALL.map(|ch| {
            let rules: Vec<GuardRule> = g
                .rules
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    if !ch.of(&r.channels) {
                        // Kept in place (indices stay the rules'), reading nothing here.
                        r.check = GuardCheck::Kinds(Vec::new());
                    }
                    r
                })
                .collect();
            compile(&rules, canary.as_deref())
        });
        let injection = g
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r.check, GuardCheck::Injection { .. }))
            .map(|(i, _)| i as RuleIndex)
            .collect();
        Some(Arc::new(Guards {
            rules: g.rules.clone(),
            matchers,
            injection,
            normalize: g.normalize,
            canary,
            overlap,
            repetition,
            max_output_tokens: g.max_output_tokens,
            max_prompt_tokens: g.max_prompt_tokens,
            request_schema: g
                .request_schema
                .as_ref()
                .and_then(|s| jsonschema::validator_for(s).ok())
                .map(Arc::new),
            output_schema: g
                .output_schema
                .as_ref()
                .and_then(|s| jsonschema::validator_for(s).ok())
                .map(Arc::new),
            on_invalid: g.on_invalid,
            hooks: hook::Hooks::build(&g.rules, client),
            classifier: g
                .rules
                .iter()
                .enumerate()
                .filter(|(_, r)| matches!(r.check, GuardCheck::Classifier { .. }))
                .map(|(i, _)| i as RuleIndex)
                .collect(),
        }))
    }

    /// The matcher of every pattern rule reading `channel`.
    pub fn matcher(&self, channel: Channel) -> Option<&Arc<Matcher>> {
        self.matchers[channel.index()].as_ref()
    }

    /// The rules one finding stands for in `channel`: its own, and every other rule reading
    /// its kind there (the matcher reports one pattern per place). Each fires; the strongest
    /// action applies.
    pub fn rules_of(&self, hit: &sluice_guard::Hit, channel: Channel) -> (GuardAction, Vec<&GuardRule>) {
        let own = hit.label.rule as usize;
        let rules: Vec<&GuardRule> = self
            .rules
            .iter()
            .enumerate()
            .filter(|(i, r)| {
                *i == own
                    || (hit.label.kind != Kind::Denied
                        && channel.of(&r.channels)
                        && matches!(&r.check, GuardCheck::Kinds(k) if k.contains(&hit.label.kind)))
            })
            .map(|(_, r)| r)
            .collect();
        let action = [GuardAction::Block, GuardAction::Redact, GuardAction::Flag]
            .into_iter()
            .find(|a| rules.iter().any(|r| r.action == *a))
            .unwrap_or(GuardAction::Flag);
        (action, rules)
    }

    /// What one finding does: every rule it stands for fires (into `report`, on `side`), and
    /// the strongest action applies.
    pub fn judge(
        &self,
        hit: &sluice_guard::Hit,
        channel: Channel,
        report: &GuardReport,
        side: &'static str,
    ) -> Judged<'_> {
        let (action, rules) = self.rules_of(hit, channel);
        for r in &rules {
            report.fire(&r.name, r.action, side);
        }
        match action {
            GuardAction::Block => Judged::Block(
                rules
                    .iter()
                    .find(|r| r.action == GuardAction::Block)
                    .map_or("", |r| r.name.as_str()),
            ),
            GuardAction::Redact => Judged::Redact {
                restore: rules.iter().any(|r| r.restore),
            },
            GuardAction::Flag => Judged::Flag,
        }
    }

    /// Whether any rule reads the answer.
    pub fn reads_output(&self) -> bool {
        self.max_output_tokens.is_some() || self.rules.iter().any(|r| r.channels.output())
    }

    /// Whether any redacting rule puts its text back in the answer.
    pub fn restores(&self) -> bool {
        self.rules.iter().any(|r| r.restore)
    }
}

/// One matcher over the pattern rules in `rules` (labels carry each rule's index; a canary
/// rule looks for `canary`); `None` when none has a pattern.
fn compile(rules: &[GuardRule], canary: Option<&str>) -> Option<Arc<Matcher>> {
    let mut list: Vec<(Label, String)> = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let rule = i as RuleIndex;
        match &r.check {
            GuardCheck::Kinds(kinds) => {
                for (kind, p) in patterns::of_kinds(kinds) {
                    list.push((Label { kind, rule }, p.to_owned()));
                }
            }
            GuardCheck::Deny { literals, patterns } => {
                let label = Label {
                    kind: Kind::Denied,
                    rule,
                };
                list.extend(literals.iter().map(|l| (label, literal(l))));
                list.extend(patterns.iter().map(|p| (label, p.clone())));
            }
            GuardCheck::Canary => {
                if let Some(c) = canary {
                    let label = Label {
                        kind: Kind::Denied,
                        rule,
                    };
                    list.push((label, literal(c)));
                }
            }
            GuardCheck::Injection { .. }
            | GuardCheck::Overlap { .. }
            | GuardCheck::Repetition { .. }
            | GuardCheck::Webhook { .. }
            | GuardCheck::Classifier { .. } => {}
        }
    }
    if list.is_empty() {
        return None;
    }
    // Validated with the config: a pattern that does not compile never gets here.
    Matcher::new(&list).ok().map(Arc::new)
}

/// A deny literal as a pattern: any case, whole words where it starts or ends with one.
fn literal(text: &str) -> String {
    let mut p = String::from("(?i)");
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    if word(text.chars().next()) {
        p.push_str(r"\b");
    }
    for c in text.chars() {
        if c.is_ascii_punctuation() {
            p.push('\\');
        }
        p.push(c);
    }
    if word(text.chars().next_back()) {
        p.push_str(r"\b");
    }
    p
}

/// The request's refusal: names the guardrail's set and rule, never the text.
pub fn blocked(rule: &str) -> GatewayError {
    GatewayError::new(
        ErrorKind::GuardrailBlocked,
        "guardrail_blocked",
        format!("The request was blocked by the guardrail {rule}."),
    )
}

/// One rule that fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    pub rule: Arc<str>,
    pub action: GuardAction,
    /// `input` or `output`.
    pub side: &'static str,
}

/// What a request's guardrails did: filled by the input stage, then (through its shared
/// handle) by the output stage while the answer streams; read once when the request ends.
#[derive(Debug, Clone, Default)]
pub struct GuardReport(Arc<Mutex<ReportInner>>);

#[derive(Debug, Default)]
struct ReportInner {
    fired: Vec<Fired>,
    images: u32,
    held_peak: usize,
    invalid: u32,
    whole: bool,
    hooks: Vec<HookCall>,
}

/// One external hook's call.
#[derive(Debug, Clone)]
pub struct HookCall {
    pub rule: Arc<str>,
    pub took: std::time::Duration,
    pub ok: bool,
}

/// What a request's guardrails did, read once when it ends.
#[derive(Debug, Default)]
pub struct ReportRead {
    pub fired: Vec<Fired>,
    /// Images passed through unscreened.
    pub images: u32,
    /// The longest hold of the answer's text, in bytes.
    pub held: usize,
    /// Answers that failed their JSON check.
    pub invalid: u32,
    /// A streamed answer held whole (its JSON check cannot be decided on a window).
    pub whole: bool,
    /// The external hooks called.
    pub hooks: Vec<HookCall>,
}

impl GuardReport {
    pub fn fire(&self, rule: &str, action: GuardAction, side: &'static str) {
        let mut r = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !r
            .fired
            .iter()
            .any(|f| &*f.rule == rule && f.action == action && f.side == side)
        {
            r.fired.push(Fired {
                rule: Arc::from(rule),
                action,
                side,
            });
        }
    }

    pub fn images(&self, n: u32) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).images += n;
    }

    pub fn held(&self, bytes: usize) {
        let mut r = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        r.held_peak = r.held_peak.max(bytes);
    }

    /// An external hook answered (`ok`) or failed, after `took`.
    pub fn hook(&self, rule: &str, took: std::time::Duration, ok: bool) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .hooks
            .push(HookCall {
                rule: Arc::from(rule),
                took,
                ok,
            });
    }

    /// One answer failed its JSON check.
    pub fn invalid(&self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).invalid += 1;
    }

    /// A streamed answer is held until it is complete, `bytes` long.
    pub fn held_whole(&self, bytes: usize) {
        let mut r = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        r.whole = true;
        r.held_peak = r.held_peak.max(bytes);
    }

    pub fn read(&self) -> ReportRead {
        let r = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        ReportRead {
            fired: r.fired.clone(),
            images: r.images,
            held: r.held_peak,
            invalid: r.invalid,
            whole: r.whole,
            hooks: r.hooks.clone(),
        }
    }

    /// The strongest action that fired (`block`, `redact`, `flag`), for the ledger.
    pub fn strongest(&self) -> Option<&'static str> {
        let r = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        [GuardAction::Block, GuardAction::Redact, GuardAction::Flag]
            .into_iter()
            .find(|a| r.fired.iter().any(|f| f.action == *a))
            .map(GuardAction::as_str)
    }

    /// Whether a rule changed or stopped the answer (then it is not the answer to keep).
    pub fn touched_output(&self) -> bool {
        let r = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        r.fired
            .iter()
            .any(|f| f.side == "output" && f.action != GuardAction::Flag)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn literals_match_whole_words_in_any_case() {
        let m = Matcher::new(&[(
            Label {
                kind: Kind::Denied,
                rule: 0,
            },
            literal("Project Falcon"),
        )])
        .unwrap();
        assert_eq!(m.find_all("the project falcon plan").len(), 1);
        assert_eq!(m.find_all("projectfalcon, Project Falcons").len(), 0);
        let dots = Matcher::new(&[(
            Label {
                kind: Kind::Denied,
                rule: 0,
            },
            literal("a.b (c)"),
        )])
        .unwrap();
        assert_eq!(dots.find_all("x a.b (c) y").len(), 1);
        assert_eq!(dots.find_all("x aXb (c) y").len(), 0);
    }
}
