//! The admin API, on its own listener (localhost by default): metrics, virtual keys, limits,
//! usage, the cache, health, the config and its reload — and its OpenAPI 3.1 description at
//! `/admin/openapi.json`, generated from the handlers themselves (utoipa), so the spec and the
//! routes cannot drift apart. Callers are principals with a role, optionally confined to one
//! tenant (`auth.rs`: who they are, and the one table of what each route needs). Every
//! refusal has one body (`error.rs`).
//!
//! It never sits on the request path: the gateway serves it on the admin listener only.

mod analytics;
mod audit;
pub mod auth;
mod cache;
mod config_view;
mod console;
mod error;
mod extract;
mod keys;
mod limits;
mod ops;
mod owners;
mod payloads;
pub mod principals;
mod requests;
pub mod usage;

use std::sync::Arc;

use axum::middleware;
use axum::response::IntoResponse;
use axum::{Json, Router};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use sluice_gateway::Gateway;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sluice admin API",
        description = "Keys, limits, usage, the response cache, deployments' health and the config of a Sluice gateway. Served on the admin listener; with `admin.token_env` set, every call needs `Authorization: Bearer <token>`. Every error is `{\"error\": {\"message\", \"type\": \"admin_error\", \"param\", \"code\"}}`."
    ),
    modifiers(&BearerToken),
    security(("admin_token" = [])),
    tags(
        (name = "keys", description = "Virtual keys"),
        (name = "limits", description = "Limits set at run time"),
        (name = "usage", description = "Spend and tokens from the ledger"),
        (name = "cache", description = "The response cache"),
        (name = "operations", description = "Metrics, health, the config"),
        (name = "principals", description = "Who may call this API"),
        (name = "audit", description = "Every admin write and config reload, hash-chained"),
        (name = "payloads", description = "Prompts and answers of routes that log them (redacted)"),
    )
)]
struct ApiDoc;

struct BearerToken;

impl utoipa::Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The routes and the spec they make, together.
fn api() -> (Router<Arc<Gateway>>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(ops::metrics))
        .routes(routes!(keys::list_keys, keys::create_key))
        .routes(routes!(keys::revoke_key))
        .routes(routes!(ops::reload_config))
        .routes(routes!(limits::list_limits))
        .routes(routes!(limits::set_limits, limits::clear_limits))
        .routes(routes!(ops::config_summary))
        .routes(routes!(usage::handler))
        .routes(routes!(analytics::handler))
        .routes(routes!(ops::health))
        .routes(routes!(cache::purge))
        .routes(routes!(cache::stats))
        .routes(routes!(principals::list, principals::create))
        .routes(routes!(principals::revoke))
        .routes(routes!(audit::list))
        .routes(routes!(payloads::list))
        .routes(routes!(requests::list))
        .split_for_parts()
}

/// The admin API's OpenAPI document (what `/admin/openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().1
}

pub fn router(gw: Arc<Gateway>) -> Router {
    let (routes, spec) = api();
    let spec = Arc::new(spec);
    // The API as the console calls it: authorised by the policy table, its principal given by
    // the caller (the console's session), not read from a header.
    let api = routes
        .route(
            "/admin/openapi.json",
            axum::routing::get(move || {
                let spec = spec.clone();
                async move { Json(spec.as_ref().clone()).into_response() }
            }),
        )
        .route_layer(middleware::from_fn(auth::authorize))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(gw.clone());
    let public = api
        .clone()
        .layer(middleware::from_fn_with_state(gw.clone(), auth::authenticate));
    if !gw.snapshot().config.admin.console.enabled {
        return public;
    }
    Router::new().merge(console::router(gw, api)).fallback_service(public)
}
