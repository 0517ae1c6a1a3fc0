//! The input guardrails: after admission, before the cache (its key is the guarded request's).
//! Each text of the request, by channel, is normalised (invisible characters out, Unicode
//! composed), read by the route's pattern rules in one pass (personal data, credentials, deny
//! lists — then blocked, redacted with typed placeholders, or flagged) and by the injection
//! screen, then the tenant's deny list. A rewritten request is parsed again, so every later
//! stage sees only what the guardrails let through.

use std::sync::Arc;

use sluice_config::{GuardAction, GuardCheck};
use sluice_guard::{Normalize, Normalized, Placeholders, normalize, screen};
use sluice_providers::InboundRequest;

use crate::error::GatewayError;
use crate::guard::hook::Call;
use crate::guard::output::OutputCheck;
use crate::guard::texts;
use crate::guard::{Channel, GuardReport, Guards, Judged, TenantDeny, blocked};
use crate::keys::Caller;
use crate::timing::Stage;

#[derive(Debug)]
pub struct GuardStage {
    on: Option<Arc<Guards>>,
    tenants: Arc<TenantDeny>,
}

/// What the input guardrails leave for the answer: the placeholders they put in (the answer's
/// own are numbered after them; a restoring rule's are put back), and the system prompt (for
/// the overlap check).
#[derive(Debug, Default)]
pub struct Guarded {
    pub names: Placeholders,
    /// A rule with `restore: true` redacted input.
    pub restore: bool,
    pub system: Vec<String>,
    /// The JSON check its answers get (`response_format`, the route's `output_schema`).
    pub check: Option<OutputCheck>,
    /// A prompt longer in bytes than the route's `max_prompt_tokens`: its text, to count.
    count: Option<(String, u32)>,
    /// For the input hooks: the request as the rules left it, and its texts by channel.
    hooked: Option<(serde_json::Value, Vec<(Channel, String)>)>,
}

impl GuardStage {
    pub fn new(on: Option<Arc<Guards>>, tenants: Arc<TenantDeny>) -> GuardStage {
        GuardStage { on, tenants }
    }

    /// Its timer, when the route runs it.
    pub fn timed(&self) -> Option<Stage> {
        self.on.as_ref().map(|_| Stage::Guard)
    }

    /// What the rules could not decide in place: the prompt's size in tokens when its bytes
    /// could be more than the route allows (counted with the tokenizer, off the async threads
    /// when large), then the external hooks' verdicts (their redactions applied to a request
    /// parsed again).
    pub async fn after(
        &self,
        (inbound, mut guarded): (InboundRequest, Guarded),
        report: Option<&GuardReport>,
        call: Call<'_>,
        embedder: Option<&sluice_embed::Pool>,
    ) -> Result<(InboundRequest, Guarded), GatewayError> {
        self.count(&mut guarded, report).await?;
        let (Some(g), Some(report), Some((mut body, texts))) = (&self.on, report, guarded.hooked.take()) else {
            return Ok((inbound, guarded));
        };
        let view: Vec<(Channel, &str)> = texts.iter().map(|(c, t)| (*c, t.as_str())).collect();
        let hooked = async {
            match g.hooks.as_ref().filter(|h| h.reads_input()) {
                Some(hooks) => hooks.run(&g.rules, false, &view, call, report).await,
                None => Ok(Default::default()),
            }
        };
        let (classified, redactions) = tokio::join!(classify(g, &texts, embedder, call.deadline, report), hooked);
        classified?;
        let redactions: crate::guard::hook::Redactions = redactions?;
        if redactions.is_empty() {
            return Ok((inbound, guarded));
        }
        let mut changed = false;
        texts::visit(inbound.endpoint, &mut body, &mut |text, channel| {
            if let Some(t) = redactions.apply(text, channel, &mut guarded.names) {
                *text = t;
                changed = true;
            }
        });
        if !changed {
            return Ok((inbound, guarded));
        }
        guarded.restore |= redactions.restores();
        let bytes = serde_json::to_vec(&body).map_err(|e| GatewayError::internal(e.to_string()))?;
        let mut again = InboundRequest::parse(inbound.endpoint, bytes.into())?;
        again.headers = inbound.headers;
        Ok((again, guarded))
    }

    /// Whether an answer to `endpoint` must be whole before it goes out: it has a JSON check
    /// (`checked`), or an external hook reads it.
    pub fn holds(&self, endpoint: sluice_providers::Endpoint, checked: bool) -> bool {
        checked || self.holds_answers(endpoint)
    }

