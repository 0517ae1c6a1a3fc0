//! The answer's JSON check. When a request asks for JSON — `response_format` on chat
//! completions, `text.format` on Responses, `output_config.format` (or the beta
//! `output_format`) on messages — or its route sets `guard.output_schema`, the answer's text
//! must be JSON, matching the schema when there is one. The attempts loop runs the check on
//! every whole answer, so an invalid one is retried on another deployment or falls back like a
//! failure (`guard.on_invalid`); the caller never receives it as if it were valid. A streamed
//! request that is checked is held: sent upstream whole, checked, then written to the client
//! as a stream.

use std::sync::Arc;

use serde_json::Value;
use sluice_config::{GuardAction, OnInvalid};
use sluice_providers::chat::Part;
use sluice_providers::{Endpoint, InboundRequest, Wire, translate};

use crate::error::{ErrorKind, GatewayError};
use crate::flow::Reply;
use crate::guard::{GuardReport, Guards};

/// What the answer's text must be.
#[derive(Debug, Clone)]
enum Expect {
    /// A JSON object (`json_object` mode).
    Object,
    /// JSON matching this schema.
    Schema(Arc<jsonschema::Validator>),
}

/// One request's JSON check of its answers.
#[derive(Debug, Clone)]
pub struct OutputCheck {
    expect: Expect,
    pub on_invalid: OnInvalid,
    report: GuardReport,
}

/// The rule name invalid answers are reported under.
pub const RULE: &str = "guard/output_schema";

impl OutputCheck {
    /// The check a request's answers get, if any: the route's schema, else what the request
    /// asks for. A schema in the request that does not compile is the caller's mistake.
    pub fn of(
        g: &Guards,
        endpoint: Endpoint,
        body: &Value,
        report: &GuardReport,
    ) -> Result<Option<OutputCheck>, GatewayError> {
        // Only a chat-shaped answer has a text to check (a completion's or an embedding's has
        // none in this sense).
        let chat = matches!(
            endpoint,
            Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::Responses
        );
        if g.on_invalid == OnInvalid::Pass || !chat {
            return Ok(None);
        }
        let expect = match &g.output_schema {
            Some(v) => Expect::Schema(v.clone()),
            None => match asked(endpoint, body) {
                None => return Ok(None),
                Some(Asked::Object) => Expect::Object,
                Some(Asked::Schema(schema, at)) => match jsonschema::validator_for(schema) {
                    Ok(v) => Expect::Schema(Arc::new(v)),
                    Err(e) => {
                        return Err(GatewayError::bad_request(
                            "invalid_response_format",
                            format!("The requested JSON Schema does not compile: {e}"),
                        )
                        .with_param(at));
                    }
                },
            },
        };
        Ok(Some(OutputCheck {
            expect,
            on_invalid: g.on_invalid,
            report: report.clone(),
        }))
    }

    /// Whether a whole answer (in `wire`, as the client gets it) passes. An answer that calls
    /// tools instead of writing text has nothing to check. The reason names where the answer
    /// went wrong, never its text.
    pub fn verify(&self, wire: Wire, body: &[u8]) -> Result<(), String> {
        let answer = translate::read_response(wire, body).map_err(|_| "the answer could not be read".to_owned())?;
        let mut text = String::new();
        let mut tools = false;
        for p in &answer.content {
            match p {
                Part::Text(t) => text.push_str(t),
                Part::ToolUse { .. } => tools = true,
                _ => {}
            }
        }
        if tools && text.trim().is_empty() {
            return Ok(());
        }
        let value: Value = serde_json::from_str(text.trim()).map_err(|e| format!("the answer is not JSON ({e})"))?;
        match &self.expect {
            Expect::Object if !value.is_object() => Err("the answer is not a JSON object".to_owned()),
            Expect::Object => Ok(()),
            Expect::Schema(v) => match v.iter_errors(&value).next() {
                None => Ok(()),
                Some(e) => Err(format!(
                    "the answer does not match the schema at '{}' (rule '{}')",
                    e.instance_path(),
                    e.schema_path()
                )),
            },
        }
    }

    /// An answer that failed: counted, and the error its attempt ends with (the attempts loop
    /// gives it its `Failure::InvalidOutput`).
    pub fn failed(&self, why: &str) -> GatewayError {
        self.report.invalid();
        GatewayError::new(
            ErrorKind::UpstreamRejected,
            "invalid_output",
            format!("The model's answer failed its JSON check: {why}."),
        )
    }

