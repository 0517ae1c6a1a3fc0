//! The admin API, called in process as the signed-in principal: the console's only way to
//! read or change anything, so it can do no more than the API lets that principal do.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tower::ServiceExt;

use crate::auth::Principal;

/// The largest API answer the console reads (a page of rows; analytics over a range).
const MAX_ANSWER: usize = 16 << 20;

#[derive(Clone)]
pub(crate) struct Api {
    router: Router,
}

/// What the API answered.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Answer {
    pub fn ok(&self) -> bool {
        self.status.is_success()
    }

    /// The body as `T`, when the call succeeded and the body is one.
    pub fn parse<T: DeserializeOwned>(&self) -> Option<T> {
        if !self.ok() {
            return None;
        }
        serde_json::from_slice(&self.body).ok()
    }

    /// The refusal's stable code (`{"error": {"code": …}}`).
    pub fn code(&self) -> Option<String> {
        serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
    }

    /// The refusal's message (`{"error": {"message": …}}`), or the status.
    pub fn message(&self) -> String {
        serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("The admin API answered {}.", self.status))
    }
}

impl Api {
    pub fn new(router: Router) -> Api {
        Api { router }
    }

    /// `method uri` with an optional JSON body, as `who`.
    pub async fn call(&self, who: &Principal, method: Method, uri: &str, body: Option<&Value>) -> Answer {
        let mut builder = Request::builder().method(method).uri(uri);
        let body = match body {
            Some(v) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let mut req = match builder.body(body) {
            Ok(r) => r,
            Err(e) => return failed(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        req.extensions_mut().insert(who.clone());
        let Ok(resp) = self.router.clone().oneshot(req).await;
        let status = resp.status();
        match http_body_util::Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
        {
            Ok(b) => Answer {
                status,
                body: b.to_bytes(),
            },
            Err(e) => failed(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        }
    }

    pub async fn get(&self, who: &Principal, uri: &str) -> Answer {
        self.call(who, Method::GET, uri, None).await
    }
}

fn failed(status: StatusCode, why: &str) -> Answer {
    Answer {
        status,
        body: Bytes::from(serde_json::json!({"error": {"message": why}}).to_string()),
    }
}

/// A query string from pairs (values escaped).
pub(crate) fn query(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        out.push(if out.is_empty() { '?' } else { '&' });
        out.push_str(k);
        out.push('=');
        escape_into(&mut out, v);
    }
    out
}

/// Percent-encodes all but the unreserved characters.
pub(crate) fn escape_into(out: &mut String, v: &str) {
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// `v` percent-encoded (a path segment or a query value).
pub(crate) fn escape(v: &str) -> String {
    let mut out = String::new();
    escape_into(&mut out, v);
    out
}
