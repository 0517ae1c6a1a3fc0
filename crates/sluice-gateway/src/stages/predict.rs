//! Prediction routes: the caller's JSON checked against the route's request schema, reshaped
//! into the model server's input by a declarative template, and the server's answer checked
//! against the response schema and reshaped into the public answer — which exposes only what
//! the response template names.
//!
//! Templates are JSON (written as YAML in the config). A string `"$request.a.b[0]"` or
//! `"$response.outputs[0].data"` is replaced by the value at that path (`"$.x"` means
//! `"$request.x"`; `"$$…"` is a literal `$…`). An object with one `$` key is an operator:
//! `{"$zip": {name: array, …}}` → array of objects; `{"$sort": {"of": array, "by": field,
//! "desc": bool}}`; `{"$take": {"of": array, "n": count}}`; `{"$len": array}`. Everything else
//! is copied, with its parts evaluated.

use std::sync::Arc;

use serde_json::{Map, Value};
use sluice_config::PredictionConfig;

use bytes::Bytes;
use http::HeaderValue;
use sluice_providers::InboundRequest;

use crate::error::{ErrorKind, GatewayError};
use crate::flow::Flow;
use crate::flow::Upstream;
use crate::timing::Stage;

/// A prediction route's mapping stage: the caller's JSON checked and reshaped into the model
/// server's input on the way in, the server's answer checked and reshaped on the way out. Any
/// other route has the no-op stage.
#[derive(Debug)]
pub struct PredictStage {
    prediction: Option<Arc<Prediction>>,
}

/// What the way out needs: the route's contract and the caller's request (`None`: no mapping).
#[derive(Debug)]
pub struct Answering {
    mapping: Option<(Arc<Prediction>, Value)>,
}

static JSON: HeaderValue = HeaderValue::from_static("application/json");

impl PredictStage {
    pub fn new(config: Option<&PredictionConfig>) -> PredictStage {
        PredictStage {
            prediction: config.map(|c| Arc::new(Prediction::new(c))),
        }
    }

    /// The stage's timer, on a prediction route.
    pub fn timed(&self) -> Option<Stage> {
        self.prediction.as_ref().map(|_| Stage::Predict)
    }

    /// Checks the caller's request and replaces the body with the model server's input.
    pub fn run(&self, mut inbound: InboundRequest) -> Result<Flow<(InboundRequest, Answering)>, GatewayError> {
        let Some(p) = &self.prediction else {
            return Ok(Flow::Next((inbound, Answering { mapping: None })));
        };
        let (request, upstream_body) = p.request(&inbound.body)?;
        inbound.body = Bytes::from(upstream_body);
        let answering = Answering {
            mapping: Some((p.clone(), request)),
        };
        Ok(Flow::Next((inbound, answering)))
    }
}

impl Answering {
    /// The model server's answer as the public answer (a whole answer; streams pass).
    pub fn answer(&self, upstream: Upstream) -> Result<Upstream, GatewayError> {
        match (&self.mapping, upstream) {
            (
                Some((p, request)),
                Upstream::Complete {
                    status,
                    body,
                    usage,
                    finish_reason,
                    ..
                },
            ) => Ok(Upstream::Complete {
                status,
                content_type: Some(JSON.clone()),
                body: Bytes::from(p.response(request, &body)?),
                usage,
                finish_reason,
            }),
            (_, upstream) => Ok(upstream),
        }
    }
}

/// A prediction route's schemas (compiled when its config was validated) and templates.
#[derive(Debug)]
pub struct Prediction {
    request_schema: Option<Arc<jsonschema::Validator>>,
    response_schema: Option<Arc<jsonschema::Validator>>,
    request_transform: Option<Value>,
    response_transform: Option<Value>,
}

impl Prediction {
    /// The route's contract, as its validated config holds it (schemas already compiled).
    pub fn new(c: &PredictionConfig) -> Prediction {
        Prediction {
            request_schema: c.request_schema.clone(),
            response_schema: c.response_schema.clone(),
            request_transform: c.request_transform.clone(),
            response_transform: c.response_transform.clone(),
        }
    }

