//! External guardrail hooks: a rule whose check is `webhook: {url, timeout_ms, on_error}` posts
//! the texts it reads to the URL and applies the verdict it gets back.
//!
//! The request (`POST`, JSON): `{"rule", "side": "input"|"output", "route", "tenant",
//! "endpoint", "request_id", "texts": [{"channel", "text"}]}`. The answer (JSON):
//! `{"verdict": "allow"|"flag"|"block", "redactions": [{"text", "label"}]}` — each redaction's
//! text is replaced everywhere in the rule's channels by a typed placeholder (`[PERSON_1]`).
//! The hooks of one side are called at once, each within its timeout and the request's
//! deadline; one that errs or times out lets the request pass (`on_error: allow`) or refuses it
//! with a 503 `guardrail_unavailable` (`block`). A rule with `action: flag` only logs what its
//! hook said (shadow mode). Every call's time and outcome go into the request's report.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use serde::Deserialize;
use serde_json::json;
use sluice_config::{GuardAction, GuardCheck, GuardRule};

use crate::error::{ErrorKind, GatewayError};
use crate::guard::{Channel, GuardReport, blocked};
use crate::upstream::client::HttpClient;

/// The most a hook's answer may be.
const MAX_ANSWER: usize = 256 * 1024;

/// A route's hooks, with the client they are called through.
#[derive(Debug)]
pub struct Hooks {
    client: Arc<HttpClient>,
    /// Rule indices of the hooks reading input, then output.
    input: Vec<usize>,
    output: Vec<usize>,
}

/// Where the hooks are called from.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub route: &'a str,
    pub tenant: Option<&'a str>,
    pub endpoint: &'static str,
    pub request_id: &'a str,
    pub deadline: Instant,
}

/// Where a request's hooks are called from, but for its id (borrowed from its finish when
/// the call is made).
#[derive(Debug, Clone, Copy)]
pub struct Site<'a> {
    pub route: &'a str,
    pub tenant: Option<&'a str>,
    pub endpoint: &'static str,
    pub deadline: Instant,
}

impl<'a> Site<'a> {
    pub fn call(self, request_id: &'a str) -> Call<'a> {
        Call {
            route: self.route,
            tenant: self.tenant,
            endpoint: self.endpoint,
            request_id,
            deadline: self.deadline,
        }
    }
}

/// What the hooks of one side asked for: texts to replace by a placeholder (the text, its
/// label, whether the answer gets it back).
#[derive(Debug, Default)]
pub struct Redactions {
    pub list: Vec<Redaction>,
}

#[derive(Debug, Clone)]
pub struct Redaction {
    pub text: String,
    pub label: String,
    pub restore: bool,
    /// The channels of the rule that asked.
    pub channels: sluice_config::Channels,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    verdict: Option<String>,
    #[serde(default)]
    redactions: Vec<AnswerRedaction>,
}

#[derive(Deserialize)]
struct AnswerRedaction {
    text: String,
    #[serde(default)]
    label: Option<String>,
}

enum Verdict {
    Allow,
    Flag,
    Block,
}

impl Hooks {
    /// The hooks among `rules`, when there are any.
    pub fn build(rules: &[GuardRule], client: Option<&Arc<HttpClient>>) -> Option<Hooks> {
        let hooks: Vec<usize> = rules
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r.check, GuardCheck::Webhook { .. }))
            .map(|(i, _)| i)
            .collect();
        if hooks.is_empty() {
            return None;
        }
        Some(Hooks {
            client: client?.clone(),
            input: hooks.iter().copied().filter(|&i| rules[i].channels.input()).collect(),
            output: hooks.iter().copied().filter(|&i| rules[i].channels.output()).collect(),
        })
    }

    pub fn reads_input(&self) -> bool {
        !self.input.is_empty()
    }

    pub fn reads_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// Calls the hooks of one side over `texts` at once and applies their verdicts in rule
    /// order: the first block refuses; redactions are gathered for the caller to apply.
    pub async fn run(
        &self,
        rules: &[GuardRule],
        output: bool,
        texts: &[(Channel, &str)],
        call: Call<'_>,
        report: &GuardReport,
    ) -> Result<Redactions, GatewayError> {
        let side = if output { "output" } else { "input" };
        let which = if output { &self.output } else { &self.input };
        let calls = which.iter().filter_map(|&i| {
            let rule = rules.get(i)?;
            let mine: Vec<_> = texts
                .iter()
                .filter(|(c, t)| c.of(&rule.channels) && !t.is_empty())
                .map(|(c, t)| json!({"channel": c.name(), "text": t}))
                .collect();
            (!mine.is_empty()).then(|| self.ask(rule, side, mine, call))
        });
        let answers = futures_util::future::join_all(calls).await;
        let mut redactions = Redactions::default();
        for (rule, started, answer) in answers {
            report.hook(&rule.name, started.elapsed(), answer.is_ok());
            let fail_closed = matches!(rule.check, GuardCheck::Webhook { fail_closed: true, .. });
            let answer = match answer {
                Ok(a) => a,
                Err(why) => {
                    tracing::warn!(rule = %rule.name, %why, "guardrail hook failed");
                    if fail_closed {
                        report.fire(&rule.name, GuardAction::Block, side);
                        return Err(GatewayError::new(
                            ErrorKind::Unavailable,
                            "guardrail_unavailable",
                            format!("The guardrail {} could not give its verdict.", rule.name),
                        ));
                    }
                    continue;
                }
            };
            let shadow = rule.action == GuardAction::Flag;
            match answer.0 {
                Verdict::Block if shadow => report.fire(&rule.name, GuardAction::Flag, side),
                Verdict::Block => {
                    report.fire(&rule.name, GuardAction::Block, side);
                    return Err(blocked(&rule.name));
                }
                Verdict::Flag => report.fire(&rule.name, GuardAction::Flag, side),
                Verdict::Allow => {}
            }
            if answer.1.is_empty() {
                continue;
            }
            if shadow {
                report.fire(&rule.name, GuardAction::Flag, side);
                continue;
            }
            report.fire(&rule.name, GuardAction::Redact, side);
            redactions.list.extend(answer.1.into_iter().map(|r| Redaction {
                text: r.text,
                label: label(r.label.as_deref()),
                restore: rule.restore,
                channels: rule.channels,
            }));
        }
        Ok(redactions)
    }

    /// One hook's call: its rule, when it started, and its verdict with its redactions.
    async fn ask<'r>(
        &self,
        rule: &'r GuardRule,
        side: &'static str,
        texts: Vec<serde_json::Value>,
        call: Call<'_>,
    ) -> (&'r GuardRule, Instant, Result<(Verdict, Vec<AnswerRedaction>), String>) {
        let started = Instant::now();
        let GuardCheck::Webhook {
            url, timeout, secret, ..
        } = &rule.check
        else {
            return (rule, started, Err("not a hook".to_owned()));
        };
        let body = json!({
            "rule": rule.name, "side": side, "route": call.route, "tenant": call.tenant,
            "endpoint": call.endpoint, "request_id": call.request_id, "texts": texts,
        });
        let until = call.deadline.min(started + *timeout);
        let secret = secret.as_ref().map(|s| s.expose());
        let answer = tokio::time::timeout_at(until.into(), self.post(url, body, secret)).await;
        let answer = match answer {
            Err(_) => Err(format!("no verdict within {} ms", timeout.as_millis())),
            Ok(a) => a,
        };
        (rule, started, answer)
    }

    async fn post(
        &self,
        url: &http::Uri,
        body: serde_json::Value,
        secret: Option<&str>,
    ) -> Result<(Verdict, Vec<AnswerRedaction>), String> {
        let bytes = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
        let mut req = http::Request::post(url.clone()).header(http::header::CONTENT_TYPE, "application/json");
        if let Some(secret) = secret {
            // Signed as budget alerts are: the hook can tell the gateway from anyone else.
            let mac = crate::alerts::hmac_sha256(secret.as_bytes(), &bytes);
            req = req.header("x-sluice-signature", format!("sha256={}", hex::encode(mac)));
        }
        let req = req.body(Full::new(Bytes::from(bytes))).map_err(|e| e.to_string())?;
        let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("status {status}"));
        }
        let answer: Answer = serde_json::from_slice(&body).map_err(|e| format!("unreadable answer: {e}"))?;
        let verdict = match answer.verdict.as_deref() {
            None | Some("allow") => Verdict::Allow,
            Some("flag") => Verdict::Flag,
            Some("block") => Verdict::Block,
            Some(other) => return Err(format!("unknown verdict {other:?}")),
        };
        let redactions = answer.redactions.into_iter().filter(|r| !r.text.is_empty()).collect();
        Ok((verdict, redactions))
    }
}

