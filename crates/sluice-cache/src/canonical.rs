//! The canonical form of a request body, for its cache key: object keys in order, numbers and
//! whitespace written one way, fields at their documented default left out (as if not given),
//! and the fields that never change the answer (`stream`, `stream_options`, `user`,
//! `metadata`, …) left out.

use std::io::Write;

use serde_json::{Number, Value};
use sluice_providers::chat::{ChatRequest, Image, Part, Role, ToolChoice};
use sluice_providers::openai_chat::PlainChat;

/// Top-level fields that never change the answer.
const IGNORED: &[&str] = &[
    "stream",
    "stream_options",
    "user",
    "metadata",
    "store",
    "safety_identifier",
    "prompt_cache_key",
    "request_id",
];

/// Top-level numbers at their documented default: giving one is the same request as leaving it out.
const NUMBER_DEFAULTS: &[(&str, f64)] = &[
    ("temperature", 1.0),
    ("top_p", 1.0),
    ("n", 1.0),
    ("presence_penalty", 0.0),
    ("frequency_penalty", 0.0),
];
const BOOL_DEFAULTS: &[(&str, bool)] = &[("logprobs", false), ("parallel_tool_calls", true)];

/// Integers up to this size are exact in an `f64`: `2.0` and `2` are the same number.
const EXACT: f64 = 9_007_199_254_740_992.0;

/// A request in canonical form, and what the cache decides from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Canonical {
    pub bytes: Vec<u8>,
    /// The request samples: `temperature` above 0, or none given (the default is 1).
    pub sampled: bool,
    /// How many answers it asks for (`n`, default 1).
    pub choices: u64,
}

/// The canonical form of a JSON request body (an object).
pub fn canonical(body: &[u8]) -> Result<Canonical, serde_json::Error> {
    Ok(of_value(serde_json::from_slice(body)?))
}

/// The canonical form of a request already read as JSON.
pub fn of_value(mut value: Value) -> Canonical {
    let mut sampled = true;
    let mut choices = 1;
    if let Value::Object(map) = &mut value {
        for name in IGNORED {
            map.remove(*name);
        }
        for (name, default) in NUMBER_DEFAULTS {
            if map.get(*name).and_then(Value::as_f64) == Some(*default) {
                map.remove(*name);
            }
        }
        for (name, default) in BOOL_DEFAULTS {
            if map.get(*name).and_then(Value::as_bool) == Some(*default) {
                map.remove(*name);
            }
        }
        if let Some(t) = map.get("temperature").and_then(Value::as_f64) {
            sampled = t > 0.0;
        }
        if let Some(n) = map.get("n").and_then(Value::as_u64) {
            choices = n;
        }
    }
    let mut bytes = Vec::with_capacity(256);
    write(&value, &mut bytes);
    Canonical {
        bytes,
        sampled,
        choices,
    }
}

/// The canonical form of a chat request from any front door, written straight from the
/// canonical request: one pass, no JSON tree. Each field is tagged and each string carries
/// its length, so two requests share a form only when they are the same request; the rules
/// are the JSON form's (ignored fields, documented defaults, object keys in order).
pub fn of_chat(req: &ChatRequest) -> Canonical {
    let mut f = Form(Vec::with_capacity(256));
    f.text(b'M', &req.model);
    f.texts(b'S', b's', req.system.iter().map(String::as_str));
    f.count(b'T', req.messages.len());
    for m in &req.messages {
        f.tag(match m.role {
            Role::User => b'u',
            Role::Assistant => b'a',
        });
        f.parts(&m.content);
    }
    if let Some(n) = req.max_tokens {
        f.number(b'x', n);
    }
    let temperature = req.temperature.filter(|&t| t != 1.0);
    if let Some(t) = temperature {
        f.float(b't', t);
    }
    if let Some(p) = req.top_p.filter(|&p| p != 1.0) {
        f.float(b'p', p);
    }
    if let Some(k) = req.top_k {
        f.number(b'k', k);
    }
    f.texts(b'O', b'o', req.stop.iter().map(String::as_str));
    f.count(b'L', req.tools.len());
    for t in &req.tools {
        f.text(b'l', &t.name);
        if let Some(d) = &t.description {
            f.text(b'd', d);
        }
        f.value(b'j', &t.parameters);
    }
    match &req.tool_choice {
        None => {}
        Some(ToolChoice::Auto) => f.tag(b'A'),
        Some(ToolChoice::None) => f.tag(b'N'),
        Some(ToolChoice::Required) => f.tag(b'R'),
        Some(ToolChoice::Tool(name)) => f.text(b'C', name),
    }
    if req.parallel_tool_calls == Some(false) {
        f.tag(b'P');
    }
    // The source format's other parameters, by name, less those that never change the answer
    // and those at their documented default.
    let mut extra: Vec<&(String, Value)> = req
        .extra
        .iter()
        .filter(|(name, value)| !IGNORED.contains(&name.as_str()) && !at_default(name, value))
        .collect();
    extra.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (name, value) in extra {
        f.text(b'e', name);
        f.value(b'=', value);
    }
    let choices = req
        .extra
        .iter()
        .find(|(name, _)| name == "n")
        .and_then(|(_, v)| v.as_u64())
        .unwrap_or(1);
    Canonical {
        bytes: f.0,
        sampled: req.temperature.is_none_or(|t| t > 0.0),
        choices,
    }
}

