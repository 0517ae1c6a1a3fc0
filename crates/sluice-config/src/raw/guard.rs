//! The guardrail sections as written: a guardrail set's rules, hooks, and a route's `guard`.

use serde::Deserialize;
use serde_saphyr::Spanned as S;

/// One rule of a guardrail set: exactly one check (`pii`, `secrets`, `deny`, `injection`),
/// which side it reads (`on`), where (`where`), and what it does when it fires.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGuardRule {
    pub name: S<String>,
    /// `input` (default), `output` or `both`.
    pub on: Option<S<String>>,
    /// `block` (default), `redact` or `flag` (log and count only).
    pub action: Option<S<String>>,
    /// `user`, `system`, `tool_results` (input); `output`, `tool_args` (output).
    #[serde(rename = "where")]
    pub channels: Option<Vec<S<String>>>,
    /// Put redacted input back in the answer (within the request; never cached or logged).
    pub restore: Option<S<bool>>,
    /// Kinds of personal data: `email`, `phone`, `card`, `iban`, `ssn`, `ip`, or `all`.
    pub pii: Option<Vec<S<String>>>,
    /// Kinds of credentials (`aws_key_id`, `github_token`, `openai_key`, …), or `all`.
    pub secrets: Option<Vec<S<String>>>,
    pub deny: Option<RawDeny>,
    pub injection: Option<RawInjection>,
    /// System-prompt leaks: a canary placed after the system prompt, found in the answer.
    pub canary: Option<S<bool>>,
    /// System-prompt leaks: a run of words copied from the system prompt.
    pub overlap: Option<RawOverlap>,
    /// Runaway generation: one span repeated over and over at the answer's end.
    pub repetition: Option<RawRepetition>,
    /// An external guardrail: the texts posted to a URL, whose verdict applies.
    pub webhook: Option<RawWebhook>,
    /// The injection classifier: a head over the texts' sentence embeddings.
    pub classifier: Option<RawInjection>,
}

/// An external guardrail hook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    pub url: S<String>,
    /// How long the hook may take (default 1000 ms), within the request's deadline.
    pub timeout_ms: Option<S<u64>>,
    /// `allow` (default: fail open) or `block` (fail closed) when the hook errs or times out.
    pub on_error: Option<S<String>>,
    /// An environment variable holding a secret: each call is signed with it (HMAC-SHA256 of
    /// the body, as budget alerts are).
    pub secret_env: Option<S<String>>,
}

/// Runaway generation: a span repeated `min_repeats` times, over at least `min_bytes`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRepetition {
    pub min_repeats: Option<S<u64>>,
    pub min_bytes: Option<S<u64>>,
}

/// A leak by overlap: this many consecutive words of the system prompt in the answer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOverlap {
    pub min_words: Option<S<u64>>,
}

/// A deny list: literals (whole words, any case) and regular expressions.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeny {
    #[serde(default)]
    pub literals: Vec<S<String>>,
    #[serde(default)]
    pub regex: Vec<S<String>>,
}

/// The prompt-injection screen.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInjection {
    /// The score (0–1) at which the rule fires.
    pub threshold: Option<S<f64>>,
}

/// How a route's guardrails read its prompts (also under `defaults`, field by field).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGuard {
    /// `nfc` (default), `nfkc` or `off`.
    pub normalize: Option<S<String>>,
    /// `off` (default), `text` (outside code) or `all`.
    pub collapse_whitespace: Option<S<String>>,
    /// The injection screen's threshold on this route (its rules' own otherwise).
    pub injection_threshold: Option<S<f64>>,
    /// The most output tokens an answer may have (the request's own limit is capped to it).
    pub max_output_tokens: Option<S<u64>>,
    /// The most prompt tokens a request may have (its texts, counted with the tokenizer only
    /// when their bytes could be more).
    pub max_prompt_tokens: Option<S<u64>>,
    /// A JSON Schema every request body must match.
    pub request_schema: Option<S<serde_json::Value>>,
    /// A JSON Schema every answer's text must match (as JSON).
    pub output_schema: Option<S<serde_json::Value>>,
    /// What an answer that fails its JSON check gets: `retry` (default), `fallback`, `error`
    /// or `pass` (not checked).
    pub on_invalid: Option<S<String>>,
}
