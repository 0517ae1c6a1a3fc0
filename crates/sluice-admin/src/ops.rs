//! The gateway as a whole: its metrics, its deployments' live health, the config serving and
//! reloading it.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sluice_gateway::Gateway;
use sluice_gateway::state::reload::{self, Reloaded};
use utoipa::ToSchema;

use crate::error::{ErrorBody, error};

/// Prometheus text exposition of every metric.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 401, description = "No valid admin token", body = ErrorBody),
        (status = 403, description = "The role or the tenant may not", body = ErrorBody),
    ))]
pub(crate) async fn metrics(State(gw): State<Arc<Gateway>>) -> Response {
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

#[derive(Debug, Serialize, ToSchema)]
pub struct DeploymentHealth {
    pub deployment: String,
    /// `closed`, `open` or `half_open`.
    pub state: &'static str,
    pub in_flight: i64,
    pub max_concurrency: Option<i64>,
    /// The server's own queue × 1000 + KV-cache ‰ (capacity-aware balancing).
    pub reported_load: u64,
    pub latency_ewma_ms: f64,
    pub ejections: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthList {
    pub deployments: Vec<DeploymentHealth>,
}

/// Every deployment's live health: breaker state, requests in flight, latency average.
#[utoipa::path(get, path = "/admin/health", tag = "operations",
    responses(
        (status = 200, description = "Each deployment's health", body = HealthList),
        (status = 401, description = "No valid admin token", body = ErrorBody),
        (status = 403, description = "The role or the tenant may not", body = ErrorBody),
    ))]
pub(crate) async fn health(State(gw): State<Arc<Gateway>>) -> Response {
    let deployments = gw
        .live
        .health()
        .into_iter()
        .map(|(name, h)| DeploymentHealth {
            deployment: name,
            state: h.state().as_str(),
            in_flight: h.outstanding(),
            max_concurrency: h.limit(),
            reported_load: h.reported_load(),
            latency_ewma_ms: (h.ewma_ms() * 1000.0).round() / 1000.0,
            ejections: h.ejections(),
        })
        .collect();
    Json(HealthList { deployments }).into_response()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReloadResult {
    /// Whether a changed config was put in force.
    pub reloaded: bool,
    /// The config serving now (the first 12 hex digits of its SHA-256).
    pub version: String,
    /// Settings that changed but apply only after a restart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_needed: Option<Vec<&'static str>>,
}

/// Reads the config file again and swaps it in whole, or keeps the one serving on any error.
#[utoipa::path(post, path = "/admin/reload", tag = "operations",
    responses(
        (status = 200, description = "Reloaded (or unchanged)", body = ReloadResult),
        (status = 401, description = "No valid admin token", body = ErrorBody),
        (status = 403, description = "The role or the tenant may not", body = ErrorBody),
        (status = 422, description = "The file does not validate; the old config keeps serving", body = ErrorBody),
    ))]
pub(crate) async fn reload_config(
    State(gw): State<Arc<Gateway>>,
    axum::extract::Extension(who): axum::extract::Extension<crate::auth::Principal>,
) -> Response {
    let by = reload::ReloadBy {
        actor: &who.id,
        role: Some(who.role.as_str()),
        tenant: who.tenant.as_deref(),
    };
    match reload::reload(&gw, by).await {
        Ok(Reloaded::Swapped {
            version,
            restart_needed,
        }) => Json(ReloadResult {
            reloaded: true,
            version,
            restart_needed: Some(restart_needed),
        })
        .into_response(),
        Ok(Reloaded::Unchanged { version }) => Json(ReloadResult {
            reloaded: false,
            version,
            restart_needed: None,
        })
        .into_response(),
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_config", e.to_string()),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelSummary {
    pub name: String,
    pub deployments: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeploymentSummary {
    pub name: String,
    pub provider: &'static str,
    pub base_url: String,
    pub model: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConfigSummary {
    pub version: String,
    pub routes: Vec<String>,
    pub models: Vec<ModelSummary>,
    pub deployments: Vec<DeploymentSummary>,
    pub yaml_keys: usize,
    pub active_keys: usize,
    /// Currency of every cost (costs are integer micro-units of it).
    pub currency: String,
    /// Each route in match order.
    pub route_details: Vec<crate::config_view::RouteSummary>,
    pub budgets: Vec<crate::config_view::BudgetSummary>,
    pub alerts: crate::config_view::AlertsSummary,
}

/// The config serving: its version, routes, models and deployments (no secrets).
#[utoipa::path(get, path = "/admin/config", tag = "operations",
    responses(
        (status = 200, description = "What is configured", body = ConfigSummary),
        (status = 401, description = "No valid admin token", body = ErrorBody),
        (status = 403, description = "The role or the tenant may not", body = ErrorBody),
    ))]
pub(crate) async fn config_summary(State(gw): State<Arc<Gateway>>) -> Response {
    let snap = gw.snapshot();
    let c = &snap.config;
    Json(ConfigSummary {
        version: snap.version.to_string(),
        routes: c.routes.iter().map(|r| r.name.clone()).collect(),
        models: c
            .models
            .iter()
            .map(|m| ModelSummary {
                name: m.name.clone(),
                deployments: m.deployments.iter().map(|&d| c.deployments[d].name.clone()).collect(),
            })
            .collect(),
        deployments: snap
            .deployments
            .iter()
            .map(|d| DeploymentSummary {
                name: d.name.to_string(),
                provider: d.adapter.name(),
                base_url: d.base_url.to_string(),
                model: d.upstream_model.to_string(),
            })
            .collect(),
        yaml_keys: c.keys.len(),
        active_keys: gw.key_count(),
        currency: c.currency.clone(),
        route_details: crate::config_view::routes(c),
        budgets: crate::config_view::budgets(c),
        alerts: crate::config_view::alerts(c),
    })
    .into_response()
}
