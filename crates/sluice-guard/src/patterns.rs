//! The built-in patterns, one or more per kind. A pattern finds candidates; [`crate::validate`]
//! decides (checksums, lengths, context) and may narrow the span to the secret's value.
//!
//! Rules every pattern keeps, so the streaming window stays cheap and exact:
//! - a pattern that begins with a word character begins with an ASCII word boundary, so a
//!   match can start only where a word does;
//! - repetitions are bounded, except where a fixed prefix (`eyJ`, `-----BEGIN`) comes first;
//! - ASCII classes only: what a pattern matches is a run of ASCII, never half a character.
//!
//! Order matters where two patterns can match at one place: the first valid one wins.

use crate::kind::Kind;

/// `(?-u:\b)`, spelled once.
macro_rules! wb {
    () => {
        r"(?-u:\b)"
    };
}

/// The built-in patterns: (kind, pattern).
pub const BUILT_IN: &[(Kind, &str)] = &[
    // Credentials first: their prefixes are specific, and a key's digits must not read as a phone.
    (
        Kind::PrivateKey,
        r"-----BEGIN[A-Z0-9 ]{0,24}PRIVATE KEY-----(?s:.)*?-----END[A-Z0-9 ]{0,24}PRIVATE KEY-----",
    ),
    // A private key cut off before its end marker is everything after its start: found in
    // code (`Matcher`), since a pattern ending in `(?s:.)*` would make every reverse search
    // run back to where the search began.
    (
        Kind::AwsKeyId,
        concat!(wb!(), r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}", wb!()),
    ),
    (
        Kind::AwsSecret,
        r#"(?i:aws)[A-Za-z0-9_.-]{0,20}(?i:secret)[A-Za-z0-9_.-]{0,20}["']?[ \t]{0,3}(?::=|=>|:|=)[ \t]{0,3}["']?[A-Za-z0-9/+]{40}"#,
    ),
    (
        Kind::GitHubToken,
        concat!(wb!(), r"github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}", wb!()),
    ),
    (
        Kind::GitHubToken,
        concat!(wb!(), r"gh[pousr]_[A-Za-z0-9]{36,251}", wb!()),
    ),
    (
        Kind::AnthropicKey,
        concat!(wb!(), r"sk-ant-[a-z]{3,6}[0-9]{2}-[A-Za-z0-9_-]{20,250}"),
    ),
    (
        Kind::OpenAiKey,
        concat!(wb!(), r"sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,250}"),
    ),
    (
        Kind::OpenAiKey,
        concat!(wb!(), r"sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}", wb!()),
    ),
    (Kind::OpenAiKey, concat!(wb!(), r"sk-[A-Za-z0-9]{48}", wb!())),
    (Kind::SlackToken, concat!(wb!(), r"xox[abposr]-[0-9A-Za-z-]{10,250}")),
    (
        Kind::StripeKey,
        concat!(wb!(), r"(?:sk|rk|whsec)_(?:live_|test_)?[0-9A-Za-z]{16,247}", wb!()),
    ),
    (Kind::GoogleKey, concat!(wb!(), r"AIza[0-9A-Za-z_-]{35}")),
    (
        Kind::Jwt,
        concat!(wb!(), r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    ),
    (
        Kind::Email,
        concat!(
            wb!(),
            r"[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}",
            wb!()
        ),
    ),
    (
        Kind::Iban,
        concat!(
            wb!(),
            r"[A-Z]{2}[0-9]{2}(?:[A-Z0-9]{11,30}|(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?)",
            wb!()
        ),
    ),
    (Kind::Card, concat!(wb!(), r"[2-6][0-9](?:[ -]?[0-9]){11,17}", wb!())),
    (
        Kind::Ssn,
        concat!(wb!(), r"[0-9]{3}(?:-[0-9]{2}-|[ ][0-9]{2}[ ])[0-9]{4}", wb!()),
    ),
    (
        Kind::Ip,
        concat!(
            wb!(),
            r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}",
            wb!()
        ),
    ),
    (
        Kind::Ip,
        concat!(
            r"(?:",
            wb!(),
            r"[0-9A-Fa-f]{1,4}|::)(?::{1,2}[0-9A-Fa-f]{1,4}){1,7}(?:::)?"
        ),
    ),
    // Phones: international with a `+`; North American with separators; national with a
    // leading 0 and at least one separator (a bare run of digits is a number, not a phone).
    (Kind::Phone, r"\+[1-9](?:[ .()-]{0,2}[0-9]){7,14}"),
    (
        Kind::Phone,
        concat!(
            r"(?:",
            wb!(),
            r"1[ .-])?(?:\([2-9][0-9]{2}\)[ ]?|",
            wb!(),
            r"[2-9][0-9]{2}[ .-])[0-9]{3}[ .-][0-9]{4}",
            wb!()
        ),
    ),
    (
        Kind::Phone,
        concat!(
            wb!(),
            r"0[1-9][0-9]{0,4}[ /.-]?[0-9]{2,4}(?:[ .-]?[0-9]{2,4}){1,3}",
            wb!()
        ),
    ),
];

/// The built-in patterns of some kinds, in table order.
pub fn of_kinds(kinds: &[Kind]) -> impl Iterator<Item = (Kind, &'static str)> + '_ {
    BUILT_IN.iter().copied().filter(move |(k, _)| kinds.contains(k))
}
