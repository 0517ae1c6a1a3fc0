//! Admin principals: who may call this API, with which role, for which tenant. Admins only.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sluice_gateway::Gateway;
use sluice_store::{StoreError, StoredPrincipal};
use utoipa::ToSchema;

use crate::auth::{Principal, Role, token_hash};
use crate::error::{ErrorBody, error, store_unavailable};
use crate::extract::{Body, P, Q};

/// The prefix of every admin token (tells it apart from an API key).
pub const TOKEN_PREFIX: &str = "sk-sluice-admin-";

#[derive(Debug, Serialize, ToSchema)]
pub struct PrincipalView {
    pub id: String,
    pub role: Role,
    /// Confined to this tenant (none: every tenant, and the gateway-wide routes).
    pub tenant: Option<String>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PrincipalList {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<PrincipalView>,
    /// More follow the last one here: ask again with `after` = `last_id`.
    pub has_more: bool,
    pub last_id: Option<String>,
}

fn view(p: StoredPrincipal) -> Option<PrincipalView> {
    Some(PrincipalView {
        role: Role::parse(&p.role)?,
        id: p.id,
        tenant: p.tenant,
        created_at: p.created_at,
        revoked_at: p.revoked_at,
    })
}

/// Admin principals (never a token), a page at a time in id order.
#[utoipa::path(get, path = "/admin/principals", tag = "principals", params(crate::keys::KeysPage),
    responses(
        (status = 200, description = "Admin principals, in id order", body = PrincipalList),
        (status = 400, description = "A bad page request", body = ErrorBody),
        (status = 401, description = "No valid admin token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 503, description = "The key store did not answer", body = ErrorBody),
    ))]
pub(crate) async fn list(State(gw): State<Arc<Gateway>>, Q(page): Q<crate::keys::KeysPage>) -> Response {
    let Some(limit) = crate::error::page_limit(page.limit, 100, 1000) else {
        return crate::error::bad_limit(1000);
    };
    let all = match gw.store.list_principals().await {
        Ok(all) => all,
        Err(e) => return store_unavailable(e),
    };
    // The store lists them in id order.
    let mut data: Vec<PrincipalView> = all
        .into_iter()
        .filter(|p| page.after.as_deref().is_none_or(|after| p.id.as_str() > after))
        .filter_map(view)
        .take(limit as usize + 1)
        .collect();
    let has_more = data.len() > limit as usize;
    data.truncate(limit as usize);
    Json(PrincipalList {
        object: "list",
        last_id: data.last().map(|p| p.id.clone()),
        data,
        has_more,
    })
    .into_response()
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePrincipal {
    /// 1–64 letters, digits, `-` or `_` (generated when absent).
    pub id: Option<String>,
    pub role: Role,
    pub tenant: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedPrincipal {
    pub id: String,
    pub role: Role,
    pub tenant: Option<String>,
    /// The bearer token, shown this once: the gateway keeps only its hash.
    pub token: String,
    pub created_at: DateTime<Utc>,
}

/// Creates an admin principal; its token is shown once.
#[utoipa::path(post, path = "/admin/principals", tag = "principals", request_body = CreatePrincipal,
    responses(
        (status = 201, description = "Created; the token is in `token`, shown once", body = CreatedPrincipal),
        (status = 400, description = "Not a valid principal", body = ErrorBody),
        (status = 401, description = "No valid admin token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 409, description = "The id is taken", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 503, description = "The key store did not answer", body = ErrorBody),
    ))]
pub(crate) async fn create(
    State(gw): State<Arc<Gateway>>,
    Extension(who): Extension<Principal>,
    Body(body): Body,
) -> Response {
    let req: CreatePrincipal = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()),
    };
    let id = req.id.unwrap_or_else(sluice_gateway::keys::generate_key_id);
    let valid = |s: &str| {
        !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !valid(&id) || matches!(id.as_str(), "bootstrap" | "local") {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_id",
            "A principal id is 1–64 letters, digits, '-' or '_' (not `bootstrap` or `local`).",
        );
    }
    if req.tenant.as_deref().is_some_and(|t| t.is_empty() || t.len() > 128) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_tenant",
            "A tenant is 1–128 characters.",
        );
    }
    let token = format!(
        "{TOKEN_PREFIX}{}",
        sluice_gateway::keys::generate_key().trim_start_matches(sluice_gateway::keys::KEY_PREFIX)
    );
    let stored = StoredPrincipal {
        id: id.clone(),
        hash: token_hash(&token),
        role: req.role.as_str().to_owned(),
        tenant: req.tenant.clone(),
        created_at: Utc::now(),
        revoked_at: None,
    };
    match gw.store.insert_principal(&stored).await {
        Ok(()) => {}
        Err(StoreError::Conflict { id }) => {
            return error(
                StatusCode::CONFLICT,
                "id_taken",
                format!("A principal {id} already exists."),
            );
        }
        Err(e) => return store_unavailable(e),
    }
    let after = serde_json::json!({"id": id, "role": req.role.as_str(), "tenant": req.tenant});
    crate::audit::record(
        &gw,
        &who,
        "principal.create",
        (Some(&id), req.tenant.as_deref()),
        None,
        Some(after),
    )
    .await;
    let created = CreatedPrincipal {
        id,
        role: req.role,
        tenant: req.tenant,
        token,
        created_at: stored.created_at,
    };
    (StatusCode::CREATED, Json(created)).into_response()
}

/// Revokes an admin principal: its token stops working at once, on every instance.
#[utoipa::path(delete, path = "/admin/principals/{id}", tag = "principals",
    params(("id" = String, Path, description = "The principal's id")),
    responses(
        (status = 200, description = "Revoked", body = crate::audit::Revoked),
        (status = 400, description = "A bad path", body = ErrorBody),
        (status = 401, description = "No valid admin token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No active principal with that id", body = ErrorBody),
        (status = 503, description = "The key store did not answer", body = ErrorBody),
    ))]
pub(crate) async fn revoke(
    State(gw): State<Arc<Gateway>>,
    Extension(who): Extension<Principal>,
    P(id): P<String>,
) -> Response {
    match gw.store.revoke_principal(&id, Utc::now()).await {
        Ok(true) => crate::audit::revoked(&gw, &who, "principal.revoke", id, None).await,
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            "principal_not_found",
            format!("No active principal {id}."),
        ),
        Err(e) => store_unavailable(e),
    }
}
