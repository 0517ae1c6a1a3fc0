//! The response cache's admin endpoints: its stats, and purging entries by tenant, route or
//! key. A purge reaches this instance's in-process tier, the Redis tier, and (through Redis)
//! every other instance's in-process tier.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sluice_cache::PurgeFilter;
use sluice_gateway::Gateway;

use crate::error::error;

/// `GET /admin/cache/stats`.
pub(crate) async fn stats(State(gw): State<Arc<Gateway>>) -> Response {
    let (memory, flights) = (&gw.cache.memory, &gw.cache.flights);
    Json(json!({
        "entries": memory.entries(),
        "bytes": memory.bytes(),
        "max_bytes": memory.max_bytes(),
        "evictions": memory.evictions(),
        "in_air": flights.in_air(),
        "largest_tenants": memory
            .largest_tenants(10)
            .into_iter()
            .map(|(tenant, bytes)| json!({"tenant": tenant, "bytes": bytes}))
            .collect::<Vec<_>>(),
        "waiting": flights.waiting(),
        "semantic_entries": gw.cache.semantic.entries(),
        "redis": gw.cache.shared.as_ref().map(|s| json!({"up": s.is_up()})),
    }))
    .into_response()
}

/// `DELETE /admin/cache?tenant=…&route=…&key=…`: removes the entries matching every filter
/// given (all, with none) from this instance's memory and from the Redis tier, and tells every
/// instance sharing it to drop its own.
pub(crate) async fn purge(State(gw): State<Arc<Gateway>>, Query(filter): Query<PurgeFilter>) -> Response {
    let purged = gw.cache.purge(filter).await;
    let shared = match purged.shared {
        None => serde_json::Value::Null,
        Some(Ok(n)) => json!(n),
        Some(Err(e)) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "cache_redis_unavailable",
                format!(
                    "Purged {} entries from this instance; the Redis tier did not answer ({e}), so other instances and Redis may still hold them.",
                    purged.memory
                ),
            );
        }
    };
    Json(json!({ "purged": purged.memory, "purged_shared": shared })).into_response()
}
