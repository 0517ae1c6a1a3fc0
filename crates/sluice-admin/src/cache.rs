//! The response cache's admin endpoints: its stats, and purging entries by tenant, route or
//! key. A purge reaches this instance's in-process tier, the Redis tier, and (through Redis)
//! every other instance's in-process tier.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sluice_cache::PurgeFilter;
use sluice_gateway::Gateway;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::error::{ErrorBody, error};
use crate::extract::Q;

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantBytes {
    pub tenant: String,
    pub bytes: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RedisTier {
    pub up: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CacheStats {
    pub entries: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    pub evictions: u64,
    /// Misses leading a flight (an identical request may follow them).
    pub in_air: u64,
    pub largest_tenants: Vec<TenantBytes>,
    pub waiting: i64,
    pub semantic_entries: u64,
    /// The Redis tier, when there is one.
    pub redis: Option<RedisTier>,
}

/// The response cache's in-process tier, flights and Redis tier.
#[utoipa::path(get, path = "/admin/cache/stats", tag = "cache",
    responses(
        (status = 200, description = "The cache now", body = CacheStats),
        (status = 401, description = "No valid admin token", body = ErrorBody),
        (status = 403, description = "The role or the tenant may not", body = ErrorBody),
    ))]
pub(crate) async fn stats(State(gw): State<Arc<Gateway>>) -> Response {
    let (memory, flights) = (&gw.cache.memory, &gw.cache.flights);
    Json(CacheStats {
        entries: memory.entries(),
        bytes: memory.bytes(),
        max_bytes: memory.max_bytes(),
        evictions: memory.evictions(),
        in_air: flights.in_air() as u64,
        largest_tenants: memory
            .largest_tenants(10)
            .into_iter()
            .map(|(tenant, bytes)| TenantBytes {
                tenant: tenant.to_string(),
                bytes,
            })
            .collect(),
        waiting: flights.waiting(),
        semantic_entries: gw.cache.semantic.entries() as u64,
        redis: gw.cache.shared.as_ref().map(|s| RedisTier { up: s.is_up() }),
    })
    .into_response()
}

/// Which entries a purge removes: those matching every filter given (all, with none).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PurgeQuery {
    /// A tenant's name (a key without a tenant: its key id).
    pub tenant: Option<String>,
    pub route: Option<String>,
    /// An entry's digest in hex (the access log's `cache_key`).
    pub key: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Purged {
    /// Entries removed from this instance's memory.
    pub purged: u64,
    /// Entries removed from the Redis tier (none without one).
    pub purged_shared: Option<u64>,
}

/// `DELETE /admin/cache?tenant=…&route=…&key=…`: removes the entries matching every filter
/// given (all, with none) from this instance's memory and from the Redis tier, and tells every
/// instance sharing it to drop its own.
#[utoipa::path(delete, path = "/admin/cache", tag = "cache", params(PurgeQuery),
    responses(
        (status = 200, description = "Purged", body = Purged),
        (status = 400, description = "A bad query", body = ErrorBody),
        (status = 401, description = "No valid admin token", body = ErrorBody),
        (status = 403, description = "The role or the tenant may not", body = ErrorBody),
        (status = 503, description = "The Redis tier did not answer (this instance's entries are gone)", body = ErrorBody),
    ))]
pub(crate) async fn purge(
    State(gw): State<Arc<Gateway>>,
    Extension(who): Extension<Principal>,
    Q(q): Q<PurgeQuery>,
) -> Response {
    // A principal confined to a tenant purges only that tenant's entries.
    let tenant = match (&who.tenant, q.tenant) {
        (None, t) => t,
        (Some(own), None) => Some(own.clone()),
        (Some(own), Some(t)) if &t == own => Some(t),
        (Some(_), Some(_)) => {
            return error(
                StatusCode::FORBIDDEN,
                "tenant_forbidden",
                "A principal confined to a tenant purges only its own entries.",
            );
        }
    };
    let filter = PurgeFilter {
        tenant,
        route: q.route,
        key: q.key,
    };
    let described = serde_json::to_value(&filter).ok();
    let whose = filter.tenant.clone();
    let purged = gw.cache.purge(filter).await;
    let shared = match purged.shared {
        None => None,
        Some(Ok(n)) => Some(n),
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
    let after = serde_json::json!({"filter": described, "purged": purged.memory, "purged_shared": shared});
    crate::audit::record(&gw, &who, "cache.purge", (None, whose.as_deref()), None, Some(after)).await;
    Json(Purged {
        purged: purged.memory,
        purged_shared: shared,
    })
    .into_response()
}
