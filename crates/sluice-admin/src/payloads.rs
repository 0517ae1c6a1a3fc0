//! Recent payloads: the prompts and answers routes with `log_payloads` stored (redacted).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sluice_gateway::Gateway;
use sluice_store::ledger::PayloadRow;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::error::{ErrorBody, bad_limit, error, page_limit};
use crate::extract::Q;

/// One stored payload.
#[derive(ToSchema)]
#[schema(as = PayloadRow)]
#[allow(dead_code)] // the schema of `sluice_store::ledger::PayloadRow`
struct PayloadRowSchema {
    request_id: String,
    /// Unix milliseconds.
    at: i64,
    expires_at: i64,
    route: Option<String>,
    tenant: Option<String>,
    key_id: Option<String>,
    endpoint: String,
    /// The route's redaction rules ran over both texts.
    redacted: bool,
    /// The request body as the input guardrails let it through (at most 256 KiB).
    request: String,
    /// The answer's text and tool-call arguments as they left the output guardrails.
    response: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PayloadList {
    /// Always `list`.
    pub object: &'static str,
    #[schema(value_type = Vec<PayloadRowSchema>)]
    pub data: Vec<PayloadRow>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PayloadQuery {
    /// Rows, newest first, 1–500 (default 50).
    pub limit: Option<u32>,
}

/// The newest stored payloads (a tenant-confined principal: its tenant's).
#[utoipa::path(get, path = "/admin/payloads", tag = "payloads", params(PayloadQuery),
    responses(
        (status = 200, description = "Stored payloads, newest first", body = PayloadList),
        (status = 400, description = "A bad query", body = ErrorBody),
        (status = 401, description = "No valid admin token", body = ErrorBody),
        (status = 403, description = "The role or the tenant may not", body = ErrorBody),
        (status = 404, description = "The ledger is disabled", body = ErrorBody),
        (status = 503, description = "The ledger database did not answer", body = ErrorBody),
    ))]
pub(crate) async fn list(
    State(gw): State<Arc<Gateway>>,
    Extension(who): Extension<Principal>,
    Q(q): Q<PayloadQuery>,
) -> Response {
    let Some(limit) = page_limit(q.limit, 50, 500) else {
        return bad_limit(500);
    };
    let Some(ledger) = &gw.ledger else {
        return crate::error::ledger_disabled();
    };
    match ledger.db().payloads(who.tenant.as_deref(), i64::from(limit)).await {
        Ok(data) => Json(PayloadList { object: "list", data }).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "ledger_unavailable", e.to_string()),
    }
}
