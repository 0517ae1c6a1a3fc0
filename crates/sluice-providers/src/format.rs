//! Structured output across formats. A request's JSON format — OpenAI's `response_format`,
//! Responses' `text.format`, Anthropic's `output_config.format` (or the beta `output_format`) —
//! has no canonical field: the readers keep it among the request's extras under its own name,
//! and a translation carries it to the target's own field here. A target with no such field
//! (Gemini, Bedrock) leaves it to the route's param policy: refused, dropped or forwarded.

use serde_json::{Value, json};

use crate::chat::ChatRequest;

/// A format a JSON format can be carried to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carry {
    OpenAiChat,
    Anthropic,
}

/// What the request asks its answer to be.
#[derive(Debug, Clone, PartialEq)]
enum Format {
    /// A JSON object.
    Object,
    /// JSON matching a schema.
    Schema {
        name: String,
        schema: Value,
        strict: Option<bool>,
    },
}

/// The request's JSON format, if its source says one this reads, taken out of its extras and
/// written as `to`'s own field — which the adapter adds back after the param policy ran (it is
/// the target's own parameter, not one it cannot express).
pub fn carry(req: &mut ChatRequest, to: Carry) -> Option<(String, Value)> {
    let at = req.extra.iter().position(|(k, v)| read(k, v).is_some())?;
    let (key, value) = req.extra.remove(at);
    read(&key, &value).map(|f| write(f, to))
}

fn read(key: &str, value: &Value) -> Option<Format> {
    let (format, name, strict) = match key {
        "response_format" => {
            let s = value.get("json_schema");
            (value, s.and_then(|s| s.get("name")), s.and_then(|s| s.get("strict")))
        }
        "text" if value.as_object().is_some_and(|o| o.len() == 1) => {
            let f = value.get("format")?;
            (f, f.get("name"), f.get("strict"))
        }
        "output_config" if value.as_object().is_some_and(|o| o.len() == 1) => (value.get("format")?, None, None),
        "output_format" => (value, None, None),
        _ => return None,
    };
    let schema = match key {
        "response_format" => format.pointer("/json_schema/schema"),
        _ => format.get("schema"),
    };
    match format.get("type")?.as_str()? {
        "json_object" if key == "response_format" || key == "text" => Some(Format::Object),
        "json_schema" => Some(Format::Schema {
            name: name.and_then(Value::as_str).unwrap_or("output").to_owned(),
            schema: schema.cloned().unwrap_or_else(|| json!({"type": "object"})),
            strict: strict.and_then(Value::as_bool),
        }),
        _ => None,
    }
}

fn write(format: Format, to: Carry) -> (String, Value) {
    match (to, format) {
        (Carry::OpenAiChat, Format::Object) => ("response_format".into(), json!({"type": "json_object"})),
        (Carry::OpenAiChat, Format::Schema { name, schema, strict }) => {
            let mut s = json!({"name": name, "schema": schema});
            if let Some(strict) = strict {
                s["strict"] = json!(strict);
            }
            (
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": s}),
            )
        }
        // Anthropic has no bare JSON mode: an object is the schema that says so.
        (Carry::Anthropic, Format::Object) => (
            "output_config".into(),
            json!({"format": {"type": "json_schema", "schema": {"type": "object"}}}),
        ),
        (Carry::Anthropic, Format::Schema { schema, .. }) => (
            "output_config".into(),
            json!({"format": {"type": "json_schema", "schema": schema}}),
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn with(key: &str, value: Value) -> ChatRequest {
        ChatRequest {
            extra: vec![("seed".into(), json!(7)), (key.into(), value)],
            ..ChatRequest::default()
        }
    }

    fn carried(key: &str, value: Value, to: Carry) -> Vec<(String, Value)> {
        let mut r = with(key, value);
        let field = carry(&mut r, to);
        r.extra.extend(field);
        r.extra
    }

    #[test]
    fn each_front_doors_format_reaches_each_targets_field() {
        let schema = json!({"type": "object", "required": ["a"]});
        let openai = json!({"type": "json_schema", "json_schema": {"name": "a", "schema": schema, "strict": true}});
        assert_eq!(
            carried(
                "output_config",
                json!({"format": {"type": "json_schema", "schema": schema}}),
                Carry::OpenAiChat
            )[1],
            (
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": {"name": "output", "schema": schema}})
            )
        );
        assert_eq!(
            carried(
                "text",
                json!({"format": {"type": "json_schema", "name": "a", "schema": schema, "strict": true}}),
                Carry::OpenAiChat
            )[1],
            ("response_format".into(), openai.clone())
        );
        let anthropic = (
            "output_config".into(),
            json!({"format": {"type": "json_schema", "schema": schema}}),
        );
        assert_eq!(carried("response_format", openai, Carry::Anthropic)[1], anthropic);
        assert_eq!(
            carried(
                "output_format",
                json!({"type": "json_schema", "schema": schema}),
                Carry::Anthropic
            )[1],
            anthropic
        );
        assert_eq!(
            carried("response_format", json!({"type": "json_object"}), Carry::Anthropic)[1].1["format"]["schema"],
            json!({"type": "object"})
        );
    }

    #[test]
    fn what_it_cannot_read_stays_for_the_param_policy() {
        // `output_config` with more than a format, `text` with a verbosity, an unknown type.
        for (k, v) in [
            (
                "output_config",
                json!({"format": {"type": "json_schema", "schema": {}}, "effort": "high"}),
            ),
            ("text", json!({"format": {"type": "json_object"}, "verbosity": "low"})),
            ("response_format", json!({"type": "grammar"})),
        ] {
            assert_eq!(carried(k, v.clone(), Carry::Anthropic), with(k, v).extra);
        }
    }
}
