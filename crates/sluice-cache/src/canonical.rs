//! The canonical form of a request body, for its cache key: object keys in order, numbers and
//! whitespace written one way, fields at their documented default left out (as if not given),
//! and the fields that never change the answer (`stream`, `stream_options`, `user`,
//! `metadata`, …) left out.

use std::io::Write;

use serde_json::{Number, Value};

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
}
