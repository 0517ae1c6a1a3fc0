//! Redaction with typed placeholders: each finding becomes `[EMAIL_1]`, `[CARD_2]`, … — the
//! same text the same placeholder within one request, so an answer can refer to it and (when
//! a rule says so) have it restored on the way out.
//!
//! [`redact`] is the one function the access log and the payload log use.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

use crate::kind::Kind;
use crate::matcher::{Hit, Label, Matcher};
use crate::patterns;

static BUILT_IN: LazyLock<Option<Arc<Matcher>>> = LazyLock::new(|| {
    let kinds: Vec<Kind> = Kind::SECRETS.iter().chain(Kind::PII.iter()).copied().collect();
    let patterns: Vec<(Label, &str)> = patterns::of_kinds(&kinds)
        .map(|(kind, p)| (Label { kind, rule: 0 }, p))
        .collect();
    Matcher::new(&patterns).ok().map(Arc::new)
});

/// Every built-in pattern (personal data and credentials) in one matcher; `None` only if the
/// built-in table failed to compile, which a unit test rules out.
pub fn builtin_matcher() -> Option<Arc<Matcher>> {
    BUILT_IN.clone()
}

/// `text` with every piece of personal data and every credential the built-in patterns find
/// replaced by its typed placeholder.
pub fn redact(text: &str) -> Cow<'_, str> {
    let Some(m) = BUILT_IN.as_ref() else {
        return Cow::Borrowed(text);
    };
    let hits = m.find_all(text);
    if hits.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut names = Placeholders::default();
    Cow::Owned(names.rewrite(text, &hits))
}

/// One request's placeholders: which text each stands for.
#[derive(Debug, Default, Clone)]
pub struct Placeholders {
    /// (placeholder, original), in order of first appearance.
    named: Vec<(String, String)>,
}

impl Placeholders {
    /// The placeholder of `original` (found as `kind`): its existing one, or the next number
    /// of its kind.
    pub fn name(&mut self, kind: Kind, original: &str) -> &str {
        self.name_labelled(kind.label(), original)
    }

    /// The placeholder of `original` under `label` (an external hook's own kind): its existing
    /// one, or the next number of the label.
    pub fn name_labelled(&mut self, label: &str, original: &str) -> &str {
        let i = match self.named.iter().position(|(_, o)| o == original) {
            Some(i) => i,
            None => {
                let n = 1 + self
                    .named
                    .iter()
                    .filter(|(p, _)| p[1..].strip_prefix(label).is_some_and(|r| r.starts_with('_')))
                    .count();
                self.named.push((format!("[{label}_{n}]"), original.to_owned()));
                self.named.len() - 1
            }
        };
        &self.named[i].0
    }

    /// `text` with each hit replaced by its placeholder (hits in order, not overlapping).
    pub fn rewrite(&mut self, text: &str, hits: &[Hit]) -> String {
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for h in hits {
            out.push_str(&text[at..h.start]);
            out.push_str(self.name(h.label.kind, &text[h.start..h.end]));
            at = h.end;
        }
        out.push_str(&text[at..]);
        out
    }

    /// `text` with each placeholder put back to what it stood for.
    pub fn restore<'t>(&self, text: &'t str) -> Cow<'t, str> {
        if self.named.is_empty() || !text.contains('[') {
            return Cow::Borrowed(text);
        }
        let mut out = text.to_owned();
        for (placeholder, original) in &self.named {
            out = out.replace(placeholder.as_str(), original);
        }
        Cow::Owned(out)
    }

    /// The longest placeholder (a restoring window holds this much).
    pub fn longest(&self) -> usize {
        self.named.iter().map(|(p, _)| p.len()).max().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.named.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_built_in_table_compiles() {
        assert!(builtin_matcher().is_some());
    }

    fn check(text: &str, expected: &str) {
        assert_eq!(redact(text), expected, "{text:?}");
    }

    #[test]
    fn redacts_each_kind_with_a_typed_placeholder() {
        check(
            "mail bob@example.com or bob@example.com, not amy@example.org",
            "mail [EMAIL_1] or [EMAIL_1], not [EMAIL_2]",
        );
        check("Call +44 20 7946 0958 or (555) 123-4567", "Call [PHONE_1] or [PHONE_2]");
        check("ring 06 12 34 56 78 or 030 1234 5678", "ring [PHONE_1] or [PHONE_2]");
        check("card 4111 1111 1111 1111 exp 12/27", "card [CARD_1] exp 12/27");
        check("pay DE89 3704 0044 0532 0130 00 now", "pay [IBAN_1] now");
        check("pay GB29NWBK60161331926819.", "pay [IBAN_1].");
        check("ssn 123-45-6789.", "ssn [SSN_1].");
        check("from 10.0.0.12 and fe80::1ff:fe23:4567:890a", "from [IP_1] and [IP_2]");
        check("id AKIAQWERTYUIOPASDF23 key", "id [AWS_KEY_1] key");
        check(
            "aws_secret_access_key = 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",
            "aws_secret_access_key = [AWS_SECRET_1]",
        );
        check(
            "token ghp_Zk3q9XvR2mT8wPbL7nYc4HdJ1aB2cD3eF4gH",
            "token [GITHUB_TOKEN_1]",
        );
        check("k=sk-proj-Zk3q9XvR2mT8wPbL7nYc4HdJ1aB2-xY", "k=[OPENAI_KEY_1]");
        check("k=sk-ant-api03-Zk3q9XvR2mT8wPbL7nYc4HdJ1aB2xY", "k=[ANTHROPIC_KEY_1]");
        check("xoxb-1234567890-Zk3q9XvR2mT8wPbL", "[SLACK_TOKEN_1]");
        check("sk_live_Zk3q9XvR2mT8wPbL7nYc4HdJ", "[STRIPE_KEY_1]");
        check("AIzaSyZk3q9XvR2mT8wPbL7nYc4HdJ1aB2cD3eF", "[GOOGLE_KEY_1]");
        check(
            "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
            "Bearer [JWT_1]",
        );
    }

    #[test]
    fn leaves_ordinary_text_and_near_misses_alone() {
        for text in [
            "Is 7411 a prime number?",
            "What is 1234567890 divided by 7?",
            "Order 4111 1111 1111 1112 is not a card (Luhn fails)",
            "uuid 123e4567-e89b-12d3-a456-426614174000",
            "request id 03147785-6648-c196-f2f8-66efc4544487",
            "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "version 1.2.3.4.5 and 2024-01-15 at 12:30:45",
            "AKIAIOSFODNN7EXAMPLE is the documented example key",
            "sk-proj-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "the year 1999 and 3.14159",
            "MAC 00:1A:2B:3C:4D:5E",
        ] {
            check(text, text);
        }
    }

    #[test]
    fn restores_what_it_replaced() {
        let mut p = Placeholders::default();
        let text = "mail bob@example.com";
        let hits = builtin_matcher().unwrap().find_all(text);
        let redacted = p.rewrite(text, &hits);
        assert_eq!(redacted, "mail [EMAIL_1]");
        assert_eq!(p.restore("I wrote to [EMAIL_1]."), "I wrote to bob@example.com.");
    }
}
