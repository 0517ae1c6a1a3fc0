//! The output guardrails, on the answer as it streams: the text and each tool call's arguments
//! go through a hold-back window over the route's output patterns (personal data, credentials,
//! deny lists) and then the tenant's deny list. Only decided text leaves — never the start of
//! something a blocking rule would stop. A block ends the answer with a protocol-correct error
//! in the client's format (a whole answer: a 400 `guardrail_blocked`); a redaction rewrites the
//! text before it leaves. [`Restore`] puts redacted input back (after the store: the cache and
//! the log never hold it).

use std::sync::Arc;

use sluice_config::{GuardAction, GuardCheck};
use sluice_guard::{Overlap, Placeholders, Released, Repetition, Window};
use sluice_providers::chat::{Delta, StopReason};
use sluice_providers::translate::FilterStop;

use super::{HoldsText, ResponseStage};
use crate::guard::{Channel, GuardReport, Guards, Judged, TenantRule};

/// One answer's output guardrails.
pub struct GuardOut {
    guards: Arc<Guards>,
    tenant: Option<TenantRule>,
    report: GuardReport,
    names: Placeholders,
    text: Option<Pass>,
    args: Vec<(u32, Pass)>,
    /// The overlap check on the answer's text, when the route has one and the request a
    /// system prompt long enough.
    overlap: Option<Overlap>,
    repetition: Option<Repetition>,
    /// Characters of text left before `max_output_tokens` (four to a token).
    budget: Option<usize>,
    /// The answer was cut (runaway): nothing more goes out but its usage.
    ended: bool,
}

/// A text's windows: the route's patterns, then the tenant's.
struct Pass {
    route: Option<Window>,
    tenant: Option<Window>,
}

impl GuardOut {
    pub fn new(
        guards: Arc<Guards>,
        (tenant, system, names): (Option<TenantRule>, &[String], Placeholders),
        report: GuardReport,
    ) -> GuardOut {
        let prompt: Vec<&str> = system.iter().map(String::as_str).collect();
        let overlap = guards.overlap.and_then(|(_, min)| Overlap::new(&prompt, min));
        let repetition = guards.repetition.map(|(_, n, bytes)| Repetition::new(n, bytes));
        let budget = guards.max_output_tokens.map(|t| t as usize * 4);
        GuardOut {
            guards,
            tenant,
            report,
            // Numbered after the input's placeholders.
            names,
            text: None,
            args: Vec::new(),
            overlap,
            repetition,
            budget,
            ended: false,
        }
    }

    /// Released text through the runaway checks: what may go, and whether the answer ends
    /// here (cut, a clean end).
    fn runaway(&mut self, mut text: String, end: bool) -> (String, bool) {
        let mut cut = false;
        if let (Some(r), Some((i, _, _))) = (&mut self.repetition, self.guards.repetition)
            && let Some(keep) = r.push(&text, end)
            && let Some(rule) = self.guards.rules.get(i as usize)
        {
            self.report.fire(&rule.name, rule.action, "output");
            if rule.action == GuardAction::Block {
                text.truncate(keep);
                cut = true;
            } else {
                self.repetition = None;
            }
        }
        if let Some(left) = &mut self.budget {
            let chars = text.chars().count();
            if chars > *left {
                let at = text.char_indices().nth(*left).map_or(text.len(), |(i, _)| i);
                text.truncate(at);
                self.report
                    .fire("guard/max_output_tokens", GuardAction::Block, "output");
                cut = true;
            }
            *left = left.saturating_sub(chars);
        }
        (text, cut)
    }

    fn pass(&self, channel: Channel) -> Pass {
        Pass {
            route: self.guards.matcher(channel).map(|m| Window::new(m.clone())),
            tenant: self.tenant.as_ref().map(|(_, m)| Window::new(m.clone())),
        }
    }

    /// `piece` of one channel's text through its windows: what may leave now.
    fn run(&mut self, pass: &mut Pass, channel: Channel, piece: &str, end: bool) -> Result<String, FilterStop> {
        let mut text = piece.to_owned();
        if let Some(w) = &mut pass.route {
            let mut rel = Released::default();
            w.push(&text, end, &mut rel);
            self.report.held(w.peak());
            let mut redact = Vec::new();
            for hit in &rel.hits {
                match self.guards.judge(hit, channel, &self.report, "output") {
                    Judged::Block(rule) => return Err(stop(rule)),
                    Judged::Redact { .. } => redact.push(*hit),
                    Judged::Flag => {}
                }
            }
            text = if redact.is_empty() {
                rel.text
            } else {
                self.rewrite(&rel.text, &redact)
            };
        }
        if let (Some(w), Some((rule, _))) = (&mut pass.tenant, &self.tenant) {
            let mut rel = Released::default();
            w.push(&text, end, &mut rel);
            if !rel.hits.is_empty() {
                self.report.fire(&rule.name, GuardAction::Block, "output");
                return Err(stop(&rule.name));
            }
            text = rel.text;
        }
        Ok(text)
    }