    /// Whether the route's answers to `endpoint` are held until complete: an external hook
    /// reads them (chat-shaped answers only; the hooks read no other).
    pub fn holds_answers(&self, endpoint: sluice_providers::Endpoint) -> bool {
        use sluice_providers::Endpoint;
        matches!(
            endpoint,
            Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::Responses
        ) && self
            .on
            .as_ref()
            .and_then(|g| g.hooks.as_ref())
            .is_some_and(|h| h.reads_output())
    }

    /// A whole answer (in the client's format) through the external hooks that read output:
    /// refused when one blocks, rewritten with their redactions (placeholders numbered after
    /// the request's own, in `names`).
    pub async fn answered(
        &self,
        endpoint: sluice_providers::Endpoint,
        body: bytes::Bytes,
        (names, report): (&mut Placeholders, &GuardReport),
        call: Call<'_>,
    ) -> Result<bytes::Bytes, GatewayError> {
        use sluice_providers::chat::Part;
        let Some((g, hooks)) = self
            .on
            .as_ref()
            .and_then(|g| Some((g, g.hooks.as_ref().filter(|h| h.reads_output())?)))
        else {
            return Ok(body);
        };
        let wire = endpoint.wire();
        let Ok(mut answer) = sluice_providers::translate::read_response(wire, &body) else {
            return Ok(body);
        };
        let mut texts: Vec<(Channel, String)> = Vec::new();
        for p in &answer.content {
            match p {
                Part::Text(t) => texts.push((Channel::Output, t.clone())),
                Part::ToolUse { input, .. } => texts.push((Channel::ToolArgs, input.to_string())),
                _ => {}
            }
        }
        let view: Vec<(Channel, &str)> = texts.iter().map(|(c, t)| (*c, t.as_str())).collect();
        let redactions = hooks.run(&g.rules, true, &view, call, report).await?;
        if redactions.is_empty() {
            return Ok(body);
        }
        for p in &mut answer.content {
            match p {
                Part::Text(t) => {
                    if let Some(r) = redactions.apply(t, Channel::Output, names) {
                        *t = r;
                    }
                }
                Part::ToolUse { input, .. } => strings(input, &mut |s| redactions.apply(s, Channel::ToolArgs, names)),
                _ => {}
            }
        }
        Ok(sluice_providers::translate::write_response(wire, &answer))
    }

    async fn count(&self, guarded: &mut Guarded, report: Option<&GuardReport>) -> Result<(), GatewayError> {
        let Some((text, max)) = guarded.count.take() else {
            return Ok(());
        };
        let tokens = crate::stream::tokens::count_off_thread(text.into()).await;
        if tokens > u64::from(max) {
            if let Some(r) = report {
                r.fire("guard/max_prompt_tokens", GuardAction::Block, "input");
            }
            return Err(GatewayError::bad_request(
                "prompt_too_long",
                format!("The prompt has {tokens} tokens; this route allows at most {max}."),
            ));
        }
        Ok(())
    }

    /// A report for one request, when the route has guardrails.
    pub fn report(&self) -> Option<GuardReport> {
        self.on.as_ref().map(|_| GuardReport::default())
    }

    /// The caller's tenant's deny list, for the answer's stage.
    pub fn tenant(&self, caller: &Caller) -> Option<crate::guard::TenantRule> {
        self.on.as_ref()?;
        self.tenants.of(caller.tenant.as_deref()).cloned()
    }

