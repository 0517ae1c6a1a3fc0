//! Whose a key is: what confines a tenant principal to its tenant's keys and their limits.

use axum::response::Response;
use sluice_gateway::Gateway;

use crate::error::store_unavailable;

/// The tenant of key `id` (`Some(None)`: a key without one), from the config or the store.
pub(crate) async fn tenant_of(gw: &Gateway, id: &str) -> Result<Option<Option<String>>, Response> {
    if let Some(k) = gw.snapshot().config.keys.iter().find(|k| k.id == id) {
        return Ok(Some(k.tenant.clone()));
    }
    match gw.store.list().await {
        Ok(list) => Ok(list.into_iter().find(|k| k.id == id).map(|k| k.tenant)),
        Err(e) => Err(store_unavailable(e)),
    }
}

/// The ids of every key of `tenant` (the config's and the store's).
pub(crate) async fn key_ids_of(gw: &Gateway, tenant: &str) -> Result<std::collections::HashSet<String>, Response> {
    let mut ids: std::collections::HashSet<String> = gw
        .snapshot()
        .config
        .keys
        .iter()
        .filter(|k| k.tenant.as_deref() == Some(tenant))
        .map(|k| k.id.clone())
        .collect();
    match gw.store.list().await {
        Ok(list) => ids.extend(
            list.into_iter()
                .filter(|k| k.tenant.as_deref() == Some(tenant))
                .map(|k| k.id),
        ),
        Err(e) => {
            return Err(store_unavailable(e));
        }
    }
    Ok(ids)
}
