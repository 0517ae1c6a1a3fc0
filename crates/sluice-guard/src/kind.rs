//! What a detector finds: the kinds of personal data and credentials, each with its typed
//! placeholder, and the deny lists' own matches.

/// A kind of sensitive text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Email,
    Phone,
    Card,
    Iban,
    Ssn,
    Ip,
    AwsKeyId,
    AwsSecret,
    GitHubToken,
    OpenAiKey,
    AnthropicKey,
    SlackToken,
    StripeKey,
    GoogleKey,
    Jwt,
    PrivateKey,
    /// A deny list's literal or pattern.
    Denied,
}

/// Whether a kind is personal data or a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Pii,
    Secret,
    Deny,
}

impl Kind {
    /// The personal-data kinds (`pii-redact`).
    pub const PII: [Kind; 6] = [Kind::Email, Kind::Phone, Kind::Card, Kind::Iban, Kind::Ssn, Kind::Ip];
    /// The credential kinds (`no-secrets`).
    pub const SECRETS: [Kind; 10] = [
        Kind::AwsKeyId,
        Kind::AwsSecret,
        Kind::GitHubToken,
        Kind::OpenAiKey,
        Kind::AnthropicKey,
        Kind::SlackToken,
        Kind::StripeKey,
        Kind::GoogleKey,
        Kind::Jwt,
        Kind::PrivateKey,
    ];

    pub fn family(self) -> Family {
        match self {
            Kind::Email | Kind::Phone | Kind::Card | Kind::Iban | Kind::Ssn | Kind::Ip => Family::Pii,
            Kind::Denied => Family::Deny,
            _ => Family::Secret,
        }
    }

    /// The name in config, logs and metrics (`email`, `aws_key_id`, …).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::Phone => "phone",
            Kind::Card => "card",
            Kind::Iban => "iban",
            Kind::Ssn => "ssn",
            Kind::Ip => "ip",
            Kind::AwsKeyId => "aws_key_id",
            Kind::AwsSecret => "aws_secret",
            Kind::GitHubToken => "github_token",
            Kind::OpenAiKey => "openai_key",
            Kind::AnthropicKey => "anthropic_key",
            Kind::SlackToken => "slack_token",
            Kind::StripeKey => "stripe_key",
            Kind::GoogleKey => "google_key",
            Kind::Jwt => "jwt",
            Kind::PrivateKey => "private_key",
            Kind::Denied => "denied",
        }
    }

    /// The kind a config name means.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::PII
            .iter()
            .chain(Kind::SECRETS.iter())
            .copied()
            .find(|k| k.name() == name)
    }

    /// The placeholder's label: `[EMAIL_1]`.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Email => "EMAIL",
            Kind::Phone => "PHONE",
            Kind::Card => "CARD",
            Kind::Iban => "IBAN",
            Kind::Ssn => "SSN",
            Kind::Ip => "IP",
            Kind::AwsKeyId => "AWS_KEY",
            Kind::AwsSecret => "AWS_SECRET",
            Kind::GitHubToken => "GITHUB_TOKEN",
            Kind::OpenAiKey => "OPENAI_KEY",
            Kind::AnthropicKey => "ANTHROPIC_KEY",
            Kind::SlackToken => "SLACK_TOKEN",
            Kind::StripeKey => "STRIPE_KEY",
            Kind::GoogleKey => "GOOGLE_KEY",
            Kind::Jwt => "JWT",
            Kind::PrivateKey => "PRIVATE_KEY",
            Kind::Denied => "REDACTED",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in Kind::PII.iter().chain(Kind::SECRETS.iter()) {
            assert_eq!(Kind::from_name(k.name()), Some(*k));
        }
        assert_eq!(Kind::from_name("denied"), None);
    }
}
