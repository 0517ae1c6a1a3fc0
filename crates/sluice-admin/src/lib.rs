//! The admin API, on its own listener (localhost by default): metrics, virtual keys, reload.
//! When `admin.token_env` is set, every call needs `Authorization: Bearer <token>`.
//!
//! It never sits on the request path: the gateway serves it on the admin listener only.

mod cache;
mod error;
pub mod usage;

use error::error;

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sluice_config::Pattern;
use sluice_store::{StoreError, StoredKey};

use sluice_gateway::Gateway;
use sluice_gateway::keys::{self, KeySource};
use sluice_gateway::state::reload::{self, Reloaded};

pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/admin/keys", get(list_keys).post(create_key))
        .route("/admin/keys/{id}", delete(revoke_key))
        .route("/admin/reload", post(reload_config))
        .route("/admin/limits", get(list_limits))
        .route(
            "/admin/limits/{scope}/{name}",
            axum::routing::put(set_limits).delete(clear_limits),
        )
        .route("/admin/config", get(config_summary))
        .route("/admin/usage", get(crate::usage::handler))
        .route("/admin/health", get(health))
        .route("/admin/cache", delete(cache::purge))
        .route("/admin/cache/stats", get(cache::stats))
        .layer(middleware::from_fn_with_state(gw.clone(), require_token))
        .with_state(gw)
}

async fn require_token(State(gw): State<Arc<Gateway>>, req: Request, next: Next) -> Response {
    let snap = gw.snapshot();
    if let Some(token) = &snap.config.admin.token {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let ok: bool = subtle_eq(presented.as_bytes(), token.expose().as_bytes());
        if !ok {
            return error(
                StatusCode::UNAUTHORIZED,
                "invalid_admin_token",
                "A valid admin token is required.",
            );
        }
    }
    next.run(req).await
}

/// Constant-time comparison (length leaks, content does not).
fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn metrics(State(gw): State<Arc<Gateway>>) -> Response {
    gw.telemetry.metrics.keys.set(gw.key_count() as i64);
    let m = &gw.telemetry.metrics;
    m.limits_cells.set(gw.live.limits.cells() as i64);
    m.cache_entries
        .set(i64::try_from(gw.cache.memory.entries()).unwrap_or(i64::MAX));
    m.cache_bytes
        .set(i64::try_from(gw.cache.memory.bytes()).unwrap_or(i64::MAX));
    let evicted = gw.cache.memory.evictions();
    m.cache_evictions
        .inc_by(evicted.saturating_sub(m.cache_evictions.get()));
    m.cache_waiting.set(gw.cache.flights.waiting());
    for (name, h) in gw.live.health() {
        let label = sluice_gateway::telemetry::DeploymentLabel {
            deployment: Arc::from(name.as_str()),
        };
        m.breaker_state.get_or_create(&label).set(h.state() as i64);
        m.deployment_in_flight.get_or_create(&label).set(h.outstanding());
        m.deployment_load
            .get_or_create(&label)
            .set(i64::try_from(h.reported_load()).unwrap_or(i64::MAX));
    }
    let snap = gw.snapshot();
    for route in snap.routes.iter().filter(|r| r.config.queue.is_some()) {
        let label = sluice_gateway::telemetry::RouteLabel {
            route: route.name.clone(),
        };
        let m = &gw.telemetry.metrics;
        m.queue_depth.get_or_create(&label).set(route.queue.queued() as i64);
        m.queue_running.get_or_create(&label).set(route.queue.running() as i64);
    }
    let mut r = gw.telemetry.render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// Every deployment's live health: breaker state, requests in flight, latency average.
async fn health(State(gw): State<Arc<Gateway>>) -> Response {
    let list: Vec<_> = gw
        .live
        .health()
        .into_iter()
        .map(|(name, h)| {
            json!({
                "deployment": name,
                "state": h.state().as_str(),
                "in_flight": h.outstanding(),
                "max_concurrency": h.limit(),
                "reported_load": h.reported_load(),
                "latency_ewma_ms": (h.ewma_ms() * 1000.0).round() / 1000.0,
                "ejections": h.ejections(),
            })
        })
        .collect();
    Json(json!({ "deployments": list })).into_response()
}

#[derive(Debug, Serialize)]
struct KeyView {
    id: String,
    source: KeySource,
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    tenant: Option<String>,
    team: Option<String>,
    user: Option<String>,
    tier: Option<String>,
    models: Option<Vec<String>>,
    routes: Option<Vec<String>>,
    expires_at: Option<DateTime<Utc>>,
    created_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    trust_user: bool,
}

fn pattern_text(p: &Pattern) -> String {
    match p {
        Pattern::Any => "*".to_owned(),
        Pattern::Exact(s) => s.clone(),
        Pattern::Prefix(s) => format!("{s}*"),
    }
}

async fn list_keys(State(gw): State<Arc<Gateway>>) -> Response {
    let snap = gw.snapshot();
    let mut out: Vec<KeyView> = snap
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
        Ok(stored) => out.extend(stored.into_iter().map(|k| KeyView {
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
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string()),
    }
    Json(json!({ "object": "list", "data": out })).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    id: Option<String>,
    tenant: Option<String>,
    team: Option<String>,
    user: Option<String>,
    tier: Option<String>,
    models: Option<Vec<String>>,
    routes: Option<Vec<String>>,
    expires_at: Option<DateTime<Utc>>,
    /// Let the request's `user` field key the per-user limits.
    trust_user: Option<bool>,
    /// Each end user's limits on this key (as `PUT /admin/limits/users/{id}`).
    user_limits: Option<sluice_config::RawLimits>,
}

async fn create_key(State(gw): State<Arc<Gateway>>, body: axum::body::Bytes) -> Response {
    let req: CreateKey = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()),
    };
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
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string()),
    }
    let user_limits = match user_limits {
        Some((raw, specs)) => match put_limits(&gw, "users", &id, raw, specs).await {
            Ok(view) => Some(view),
            Err(r) => return r,
        },
        None => None,
    };
    if let Err(e) = gw.refresh_keys().await {
        return error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string());
    }
    let body = json!({
        "id": id, "key": secret, "source": "runtime", "prefix": stored.prefix,
        "tenant": stored.tenant, "team": stored.team, "user": stored.user, "tier": stored.tier,
        "models": stored.models, "routes": stored.routes, "expires_at": stored.expires_at,
        "created_at": stored.created_at, "trust_user": stored.trust_user, "user_limits": user_limits,
    });
    (StatusCode::CREATED, Json(body)).into_response()
}

