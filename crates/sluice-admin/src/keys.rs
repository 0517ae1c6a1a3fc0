//! Virtual keys: the config file's (read-only here) and the run-time ones in the key store —
//! listed a page at a time, created (the secret is shown once), revoked.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sluice_config::Pattern;
use sluice_gateway::Gateway;
use sluice_gateway::keys::{self, KeySource};
use sluice_store::{StoreError, StoredKey};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::error::{ErrorBody, bad_limit, error, page_limit, store_unavailable};
use crate::extract::{Body, P, Q};
use crate::limits::{LimitView, put_limits};

/// Where a key comes from.
#[derive(ToSchema)]
#[schema(as = KeySource)]
#[allow(dead_code)] // the schema of `KeySource`
#[serde(rename_all = "lowercase")]
#[derive(Serialize)]
enum KeySourceSchema {
    Yaml,
    Runtime,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    pub id: String,
    #[schema(value_type = KeySourceSchema)]
    pub source: KeySource,
    /// The first characters of a run-time key's secret (to recognise it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    pub tenant: Option<String>,
    pub team: Option<String>,
    pub user: Option<String>,
    pub tier: Option<String>,
    /// Model aliases it may use (`*` patterns allowed); none: all.
    pub models: Option<Vec<String>>,
    pub routes: Option<Vec<String>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub trust_user: bool,
}

/// One page of keys, in id order.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<KeyView>,
    /// More keys follow the last one here: ask again with `after` = `last_id`.
    pub has_more: bool,
    pub last_id: Option<String>,
}

/// Paging through keys.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeysPage {
    /// Keys per page, 1–1000 (default 100).
    pub limit: Option<u32>,
    /// Start after this key id.
    pub after: Option<String>,
}

fn pattern_text(p: &Pattern) -> String {
    match p {
        Pattern::Any => "*".to_owned(),
        Pattern::Exact(s) => s.clone(),
        Pattern::Prefix(s) => format!("{s}*"),
    }
}

/// Every key, the config file's and the store's, a page at a time.
#[utoipa::path(get, path = "/admin/keys", tag = "keys", params(KeysPage),
    responses(
        (status = 200, description = "A page of keys, in id order", body = KeyList),
        (status = 400, description = "A bad page request", body = ErrorBody),
        (status = 401, description = "No valid admin token", body = ErrorBody),
        (status = 403, description = "The role or the tenant may not", body = ErrorBody),
        (status = 503, description = "The key store did not answer", body = ErrorBody),
    ))]
pub(crate) async fn list_keys(
    State(gw): State<Arc<Gateway>>,
    Extension(who): Extension<Principal>,
    Q(page): Q<KeysPage>,
) -> Response {
    let Some(limit) = page_limit(page.limit, 100, 1000) else {
        return bad_limit(1000);
    };
    let snap = gw.snapshot();
    let mut all: Vec<KeyView> = snap
        .config
        .keys
        .iter()
        .map(|k| KeyView {
            id: k.id.clone(),
            source: KeySource::Yaml,
            prefix: None,
            tenant: k.tenant.clone(),
            team: k.team.clone(),
            user: k.user.clone(),
            tier: k.tier.clone(),
            models: k.models.as_ref().map(|m| m.iter().map(pattern_text).collect()),
            routes: k.routes.clone(),
            expires_at: k.expires_at,
            created_at: None,
            revoked_at: None,
            trust_user: k.trust_user,
        })
        .collect();
    match gw.store.list().await {
        Ok(stored) => all.extend(stored.into_iter().map(|k| KeyView {
            id: k.id,
            source: KeySource::Runtime,
            prefix: Some(k.prefix),
            tenant: k.tenant,
            team: k.team,
            user: k.user,
            tier: k.tier,
            models: k.models,
            routes: k.routes,
            expires_at: k.expires_at,
            created_at: Some(k.created_at),
            revoked_at: k.revoked_at,
            trust_user: k.trust_user,
        })),
        Err(e) => return store_unavailable(e),
    }
    // A principal confined to a tenant sees its keys only.
    all.retain(|k| who.sees(k.tenant.as_deref()));
    all.sort_by(|a, b| a.id.cmp(&b.id));
    let from = page
        .after
        .as_deref()
        .map_or(0, |after| all.partition_point(|k| k.id.as_str() <= after));
    let mut data: Vec<KeyView> = all.drain(from..).collect();
    let has_more = data.len() > limit as usize;
    data.truncate(limit as usize);
    let last_id = data.last().map(|k| k.id.clone());
    Json(KeyList {
        object: "list",
        data,
        has_more,
        last_id,
    })
    .into_response()
}

