//! Guardrails: named sets of rules a route attaches, each rule a check, the channels it reads,
//! the direction and what it does when it fires.

use sluice_guard::Kind;

/// What a rule does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardAction {
    /// The request is refused (400 `guardrail_blocked`), or the answer ended with an error.
    Block,
    /// The matched text is replaced by a typed placeholder.
    Redact,
    /// Shadow mode: logged and counted only.
    Flag,
}

impl GuardAction {
    pub fn as_str(self) -> &'static str {
        match self {
            GuardAction::Block => "block",
            GuardAction::Redact => "redact",
            GuardAction::Flag => "flag",
        }
    }
}

/// Where in a request or an answer a rule reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Channels {
    /// The user's turns (input).
    pub user: bool,
    /// The system prompt (input).
    pub system: bool,
    /// Tool results and retrieved documents the caller sends back (input): where indirect
    /// injection arrives.
    pub tool_results: bool,
    /// The arguments of the tool calls the model makes (output).
    pub tool_args: bool,
    /// The model's text (output).
    pub output: bool,
}

impl Channels {
    pub const NAMES: [&'static str; 5] = ["user", "system", "tool_results", "tool_args", "output"];

    pub fn set(&mut self, name: &str) -> bool {
        match name {
            "user" => self.user = true,
            "system" => self.system = true,
            "tool_results" => self.tool_results = true,
            "tool_args" => self.tool_args = true,
            "output" => self.output = true,
            _ => return false,
        }
        true
    }

    /// Any input channel.
    pub fn input(&self) -> bool {
        self.user || self.system || self.tool_results
    }

    /// Any output channel.
    pub fn output(&self) -> bool {
        self.output || self.tool_args
    }
}

/// What a rule checks.
#[derive(Debug, Clone, PartialEq)]
pub enum GuardCheck {
    /// Personal data or credentials of these kinds (the built-in patterns and validators).
    Kinds(Vec<Kind>),
    /// Literals (matched case-insensitively, whole words) and regular expressions.
    Deny {
        literals: Vec<String>,
        patterns: Vec<String>,
    },
    /// The prompt-injection screen, firing at this score (0–1).
    Injection { threshold: f32 },
    /// A canary the gateway writes after the system prompt (one per route and config
    /// version), found in the answer: the prompt leaked. Redacting strips it.
    Canary,
    /// A run of `min_words` consecutive words of the request's system prompt in the answer.
    Overlap { min_words: u32 },
    /// Runaway generation: the answer's end one span repeated `min_repeats` times over at
    /// least `min_bytes`. Blocking cuts the answer there (a clean end, `length`).
    Repetition { min_repeats: u32, min_bytes: u32 },
    /// The injection classifier: the shipped head over each text's sentence embedding
    /// (all-MiniLM-L6-v2, in process), firing at this score (`None`: the head's own).
    Classifier { threshold: Option<f32> },
    /// An external guardrail: the texts the rule reads are posted to `url`, whose verdict
    /// (allow, flag, block, redactions) applies. An answer it reads is held until complete.
    Webhook {
        url: http::Uri,
        timeout: std::time::Duration,
        /// Refuse the request when the hook errs or times out (else it passes).
        fail_closed: bool,
        /// Signs each call (`x-sluice-signature: sha256=<HMAC of the body>`).
        secret: Option<super::secret::Secret>,
    },
}

/// One rule, as a route runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardRule {
    /// `set/rule`: how logs, metrics and errors name it.
    pub name: String,
    pub action: GuardAction,
    pub channels: Channels,
    /// Redacted input is put back in the answer (after the output rules ran), within the
    /// request only.
    pub restore: bool,
    pub check: GuardCheck,
}

/// A route's guardrails: the rules of its sets in order, and how its prompts are normalised.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RouteGuard {
    /// The attached sets' names, in order.
    pub sets: Vec<String>,
    pub rules: Vec<GuardRule>,
    pub normalize: NormalizeConfig,
    /// The most output tokens an answer may have: the upstream's own limit is capped to it,
    /// and an answer past it is cut (a clean end, `length`) if the upstream ignored it.
    pub max_output_tokens: Option<u32>,
    /// The most prompt tokens a request may have.
    pub max_prompt_tokens: Option<u32>,
    /// A JSON Schema every request body must match (checked to compile at load).
    pub request_schema: Option<serde_json::Value>,
    /// A JSON Schema every answer's text must match, as JSON (checked to compile at load).
    pub output_schema: Option<serde_json::Value>,
    /// What an answer that fails its JSON check (the route's `output_schema`, or the
    /// request's own `response_format`) gets.
    pub on_invalid: OnInvalid,
}

/// What an answer that fails its JSON check gets. The caller never receives it as if it were
/// valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnInvalid {
    /// Another attempt on another deployment (within the route's attempts and deadline),
    /// then the fallback chain.
    #[default]
    Retry,
    /// The fallback chain at once.
    Fallback,
    /// A 502 `invalid_output`.
    Error,
    /// Not checked: the answer goes on as it came.
    Pass,
}

impl OnInvalid {
    pub fn as_str(self) -> &'static str {
        match self {
            OnInvalid::Retry => "retry",
            OnInvalid::Fallback => "fallback",
            OnInvalid::Error => "error",
            OnInvalid::Pass => "pass",
        }
    }
}

/// How a route normalises prompts before its rules read them (and before the cache's key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NormalizeConfig {
    /// Invisible characters removed and Unicode composed (NFC) — on whenever a route has
    /// guardrails, unless `normalize: off`.
    pub on: bool,
    /// NFKC rather than NFC.
    pub nfkc: bool,
    /// Runs of whitespace collapsed (outside code unless `in_code`).
    pub collapse_whitespace: bool,
    pub in_code: bool,
}
