//! Errors a codec can find in a client's request, and the classes of upstream errors.

use std::borrow::Cow;

/// Why a client's request body was refused before it went anywhere.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("the request body is not valid JSON: {detail}")]
    InvalidJson { detail: String },
    #[error("the request body must be a JSON object")]
    NotAnObject,
    #[error("missing required parameter: '{param}'")]
    MissingField { param: &'static str },
    #[error("invalid type for '{param}': expected {expected}")]
    InvalidType {
        param: &'static str,
        expected: &'static str,
    },
    #[error("invalid value for '{param}': {reason}")]
    InvalidValue { param: &'static str, reason: &'static str },
    /// The request uses something the upstream's API cannot express.
    #[error(
        "'{param}' cannot be expressed in the API of the model this route selected; remove it, or let the route drop it (`unsupported_params: drop`)"
    )]
    Unsupported { param: String },
}

impl RequestError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            RequestError::InvalidJson { .. } | RequestError::NotAnObject => "invalid_json",
            RequestError::MissingField { .. } => "missing_required_parameter",
            RequestError::InvalidType { .. } => "invalid_type",
            RequestError::InvalidValue { .. } => "invalid_value",
            RequestError::Unsupported { .. } => "unsupported_parameter",
        }
    }
    /// The parameter at fault, if any.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            RequestError::MissingField { param }
            | RequestError::InvalidType { param, .. }
            | RequestError::InvalidValue { param, .. } => Some(param),
            _ => None,
        }
    }
}

/// What an upstream error means for the caller and for retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request itself is wrong; the provider's 4xx goes back to the caller as is.
    InvalidRequest,
    ContextLength,
    ContentPolicy,
    /// The provider refused our credential: the gateway's problem, not the caller's.
    Auth,
    NotFound,
    RateLimited,
    /// Quota or billing exhausted at the provider: not retryable.
    QuotaExceeded,
    Overloaded,
    /// 5xx and other transient failures.
    Server,
}

impl ErrorClass {
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorClass::RateLimited | ErrorClass::Overloaded | ErrorClass::Server
        )
    }
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::InvalidRequest => "invalid_request",
            ErrorClass::ContextLength => "context_length",
            ErrorClass::ContentPolicy => "content_policy",
            ErrorClass::Auth => "upstream_auth",
            ErrorClass::NotFound => "upstream_not_found",
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::QuotaExceeded => "quota_exceeded",
            ErrorClass::Overloaded => "overloaded",
            ErrorClass::Server => "upstream_error",
        }
    }
}

/// Removes anything that looks like a credential from provider text: the secrets we hold, and
/// `sk-…`-style tokens and bearer tokens in general (providers echo partial keys in 401s).
pub fn scrub_credentials<'a>(text: &'a str, secrets: &[&str]) -> Cow<'a, str> {
    let mut out: Cow<'a, str> = Cow::Borrowed(text);
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        if out.contains(*s) {
            out = Cow::Owned(out.replace(*s, "[redacted]"));
        }
    }
    for marker in ["sk-", "Bearer ", "bearer "] {
        if out.contains(marker) {
            out = Cow::Owned(redact_after(&out, marker));
        }
    }
    out
}

fn redact_after(text: &str, marker: &str) -> String {
    let mut result = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(marker) {
        let after = &rest[i + marker.len()..];
        if rest[..i].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric()) {
            result.push_str(&rest[..i + marker.len()]);
            rest = after;
            continue;
        }
        let token_len = after
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*' | '.')))
            .map_or(after.len(), |(j, _)| j);
        let token_len = after[..token_len].trim_end_matches('.').len();
        result.push_str(&rest[..i]);
        if token_len >= 4 {
            result.push_str("[redacted]");
        } else {
            result.push_str(&rest[i..i + marker.len() + token_len]);
        }
        rest = &after[token_len..];
    }
    result.push_str(rest);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_keys_and_bearers() {
        let cases = [
            (
                "Incorrect API key provided: sk-proj-****abcd. See docs.",
                "Incorrect API key provided: [redacted]. See docs.",
            ),
            ("token Bearer abc.def-ghi rejected", "token [redacted] rejected"),
            ("our secret-value-123 leaked", "our [redacted] leaked"),
            ("ask-me anything", "ask-me anything"),
            ("task-manager-service", "task-manager-service"),
            ("plain text", "plain text"),
        ];
        for (input, want) in cases {
            assert_eq!(scrub_credentials(input, &["secret-value-123"]), want, "{input}");
        }
    }
}