/// A run-time key to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// 1–64 letters, digits, `-` or `_` (generated when absent).
    pub id: Option<String>,
    pub tenant: Option<String>,
    pub team: Option<String>,
    pub user: Option<String>,
    pub tier: Option<String>,
    pub models: Option<Vec<String>>,
    pub routes: Option<Vec<String>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Let the request's `user` field key the per-user limits.
    pub trust_user: Option<bool>,
    /// Each end user's limits on this key (as `PUT /admin/limits/users/{id}`).
    #[schema(value_type = Option<Object>)]
    pub user_limits: Option<sluice_config::RawLimits>,
}

/// A created key: its secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    pub id: String,
    /// The secret: the gateway keeps only its hash.
    pub key: String,
    #[schema(value_type = KeySourceSchema)]
    pub source: KeySource,
    pub prefix: String,
    pub tenant: Option<String>,
    pub team: Option<String>,
    pub user: Option<String>,
    pub tier: Option<String>,
    pub models: Option<Vec<String>>,
    pub routes: Option<Vec<String>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub trust_user: bool,
    pub user_limits: Option<Vec<LimitView>>,
}

/// Creates a run-time key.
#[utoipa::path(post, path = "/admin/keys", tag = "keys", request_body = CreateKey,
    responses(
        (status = 201, description = "Created; the secret is in `key`, shown once", body = CreatedKey),
        (status = 400, description = "Not a valid key request", body = ErrorBody),
        (status = 401, description = "No valid admin token", body = ErrorBody),
        (status = 403, description = "The role or the tenant may not", body = ErrorBody),
        (status = 409, description = "The id is taken", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 422, description = "Invalid user limits", body = ErrorBody),
        (status = 503, description = "The key store did not answer", body = ErrorBody),
    ))]
