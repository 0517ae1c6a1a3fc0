//! Reading an OpenAI chat request into the canonical request in one pass over its bytes: the
//! members as they come, the messages into borrowed fields (their text copied once), JSON trees
//! only for the rarer shapes (content parts, tool calls, tools, parameters with no canonical
//! home). A request that is not JSON is refused as such even when a member before the fault
//! was already wrong, as a reader of the whole tree would: a member's fault is kept, the rest
//! still read, and it is returned only once the body read as JSON.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::Deserializer as _;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::request::{invalid, member, no_role, push, read_content, text_of, tool_calls};
use crate::chat::{ChatRequest, Part, Role};
use crate::error::RequestError;
use crate::lenient::{Key, Text};

/// Reads an OpenAI chat request.
pub fn request_to_chat(body: &[u8]) -> Result<ChatRequest, RequestError> {
    let mut req = ChatRequest::default();
    let mut fault = None;
    let mut de = serde_json::Deserializer::from_slice(body);
    let read = de
        .deserialize_map(Top {
            req: &mut req,
            fault: &mut fault,
        })
        .and_then(|()| de.end());
    match (read, fault) {
        (Err(e), _) => Err(RequestError::InvalidJson { detail: e.to_string() }),
        (Ok(()), Some(fault)) => Err(fault),
        (Ok(()), None) => Ok(req),
    }
}

/// The request's members, into `req`; the first fault kept in `fault`.
struct Top<'r> {
    req: &'r mut ChatRequest,
    fault: &'r mut Option<RequestError>,
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if self.fault.is_some() {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let done = match key.as_ref() {
                "messages" => {
                    // A member given twice keeps its last value.
                    self.req.system.clear();
                    self.req.messages.clear();
                    map.next_value_seed(Messages(self.req))?
                }
                "model" => {
                    let model: Text<'de> = map.next_value()?;
                    self.req.model = model.0.map(Cow::into_owned).unwrap_or_default();
                    Ok(())
                }
                _ => {
                    let value: Value = map.next_value()?;
                    self.req.extra.retain(|(k, _)| *k != key);
                    member(self.req, &key, value)
                }
            };
            if let Err(e) = done {
                *self.fault = Some(e);
            }
        }
        Ok(())
    }
}

/// The `messages` member: each message read as it comes, into `req`. A value that is not an
/// array, or an element that is not an object, is the request's fault (not the JSON's).
struct Messages<'r>(&'r mut ChatRequest);

impl<'de> DeserializeSeed<'de> for Messages<'_> {
    type Value = Result<(), RequestError>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Messages<'_> {
    type Value = Result<(), RequestError>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of messages")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut fault = None;
        while let Some(m) = seq.next_element::<Shape<WireMessage<'de>>>()? {
            if fault.is_some() {
                continue;
            }
            let read = match m {
                Shape::Object(m) => message(m, self.0),
                Shape::Other => Err(no_role()),
            };
            fault = read.err();
        }
        Ok(fault.map_or(Ok(()), Err))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        IgnoredAny::deserialize(MapAccessDeserializer::new(map))?;
        Ok(Err(not_a_list()))
    }
    crate::lenient::scalars_as!(Err(not_a_list()));
}

fn not_a_list() -> RequestError {
    invalid("messages", "an array")
}

/// One message's members the canonical request takes (the rest skipped unread).
#[derive(Deserialize)]
struct WireMessage<'a> {
    #[serde(borrow, default)]
    role: Option<Text<'a>>,
    #[serde(borrow, default)]
    content: Option<Content<'a>>,
    #[serde(default)]
    tool_calls: Option<Value>,
    #[serde(borrow, default)]
    tool_call_id: Option<Text<'a>>,
}

/// A message into the canonical request (as the tree reader does).
fn message(m: WireMessage<'_>, req: &mut ChatRequest) -> Result<(), RequestError> {
    match m.role.and_then(|r| r.0).as_deref().unwrap_or("") {
        "system" | "developer" => req.system.push(match m.content {
            Some(Content::Text(t)) => t.into_owned(),
            Some(Content::Other(v)) => text_of(Some(&v)),
            None => String::new(),
        }),
        "user" => push(req, Role::User, parts(m.content)?),
        "assistant" => {
            let mut content = parts(m.content)?;
            if let Some(calls) = &m.tool_calls {
                tool_calls(calls, &mut content);
            }
            push(req, Role::Assistant, content);
        }
        "tool" => {
            let result = Part::ToolResult {
                tool_use_id: m.tool_call_id.and_then(|t| t.0).unwrap_or_default().into_owned(),
                content: parts(m.content)?,
                is_error: false,
            };
            push(req, Role::User, vec![result]);
        }
        _ => return Err(no_role()),
    }
    Ok(())
}