    pub fn run(
        &self,
        caller: &Caller,
        inbound: InboundRequest,
        report: Option<&GuardReport>,
    ) -> Result<(InboundRequest, Guarded), GatewayError> {
        let Some((g, report)) = self.on.as_ref().zip(report) else {
            return Ok((inbound, Guarded::default()));
        };
        let Ok(mut body) = serde_json::from_slice::<serde_json::Value>(&inbound.body) else {
            return Ok((inbound, Guarded::default()));
        };
        if let Some(schema) = &g.request_schema
            && let Some(e) = schema.iter_errors(&body).next()
        {
            report.fire("guard/request_schema", GuardAction::Block, "input");
            let at = e.instance_path().to_string();
            return Err(GatewayError::bad_request(
                "invalid_request_schema",
                format!("The request does not match this route's schema at '{at}': {e}"),
            )
            .with_param(if at.is_empty() { "body".to_owned() } else { at }));
        }
        let check = OutputCheck::of(g, inbound.endpoint, &body, report)?;
        // The prompt's texts, gathered only when their size must be counted.
        let mut prompt = g.max_prompt_tokens.map(|_| String::new());
        let tenant = self.tenants.of(caller.tenant.as_deref());
        let how = Normalize {
            nfkc: g.normalize.nfkc,
            collapse_whitespace: g.normalize.collapse_whitespace,
            in_code: g.normalize.in_code,
        };
        let mut names = Placeholders::default();
        let mut restoring = false;
        let mut changed = false;
        let mut refusal: Option<GatewayError> = None;
        let mut system = Vec::new();
        let mut canary = g.canary.as_deref();
        let mut hook_texts =
            (g.hooks.as_ref().is_some_and(|h| h.reads_input()) || !g.classifier.is_empty()).then(Vec::new);
        let images = texts::visit(inbound.endpoint, &mut body, &mut |text, channel| {
            if refusal.is_some() {
                return;
            }
            let mut seen = Normalized::default();
            if g.normalize.on {
                let n = normalize(text, how, &mut seen);
                if let std::borrow::Cow::Owned(n) = n {
                    *text = n;
                    changed = true;
                }
            }
            match read(g, text, channel, &seen, &mut names, report) {
                Ok(Some((rewritten, restore))) => {
                    *text = rewritten;
                    changed = true;
                    restoring |= restore;
                }
                Ok(None) => {}
                Err(e) => refusal = Some(e),
            }
            if let Some((rule, m)) = tenant
                && refusal.is_none()
                && !m.find_all(text).is_empty()
            {
                report.fire(&rule.name, GuardAction::Block, "input");
                refusal = Some(blocked(&rule.name));
            }
            if let Some(p) = &mut prompt {
                p.push_str(text);
                p.push('\n');
            }
            if let Some(h) = &mut hook_texts {
                h.push((channel, text.clone()));
            }
            if channel == Channel::System {
                if g.overlap.is_some() {
                    system.push(text.clone());
                }
                // The canary goes after the (first) system prompt: an answer holding it
                // leaked the prompt.
                if let Some(c) = canary.take() {
                    text.push_str("\n\n");
                    text.push_str(c);
                    changed = true;
                }
            }
        });
        if let Some(e) = refusal {
            return Err(e);
        }
        report.images(images);
        // A token is at least a byte: a prompt of no more bytes than the limit is within it
        // uncounted; a longer one is counted by `counted`.
        let count = g
            .max_prompt_tokens
            .zip(prompt)
            .filter(|(max, text)| text.len() > *max as usize)
            .map(|(max, text)| (text, max));
        if let Some(cap) = g.max_output_tokens {
            changed |= cap_output(inbound.endpoint, &mut body, cap);
        }
        let again = if changed {
            let bytes = serde_json::to_vec(&body).map_err(|e| GatewayError::internal(e.to_string()))?;
            let mut again = InboundRequest::parse(inbound.endpoint, bytes.into())?;
            again.headers = inbound.headers;
            again
        } else {
            inbound
        };
        Ok((
            again,
            Guarded {
                names,
                restore: restoring,
                system,
                check,
                count,
                hooked: hook_texts.map(|t| (body, t)),
            },
        ))
    }
}

/// One text through the route's rules: `Some((rewritten, restore))` when a rule redacted
/// (and whether one of them restores), an error when one blocked.
fn read(
    g: &Guards,
    text: &str,
    channel: Channel,
    seen: &Normalized,
    names: &mut Placeholders,
    report: &GuardReport,
) -> Result<Option<(String, bool)>, GatewayError> {
    let mut redact = Vec::new();
    let mut restore = false;
    if let Some(m) = g.matcher(channel) {
        for hit in m.find_all(text) {
            match g.judge(&hit, channel, report, "input") {
                Judged::Block(rule) => return Err(blocked(rule)),
                Judged::Redact { restore: r } => {
                    restore |= r;
                    redact.push(hit);
                }
                Judged::Flag => {}
            }
        }
    }
    for &i in &g.injection {
        let Some(rule) = g.rules.get(i as usize) else { continue };
        let GuardCheck::Injection { threshold } = rule.check else {
            continue;
        };
        if !channel.of(&rule.channels) {
            continue;
        }
        if screen(text, &seen.smuggled).score >= threshold {
            report.fire(&rule.name, rule.action, "input");
            if rule.action == GuardAction::Block {
                return Err(blocked(&rule.name));
            }
        }
    }
    if redact.is_empty() {
        return Ok(None);
    }
    Ok(Some((names.rewrite(text, &redact), restore)))
}