/// A placeholder's label from a hook's: letters, digits and `_`, upper case, at most 24;
/// `REDACTED` when it gives none.
fn label(given: Option<&str>) -> String {
    let l: String = given
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(24)
        .collect::<String>()
        .to_ascii_uppercase();
    if l.is_empty() { "REDACTED".to_owned() } else { l }
}

impl Redactions {
    /// `text` (in `channel`) with every redaction that applies there replaced by its
    /// placeholder; `None` when none occurs in it.
    pub fn apply(&self, text: &str, channel: Channel, names: &mut sluice_guard::Placeholders) -> Option<String> {
        let mut out: Option<String> = None;
        for r in self.list.iter().filter(|r| channel.of(&r.channels)) {
            let current = out.as_deref().unwrap_or(text);
            if current.contains(r.text.as_str()) {
                let placeholder = names.name_labelled(&r.label, &r.text).to_owned();
                out = Some(current.replace(r.text.as_str(), &placeholder));
            }
        }
        out
    }

    /// Whether a redaction that applied asks for its text back in the answer.
    pub fn restores(&self) -> bool {
        self.list.iter().any(|r| r.restore)
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_made_safe_for_placeholders() {
        assert_eq!(label(Some("person name")), "PERSONNAME");
        assert_eq!(label(Some("]]")), "REDACTED");
        assert_eq!(label(None), "REDACTED");
        assert_eq!(label(Some(&"x".repeat(40))).len(), 24);
    }

    #[test]
    fn redactions_apply_in_their_channels_with_one_placeholder_per_text() {
        let user = sluice_config::Channels {
            user: true,
            ..Default::default()
        };
        let r = Redactions {
            list: vec![Redaction {
                text: "Ann Lee".into(),
                label: "PERSON".into(),
                restore: false,
                channels: user,
            }],
        };
        let mut names = sluice_guard::Placeholders::default();
        assert_eq!(
            r.apply("Ann Lee met Ann Lee", Channel::User, &mut names).as_deref(),
            Some("[PERSON_1] met [PERSON_1]")
        );
        assert_eq!(r.apply("Ann Lee", Channel::System, &mut names), None);
        assert_eq!(r.apply("nobody", Channel::User, &mut names), None);
    }
}