    /// Each redacted finding as its placeholder — a canary as nothing (it is stripped).
    fn rewrite(&mut self, text: &str, hits: &[sluice_guard::Hit]) -> String {
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for h in hits {
            out.push_str(&text[at..h.start]);
            let canary = self
                .guards
                .rules
                .get(h.label.rule as usize)
                .is_some_and(|r| r.check == GuardCheck::Canary);
            if !canary {
                out.push_str(self.names.name(h.label.kind, &text[h.start..h.end]));
            }
            at = h.end;
        }
        out.push_str(&text[at..]);
        out
    }

    /// Released text through the overlap check (the answer's text only).
    fn overlap(&mut self, text: String, end: bool) -> Result<String, FilterStop> {
        let Some(o) = &mut self.overlap else {
            return Ok(text);
        };
        match o.push(&text, end) {
            Ok(released) => Ok(released),
            Err(sluice_guard::Leaked) => {
                let Some((i, _)) = self.guards.overlap else {
                    return Ok(String::new());
                };
                let Some(rule) = self.guards.rules.get(i as usize) else {
                    return Ok(String::new());
                };
                self.report.fire(&rule.name, rule.action, "output");
                if rule.action == GuardAction::Block {
                    return Err(stop(&rule.name));
                }
                // Flagged: the check stops here, and what it held goes on.
                Ok(self.overlap.take().map(Overlap::into_held).unwrap_or_default())
            }
        }
    }

    fn text(&mut self, piece: &str, end: bool, out: &mut Vec<Delta>) -> Result<(), FilterStop> {
        let mut pass = match self.text.take() {
            Some(p) => p,
            None if end => {
                let rest = self.overlap(String::new(), true)?;
                if !rest.is_empty() {
                    out.push(Delta::Text(rest));
                }
                return Ok(());
            }
            None => self.pass(Channel::Output),
        };
        let released = self.run(&mut pass, Channel::Output, piece, end)?;
        let released = self.overlap(released, end)?;
        let (released, cut) = self.runaway(released, end);
        if !end {
            self.text = Some(pass);
        }
        if !released.is_empty() {
            out.push(Delta::Text(released));
        }
        if cut {
            // Runaway: the answer ends here, well (`length`); the upstream is read no more.
            self.ended = true;
            out.push(Delta::Stop {
                reason: StopReason::MaxTokens,
                stop_sequence: None,
            });
            out.push(Delta::End);
        }
        Ok(())
    }

    fn args(&mut self, index: u32, piece: &str, end: bool, out: &mut Vec<Delta>) -> Result<(), FilterStop> {
        let mut pass = match self.args.iter().position(|(i, _)| *i == index) {
            Some(at) => self.args.swap_remove(at).1,
            None => self.pass(Channel::ToolArgs),
        };
        let released = self.run(&mut pass, Channel::ToolArgs, piece, end)?;
        if !end {
            self.args.push((index, pass));
        }
        if !released.is_empty() {
            out.push(Delta::ToolArgs { index, json: released });
        }
        Ok(())
    }

    /// Everything held goes (the text ended, or a tool call or the stop comes next).
    fn flush(&mut self, out: &mut Vec<Delta>) -> Result<(), FilterStop> {
        self.text("", true, out)?;
        let open: Vec<u32> = self.args.iter().map(|(i, _)| *i).collect();
        for index in open {
            self.args(index, "", true, out)?;
        }
        Ok(())
    }
}

fn stop(rule: &str) -> FilterStop {
    FilterStop {
        class: "guardrail_blocked",
        code: "guardrail_blocked",
        message: format!("The answer was stopped by the guardrail {rule}."),
    }
}

impl ResponseStage for GuardOut {
    fn on_event(&mut self, delta: Delta, out: &mut Vec<Delta>) -> Result<(), FilterStop> {
        if self.ended {
            // Cut: only the usage still counts.
            if let d @ Delta::Usage(_) = delta {
                out.push(d);
            }
            return Ok(());
        }
        match delta {
            Delta::Text(t) => self.text(&t, false, out),
            Delta::ToolArgs { index, json } => self.args(index, &json, false, out),
            d @ (Delta::ToolStart { .. } | Delta::Stop { .. }) => {
                self.flush(out)?;
                out.push(d);
                Ok(())
            }
            d => {
                out.push(d);
                Ok(())
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<Delta>) -> Result<(), FilterStop> {
        if self.ended {
            return Ok(());
        }
        self.flush(out)
    }
}

/// Puts redacted input back into the answer's text (a rule with `restore: true`): holds back
/// an unfinished `[…` no longer than the longest placeholder.
pub struct Restore {
    names: Placeholders,
    pending: String,
}

impl Restore {
    pub fn new(names: Placeholders) -> Restore {
        Restore {
            names,
            pending: String::new(),
        }
    }
}

impl HoldsText for Restore {
    fn pending(&mut self) -> &mut String {
        &mut self.pending
    }

    fn release(&mut self, all: bool, out: &mut Vec<Delta>) {
        let cut = if all {
            self.pending.len()
        } else {
            match self.pending.rfind('[') {
                Some(at) if !self.pending[at..].contains(']') && self.pending.len() - at < self.names.longest() => at,
                _ => self.pending.len(),
            }
        };
        if cut == 0 {
            return;
        }
        let released: String = self.pending.drain(..cut).collect();
        out.push(Delta::Text(self.names.restore(&released).into_owned()));
    }
}