/// A message's content as parts: a string as one text part (none when empty), anything else
/// through the tree reader.
fn parts(content: Option<Content<'_>>) -> Result<Vec<Part>, RequestError> {
    match content {
        Some(Content::Text(t)) if t.is_empty() => Ok(Vec::new()),
        Some(Content::Text(t)) => Ok(vec![Part::Text(t.into_owned())]),
        Some(Content::Other(v)) => read_content(Some(&v)),
        None => read_content(None),
    }
}

/// Message content: a string borrowed from the body (unless it has escapes), or any other
/// value as a tree (`null` included).
enum Content<'a> {
    Text(Cow<'a, str>),
    Other(Value),
}

impl<'de: 'a, 'a> Deserialize<'de> for Content<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ContentVisitor)
    }
}

struct ContentVisitor;

impl<'de> Visitor<'de> for ContentVisitor {
    type Value = Content<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("message content")
    }
    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Content::Text(Cow::Borrowed(v)))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Content::Text(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Content::Text(Cow::Owned(v)))
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Content::Other(Value::Bool(v)))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Content::Other(v.into()))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Content::Other(v.into()))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Content::Other(v.into()))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(Content::Other(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Value::deserialize(SeqAccessDeserializer::new(seq)).map(Content::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Value::deserialize(MapAccessDeserializer::new(map)).map(Content::Other)
    }
}

/// An array's element: an object read as `T`, or anything else skipped.
enum Shape<T> {
    Object(T),
    Other,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Shape<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ShapeVisitor(std::marker::PhantomData))
    }
}