/// The canonical form of a plain OpenAI chat request read without copying (text turns and the
/// usual parameters): the same bytes [`of_chat`] writes for it once read in full, with no
/// request built in between.
pub fn of_plain_chat(req: &PlainChat<'_>) -> Canonical {
    let mut f = Form(Vec::with_capacity(256));
    f.text(b'M', &req.model);
    f.texts(b'S', b's', req.system.iter().map(AsRef::as_ref));
    f.count(b'T', req.turns.len());
    for (role, text) in &req.turns {
        f.tag(match role {
            Role::User => b'u',
            Role::Assistant => b'a',
        });
        // One text part, or none for an empty turn (as `Form::parts` writes them).
        f.count(b'[', usize::from(!text.is_empty()));
        if !text.is_empty() {
            f.text(b'x', text);
        }
    }
    if let Some(n) = req.max_tokens {
        f.number(b'x', n);
    }
    if let Some(t) = req.temperature.filter(|&t| t != 1.0) {
        f.float(b't', t);
    }
    if let Some(p) = req.top_p.filter(|&p| p != 1.0) {
        f.float(b'p', p);
    }
    f.texts(b'O', b'o', req.stop.iter().map(AsRef::as_ref));
    f.count(b'L', 0);
    Canonical {
        bytes: f.0,
        sampled: req.temperature.is_none_or(|t| t > 0.0),
        choices: 1,
    }
}

/// A parameter at its documented default: the same request as leaving it out.
fn at_default(name: &str, value: &Value) -> bool {
    NUMBER_DEFAULTS
        .iter()
        .any(|(n, d)| *n == name && value.as_f64() == Some(*d))
        || BOOL_DEFAULTS
            .iter()
            .any(|(n, d)| *n == name && value.as_bool() == Some(*d))
}

/// The chat form's writer: tagged fields, strings and lists with their lengths.
struct Form(Vec<u8>);

