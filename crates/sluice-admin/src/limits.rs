//! Limits set at run time: a key's, a team's, or each end user's on a key — stored first, then
//! put in force without a restart (counters are kept).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sluice_gateway::Gateway;
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::error::{ErrorBody, error, store_unavailable};
use crate::extract::{Body, P};

/// Whose limits: a key's, a team's, or each end user's on a key.
#[derive(ToSchema, Serialize)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // the path parameter's schema
pub enum LimitScope {
    Keys,
    Teams,
    Users,
}

/// One limit in force: its name (`requests_per_minute`, `cost_per_month`…), amount and burst.
#[derive(Debug, Serialize, ToSchema)]
pub struct LimitView {
    pub name: String,
    pub amount: u64,
    pub burst: u64,
}

impl From<&sluice_config::LimitSpec> for LimitView {
    fn from(s: &sluice_config::LimitSpec) -> Self {
        let v = sluice_limits::LimitSpecView::from(s);
        LimitView {
            name: v.name,
            amount: v.amount,
            burst: v.burst,
        }
    }
}

/// Every run-time limit, by scope and name.
#[derive(Debug, Serialize, ToSchema)]
pub struct LimitsList {
    pub keys: BTreeMap<String, Vec<LimitView>>,
    pub teams: BTreeMap<String, Vec<LimitView>>,
    /// Each end user's limits, by key id.
    pub users: BTreeMap<String, Vec<LimitView>>,
}

/// The limits set at run time.
#[utoipa::path(get, path = "/admin/limits", tag = "limits",
    responses(
        (status = 200, description = "Run-time limits by scope", body = LimitsList),
        (status = 401, description = "No valid admin token", body = ErrorBody),
        (status = 403, description = "The role or the tenant may not", body = ErrorBody),
    ))]
pub(crate) async fn list_limits(State(gw): State<Arc<Gateway>>, Extension(who): Extension<Principal>) -> Response {
    let now = gw.runtime_limits.load();
    // A principal confined to a tenant sees its keys' limits only (teams are gateway-wide).
    let own = match &who.tenant {
        Some(t) => match crate::owners::key_ids_of(&gw, t).await {
            Ok(ids) => Some(ids),
            Err(r) => return r,
        },
        None => None,
    };
    let shown = |name: &String| own.as_ref().is_none_or(|ids| ids.contains(name));
    let view = |m: &std::collections::HashMap<String, Vec<sluice_limits::LimitSpecView>>| {
        m.iter()
            .filter(|(k, _)| shown(k))
            .map(|(k, v)| {
                let list = v
                    .iter()
                    .map(|l| LimitView {
                        name: l.name.clone(),
                        amount: l.amount,
                        burst: l.burst,
                    })
                    .collect();
                (k.clone(), list)
            })
            .collect()
    };
    Json(LimitsList {
        keys: view(&now.keys),
        teams: if own.is_some() {
            BTreeMap::new()
        } else {
            view(&now.teams)
        },
        users: view(&now.users),
    })
    .into_response()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LimitsSet {
    pub scope: String,
    pub name: String,
    pub limits: Vec<LimitView>,
}

/// `PUT /admin/limits/{keys|teams|users}/{name}` with `{"requests_per_minute": 60, …}`:
/// replaces that key's or team's limits (`users`: each end user's limits on key `name`).
#[utoipa::path(put, path = "/admin/limits/{scope}/{name}", tag = "limits",
    params(
        ("scope" = inline(LimitScope), Path, description = "`keys`, `teams` or `users` (a key's end users)"),
        ("name" = String, Path, description = "The key id or team name"),
    ),
    request_body(content = Object, description = "Limit names to numbers (or outage policies)"),
    responses(
        (status = 200, description = "In force", body = LimitsSet),
        (status = 400, description = "Not a JSON object of limits, or a bad path", body = ErrorBody),
        (status = 401, description = "No valid admin token", body = ErrorBody),
        (status = 403, description = "The role or the tenant may not", body = ErrorBody),
        (status = 404, description = "Not a scope", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 422, description = "Limits that do not parse", body = ErrorBody),
        (status = 503, description = "The key store did not answer", body = ErrorBody),
    ))]
pub(crate) async fn set_limits(
    State(gw): State<Arc<Gateway>>,
    Extension(who): Extension<Principal>,
    P((scope, name)): P<(String, String)>,
    Body(body): Body,
) -> Response {
    if !matches!(scope.as_str(), "keys" | "teams" | "users") {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_scope",
            "Limits can be set for keys, teams or users (a key's end users).",
        );
    }
    if let Err(r) = own_key(&gw, &who, &scope, &name).await {
        return r;
    }
    let raw: sluice_config::RawLimits = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("Expected an object of limit names to numbers (or outage policies): {e}"),
            );
        }
    };
    let specs = match sluice_config::parse_limits(&raw) {
        Ok(s) => s,
        Err(errs) => return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_limits", errs.join("; ")),
    };
    let before = in_force(&gw, &scope, &name);
    match put_limits(&gw, &scope, &name, &raw, specs).await {
        Ok(limits) => {
            let after = serde_json::to_value(&limits).ok();
            let target = format!("{scope}/{name}");
            let tenant = owner(&gw, &scope, &name).await;
            crate::audit::record(
                &gw,
                &who,
                "limits.set",
                (Some(&target), tenant.as_deref()),
                before,
                after,
            )
            .await;
            Json(LimitsSet { scope, name, limits }).into_response()
        }
        Err(r) => r,
    }
}

