//! The most common OpenAI chat request — text turns and the usual sampling parameters — read
//! without copying, for what only needs to look at it (the cache's key). Anything beyond that
//! shape (tools, content parts, other parameters, a member given twice, a malformed one) is
//! refused with `None`, and the full reader ([`super::request_to_chat`]) takes the request:
//! what is read here is always what the full reader reads (a property test holds them to it).
//!
//! The body is scanned by hand in one pass, and the scan stops at the first thing that is not
//! plain: the strings are borrowed from the body unless they hold escapes, which `serde_json`
//! decodes, as it parses numbers and checks the members a plain request passes over.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::chat::Role;

/// A plain chat request, borrowed from its body.
#[derive(Debug, Default, PartialEq)]
pub struct PlainChat<'a> {
    pub model: Cow<'a, str>,
    /// The system and developer turns' text, in order.
    pub system: Vec<Cow<'a, str>>,
    /// The user and assistant turns, each its text (empty: no content).
    pub turns: Vec<(Role, Cow<'a, str>)>,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub stop: Vec<Cow<'a, str>>,
}

impl<'a> PlainChat<'a> {
    /// The request in `body`, when it is a plain one.
    pub fn read(body: &'a [u8]) -> Option<PlainChat<'a>> {
        let mut c = Cursor {
            text: std::str::from_utf8(body).ok()?,
            at: 0,
        };
        let mut r = PlainChat::default();
        let mut seen = 0u32;
        c.members(|c, key| {
            let (member, bit) = member(&key)?;
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            match member {
                Member::Model => r.model = c.string()?,
                Member::Messages => c.turns(&mut r)?,
                Member::MaxTokens => match c.value()? {
                    Scalar::Null => {}
                    Scalar::Number(n) => r.max_tokens = Some(unsigned(n)?),
                    _ => return None,
                },
                Member::Temperature | Member::TopP => {
                    let slot = if matches!(member, Member::Temperature) {
                        &mut r.temperature
                    } else {
                        &mut r.top_p
                    };
                    *slot = match c.value()? {
                        Scalar::Null => None,
                        Scalar::Number(n) => Some(number(n)?),
                        _ => return None,
                    };
                }
                Member::Stop => match c.value()? {
                    Scalar::Null => r.stop.clear(),
                    Scalar::Text(t) => r.stop = vec![t],
                    Scalar::Array => {
                        r.stop.clear();
                        c.elements(|c| {
                            r.stop.push(c.string()?);
                            Some(())
                        })?;
                    }
                    _ => return None,
                },
                // At their default (or null), these ask for nothing.
                Member::N => match c.value()? {
                    Scalar::Null | Scalar::Number("1") => {}
                    _ => return None,
                },
                Member::Penalty => match c.value()? {
                    Scalar::Null => {}
                    Scalar::Number(n) if number(n)? == 0.0 => {}
                    _ => return None,
                },
                Member::Logprobs => match c.value()? {
                    Scalar::Null | Scalar::Bool(false) => {}
                    _ => return None,
                },
                Member::Passed => c.skip()?,
            }
            Some(())
        })?;
        c.space();
        (c.at == c.text.len()).then_some(r)
    }
}

/// The members a plain request may have, each at most once (one given twice is not plain).
#[derive(Clone, Copy)]
enum Member {
    Model,
    Messages,
    MaxTokens,
    Temperature,
    TopP,
    Stop,
    N,
    Penalty,
    Logprobs,
    /// Never changes the canonical request, whatever its value.
    Passed,
}

/// A member by name, and its bit among those a plain request may have; `None` for any other.
fn member(key: &str) -> Option<(Member, u32)> {
    let (m, i) = match key {
        "model" => (Member::Model, 0),
        "messages" => (Member::Messages, 1),
        "max_tokens" => (Member::MaxTokens, 2),
        "max_completion_tokens" => (Member::MaxTokens, 3),
        "temperature" => (Member::Temperature, 4),
        "top_p" => (Member::TopP, 5),
        "stop" => (Member::Stop, 6),
        "n" => (Member::N, 7),
        "presence_penalty" => (Member::Penalty, 8),
        "frequency_penalty" => (Member::Penalty, 9),
        "logprobs" => (Member::Logprobs, 10),
        "stream" => (Member::Passed, 11),
        "stream_options" => (Member::Passed, 12),
        "user" => (Member::Passed, 13),
        "metadata" => (Member::Passed, 14),
        "store" => (Member::Passed, 15),
        "service_tier" => (Member::Passed, 16),
        _ => return None,
    };
    Some((m, 1 << i))
}

/// A number as an unsigned integer, as JSON writes one (`16`; not `16.0`, `-0` or `1e1`).
fn unsigned(n: &str) -> Option<u64> {
    if !n.bytes().all(|b| b.is_ascii_digit()) || (n.len() > 1 && n.starts_with('0')) {
        return None;
    }
    n.parse().ok()
}

/// Any JSON number, read as `serde_json` reads it.
fn number(n: &str) -> Option<f64> {
    n.parse::<serde_json::Number>().ok()?.as_f64()
}

/// How many bytes at the start of `bytes` a string holds as they are: up to its first quote,
/// backslash or control character. Eight bytes at a time: a word's bytes below 0x20, or equal
/// to `"` or `\\`, show as high bits (exact up to the first such byte, which is all that is used).
fn plain_run(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGHS;
    let mut n = 0;
    for chunk in bytes.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let stop = (w.wrapping_sub(ONES * 0x20) & !w & HIGHS)
            | zero(w ^ (ONES * u64::from(b'"')))
            | zero(w ^ (ONES * u64::from(b'\\')));
        if stop != 0 {
            return n + (stop.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    n + bytes[n..]
        .iter()
        .take_while(|&&b| b >= 0x20 && b != b'"' && b != b'\\')
        .count()
}

/// A value where a plain request has a scalar (an array is opened, not read).
#[derive(Debug, PartialEq)]
enum Scalar<'a> {
    Null,
    Bool(bool),
    /// The number as written (checked where it is read).
    Number(&'a str),
    Text(Cow<'a, str>),
    /// An array starts here: the cursor is on its `[`.
    Array,
}

/// A position in a JSON text.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    /// Skips JSON's whitespace (space, tab, line feed, carriage return).
    fn space(&mut self) {
        let bytes = self.text.as_bytes();
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte that is not whitespace (not taken).
    fn peek(&mut self) -> Option<u8> {
        self.space();
        self.text.as_bytes().get(self.at).copied()
    }

    /// Takes the next byte that is not whitespace.
    fn take(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.take()? == b).then_some(())
    }

    /// A string, borrowed unless it holds escapes.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.eat(b'"')?;
        let bytes = self.text.as_bytes();
        let start = self.at;
        let mut at = start;
        let mut escaped = false;
        let end = loop {
            at += plain_run(bytes.get(at..)?);
            match *bytes.get(at)? {
                b'"' => break at,
                b'\\' => {
                    escaped = true;
                    at += 2;
                }
                // A control character: JSON has none unescaped in a string.
                _ => return None,
            }
        };
        self.at = end + 1;
        let raw = self.text.get(start..end)?;
        if !escaped {
            return Some(Cow::Borrowed(raw));
        }
        serde_json::from_str::<String>(self.text.get(start - 1..=end)?)
            .ok()
            .map(Cow::Owned)
    }

    /// A scalar, or the start of an array; `None` for an object or anything malformed.
    fn value(&mut self) -> Option<Scalar<'a>> {
        match self.peek()? {
            b'"' => self.string().map(Scalar::Text),
            b'[' => Some(Scalar::Array),
            b'n' => self.word("null", Scalar::Null),
            b't' => self.word("true", Scalar::Bool(true)),
            b'f' => self.word("false", Scalar::Bool(false)),
            b'-' | b'0'..=b'9' => {
                let start = self.at;
                let len = self.text.as_bytes()[start..]
                    .iter()
                    .take_while(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .count();
                self.at += len;
                self.text.get(start..self.at).map(Scalar::Number)
            }
            _ => None,
        }
    }

    fn word(&mut self, word: &str, value: Scalar<'a>) -> Option<Scalar<'a>> {
        let rest = self.text.as_bytes().get(self.at..)?;
        let after = rest.get(word.len()).copied();
        if !rest.starts_with(word.as_bytes()) || after.is_some_and(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        self.at += word.len();
        Some(value)
    }

    /// Skips any one value, checked as `serde_json` checks it.
    fn skip(&mut self) -> Option<()> {
        let rest = self.text.get(self.at..)?;
        let raw = <&RawValue>::deserialize(&mut serde_json::Deserializer::from_str(rest)).ok()?;
        let raw = raw.get();
        self.at += raw.as_ptr() as usize - rest.as_ptr() as usize + raw.len();
        Some(())
    }

    /// An object's members, each read by `each` (the cursor on its value); `None` as soon as
    /// one is `None`.
    fn members(&mut self, mut each: impl FnMut(&mut Self, Cow<'a, str>) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            each(self, key)?;
            match self.take()? {
                b',' => {}
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    /// An array's elements, each read by `each`; `None` as soon as one is `None`.
    fn elements(&mut self, mut each: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        if self.peek()? == b']' {
            self.at += 1;
            return Some(());
        }
        loop {
            each(self)?;
            match self.take()? {
                b',' => {}
                b']' => return Some(()),
                _ => return None,
            }
        }
    }

    /// `messages`, when each is a plain text turn.
    fn turns(&mut self, r: &mut PlainChat<'a>) -> Option<()> {
        r.system.clear();
        r.turns.clear();
        self.elements(|c| {
            let (role, text) = c.turn()?;
            match role {
                None => r.system.push(text),
                Some(role) => {
                    // An empty turn after an empty turn of the same role adds nothing (the full
                    // reader merges them).
                    let merged = text.is_empty() && r.turns.last().is_some_and(|(r, t)| *r == role && t.is_empty());
                    if !merged {
                        r.turns.push((role, text));
                    }
                }
            }
            Some(())
        })
    }

    /// One message: its role (`None` for system and developer) and text, when it is a plain
    /// text turn.
    fn turn(&mut self) -> Option<(Option<Role>, Cow<'a, str>)> {
        let (mut role, mut content) = (None, None);
        self.members(|c, key| {
            match key.as_ref() {
                "role" if role.is_none() => role = Some(c.string()?),
                "content" if content.is_none() => {
                    content = Some(match c.value()? {
                        Scalar::Null => Cow::Borrowed(""),
                        Scalar::Text(t) => t,
                        _ => return None,
                    });
                }
                "name" => c.skip()?,
                _ => return None,
            }
            Some(())
        })?;
        let role = match role?.as_ref() {
            "system" | "developer" => None,
            "user" => Some(Role::User),
            "assistant" => Some(Role::Assistant),
            _ => return None,
        };
        Some((role, content.unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_plain_run_ends_at_the_first_quote_backslash_or_control_character() {
        for (text, want) in [
            (&b""[..], 0),
            (b"abc", 3),
            (b"abcdefgh", 8),
            (b"abcdefghij\"", 10),
            (b"abcdefg\"", 7),
            (b"ab\\cdefghijkl", 2),
            (b"abcdefghijklmn\x1f", 14),
            (b"\x7f\xc3\xa9\xff\"", 4),
            (b"abcdefgh!\"#$%&'()\"", 9),
        ] {
            assert_eq!(plain_run(text), want, "{}", String::from_utf8_lossy(text));
            let slow = text
                .iter()
                .take_while(|&&b| b >= 0x20 && b != b'"' && b != b'\\')
                .count();
            assert_eq!(slow, want);
        }
    }

    proptest::proptest! {
        /// The word-at-a-time run is the byte-at-a-time one, whatever the bytes.
        #[test]
        fn a_plain_run_is_read_as_byte_by_byte(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)) {
            let slow = bytes.iter().take_while(|&&b| b >= 0x20 && b != b'"' && b != b'\\').count();
            proptest::prop_assert_eq!(plain_run(&bytes), slow);
        }
    }

    #[test]
    fn strings_are_borrowed_unless_escaped_and_checked_as_json_checks_them() {
        let body = br#" { "model" : "m\u00e9" , "messages" : [ {"role":"user","content":"a\"b\\"} , {"role":"assistant","content":null} ] }
"#;
        let r = PlainChat::read(body).unwrap();
        assert_eq!(r.model, "m\u{e9}");
        assert_eq!(
            r.turns,
            vec![(Role::User, Cow::from("a\"b\\")), (Role::Assistant, Cow::from(""))]
        );
        let r = PlainChat::read(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        assert!(matches!(r.model, Cow::Borrowed(_)));
        assert!(matches!(r.turns[0].1, Cow::Borrowed(_)));
        for bad in [
            &b"{\"model\":\"a\nb\",\"messages\":[]}"[..],
            br#"{"model":"m","messages":[],}"#,
            br#"{"model":"m","messages":[]} x"#,
            br#"{"model":"m","messages":[],"max_tokens":016}"#,
            br#"{"model":"m","messages":[],"temperature":1.}"#,
            br#"{"model":"m","messages":[],"stream":tru}"#,
            br#"{"model":"m","messages":[],"logprobs":falsey}"#,
            br#"{"model":"m","messages":[],"max_tokens":-0}"#,
            br#"{"model":"m","messages":[],"n":1.0}"#,
            br#"{"model":"m","messages":[{"role":"user","content":"\x"}]}"#,
            br#"{"model":"m","messages":[{"role":"user","role":"user"}]}"#,
            br#"{"model":"m","messages":null}"#,
            br#"{"model":"m","messages":[null]}"#,
            br#"{"model":"m","messages":[{"content":"no role"}]}"#,
            b"{\"model\":\"m\",\"messages\":[]",
            b"",
        ] {
            assert_eq!(PlainChat::read(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        let r = PlainChat::read(
            br#"{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":[1,{"a":"}"}]},"max_tokens":16,"stop":"x","n":1,"presence_penalty":-0.0,"logprobs":null,"temperature":2e-1}"#,
        )
        .unwrap();
        assert_eq!(
            (r.max_tokens, r.temperature, r.stop),
            (Some(16), Some(0.2), vec![Cow::from("x")])
        );
    }
}