async fn revoke_key(State(gw): State<Arc<Gateway>>, Path(id): Path<String>) -> Response {
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
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string()),
    }
    if let Err(e) = gw.refresh_keys().await {
        return error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string());
    }
    Json(json!({ "id": id, "revoked": true })).into_response()
}

async fn list_limits(State(gw): State<Arc<Gateway>>) -> Response {
    Json(serde_json::to_value(&**gw.runtime_limits.load()).unwrap_or_default()).into_response()
}

/// `PUT /admin/limits/{keys|teams|users}/{name}` with `{"requests_per_minute": 60, …}`:
/// replaces that key's or team's limits (`users`: each end user's limits on key `name`) from
/// now on, without a restart (counters are kept).
async fn set_limits(
    State(gw): State<Arc<Gateway>>,
    Path((scope, name)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    if !matches!(scope.as_str(), "keys" | "teams" | "users") {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_scope",
            "Limits can be set for keys, teams or users (a key's end users).",
        );
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
    match put_limits(&gw, &scope, &name, &raw, specs).await {
        Ok(view) => Json(json!({"scope": scope, "name": name, "limits": view})).into_response(),
        Err(r) => r,
    }
}

/// Stores limits already checked (first, so what the API confirms survives a restart), then
/// puts them in force.
async fn put_limits(
    gw: &Gateway,
    scope: &str,
    name: &str,
    raw: &sluice_config::RawLimits,
    specs: Vec<sluice_config::LimitSpec>,
) -> Result<Vec<sluice_limits::LimitSpecView>, Response> {
    let stored = sluice_store::StoredLimits {
        scope: scope.to_owned(),
        name: name.to_owned(),
        limits: raw
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or_default()))
            .collect(),
    };
    if let Err(e) = gw.store.put_limits(&stored).await {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            e.to_string(),
        ));
    }
    let view: Vec<_> = specs.iter().map(sluice_limits::LimitSpecView::from).collect();
    let mut next = (**gw.runtime_limits.load()).clone();
    next.set(scope, name, specs);
    gw.runtime_limits.store(Arc::new(next));
    tracing::info!(scope, name, "limits set at run time");
    Ok(view)
}

async fn clear_limits(State(gw): State<Arc<Gateway>>, Path((scope, name)): Path<(String, String)>) -> Response {
    if let Err(e) = gw.store.delete_limits(&scope, &name).await {
        return error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string());
    }
    let mut next = (**gw.runtime_limits.load()).clone();
    if !next.clear(&scope, &name) {
        return error(StatusCode::NOT_FOUND, "not_found", "No run-time limits are set there.");
    }
    gw.runtime_limits.store(Arc::new(next));
    StatusCode::NO_CONTENT.into_response()
}

async fn reload_config(State(gw): State<Arc<Gateway>>) -> Response {
    match reload::reload(&gw).await {
        Ok(Reloaded::Swapped {
            version,
            restart_needed,
        }) => Json(json!({ "reloaded": true, "version": version, "restart_needed": restart_needed })).into_response(),
        Ok(Reloaded::Unchanged { version }) => Json(json!({ "reloaded": false, "version": version })).into_response(),
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_config", e.to_string()),
    }
}

async fn config_summary(State(gw): State<Arc<Gateway>>) -> Response {
    let snap = gw.snapshot();
    let c = &snap.config;
    Json(json!({
        "version": &*snap.version,
        "routes": c.routes.iter().map(|r| &r.name).collect::<Vec<_>>(),
        "models": c.models.iter().map(|m| json!({
            "name": m.name,
            "deployments": m.deployments.iter().map(|&d| &c.deployments[d].name).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "deployments": snap.deployments.iter().map(|d| json!({
            "name": &*d.name, "provider": d.adapter.name(), "base_url": d.base_url.to_string(), "model": d.upstream_model,
        })).collect::<Vec<_>>(),
        "yaml_keys": c.keys.len(),
        "active_keys": gw.key_count(),
    }))
    .into_response()
}
