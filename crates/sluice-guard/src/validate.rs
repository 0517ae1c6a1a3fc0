//! What decides a candidate: checksums (Luhn, IBAN's mod 97), the rules of the number plans,
//! the context around a match, and whether a token looks like a real credential rather than a
//! placeholder (`AKIAIOSFODNN7EXAMPLE`, `sk-proj-xxxxxxxx…`).

use std::net::Ipv6Addr;

use crate::kind::Kind;

/// The span to report for a candidate `text[start..end]`, or `None` when it is not one.
pub fn check(kind: Kind, text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let m = text.get(start..end)?;
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    let ok = match kind {
        Kind::Email | Kind::Denied => true,
        Kind::PrivateKey => true,
        Kind::Card => card(m),
        Kind::Iban => return iban(m).map(|len| (start, start + len)),
        Kind::Ssn => ssn(m),
        Kind::Phone => phone(m, before, after, &text[end..]),
        Kind::Ip if m.contains(':') => {
            !after.is_some_and(|c| c == ':' || c.is_ascii_hexdigit()) && m.parse::<Ipv6Addr>().is_ok()
        }
        // A dotted quad inside a longer dotted run is a version number.
        Kind::Ip => before.is_none_or(|c| c != '.') && !dotted_more(&text[end..]),
        Kind::AwsSecret => {
            let value = start + m.len() - 40;
            return (!token_char(after, "/+=") && looks_random(&text[value..end])).then_some((value, end));
        }
        Kind::AwsKeyId => looks_random(&m[4..]),
        Kind::GitHubToken => looks_random(m.split_once('_').map_or(m, |(_, rest)| rest)),
        Kind::OpenAiKey | Kind::AnthropicKey | Kind::SlackToken | Kind::GoogleKey => {
            !token_char(after, "-_") && looks_random(secret_body(m))
        }
        Kind::StripeKey => looks_random(secret_body(m)),
        Kind::Jwt => !token_char(after, "-_."),
    };
    ok.then_some((start, end))
}