impl Form {
    fn tag(&mut self, t: u8) {
        self.0.push(t);
    }
    fn count(&mut self, t: u8, n: usize) {
        self.number(t, n as u64);
    }
    fn number(&mut self, t: u8, n: u64) {
        self.0.push(t);
        self.0.extend_from_slice(&n.to_le_bytes());
    }
    fn float(&mut self, t: u8, x: f64) {
        // `0.5` and `5e-1` read as one `f64`; -0 is 0.
        self.number(t, if x == 0.0 { 0 } else { x.to_bits() });
    }
    fn text(&mut self, t: u8, s: &str) {
        self.count(t, s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
    /// A list of texts: its length under `count`, then each under `item`.
    fn texts<'s>(&mut self, count: u8, item: u8, texts: impl ExactSizeIterator<Item = &'s str>) {
        self.count(count, texts.len());
        for s in texts {
            self.text(item, s);
        }
    }
    fn value(&mut self, t: u8, v: &Value) {
        self.0.push(t);
        let at = self.0.len();
        self.0.extend_from_slice(&[0; 8]);
        write(v, &mut self.0);
        let len = (self.0.len() - at - 8) as u64;
        self.0[at..at + 8].copy_from_slice(&len.to_le_bytes());
    }
    fn parts(&mut self, parts: &[Part]) {
        self.count(b'[', parts.len());
        for p in parts {
            match p {
                Part::Text(t) => self.text(b'x', t),
                Part::Image(Image::Url(u)) => self.text(b'i', u),
                Part::Image(Image::Base64 { media_type, data }) => {
                    self.text(b'b', media_type);
                    self.text(b'B', data);
                }
                Part::ToolUse { id, name, input } => {
                    self.text(b'c', id);
                    self.text(b'n', name);
                    self.value(b'v', input);
                }
                Part::ToolResult {
                    tool_use_id,
                    content,
                    is_error,
                } => {
                    self.text(b'r', tool_use_id);
                    self.tag(if *is_error { b'E' } else { b'K' });
                    self.parts(content);
                }
            }
        }
    }
}

fn write(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => number(n, out),
        // serde_json escapes a string one way only.
        Value::String(s) => {
            let _ = serde_json::to_writer(&mut *out, s);
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // Sorted here, whatever order the map keeps (`preserve_order` may be on).
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let _ = serde_json::to_writer(&mut *out, k);
                out.push(b':');
                if let Some(item) = map.get(k) {
                    write(item, out);
                }
            }
            out.push(b'}');
        }
    }
}