pub(crate) async fn create_key(
    State(gw): State<Arc<Gateway>>,
    Extension(who): Extension<Principal>,
    Body(body): Body,
) -> Response {
    let mut req: CreateKey = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()),
    };
    // A principal confined to a tenant makes keys of that tenant only.
    if let Some(own) = &who.tenant {
        match &req.tenant {
            None => req.tenant = Some(own.clone()),
            Some(t) if t == own => {}
            Some(_) => {
                return error(
                    StatusCode::FORBIDDEN,
                    "tenant_forbidden",
                    "A principal confined to a tenant makes keys of that tenant only.",
                );
            }
        }
    }
    let snap = gw.snapshot();
    let id = req.id.clone().unwrap_or_else(keys::generate_key_id);
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_id",
            "A key id is 1–64 letters, digits, '-' or '_'.",
        );
    }
    if snap.config.keys.iter().any(|k| k.id == id) {
        return error(
            StatusCode::CONFLICT,
            "id_taken",
            format!("{id} is a key from the config file; pick another id."),
        );
    }
    for m in req.models.iter().flatten() {
        if let Pattern::Exact(name) = Pattern::parse(m)
            && snap.model(&name).is_none()
        {
            return error(
                StatusCode::BAD_REQUEST,
                "unknown_model",
                format!("There is no model alias {name:?}."),
            );
        }
    }
    for r in req.routes.iter().flatten() {
        if snap.config.route_index(r).is_none() {
            return error(
                StatusCode::BAD_REQUEST,
                "unknown_route",
                format!("There is no route {r:?}."),
            );
        }
    }
    let user_limits = match &req.user_limits {
        Some(raw) => match sluice_config::parse_limits(raw) {
            Ok(specs) => Some((raw, specs)),
            Err(errs) => return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_limits", errs.join("; ")),
        },
        None => None,
    };
    let secret = keys::generate_key();
    let stored = StoredKey {
        id: id.clone(),
        hash: keys::hash_key(&secret),
        prefix: secret.chars().take(keys::KEY_PREFIX.len() + 4).collect(),
        tenant: req.tenant,
        team: req.team,
        user: req.user,
        tier: req.tier,
        models: req.models,
        routes: req.routes,
        expires_at: req.expires_at,
        created_at: Utc::now(),
        revoked_at: None,
        trust_user: req.trust_user.unwrap_or(false),
    };
    match gw.store.insert(&stored).await {
        Ok(()) => {}
        Err(StoreError::Conflict { id }) => {
            return error(StatusCode::CONFLICT, "id_taken", format!("A key {id} already exists."));
        }
        Err(e) => return store_unavailable(e),
    }
    let user_limits = match user_limits {
        Some((raw, specs)) => match put_limits(&gw, "users", &id, raw, specs).await {
            Ok(view) => Some(view),
            Err(r) => return r,
        },
        None => None,
    };
    if let Err(e) = gw.refresh_keys().await {
        return store_unavailable(e);
    }
    let created = CreatedKey {
        id,
        key: secret,
        source: KeySource::Runtime,
        prefix: stored.prefix,
        tenant: stored.tenant,
        team: stored.team,
        user: stored.user,
        tier: stored.tier,
        models: stored.models,
        routes: stored.routes,
        expires_at: stored.expires_at,
        created_at: stored.created_at,
        trust_user: stored.trust_user,
        user_limits,
    };
    let mut after = serde_json::to_value(&created).unwrap_or_default();
    if let Some(o) = after.as_object_mut() {
        o.remove("key"); // the secret is nobody's business, the audit log's least
    }
    let (id, tenant) = (created.id.as_str(), created.tenant.as_deref());
    crate::audit::record(&gw, &who, "key.create", (Some(id), tenant), None, Some(after)).await;
    (StatusCode::CREATED, Json(created)).into_response()
}

/// Revokes a run-time key (everywhere within a second: instances poll the store).
#[utoipa::path(delete, path = "/admin/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "The key's id")),
    responses(
        (status = 200, description = "Revoked", body = crate::audit::Revoked),
        (status = 400, description = "A bad path", body = ErrorBody),
        (status = 401, description = "No valid admin token", body = ErrorBody),
        (status = 403, description = "The role or the tenant may not", body = ErrorBody),
        (status = 404, description = "No active run-time key with that id", body = ErrorBody),
        (status = 409, description = "A config-file key (remove it from the file)", body = ErrorBody),
        (status = 503, description = "The key store did not answer", body = ErrorBody),
    ))]
pub(crate) async fn revoke_key(
    State(gw): State<Arc<Gateway>>,
    Extension(who): Extension<Principal>,
    P(id): P<String>,
) -> Response {
    // Another tenant's key does not exist for a principal confined to a tenant.
    if who.tenant.is_some() {
        match crate::owners::tenant_of(&gw, &id).await {
            Ok(Some(t)) if who.sees(t.as_deref()) => {}
            Ok(_) => {
                return error(
                    StatusCode::NOT_FOUND,
                    "key_not_found",
                    format!("No active run-time key {id}."),
                );
            }
            Err(r) => return r,
        }
    }
    if gw.snapshot().config.keys.iter().any(|k| k.id == id) {
        return error(
            StatusCode::CONFLICT,
            "read_only",
            format!("{id} comes from the config file; remove it there."),
        );
    }
    match gw.store.revoke(&id, Utc::now()).await {
        Ok(true) => {}
        Ok(false) => {
            return error(
                StatusCode::NOT_FOUND,
                "key_not_found",
                format!("No active run-time key {id}."),
            );
        }
        Err(e) => return store_unavailable(e),
    }
    if let Err(e) = gw.refresh_keys().await {
        return store_unavailable(e);
    }
    let tenant = crate::owners::tenant_of(&gw, &id).await.ok().flatten().flatten();
    crate::audit::revoked(&gw, &who, "key.revoke", id, tenant.as_deref()).await
}