    /// The request ends with an invalid answer: the rule fired as a block.
    pub fn refused(&self) {
        self.report.fire(RULE, GuardAction::Block, "output");
    }
}

/// A streamed request whose answer is held until it is complete (a JSON check or an output
/// hook cannot decide on a window): the request as the upstreams get it — the same, not
/// streamed — and what reports the hold.
#[derive(Debug)]
pub struct Held {
    request: InboundRequest,
    report: Option<GuardReport>,
}

impl Held {
    /// The hold of a request whose answer must be whole (`hold`), when it streams.
    pub fn of(
        inbound: &InboundRequest,
        hold: bool,
        report: Option<&GuardReport>,
    ) -> Result<Option<Held>, GatewayError> {
        if !(hold && inbound.view.stream) {
            return Ok(None);
        }
        Ok(Some(Held {
            request: whole_request(inbound)?,
            report: report.cloned(),
        }))
    }

    /// The request to send upstream: the held one's, else the client's.
    pub fn request<'a>(held: &'a Option<Held>, inbound: &'a InboundRequest) -> &'a InboundRequest {
        held.as_ref().map_or(inbound, |h| &h.request)
    }

    /// The reply as the client asked for it: a held answer written as its stream.
    pub fn reply(held: Option<Held>, reply: Reply, inbound: &InboundRequest) -> Result<Reply, GatewayError> {
        match held {
            Some(h) => as_stream(reply, inbound, h.report.as_ref()),
            None => Ok(reply),
        }
    }
}

/// The request to send upstream for a streamed request whose answer is checked: the same,
/// not streamed (its answer is checked whole, then written to the client as a stream).
fn whole_request(inbound: &InboundRequest) -> Result<InboundRequest, GatewayError> {
    let mut body: Value = serde_json::from_slice(&inbound.body).map_err(|e| GatewayError::internal(e.to_string()))?;
    if let Some(o) = body.as_object_mut() {
        o.insert("stream".to_owned(), Value::Bool(false));
        o.remove("stream_options");
    }
    let bytes = serde_json::to_vec(&body).map_err(|e| GatewayError::internal(e.to_string()))?;
    let mut whole = InboundRequest::parse(inbound.endpoint, bytes.into())?;
    whole.headers = inbound.headers.clone();
    Ok(whole)
}

/// A held answer (checked whole) as the stream its client asked for, in its format. Other
/// replies — an error passed on, a fixed or stored answer — are already what the client gets.
fn as_stream(reply: Reply, inbound: &InboundRequest, report: Option<&GuardReport>) -> Result<Reply, GatewayError> {
    let (status, body) = match reply {
        Reply::Json { status, body, .. } if status.is_success() => (status, body),
        other => return Ok(other),
    };
    let wire = inbound.endpoint.wire();
    let answer = translate::read_response(wire, &body).map_err(|e| {
        GatewayError::new(
            ErrorKind::UpstreamRejected,
            "upstream_malformed_response",
            e.to_string(),
        )
    })?;
    if let Some(r) = report {
        r.held_whole(body.len());
    }
    Ok(Reply::Json {
        status,
        content_type: Some(http::HeaderValue::from_static("text/event-stream")),
        body: translate::write_stream(wire, &answer, inbound.view.include_usage),
    })
}

/// What a request asks its answer to be.
enum Asked<'a> {
    Object,
    /// The schema, and where it is in the request (for an error's `param`).
    Schema(&'a Value, &'static str),
}

