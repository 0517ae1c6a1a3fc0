//! The response cache's admin endpoints: its stats, and purging entries by tenant, route or
//! key. A purge reaches this instance's in-process tier.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use sluice_gateway::Gateway;

use crate::error::error;

/// `GET /admin/cache/stats`.
pub(crate) async fn stats(State(gw): State<Arc<Gateway>>) -> Response {
    let (memory, flights) = (&gw.cache.memory, &gw.cache.flights);
    memory.sync();
    Json(json!({
        "entries": memory.entries(),
        "bytes": memory.bytes(),
        "max_bytes": memory.max_bytes(),
        "in_air": flights.in_air(),
        "largest_tenants": memory
            .largest_tenants(10)
            .into_iter()
            .map(|(tenant, bytes)| json!({"tenant": tenant, "bytes": bytes}))
            .collect::<Vec<_>>(),
        "waiting": flights.waiting(),
    }))
    .into_response()
}

/// Which entries a purge removes: those matching every filter given (all, with none).
#[derive(Debug, Deserialize)]
pub(crate) struct Purge {
    /// A tenant's name (a key without a tenant is the tenant named by its key id).
    tenant: Option<String>,
    route: Option<String>,
    /// An entry's key: its digest in hex, as the access log's `cache_key`.
    key: Option<String>,
}

/// `DELETE /admin/cache?tenant=…&route=…&key=…`.
pub(crate) async fn purge(State(gw): State<Arc<Gateway>>, Query(p): Query<Purge>) -> Response {
    let memory = gw.cache.memory.clone();
    let purged = tokio::task::spawn_blocking(move || {
        memory.purge(|k| {
            p.tenant.as_deref().is_none_or(|t| k.scope().tenant() == t)
                && p.route.as_deref().is_none_or(|r| k.route() == r)
                && p.key.as_deref().is_none_or(|h| k.hex() == h)
        })
    })
    .await;
    match purged {
        Ok(n) => Json(json!({ "purged": n })).into_response(),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "The gateway is shutting down.",
        ),
    }
}