/// The classifier rules over the request's newest text of each channel they read: each embedded
/// in process (the embedder's threads, within the deadline), scored by the shipped head; a
/// rule fires when a text's score reaches its threshold. Without the model, or when the embedder is
/// busy or late, the rules cannot decide: the request passes, and the miss is counted like a
/// failed hook's call.
async fn classify(
    g: &Guards,
    texts: &[(Channel, String)],
    embedder: Option<&sluice_embed::Pool>,
    deadline: std::time::Instant,
    report: &GuardReport,
) -> Result<(), GatewayError> {
    if g.classifier.is_empty() {
        return Ok(());
    }
    let rules: Vec<&sluice_config::GuardRule> = g.classifier.iter().filter_map(|&i| g.rules.get(i as usize)).collect();
    // The newest text of each channel: earlier turns were read when they were new, and an
    // embedding costs milliseconds (BENCHMARKS.md).
    let mut mine: Vec<(Channel, String)> = Vec::new();
    for (c, t) in texts
        .iter()
        .rev()
        .filter(|(c, t)| !t.trim().is_empty() && rules.iter().any(|r| c.of(&r.channels)))
    {
        if !mine.iter().any(|(seen, _)| seen == c) {
            mine.push((*c, t.clone()));
        }
    }
    if mine.is_empty() {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let head = sluice_guard::head::Head::shipped();
    let owned: Vec<String> = mine.iter().map(|(_, t)| t.clone()).collect();
    let embedded = match (embedder, head) {
        (Some(pool), Some(_)) => match pool.submit(deadline, move |model| {
            let texts: Vec<&str> = owned.iter().map(String::as_str).collect();
            model.and_then(|m| m.embed(&texts).ok())
        }) {
            Ok(rx) => tokio::time::timeout_at(deadline.into(), rx)
                .await
                .ok()
                .and_then(Result::ok)
                .flatten(),
            Err(_) => None,
        },
        _ => None,
    };
    let took = started.elapsed();
    let (Some(vectors), Some(head)) = (embedded, head) else {
        for r in &rules {
            report.hook(&r.name, took, false);
        }
        return Ok(());
    };
    for r in rules {
        report.hook(&r.name, took, true);
        let GuardCheck::Classifier { threshold } = r.check else {
            continue;
        };
        let at = threshold.unwrap_or(head.threshold);
        let fired = mine
            .iter()
            .zip(&vectors)
            .any(|((c, _), v)| c.of(&r.channels) && head.score(v) >= at);
        if fired {
            report.fire(&r.name, r.action, "input");
            if r.action == GuardAction::Block {
                return Err(blocked(&r.name));
            }
        }
    }
    Ok(())
}

/// Every string in `v` (a tool call's arguments) through `f`, replaced where it gives one.
fn strings(v: &mut serde_json::Value, f: &mut dyn FnMut(&str) -> Option<String>) {
    match v {
        serde_json::Value::String(s) => {
            if let Some(r) = f(s) {
                *s = r;
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|v| strings(v, f)),
        serde_json::Value::Object(o) => o.values_mut().for_each(|v| strings(v, f)),
        _ => {}
    }
}

/// Caps the request's own output limit at `cap` (setting one where it has none); whether
/// the body changed.
fn cap_output(endpoint: sluice_providers::Endpoint, body: &mut serde_json::Value, cap: u32) -> bool {
    use sluice_providers::Endpoint;
    let Some(obj) = body.as_object_mut() else {
        return false;
    };
    let names: &[&str] = match endpoint {
        Endpoint::ChatCompletions => &["max_completion_tokens", "max_tokens"],
        Endpoint::Responses => &["max_output_tokens"],
        Endpoint::Messages | Endpoint::Completions => &["max_tokens"],
        _ => return false,
    };
    let mut present = false;
    let mut changed = false;
    for name in names {
        if let Some(v) = obj.get_mut(*name) {
            present = true;
            if v.as_u64().is_none_or(|n| n > u64::from(cap)) {
                *v = serde_json::Value::from(cap);
                changed = true;
            }
        }
    }
    if !present {
        obj.insert(names[names.len() - 1].to_owned(), serde_json::Value::from(cap));
        changed = true;
    }
    changed
}