/// Stores limits already checked (first, so what the API confirms survives a restart), then
/// puts them in force.
pub(crate) async fn put_limits(
    gw: &Gateway,
    scope: &str,
    name: &str,
    raw: &sluice_config::RawLimits,
    specs: Vec<sluice_config::LimitSpec>,
) -> Result<Vec<LimitView>, Response> {
    let stored = sluice_store::StoredLimits {
        scope: scope.to_owned(),
        name: name.to_owned(),
        limits: raw
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or_default()))
            .collect(),
    };
    if let Err(e) = gw.store.put_limits(&stored).await {
        return Err(store_unavailable(e));
    }
    let view: Vec<_> = specs.iter().map(LimitView::from).collect();
    let mut next = (**gw.runtime_limits.load()).clone();
    next.set(scope, name, specs);
    gw.runtime_limits.store(Arc::new(next));
    tracing::info!(scope, name, "limits set at run time");
    Ok(view)
}

/// Clears a key's, team's or key's end users' run-time limits (the config's apply again).
#[utoipa::path(delete, path = "/admin/limits/{scope}/{name}", tag = "limits",
    params(
        ("scope" = inline(LimitScope), Path, description = "`keys`, `teams` or `users`"),
        ("name" = String, Path, description = "The key id or team name"),
    ),
    responses(
        (status = 204, description = "Cleared"),
        (status = 400, description = "A bad path", body = ErrorBody),
        (status = 401, description = "No valid admin token", body = ErrorBody),
        (status = 403, description = "The role or the tenant may not", body = ErrorBody),
        (status = 404, description = "No run-time limits there", body = ErrorBody),
        (status = 503, description = "The key store did not answer", body = ErrorBody),
    ))]
pub(crate) async fn clear_limits(
    State(gw): State<Arc<Gateway>>,
    Extension(who): Extension<Principal>,
    P((scope, name)): P<(String, String)>,
) -> Response {
    if let Err(r) = own_key(&gw, &who, &scope, &name).await {
        return r;
    }
    let before = in_force(&gw, &scope, &name);
    if let Err(e) = gw.store.delete_limits(&scope, &name).await {
        return store_unavailable(e);
    }
    let mut next = (**gw.runtime_limits.load()).clone();
    if !next.clear(&scope, &name) {
        return error(StatusCode::NOT_FOUND, "not_found", "No run-time limits are set there.");
    }
    gw.runtime_limits.store(Arc::new(next));
    let target = format!("{scope}/{name}");
    let tenant = owner(&gw, &scope, &name).await;
    crate::audit::record(
        &gw,
        &who,
        "limits.clear",
        (Some(&target), tenant.as_deref()),
        before,
        None,
    )
    .await;
    StatusCode::NO_CONTENT.into_response()
}

/// A principal confined to a tenant changes only its own keys' limits (and their users'):
/// never a team's, never another tenant's key.
async fn own_key(gw: &Gateway, who: &Principal, scope: &str, name: &str) -> Result<(), Response> {
    let Some(own) = &who.tenant else { return Ok(()) };
    let forbidden = || {
        error(
            StatusCode::FORBIDDEN,
            "tenant_forbidden",
            "A principal confined to a tenant changes only its own keys' limits.",
        )
    };
    if scope == "teams" {
        return Err(forbidden());
    }
    match crate::owners::tenant_of(gw, name).await? {
        Some(Some(t)) if &t == own => Ok(()),
        _ => Err(forbidden()),
    }
}

/// The run-time limits in force for `scope`/`name`, as JSON (an audit entry's `before`).
fn in_force(gw: &Gateway, scope: &str, name: &str) -> Option<serde_json::Value> {
    let now = gw.runtime_limits.load();
    let map = match scope {
        "keys" => &now.keys,
        "teams" => &now.teams,
        "users" => &now.users,
        _ => return None,
    };
    map.get(name).and_then(|v| serde_json::to_value(v).ok())
}

/// Whose limits these are: the key's tenant (a team's are nobody's tenant's).
async fn owner(gw: &Gateway, scope: &str, name: &str) -> Option<String> {
    if scope == "teams" {
        return None;
    }
    crate::owners::tenant_of(gw, name).await.ok().flatten().flatten()
}