fn asked(endpoint: Endpoint, body: &Value) -> Option<Asked<'_>> {
    let (format, schema, at) = match endpoint {
        Endpoint::ChatCompletions => {
            let f = body.get("response_format")?;
            (
                f,
                f.pointer("/json_schema/schema"),
                "response_format.json_schema.schema",
            )
        }
        Endpoint::Responses => {
            let f = body.pointer("/text/format")?;
            (f, f.get("schema"), "text.format.schema")
        }
        Endpoint::Messages => {
            let (f, at) = match body.pointer("/output_config/format") {
                Some(f) => (f, "output_config.format.schema"),
                None => (body.get("output_format")?, "output_format.schema"),
            };
            (f, f.get("schema"), at)
        }
        _ => return None,
    };
    match format.get("type").and_then(Value::as_str)? {
        "json_object" => Some(Asked::Object),
        // A JSON Schema request without a schema still asks for JSON.
        "json_schema" => Some(schema.map_or(Asked::Object, |s| Asked::Schema(s, at))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn guards(schema: Option<Value>, on_invalid: OnInvalid) -> Arc<Guards> {
        let g = sluice_config::RouteGuard {
            output_schema: schema,
            on_invalid,
            ..Default::default()
        };
        Guards::build(Some(&g), "r", "v", None).unwrap()
    }

    fn chat(text: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "id": "x", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        }))
        .unwrap()
    }

    #[test]
    fn the_request_says_what_its_answer_must_be() {
        let g = guards(None, OnInvalid::Retry);
        let r = GuardReport::default();
        let of = |e, b: Value| OutputCheck::of(&g, e, &b, &r).unwrap();
        assert!(of(Endpoint::ChatCompletions, json!({"messages": []})).is_none());
        assert!(of(Endpoint::ChatCompletions, json!({"response_format": {"type": "text"}})).is_none());
        let object = of(
            Endpoint::ChatCompletions,
            json!({"response_format": {"type": "json_object"}}),
        )
        .unwrap();
        assert!(object.verify(Wire::OpenAi, &chat(r#" {"a": 1} "#)).is_ok());
        assert!(object.verify(Wire::OpenAi, &chat("[1, 2]")).is_err());
        assert!(object.verify(Wire::OpenAi, &chat("Sure! {\"a\": 1}")).is_err());
        let schema =
            json!({"type": "object", "properties": {"n": {"type": "integer", "maximum": 10}}, "required": ["n"]});
        let strict = of(
            Endpoint::ChatCompletions,
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": schema}}}),
        )
        .unwrap();
        assert!(strict.verify(Wire::OpenAi, &chat(r#"{"n": 3}"#)).is_ok());
        let why = strict.verify(Wire::OpenAi, &chat(r#"{"n": 11}"#)).unwrap_err();
        assert!(why.contains("/n") && !why.contains("11"), "{why}");
        assert!(strict.verify(Wire::OpenAi, &chat(r#"{"m": 3}"#)).is_err());
        for (e, b) in [
            (
                Endpoint::Responses,
                json!({"text": {"format": {"type": "json_schema", "schema": schema}}}),
            ),
            (
                Endpoint::Messages,
                json!({"output_config": {"format": {"type": "json_schema", "schema": schema}}}),
            ),
            (
                Endpoint::Messages,
                json!({"output_format": {"type": "json_schema", "schema": schema}}),
            ),
        ] {
            assert!(matches!(of(e, b).unwrap().expect, Expect::Schema(_)));
        }
        let bad = OutputCheck::of(
            &g,
            Endpoint::ChatCompletions,
            &json!({"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": 12}}}}),
            &r,
        )
        .unwrap_err();
        assert_eq!(bad.code, "invalid_response_format");
    }

    #[test]
    fn the_route_schema_comes_first_and_pass_checks_nothing() {
        let route = json!({"type": "object", "required": ["route"]});
        let g = guards(Some(route), OnInvalid::Fallback);
        let r = GuardReport::default();
        let c = OutputCheck::of(&g, Endpoint::ChatCompletions, &json!({}), &r)
            .unwrap()
            .unwrap();
        for other in [Endpoint::Embeddings, Endpoint::Completions, Endpoint::Predict] {
            assert!(
                OutputCheck::of(&g, other, &json!({}), &r).unwrap().is_none(),
                "{other:?}"
            );
        }
        assert!(c.verify(Wire::OpenAi, &chat(r#"{"route": 1}"#)).is_ok());
        assert!(c.verify(Wire::OpenAi, &chat(r#"{"other": 1}"#)).is_err());
        assert_eq!(c.on_invalid, OnInvalid::Fallback);
        assert_eq!(c.failed("x").code, "invalid_output");
        assert_eq!(r.read().invalid, 1);
        let off = guards(None, OnInvalid::Pass);
        let asks = json!({"response_format": {"type": "json_object"}});
        assert!(
            OutputCheck::of(&off, Endpoint::ChatCompletions, &asks, &r)
                .unwrap()
                .is_none()
        );
    }
}
