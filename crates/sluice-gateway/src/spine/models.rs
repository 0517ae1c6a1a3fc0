//! `GET /v1/models` and `GET /v1/models/{id}`: the aliases the caller may use.

use bytes::Bytes;
use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use crate::Serving;
use crate::error::{ErrorKind, GatewayError};
use crate::finish::{CallerPart, Finish};
use crate::flow::Reply;
use crate::stages::auth::authenticate;

fn ok_json(v: &serde_json::Value) -> Reply {
    Reply::Json {
        status: StatusCode::OK,
        content_type: None,
        body: Bytes::from(v.to_string()),
    }
}

fn model_object(name: &str) -> serde_json::Value {
    json!({ "id": name, "object": "model", "created": 0, "owned_by": "sluice" })
}

pub(super) fn list_models(
    serving: &Serving,
    req: &Request<Incoming>,
    finish: &mut Finish,
) -> Result<Reply, GatewayError> {
    let caller = authenticate(&serving.keys, req.headers())?;
    finish.caller(CallerPart::of(&caller));
    let data: Vec<_> = serving
        .snapshot
        .models
        .iter()
        .filter(|m| caller.may_use_model(&m.name))
        .map(|m| model_object(&m.name))
        .collect();
    Ok(ok_json(&json!({ "object": "list", "data": data })))
}

pub(super) fn one_model(
    serving: &Serving,
    req: &Request<Incoming>,
    finish: &mut Finish,
) -> Result<Reply, GatewayError> {
    let caller = authenticate(&serving.keys, req.headers())?;
    finish.caller(CallerPart::of(&caller));
    let name = req.uri().path().trim_start_matches("/v1/models/");
    match serving.snapshot.model(name) {
        Some((_, m)) if caller.may_use_model(&m.name) => Ok(ok_json(&model_object(&m.name))),
        _ => Err(GatewayError::new(
            ErrorKind::NotFound,
            "model_not_found",
            format!("The model '{name}' does not exist or you do not have access to it."),
        )
        .with_param("model")),
    }
}
