//! The most common OpenAI chat request — text turns and the usual sampling parameters — read
//! without copying, for what only needs to look at it (the cache's key). Anything beyond that
//! shape (tools, content parts, other parameters, a member given twice, a malformed one) is
//! refused with `None`, and the full reader ([`super::request_to_chat`]) takes the request:
//! what is read here is always what the full reader reads (a property test holds them to it).

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::chat::Role;
use crate::lenient::Key;

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
        let mut de = serde_json::Deserializer::from_slice(body);
        let plain = serde::Deserializer::deserialize_map(&mut de, Top).ok()??;
        de.end().ok()?;
        Some(plain)
    }
}

/// Members that never change the canonical request, whatever their value.
const PASSED: &[&str] = &["stream", "stream_options", "user", "metadata", "store", "service_tier"];

/// The other members a plain request may have (each at most once: one given twice is not
/// plain).
const READ: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "n",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
];

/// A member's bit among those a plain request may have (none for any other).
fn bit(key: &str) -> u32 {
    READ.iter().chain(PASSED).position(|m| *m == key).map_or(0, |i| 1 << i)
}

struct Top;

impl<'de> Visitor<'de> for Top {
    type Value = Option<PlainChat<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut r = PlainChat::default();
        let mut plain = true;
        let mut seen = 0u32;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let bit = bit(&key);
            if !plain || seen & bit != 0 {
                plain = false;
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            plain = match key.as_ref() {
                "model" => {
                    r.model = map.next_value::<Scalar<'de>>()?.text().unwrap_or_default();
                    true
                }
                "messages" => match map.next_value::<Option<Turns<'de>>>()? {
                    Some(Turns(Some(t))) => {
                        r.system = t.system;
                        r.turns = t.turns;
                        true
                    }
                    _ => false,
                },
                "max_tokens" | "max_completion_tokens" => match map.next_value::<Scalar<'de>>()? {
                    Scalar::Null => true,
                    Scalar::Unsigned(n) => {
                        r.max_tokens = Some(n);
                        true
                    }
                    _ => false,
                },
                "temperature" | "top_p" => {
                    let value = map.next_value::<Scalar<'de>>()?;
                    let slot = if key == "temperature" {
                        &mut r.temperature
                    } else {
                        &mut r.top_p
                    };
                    *slot = value.number();
                    slot.is_some() || matches!(value, Scalar::Null)
                }
                "stop" => match map.next_value::<Stop<'de>>()? {
                    Stop(Some(stop)) => {
                        r.stop = stop;
                        true
                    }
                    Stop(None) => false,
                },
                // At their default (or null), these ask for nothing.
                "n" => matches!(map.next_value::<Scalar<'de>>()?, Scalar::Null | Scalar::Unsigned(1)),
                "presence_penalty" | "frequency_penalty" => {
                    let value = map.next_value::<Scalar<'de>>()?;
                    matches!(value, Scalar::Null) || value.number() == Some(0.0)
                }
                "logprobs" => matches!(map.next_value::<Scalar<'de>>()?, Scalar::Null | Scalar::Bool(false)),
                k if PASSED.contains(&k) => {
                    map.next_value::<IgnoredAny>()?;
                    true
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    false
                }
            };
            seen |= bit;
        }
        Ok(plain.then_some(r))
    }
}

/// A member's value when it is a scalar; `Other` for arrays and objects (skipped).
enum Scalar<'a> {
    Null,
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Text(Cow<'a, str>),
    Other,
}

impl<'a> Scalar<'a> {
    /// As the full reader takes a number (`as_f64`): any number, else none.
    fn number(&self) -> Option<f64> {
        match *self {
            Scalar::Unsigned(n) => Some(n as f64),
            Scalar::Signed(n) => Some(n as f64),
            Scalar::Float(x) => Some(x),
            _ => None,
        }
    }

    fn text(self) -> Option<Cow<'a, str>> {
        match self {
            Scalar::Text(t) => Some(t),
            _ => None,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::Unsigned(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Signed(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Text(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Text(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Text(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
}

/// `stop`: a string, an array of strings, or null; `None` for anything else.
struct Stop<'a>(Option<Vec<Cow<'a, str>>>);

impl<'de: 'a, 'a> Deserialize<'de> for Stop<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StopVisitor)
    }
}

struct StopVisitor;

impl<'de> Visitor<'de> for StopVisitor {
    type Value = Stop<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stop sequences")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Stop(Some(Vec::new())))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Stop(Some(vec![Cow::Borrowed(v)])))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Stop(Some(vec![Cow::Owned(v.to_owned())])))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        let mut plain = true;
        while let Some(s) = seq.next_element::<Scalar<'de>>()? {
            match s.text() {
                Some(t) => out.push(t),
                None => plain = false,
            }
        }
        Ok(Stop(plain.then_some(out)))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Stop(None))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Stop(None))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Stop(None))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Stop(None))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Stop(None))
    }
}

/// The messages, when each is a plain text turn.
struct Turns<'a>(Option<TurnList<'a>>);

#[derive(Default)]
struct TurnList<'a> {
    system: Vec<Cow<'a, str>>,
    turns: Vec<(Role, Cow<'a, str>)>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Turns<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TurnsVisitor)
    }
}

struct TurnsVisitor;

impl<'de> Visitor<'de> for TurnsVisitor {
    type Value = Turns<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("messages")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut list = TurnList::default();
        let mut plain = true;
        while let Some(m) = seq.next_element::<Option<Turn<'de>>>()? {
            let Some(Turn(Some((role, text)))) = m.filter(|_| plain) else {
                plain = false;
                continue;
            };
            match role {
                None => list.system.push(text),
                Some(role) => {
                    // An empty turn after an empty turn of the same role adds nothing (the full
                    // reader merges them).
                    let merged = text.is_empty() && list.turns.last().is_some_and(|(r, t)| *r == role && t.is_empty());
                    if !merged {
                        list.turns.push((role, text));
                    }
                }
            }
        }
        Ok(Turns(plain.then_some(list)))
    }
    crate::lenient::scalars_as!(Turns(None));
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Turns(None))
    }
}

/// One message: its role (`None` for system and developer) and text; `None` when it is not
/// a plain text turn.
struct Turn<'a>(Option<(Option<Role>, Cow<'a, str>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Turn<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TurnVisitor)
    }
}

struct TurnVisitor;

impl<'de> Visitor<'de> for TurnVisitor {
    type Value = Turn<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a message")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut role, mut content, mut plain) = (None, None, true);
        let (mut seen_role, mut seen_content) = (false, false);
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match key.as_ref() {
                "role" if !seen_role => {
                    seen_role = true;
                    role = map.next_value::<Scalar<'de>>()?.text();
                }
                "content" if !seen_content => {
                    seen_content = true;
                    content = match map.next_value::<Scalar<'de>>()? {
                        Scalar::Null => None,
                        Scalar::Text(t) => Some(t),
                        _ => {
                            plain = false;
                            None
                        }
                    };
                }
                "name" => {
                    map.next_value::<IgnoredAny>()?;
                }
                _ => {
                    plain = false;
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let role = match role.as_deref() {
            Some("system" | "developer") => None,
            Some("user") => Some(Role::User),
            Some("assistant") => Some(Role::Assistant),
            _ => return Ok(Turn(None)),
        };
        Ok(Turn(plain.then(|| (role, content.unwrap_or_default()))))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Turn(None))
    }
    crate::lenient::scalars_as!(Turn(None));
}
