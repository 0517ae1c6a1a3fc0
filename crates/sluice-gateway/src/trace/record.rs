//! A finished request as a trace: the request's server span, a span per stage it ran, a
//! client span per upstream attempt and one for writing the answer — named and attributed by
//! the OpenTelemetry GenAI semantic conventions (`gen_ai.*`), with Sluice's own under
//! `sluice.*`. No prompt or answer text is ever part of it.

use std::sync::Arc;

use sluice_telemetry::otlp::{SpanHead, SpanKind, StatusCode, TraceBatch};

use super::context::{TraceCtx, span_id};
use crate::timing::StageTimes;

/// What a traced attempt adds to its record: its span id (the upstream's parent) and what
/// the span names.
#[derive(Debug, Clone)]
pub struct AttemptTrace {
    pub span_id: [u8; 8],
    /// The adapter's name (`openai`, `anthropic`…).
    pub provider: &'static str,
    /// The model name sent upstream.
    pub model: Arc<str>,
}

#[derive(Debug)]
pub struct AttemptSpan {
    pub(crate) trace: AttemptTrace,
    pub(crate) deployment: Arc<str>,
    pub(crate) outcome: &'static str,
    pub(crate) status: Option<u16>,
    /// Nanoseconds after the request began, and the attempt's length.
    pub(crate) start_ns: u64,
    pub(crate) dur_ns: u64,
}

/// A finished, sampled request: what its spans are made of (copied from its record at
/// finish; encoded by the exporter's task).
#[derive(Debug)]
pub struct Traced {
    pub(crate) ctx: TraceCtx,
    pub(crate) start_unix_nano: u64,
    pub(crate) total_ns: u64,
    pub(crate) request_id: Box<str>,
    pub(crate) endpoint: &'static str,
    pub(crate) route: Option<Arc<str>>,
    pub(crate) model: Option<Arc<str>>,
    pub(crate) tenant: Option<Arc<str>>,
    pub(crate) status: u16,
    pub(crate) error_class: Option<&'static str>,
    pub(crate) error_code: Option<&'static str>,
    pub(crate) finish_reason: Option<&'static str>,
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u64,
    pub(crate) cost_micros: Option<u64>,
    pub(crate) cache: Option<&'static str>,
    pub(crate) fallback: Option<&'static str>,
    pub(crate) guardrail: Option<&'static str>,
    pub(crate) stream: bool,
    pub(crate) ttft_ms: Option<f64>,
    pub(crate) stages: StageTimes,
    pub(crate) attempts: Vec<AttemptSpan>,
}

pub fn nanos(secs: f64) -> u64 {
    (secs * 1e9) as u64
}

impl Traced {
    /// Spans this request adds to a batch.
    pub fn span_count(&self) -> usize {
        2 + self.stages.iter().count() + self.attempts.len()
    }