    /// Checks the caller's request and builds the model server's input.
    pub fn request(&self, body: &[u8]) -> Result<(Value, Vec<u8>), GatewayError> {
        let request: Value = serde_json::from_slice(body).map_err(|e| {
            GatewayError::bad_request("invalid_json", format!("The request body is not valid JSON: {e}"))
        })?;
        if let Some(schema) = &self.request_schema
            && let Some(e) = schema.iter_errors(&request).next()
        {
            let at = e.instance_path().to_string();
            return Err(GatewayError::bad_request(
                "invalid_prediction_request",
                format!("The request does not match this endpoint's schema at '{at}': {e}"),
            )
            .with_param(if at.is_empty() { "body".to_owned() } else { at }));
        }
        let upstream = match &self.request_transform {
            Some(t) => eval(t, &request, None).map_err(|e| {
                GatewayError::bad_request(
                    "invalid_prediction_request",
                    format!("The request cannot be mapped to the model's input: {e}"),
                )
            })?,
            None => request.clone(),
        };
        let bytes = serde_json::to_vec(&upstream).map_err(|e| GatewayError::internal(e.to_string()))?;
        Ok((request, bytes))
    }

    /// Checks the model server's answer and builds the public answer.
    pub fn response(&self, request: &Value, body: &[u8]) -> Result<Vec<u8>, GatewayError> {
        let invalid = |why: String| {
            GatewayError::new(
                ErrorKind::UpstreamRejected,
                "upstream_invalid_response",
                format!("The model server's answer is not valid for this endpoint: {why}"),
            )
        };
        let response: Value = serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
        if let Some(schema) = &self.response_schema
            && let Some(e) = schema.iter_errors(&response).next()
        {
            // Where and which rule, never the value: the server's answer is not passed on.
            return Err(invalid(format!(
                "at '{}' it breaks the schema rule '{}'",
                e.instance_path(),
                e.schema_path()
            )));
        }
        let public = match &self.response_transform {
            Some(t) => eval(t, request, Some(&response)).map_err(invalid)?,
            None => response,
        };
        serde_json::to_vec(&public).map_err(|e| GatewayError::internal(e.to_string()))
    }
}

/// Evaluates a template against the request (and the response, for response templates).
pub fn eval(t: &Value, request: &Value, response: Option<&Value>) -> Result<Value, String> {
    match t {
        Value::String(s) if s.starts_with("$$") => Ok(Value::String(s[1..].to_owned())),
        Value::String(s) if s.starts_with('$') => lookup(s, request, response),
        Value::Array(items) => items
            .iter()
            .map(|i| eval(i, request, response))
            .collect::<Result<_, _>>()
            .map(Value::Array),
        Value::Object(map) => match single_operator(map) {
            Some((op, arg)) => operator(op, arg, request, response),
            None => map
                .iter()
                .map(|(k, v)| Ok((k.clone(), eval(v, request, response)?)))
                .collect::<Result<Map<_, _>, String>>()
                .map(Value::Object),
        },
        other => Ok(other.clone()),
    }
}

fn single_operator(map: &Map<String, Value>) -> Option<(&str, &Value)> {
    if map.len() != 1 {
        return None;
    }
    let (k, v) = map.iter().next()?;
    k.starts_with('$').then_some((k.as_str(), v))
}

