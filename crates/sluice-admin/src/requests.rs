//! `GET /admin/requests`: the most recent requests from the ledger, newest first — who,
//! where, status, tokens, cost, latency and how it ended; no prompt or answer text.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sluice_gateway::Gateway;
use sluice_store::ledger::recent::RecentRow;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::error::{ErrorBody, bad_limit, error, page_limit};
use crate::extract::Q;

/// One request as the ledger recorded it.
#[derive(ToSchema)]
#[schema(as = RecentRequest)]
#[allow(dead_code)] // the schema of `sluice_store::ledger::recent::RecentRow`
struct RecentRowSchema {
    request_id: String,
    /// Unix milliseconds.
    started_at: i64,
    key_id: Option<String>,
    team: Option<String>,
    tenant: Option<String>,
    route: Option<String>,
    model: Option<String>,
    deployment: Option<String>,
    /// `open` (in flight), `settled` or `unsettled`.
    state: String,
    http_status: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    /// Micro-units of the currency.
    cost_micros: i64,
    latency_us: Option<i64>,
    ttfb_us: Option<i64>,
    error_class: Option<String>,
    cache: Option<String>,
    guardrail: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RequestList {
    /// Always `list`.
    pub object: &'static str,
    #[schema(value_type = Vec<RecentRowSchema>)]
    pub data: Vec<RecentRow>,
    /// Older requests follow: ask again with `before` = the last row's `started_at`.
    pub has_more: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RequestsQuery {
    /// Rows, newest first, 1–500 (default 50).
    pub limit: Option<u32>,
    /// Only requests started before this (unix milliseconds).
    pub before: Option<i64>,
}

/// The most recent requests (a tenant-confined principal: its tenant's).
#[utoipa::path(get, path = "/admin/requests", tag = "usage", params(RequestsQuery),
    responses(
        (status = 200, description = "Requests, newest first", body = RequestList),
        (status = 400, description = "A bad query", body = ErrorBody),
        (status = 401, description = "No valid admin token", body = ErrorBody),
        (status = 403, description = "The role or the tenant may not", body = ErrorBody),
        (status = 404, description = "The ledger is disabled", body = ErrorBody),
        (status = 503, description = "The ledger database did not answer", body = ErrorBody),
    ))]
pub(crate) async fn list(
    State(gw): State<Arc<Gateway>>,
    Extension(who): Extension<Principal>,
    Q(q): Q<RequestsQuery>,
) -> Response {
    let Some(limit) = page_limit(q.limit, 50, 500) else {
        return bad_limit(500);
    };
    let Some(ledger) = &gw.ledger else {
        return crate::error::ledger_disabled();
    };
    let before = q.before.unwrap_or(i64::MAX);
    // One more than asked tells whether more follow.
    match ledger
        .db()
        .recent(i64::from(limit) + 1, before, who.tenant.as_deref())
        .await
    {
        Ok(mut data) => {
            let has_more = data.len() > limit as usize;
            data.truncate(limit as usize);
            Json(RequestList {
                object: "list",
                data,
                has_more,
            })
            .into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "ledger_unavailable", e.to_string()),
    }
}
