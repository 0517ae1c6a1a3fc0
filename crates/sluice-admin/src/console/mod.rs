//! The web console at `/console` on the admin listener: server-rendered pages — charts drawn
//! as SVG on the server beside their data tables, forms for the writes — with no script at all,
//! so its Content-Security-Policy can forbid every script.
//!
//! It is a client of the admin API, in process: every page asks the API's own handlers
//! (`api.rs`) as the signed-in principal, so the console shows and changes exactly what that
//! principal may through the API — the same policy table, the same tenant confinement, the
//! same audit entries. Its own concerns are the sign-in (`session.rs`: a session cookie that
//! is HttpOnly, SameSite=Strict and expires, sessions kept in the store so every instance knows
//! them, rate-limited attempts) and every write carrying the session's CSRF token.

mod api;
mod chart;
mod layout;
mod pages;
mod session;
mod signed;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware;
use axum::routing::{get, post};
use sluice_gateway::Gateway;

pub(crate) use api::Api;

/// What every console handler holds.
#[derive(Clone)]
pub(crate) struct Console {
    pub gw: Arc<Gateway>,
    pub api: Api,
    pub limiter: Arc<session::SignInLimiter>,
}

/// No script, no frame, no other origin: styles and images from the console alone.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// The console's routes (under `/console`), given the admin API's router without its
/// authentication layer: the console authenticates by session and calls it as that principal.
pub(crate) fn router(gw: Arc<Gateway>, api: Router) -> Router {
    let console = Console {
        gw,
        api: Api::new(api),
        limiter: Arc::new(session::SignInLimiter::default()),
    };
    let signed_in = Router::new()
        .route("/console", get(pages::overview::page))
        .route("/console/usage", get(pages::usage::page))
        .route("/console/usage.csv", get(pages::usage::csv))
        .route("/console/keys", get(pages::keys::list).post(pages::keys::create))
        .route("/console/keys/{id}", get(pages::keys::detail))
        .route("/console/keys/{id}/revoke", post(pages::keys::revoke))
        .route("/console/limits", post(pages::budgets::set_limits))
        .route("/console/limits/clear", post(pages::budgets::clear_limits))
        .route("/console/budgets", get(pages::budgets::page))
        .route("/console/deployments", get(pages::deployments::page))
        .route("/console/routes", get(pages::routes::page))
        .route("/console/requests", get(pages::requests::page))
        .route("/console/audit", get(pages::audit::page))
        .route("/console/sign-out", post(session::sign_out))
        .route_layer(middleware::from_fn_with_state(console.clone(), session::require));
    Router::new()
        .route("/console/sign-in", get(session::sign_in_page).post(session::sign_in))
        .route("/console/console.css", get(stylesheet))
        .route("/console/icon.svg", get(icon))
        .merge(signed_in)
        .route("/console/{*rest}", get(pages::not_found).post(pages::not_found))
        .layer(middleware::from_fn(security_headers))
        .with_state(console)
}

/// The headers every console response carries.
async fn security_headers(req: axum::extract::Request, next: middleware::Next) -> axum::response::Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

/// The icon, part of the binary.
async fn icon() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("assets/icon.svg"),
    )
        .into_response()
}

/// The stylesheet, part of the binary.
async fn stylesheet() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("assets/console.css"),
    )
        .into_response()
}