fn operator(op: &str, arg: &Value, request: &Value, response: Option<&Value>) -> Result<Value, String> {
    let field = |name: &str| arg.get(name).ok_or_else(|| format!("{op} needs '{name}'"));
    match op {
        "$len" => match eval(arg, request, response)? {
            Value::Array(a) => Ok(Value::from(a.len())),
            _ => Err("$len needs an array".to_owned()),
        },
        "$zip" => {
            let obj = arg.as_object().ok_or("$zip needs an object of arrays")?;
            let mut columns = Vec::with_capacity(obj.len());
            for (name, expr) in obj {
                match eval(expr, request, response)? {
                    Value::Array(a) => columns.push((name.clone(), a)),
                    _ => return Err(format!("$zip: '{name}' is not an array")),
                }
            }
            let len = columns.iter().map(|(_, a)| a.len()).min().unwrap_or(0);
            Ok(Value::Array(
                (0..len)
                    .map(|i| {
                        Value::Object(
                            columns
                                .iter()
                                .map(|(name, a)| (name.clone(), a.get(i).cloned().unwrap_or(Value::Null)))
                                .collect(),
                        )
                    })
                    .collect(),
            ))
        }
        "$sort" => {
            let mut items = match eval(field("of")?, request, response)? {
                Value::Array(a) => a,
                _ => return Err("$sort: 'of' is not an array".to_owned()),
            };
            let by = field("by")?.as_str().ok_or("$sort: 'by' names a field")?;
            let desc = arg.get("desc").and_then(Value::as_bool).unwrap_or(false);
            let key = |v: &Value| v.get(by).and_then(Value::as_f64).unwrap_or(f64::NEG_INFINITY);
            items.sort_by(|a, b| {
                let o = key(a).total_cmp(&key(b));
                if desc { o.reverse() } else { o }
            });
            Ok(Value::Array(items))
        }
        "$take" => {
            let items = match eval(field("of")?, request, response)? {
                Value::Array(a) => a,
                _ => return Err("$take: 'of' is not an array".to_owned()),
            };
            let n = eval(field("n")?, request, response)?
                .as_u64()
                .ok_or("$take: 'n' is a count")? as usize;
            Ok(Value::Array(items.into_iter().take(n).collect()))
        }
        other => Err(format!("unknown operator {other}")),
    }
}

/// `$request.a.b[0].c`, `$response.x`, `$.x` (= request).
fn lookup(path: &str, request: &Value, response: Option<&Value>) -> Result<Value, String> {
    let (root, rest) = if let Some(r) = path.strip_prefix("$request") {
        (request, r)
    } else if let Some(r) = path.strip_prefix("$response") {
        (
            response.ok_or_else(|| format!("{path}: no response in a request template"))?,
            r,
        )
    } else if let Some(r) = path.strip_prefix('$') {
        (request, r)
    } else {
        return Err(format!("{path} is not a path"));
    };
    let mut at = root;
    let mut rest = rest;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            at = at.get(key).ok_or_else(|| format!("{path}: '{key}' is missing"))?;
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').ok_or_else(|| format!("{path}: unclosed ["))?;
            let index: usize = r[..end].parse().map_err(|_| format!("{path}: bad index"))?;
            at = at
                .get(index)
                .ok_or_else(|| format!("{path}: index {index} is out of range"))?;
            rest = &r[end + 1..];
        } else {
            return Err(format!("{path}: expected . or ["));
        }
    }
    Ok(at.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ranks_scores_into_items() {
        let request = json!({"user_id": "u1", "candidates": ["a", "b", "c", "d"]});
        let response = json!({"outputs": [{"name": "scores", "data": [0.1, 0.9, 0.5, 0.7]}]});
        let t = json!({
            "user": "$request.user_id",
            "n": {"$len": "$request.candidates"},
            "items": {"$take": {"n": 2, "of": {"$sort": {"by": "confidence", "desc": true, "of":
                {"$zip": {"item_id": "$request.candidates", "confidence": "$response.outputs[0].data"}}}}}},
            "literal": "$$not-a-path"
        });
        let out = eval(&t, &request, Some(&response)).unwrap();
        assert_eq!(
            out,
            json!({"user": "u1", "n": 4, "items": [{"item_id": "b", "confidence": 0.9}, {"item_id": "d", "confidence": 0.7}],
                   "literal": "$not-a-path"})
        );
        assert!(
            eval(&json!("$request.nope"), &request, None)
                .unwrap_err()
                .contains("'nope' is missing")
        );
        assert!(eval(&json!("$response.x"), &request, None).is_err());
    }
}