struct ShapeVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ShapeVisitor<T> {
    type Value = Shape<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(Shape::Object)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        IgnoredAny::deserialize(SeqAccessDeserializer::new(seq))?;
        Ok(Shape::Other)
    }
    crate::lenient::scalars_as!(Shape::Other);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::chat::Image;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn every_message_shape_reads_into_the_canonical_request() {
        let body = br#"{"model":"m","model":"m2","temperature":0.5,"n":1,"seed":7,"stream":true,
            "stream_options":{"include_usage":true},"messages":[
            {"role":"developer","content":"Be brief."},
            {"role":"system","content":[{"type":"text","text":"Use \"metric\" units."}]},
            {"role":"user","content":"line\none","name":"ann"},
            {"role":"user","content":[{"type":"text","text":"and"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]},
            {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},
            {"role":"tool","tool_call_id":"c1","content":"42"},
            {"role":"assistant","content":""}]}"#;
        let r = request_to_chat(body).unwrap();
        assert_eq!(r.model, "m2", "a member given twice keeps its last value");
        assert_eq!((r.temperature, r.stream, r.include_usage), (Some(0.5), true, true));
        assert_eq!(r.extra, vec![("seed".to_owned(), json!(7))]);
        assert_eq!(
            r.system,
            vec!["Be brief.".to_owned(), "Use \"metric\" units.".to_owned()]
        );
        assert_eq!(r.messages.len(), 5, "{:?}", r.messages);
        assert!(r.messages[4].content.is_empty());
        assert_eq!(r.messages[0].content, vec![Part::Text("line\none".into())]);
        assert_eq!(
            r.messages[1].content,
            vec![
                Part::Text("and".into()),
                Part::Image(Image::Base64 {
                    media_type: "image/png".into(),
                    data: "AAAA".into()
                })
            ]
        );
        assert!(matches!(&r.messages[2].content[0], Part::ToolUse { id, input, .. } if id == "c1" && input["a"] == 1));
        assert!(
            matches!(&r.messages[3].content[0], Part::ToolResult { tool_use_id, content, .. } if tool_use_id == "c1" && content == &vec![Part::Text("42".into())])
        );
    }

    #[test]
    fn malformed_messages_are_refused_with_what_is_wrong() {
        let refused = |body: &str| request_to_chat(body.as_bytes()).unwrap_err();
        assert!(matches!(
            refused(r#"{"messages":{"role":"user"}}"#),
            RequestError::InvalidType { param: "messages", .. }
        ));
        assert!(matches!(
            refused(r#"{"messages":[1]}"#),
            RequestError::InvalidValue { param: "messages", .. }
        ));
        assert!(matches!(
            refused(r#"{"messages":[{"role":"robot","content":"x"}]}"#),
            RequestError::InvalidValue { param: "messages", .. }
        ));
        assert!(matches!(
            refused(r#"{"messages":[{"role":"user","content":5}]}"#),
            RequestError::InvalidType { param: "content", .. }
        ));
        assert!(matches!(refused(r#"[1,2]"#), RequestError::InvalidJson { .. }));
        assert!(matches!(refused(r#"{"messages":[}"#), RequestError::InvalidJson { .. }));
    }

    /// The reference: the whole body read as a tree first, then each member from it.
    fn reference(body: &[u8]) -> Result<ChatRequest, RequestError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| RequestError::InvalidJson { detail: e.to_string() })?;
        let Value::Object(map) = value else {
            return Err(RequestError::InvalidJson {
                detail: "not an object".into(),
            });
        };
        let mut req = ChatRequest::default();
        for (k, v) in map {
            if k == "messages" {
                super::super::request::read_messages(&v, &mut req)?;
            } else {
                member(&mut req, &k, v)?;
            }
        }
        Ok(req)
    }

    fn content() -> impl Strategy<Value = Value> {
        prop_oneof![
            4 => "[a-zA-Z \"\\\\\n\u{e9}\u{1F600}]{0,12}".prop_map(Value::from),
            1 => Just(Value::Null),
            1 => Just(json!(5)),
            1 => "[a-z ]{0,6}".prop_map(|t| json!([{"type": "text", "text": t}])),
            1 => Just(json!([{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}])),
            1 => Just(json!([{"type": "audio"}])),
        ]
    }

    fn message() -> impl Strategy<Value = Value> {
        let role = prop_oneof![
            Just(json!("system")),
            Just(json!("developer")),
            Just(json!("user")),
            Just(json!("assistant")),
            Just(json!("tool")),
            Just(json!("robot")),
            Just(json!(7)),
        ];
        let calls = json!([{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]);
        let object = (
            role,
            proptest::option::of(content()),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(move |(role, content, with_calls, with_id, named)| {
                let mut m = json!({"role": role});
                if let Some(c) = content {
                    m["content"] = c;
                }
                if with_calls {
                    m["tool_calls"] = calls.clone();
                }
                if with_id {
                    m["tool_call_id"] = json!("c1");
                }
                if named {
                    m["name"] = json!("ann");
                }
                m
            });
        prop_oneof![12 => object, 1 => Just(json!(1)), 1 => Just(json!("user"))]
    }

    fn request() -> impl Strategy<Value = Value> {
        let number = prop_oneof![
            Just(json!(0)),
            Just(json!(1)),
            Just(json!(0.5)),
            Just(json!(-3)),
            Just(json!(null)),
            Just(json!("2")),
            Just(json!(16))
        ];
        let messages = prop_oneof![
            8 => proptest::collection::vec(message(), 0..6).prop_map(Value::from),
            1 => Just(json!({"role": "user"})),
            1 => Just(json!(null)),
        ];
        let members = proptest::collection::vec(
            (
                prop_oneof![
                    Just("model"),
                    Just("temperature"),
                    Just("top_p"),
                    Just("max_tokens"),
                    Just("max_completion_tokens"),
                    Just("n"),
                    Just("seed"),
                    Just("stream"),
                    Just("stop"),
                    Just("user"),
                    Just("metadata"),
                    Just("presence_penalty"),
                    Just("logprobs"),
                    Just("response_format"),
                ],
                prop_oneof![
                    number.clone(),
                    Just(json!("m")),
                    Just(json!(["a", 1])),
                    Just(json!(true)),
                    Just(json!({"type": "json_object"}))
                ],
            ),
            0..6,
        );
        (messages, members).prop_map(|(messages, members)| {
            let mut r = json!({"messages": messages});
            for (k, v) in members {
                r[k] = v;
            }
            r
        })
    }

    fn sorted(mut r: ChatRequest) -> ChatRequest {
        r.extra.sort_by(|a, b| a.0.cmp(&b.0));
        r
    }

    proptest::proptest! {
        #[test]
        fn one_pass_reads_what_the_tree_reader_reads(req in request(), cut in 0usize..400) {
            let body = serde_json::to_vec(&req).unwrap();
            match (request_to_chat(&body), reference(&body)) {
                (Ok(a), Ok(b)) => proptest::prop_assert_eq!(sorted(a), sorted(b)),
                (a, b) => proptest::prop_assert_eq!(a.is_ok(), b.is_ok(), "{:?} / {:?}", a, b),
            }
            // Cut short, it is not JSON, whatever a member before the cut held.
            let cut = &body[..cut.min(body.len().saturating_sub(1))];
            let not_json = matches!(request_to_chat(cut), Err(RequestError::InvalidJson { .. }));
            proptest::prop_assert!(not_json);
        }
    }
}