/// A character that would continue a token (letters, digits and `extra`).
fn token_char(c: Option<char>, extra: &str) -> bool {
    c.is_some_and(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

/// The random part of a prefixed key: after its last `-` or `_` among the first 16 bytes.
fn secret_body(m: &str) -> &str {
    let head = &m.as_bytes()[..m.len().min(16)];
    head.iter()
        .rposition(|&b| b == b'-' || b == b'_')
        .map_or(m, |i| &m[i + 1..])
}

/// A credential's random part, not a placeholder: no filler words, no long runs of one
/// character, and enough distinct characters for its length.
pub fn looks_random(body: &str) -> bool {
    let lower = body.to_ascii_lowercase();
    const FILLERS: [&str; 9] = [
        "example",
        "xxxx",
        "your",
        "placeholder",
        "redacted",
        "dummy",
        "fake",
        "sample",
        "0000",
    ];
    if FILLERS.iter().any(|f| lower.contains(f)) {
        return false;
    }
    let bytes = body.as_bytes();
    let longest_run = bytes.chunk_by(|a, b| a == b).map(<[u8]>::len).max().unwrap_or(0);
    let mut seen = [false; 256];
    for &b in bytes {
        seen[usize::from(b)] = true;
    }
    let distinct = seen.iter().filter(|&&s| s).count();
    longest_run <= 4 && distinct >= (bytes.len() / 3).clamp(6, 16) && !sequential(bytes)
}

/// `abcdefgh…` or `12345678…`: eight or more consecutive characters.
fn sequential(bytes: &[u8]) -> bool {
    let mut run = 1;
    for w in bytes.windows(2) {
        run = if w[1] == w[0].wrapping_add(1) { run + 1 } else { 1 };
        if run >= 8 {
            return true;
        }
    }
    false
}

/// The digits of a candidate.
fn digits(m: &str) -> impl Iterator<Item = u32> + '_ {
    m.chars().filter_map(|c| c.to_digit(10))
}

/// A payment card: 13–19 digits passing Luhn, one separator kind used throughout, and a known
/// issuer's leading digit.
fn card(m: &str) -> bool {
    let n = digits(m).count();
    if !(13..=19).contains(&n) {
        return false;
    }
    let seps: Vec<char> = m.chars().filter(|c| !c.is_ascii_digit()).collect();
    if seps.windows(2).any(|w| w[0] != w[1]) {
        return false;
    }
    // Separated, the groups are 4s (Amex: 4-6-5).
    if !seps.is_empty() {
        let groups: Vec<usize> = m.split([' ', '-']).map(str::len).collect();
        let fours = groups[..groups.len() - 1].iter().all(|&g| g == 4);
        if !(fours || groups == [4, 6, 5] || groups == [4, 6, 4]) {
            return false;
        }
    }
    luhn(m)
}

/// The Luhn checksum over a candidate's digits.
pub fn luhn(m: &str) -> bool {
    let ds: Vec<u32> = digits(m).collect();
    let sum: u32 = ds
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    !ds.is_empty() && sum.is_multiple_of(10)
}

/// An IBAN's length by country (the countries that use one most).
fn iban_length(country: &str) -> Option<usize> {
    Some(match country {
        "NO" => 15,
        "BE" => 16,
        "DK" | "FI" | "FO" | "GL" | "NL" => 18,
        "MK" | "SI" => 19,
        "AT" | "BA" | "EE" | "KZ" | "LT" | "LU" | "XK" => 20,
        "CH" | "CR" | "HR" | "LI" | "LV" => 21,
        "BG" | "BH" | "DE" | "GB" | "GE" | "IE" | "ME" | "RS" => 22,
        "AE" | "GI" | "IL" | "TL" => 23,
        "AD" | "CZ" | "ES" | "MD" | "PK" | "RO" | "SA" | "SE" | "SK" | "TN" | "VG" => 24,
        "PT" | "ST" => 25,
        "IS" | "TR" => 26,
        "FR" | "GR" | "IT" | "MC" | "MR" | "SM" => 27,
        "AL" | "AZ" | "BY" | "CY" | "DO" | "GT" | "HU" | "LB" | "PL" | "SV" => 28,
        "BR" | "EG" | "PS" | "QA" | "UA" => 29,
        "JO" | "KW" | "MU" => 30,
        "MT" | "SC" => 31,
        "LC" => 32,
        _ => return None,
    })
}

/// An IBAN: its country's length (the candidate may run on into the next word; the IBAN is
/// its first that many characters) and the mod-97 check. Returns the byte length.
fn iban(m: &str) -> Option<usize> {
    let want = iban_length(m.get(..2)?)?;
    let mut chars = 0;
    let mut len = 0;
    for (i, c) in m.char_indices() {
        if c != ' ' {
            chars += 1;
        }
        if chars == want {
            len = i + 1;
            break;
        }
    }
    if chars < want {
        return None;
    }
    let compact: Vec<u8> = m[..len].bytes().filter(|&b| b != b' ').collect();
    let rearranged = compact[4..].iter().chain(&compact[..4]);
    let mut rem: u32 = 0;
    for &b in rearranged {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return None,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    // A candidate that runs on past the IBAN must stop at a group's end.
    let next = m[len..].chars().next();
    (rem == 1 && next.is_none_or(|c| c == ' ')).then_some(len)
}

/// A US social security number: no area 000, 666 or 900–999, no group 00, no serial 0000.
fn ssn(m: &str) -> bool {
    let d: Vec<u32> = digits(m).collect();
    let area = d[0] * 100 + d[1] * 10 + d[2];
    let group = d[3] * 10 + d[4];
    let serial = d[5..].iter().fold(0, |a, &x| a * 10 + x);
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// A phone number: 8–15 digits (a national one 9–12 with a separator), not glued to a word or
/// another number, and not a dotted version or a date.
fn phone(m: &str, before: Option<char>, after: Option<char>, rest: &str) -> bool {
    if token_char(before, "+") || after.is_some_and(|c| c.is_ascii_digit()) {
        return false;
    }
    // A number that goes on as a hyphenated or dotted token (`03147785-6648-c196-…`, a UUID)
    // is that token, not a phone.
    let mut next = rest.chars();
    if matches!(next.next(), Some('-' | '.' | '_')) && next.next().is_some_and(|c| c.is_ascii_alphanumeric()) {
        return false;
    }
    let n = digits(m).count();
    if m.starts_with('+') {
        return (8..=15).contains(&n);
    }
    let separated = m.contains([' ', '-', '.', '/', '(']);
    separated && (9..=12).contains(&n)
}

/// `text` goes on with `.` and a digit: the quad was part of a longer dotted number.
fn dotted_more(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 2 && b[0] == b'.' && b[1].is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums() {
        assert!(luhn("4111 1111 1111 1111"));
        assert!(!luhn("4111 1111 1111 1112"));
        assert!(card("4111-1111-1111-1111"));
        assert!(card("378282246310005"));
        assert!(!card("4111 1111-1111 1111"), "mixed separators");
        assert_eq!(iban("DE89 3704 0044 0532 0130 00"), Some(27));
        assert_eq!(iban("GB29NWBK60161331926819"), Some(22));
        assert_eq!(iban("DE89 3704 0044 0532 0130 01"), None);
        assert!(ssn("123-45-6789"));
        assert!(!ssn("666-45-6789") && !ssn("123-00-6789") && !ssn("900-12-3456"));
    }

    #[test]
    fn placeholders_are_not_secrets() {
        assert!(looks_random("Zk3q9XvR2mT8wPbL7nYc4HdJ"));
        assert!(!looks_random("IOSFODNN7EXAMPLE"));
        assert!(!looks_random("xxxxxxxxxxxxxxxxxxxxxxxx"));
        assert!(!looks_random("abcdefghijklmnopqrstuvwx"));
        assert!(!looks_random("your-api-key-goes-here-ok"));
    }
}