/// Integers as integers (`1.0` is `1`), other numbers in their shortest exact form.
fn number(n: &Number, out: &mut Vec<u8>) {
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(f) = n.as_f64() {
        if f.fract() == 0.0 && f.abs() < EXACT {
            let _ = write!(out, "{}", f as i64);
        } else {
            let _ = serde_json::to_writer(&mut *out, &f);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn c(s: &str) -> Canonical {
        canonical(s.as_bytes()).unwrap()
    }

    #[test]
    fn order_whitespace_numbers_defaults_and_ignored_fields_do_not_change_the_key() {
        let a = c(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.5,"max_tokens":16}"#);
        let b = c(
            r#"{ "max_tokens": 16.0, "temperature": 5e-1, "stream": true, "user": "u1",
                      "stream_options": {"include_usage": true}, "metadata": {"a": "b"}, "n": 1, "top_p": 1,
                      "messages": [ {"content": "hi", "role": "user"} ], "model": "m" }"#,
        );
        assert_eq!(
            String::from_utf8(a.bytes.clone()).unwrap(),
            String::from_utf8(b.bytes).unwrap()
        );
        assert_eq!(
            String::from_utf8(a.bytes).unwrap(),
            r#"{"max_tokens":16,"messages":[{"content":"hi","role":"user"}],"model":"m","temperature":0.5}"#
        );
    }

    #[test]
    fn what_changes_the_answer_changes_the_form() {
        let base = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        let others = [
            r#"{"model":"m","messages":[{"role":"user","content":"hi "}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":5}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"seed":9007199254740993}"#,
            r#"{"model":"m","messages":[{"role":"system","content":"hi"}]}"#,
            r#"{"model":"m2","messages":[{"role":"user","content":"hi"}]}"#,
        ];
        for o in others {
            assert_ne!(c(base).bytes, c(o).bytes, "{o}");
        }
    }

    #[test]
    fn sampling_and_choices_are_read() {
        assert!(
            c(r#"{"model":"m"}"#).sampled,
            "no temperature samples (the default is 1)"
        );
        assert!(c(r#"{"temperature":0.2}"#).sampled);
        assert!(!c(r#"{"temperature":0}"#).sampled);
        assert_eq!(c(r#"{"n":3}"#).choices, 3);
        assert_eq!(c(r#"{}"#).choices, 1);
        assert!(canonical(b"not json").is_err());
    }

    fn chat(wire: sluice_providers::Wire, body: &str) -> Canonical {
        of_chat(&sluice_providers::translate::read_request(wire, body.as_bytes()).unwrap())
    }

    #[test]
    fn a_chat_request_has_one_form_whatever_its_front_door_order_or_defaults() {
        use sluice_providers::Wire;
        let openai = chat(
            Wire::OpenAi,
            r#"{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}],"max_tokens":16,"temperature":0.5}"#,
        );
        let reordered = chat(
            Wire::OpenAi,
            r#"{ "temperature": 5e-1, "stream": true, "user": "u1", "stream_options": {"include_usage": true},
                 "n": 1, "top_p": 1, "presence_penalty": 0, "metadata": {"a": "b"}, "max_tokens": 16,
                 "messages": [{"content": "Be brief.", "role": "system"}, {"content": "hi", "role": "user"}], "model": "m" }"#,
        );
        let anthropic = chat(
            Wire::Anthropic,
            r#"{"model":"m","system":"Be brief.","messages":[{"role":"user","content":"hi"}],"max_tokens":16,"temperature":0.5}"#,
        );
        assert_eq!(openai, reordered);
        assert_eq!(openai, anthropic);
        assert!(openai.sampled);
        assert_eq!(openai.choices, 1);
    }

    #[test]
    fn what_changes_a_chat_answer_changes_its_form() {
        use sluice_providers::Wire;
        let base = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        let others = [
            r#"{"model":"m","messages":[{"role":"user","content":"hi "}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"h"},{"role":"user","content":"i"}]}"#,
            r#"{"model":"m","messages":[{"role":"assistant","content":"hi"}]}"#,
            r#"{"model":"m","messages":[{"role":"system","content":"hi"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":5}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"seed":1}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stop":["x"]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object"}}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"parallel_tool_calls":false}"#,
            r#"{"model":"m2","messages":[{"role":"user","content":"hi"}]}"#,
        ];
        let b = chat(Wire::OpenAi, base);
        let mut seen = vec![b.bytes.clone()];
        for o in others {
            let f = chat(Wire::OpenAi, o).bytes;
            assert!(!seen.contains(&f), "{o}");
            seen.push(f);
        }
        let zero = chat(Wire::OpenAi, r#"{"model":"m","messages":[],"temperature":0,"n":3}"#);
        assert!(!zero.sampled);
        assert_eq!(zero.choices, 3);
    }

    /// Requests mostly of the plain shape, with the variations that leave it.
    fn requests() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        use serde_json::json;
        let content = prop_oneof![
            6 => "[a-zA-Z ,\"\\\\\n\u{e9}]{0,10}".prop_map(Value::from),
            2 => Just(json!("")),
            1 => Just(Value::Null),
            1 => Just(json!([{"type": "text", "text": "hi"}])),
            1 => Just(json!(3)),
        ];
        let role = prop_oneof![
            4 => Just("user"),
            2 => Just("assistant"),
            2 => Just("system"),
            1 => Just("developer"),
            1 => Just("tool"),
            1 => Just("robot"),
        ];
        let message = (role, proptest::option::of(content), 0..8u8).prop_map(|(role, content, extra)| {
            let mut m = json!({"role": role});
            if let Some(c) = content {
                m["content"] = c;
            }
            match extra {
                0 => m["name"] = json!("ann"),
                1 => {
                    m["tool_calls"] =
                        json!([{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}])
                }
                2 => m["tool_call_id"] = json!("c"),
                _ => {}
            }
            m
        });
        let value = prop_oneof![
            Just(json!(null)),
            Just(json!(0)),
            Just(json!(1)),
            Just(json!(1.0)),
            Just(json!(0.5)),
            Just(json!(2)),
            Just(json!(-1)),
            Just(json!("x")),
            Just(json!(["a", "b"])),
            Just(json!(["a", 1])),
            Just(json!(true)),
            Just(json!(false)),
            Just(json!({"include_usage": true})),
        ];
        let name = prop_oneof![
            Just("model"),
            Just("max_tokens"),
            Just("max_completion_tokens"),
            Just("temperature"),
            Just("top_p"),
            Just("stop"),
            Just("n"),
            Just("presence_penalty"),
            Just("frequency_penalty"),
            Just("logprobs"),
            Just("stream"),
            Just("stream_options"),
            Just("user"),
            Just("metadata"),
            Just("seed"),
        ];
        (
            proptest::collection::vec(message, 0..5),
            proptest::collection::vec((name, value), 0..5),
        )
            .prop_map(|(messages, members)| {
                let mut r = json!({"model": "m", "messages": messages});
                for (k, v) in members {
                    r[k] = v;
                }
                r
            })
    }

    #[test]
    fn the_plain_form_is_found_for_the_usual_request() {
        let body = br#"{"model":"mock-gpt","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi \"there\"","name":"ann"}],"max_tokens":16,"temperature":0.2,"stream":false,"user":"u1"}"#;
        let plain = PlainChat::read(body).unwrap();
        let full = sluice_providers::openai_chat::request_to_chat(body).unwrap();
        assert_eq!(of_plain_chat(&plain), of_chat(&full));
        for other in [
            &br#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}"#[..],
            br#"{"model":"m","messages":[],"seed":1}"#,
            br#"{"model":"m","model":"m","messages":[]}"#,
            br#"{"model":"m","messages":[{"role":"tool","content":"x","tool_call_id":"c"}]}"#,
            br#"{"model":"m","messages":[]"#,
        ] {
            assert!(PlainChat::read(other).is_none(), "{}", String::from_utf8_lossy(other));
        }
    }

    /// What [`PlainChat::read`] should find in a request, read from its tree: the rules of a
    /// plain request written out once more, to hold the one-pass reader to them.
    fn reference(req: &Value) -> Option<PlainChat<'_>> {
        use std::borrow::Cow;
        fn text(v: &Value) -> Option<std::borrow::Cow<'_, str>> {
            v.as_str().map(std::borrow::Cow::from)
        }
        let mut r = PlainChat::default();
        for (name, v) in req.as_object()? {
            match name.as_str() {
                "model" => r.model = text(v)?,
                "messages" => {
                    for m in v.as_array()? {
                        let m = m.as_object()?;
                        if m.keys().any(|k| !["role", "content", "name"].contains(&k.as_str())) {
                            return None;
                        }
                        let content = match m.get("content") {
                            None | Some(Value::Null) => Cow::from(""),
                            Some(c) => text(c)?,
                        };
                        let role = match m.get("role")?.as_str()? {
                            "system" | "developer" => {
                                r.system.push(content);
                                continue;
                            }
                            "user" => Role::User,
                            "assistant" => Role::Assistant,
                            _ => return None,
                        };
                        let merged =
                            content.is_empty() && r.turns.last().is_some_and(|(r, t)| *r == role && t.is_empty());
                        if !merged {
                            r.turns.push((role, content));
                        }
                    }
                }
                "max_tokens" | "max_completion_tokens" if v.is_null() => {}
                "max_tokens" | "max_completion_tokens" => r.max_tokens = Some(v.as_u64()?),
                "temperature" if v.is_null() => {}
                "temperature" => r.temperature = Some(v.as_f64()?),
                "top_p" if v.is_null() => {}
                "top_p" => r.top_p = Some(v.as_f64()?),
                "stop" => {
                    r.stop = match v {
                        Value::Null => Vec::new(),
                        Value::Array(a) => a.iter().map(text).collect::<Option<_>>()?,
                        _ => vec![text(v)?],
                    }
                }
                "n" if v.is_null() || v.as_u64() == Some(1) => {}
                "presence_penalty" | "frequency_penalty" if v.is_null() || v.as_f64() == Some(0.0) => {}
                "logprobs" if v.is_null() || v == &Value::Bool(false) => {}
                "stream" | "stream_options" | "user" | "metadata" | "store" | "service_tier" => {}
                _ => return None,
            }
        }
        Some(r)
    }

    proptest::proptest! {
        #[test]
        fn a_plain_request_has_the_form_of_the_full_reading(req in requests()) {
            let body = serde_json::to_vec(&req).unwrap();
            // Found plain exactly when the rules say, however the body is spaced.
            proptest::prop_assert_eq!(PlainChat::read(&body), reference(&req));
            let pretty = serde_json::to_vec_pretty(&req).unwrap();
            proptest::prop_assert_eq!(PlainChat::read(&pretty), reference(&req));
            if let Some(plain) = PlainChat::read(&body) {
                let full = sluice_providers::openai_chat::request_to_chat(&body);
                proptest::prop_assert!(full.is_ok(), "{:?}", full);
                let full = of_chat(&full.unwrap());
                proptest::prop_assert_eq!(of_plain_chat(&plain), full);
            }
        }
    }
}