    /// Writes the request's spans into `batch`.
    pub fn write(&self, batch: &mut TraceBatch) {
        let op = operation(self.endpoint);
        let answered = self.attempts.iter().rev().find(|a| a.outcome == "ok");
        let state = self.ctx.state.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("");
        let flags = 1 | if self.ctx.parent.is_some() { 0x300 } else { 0x100 };
        let root = SpanHead {
            trace_id: self.ctx.trace_id,
            span_id: self.ctx.span_id,
            parent_span_id: self.ctx.parent,
            trace_state: state,
            name: [op, self.model.as_deref().unwrap_or("")],
            kind: SpanKind::Server,
            start_unix_nano: self.start_unix_nano,
            end_unix_nano: self.start_unix_nano + self.total_ns,
            status: if self.status >= 500 || self.status == 0 {
                StatusCode::Error
            } else {
                StatusCode::Unset
            },
            status_message: self.error_code.unwrap_or(""),
            flags,
        };
        batch.push(&root, |a| {
            a.str("gen_ai.operation.name", op);
            a.opt_str("gen_ai.request.model", self.model.as_deref());
            if let Some(up) = answered {
                a.str("gen_ai.provider.name", provider_name(up.trace.provider));
                a.str("gen_ai.response.model", &up.trace.model);
            }
            if self.input_tokens > 0 || self.output_tokens > 0 {
                a.int("gen_ai.usage.input_tokens", self.input_tokens as i64);
                a.int("gen_ai.usage.output_tokens", self.output_tokens as i64);
            }
            if let Some(reason) = self.finish_reason {
                a.strs("gen_ai.response.finish_reasons", [reason]);
            }
            a.str("http.request.method", "POST");
            a.int("http.response.status_code", i64::from(self.status));
            a.opt_str("error.type", self.error_class);
            a.str("sluice.request_id", &self.request_id);
            a.str("sluice.endpoint", self.endpoint);
            a.opt_str("sluice.route", self.route.as_deref());
            a.opt_str("sluice.tenant", self.tenant.as_deref());
            a.opt_str("sluice.deployment", answered.map(|a| &*a.deployment));
            a.opt_str("sluice.error_code", self.error_code);
            a.opt_str("sluice.cache", self.cache);
            a.opt_str("sluice.fallback", self.fallback);
            a.opt_str("sluice.guardrail", self.guardrail);
            a.bool("sluice.stream", self.stream);
            a.int("sluice.attempts", self.attempts.len() as i64);
            if let Some(c) = self.cost_micros {
                a.int("sluice.cost_micros", c as i64);
            }
            if let Some(t) = self.ttft_ms {
                a.double("sluice.ttft_ms", t);
            }
        });
        let child = |span_id, name, kind, start_ns: u64, end_ns: u64, status| SpanHead {
            trace_id: self.ctx.trace_id,
            span_id,
            parent_span_id: Some(self.ctx.span_id),
            trace_state: state,
            name,
            kind,
            start_unix_nano: self.start_unix_nano + start_ns,
            end_unix_nano: self.start_unix_nano + end_ns,
            status,
            status_message: "",
            flags: 0x101,
        };
        for (stage, secs, end) in self.stages.spans() {
            let (end, secs) = (nanos(end), nanos(secs));
            let head = child(
                span_id(),
                [stage.span_name(), ""],
                SpanKind::Internal,
                end.saturating_sub(secs),
                end,
                StatusCode::Unset,
            );
            batch.push(&head, |a| a.str("sluice.stage", stage.as_str()));
        }
        for (i, at) in self.attempts.iter().enumerate() {
            let failed = at.outcome != "ok";
            let mut head = child(
                at.trace.span_id,
                [op, &at.trace.model],
                SpanKind::Client,
                at.start_ns,
                at.start_ns + at.dur_ns,
                if failed { StatusCode::Error } else { StatusCode::Unset },
            );
            head.status_message = if failed { at.outcome } else { "" };
            batch.push(&head, |a| {
                a.str("gen_ai.operation.name", op);
                a.str("gen_ai.provider.name", provider_name(at.trace.provider));
                a.str("gen_ai.request.model", &at.trace.model);
                a.str("sluice.deployment", &at.deployment);
                a.int("sluice.attempt", i as i64 + 1);
                a.str("sluice.outcome", at.outcome);
                if let Some(s) = at.status {
                    a.int("http.response.status_code", i64::from(s));
                }
                if failed {
                    a.str("error.type", at.outcome);
                }
            });
        }
        // Writing the answer: from the end of the last stage to the end of the request (a
        // stream's relay, the response stages, the output guardrails).
        let from = nanos(self.stages.last_end());
        let head = child(
            span_id(),
            ["sluice.respond", ""],
            SpanKind::Internal,
            from.min(self.total_ns),
            self.total_ns,
            StatusCode::Unset,
        );
        batch.push(&head, |a| a.bool("sluice.stream", self.stream));
    }
}

/// `gen_ai.operation.name` of a front door.
fn operation(endpoint: &str) -> &'static str {
    match endpoint {
        "chat_completions" | "messages" | "responses" => "chat",
        "completions" => "text_completion",
        "embeddings" => "embeddings",
        "predict" => "predict",
        _ => "other",
    }
}

/// `gen_ai.provider.name`: the conventions' well-known values where one applies.
fn provider_name(adapter: &'static str) -> &'static str {
    match adapter {
        "bedrock" => "aws.bedrock",
        "azure" => "azure.ai.openai",
        "gemini" => "gcp.gemini",
        "prediction" => "sluice.prediction",
        other => other,
    }
}
