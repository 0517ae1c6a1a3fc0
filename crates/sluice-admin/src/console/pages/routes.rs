//! Routes and models as configured: routes in match order with their model, limits, fallback
//! chain and screens; model aliases and their deployments; deployments and where they point.

use axum::extract::{Extension, State};
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::budgets::{LimitView, limits_text};
use super::refused;
use crate::console::Console;
use crate::console::layout;
use crate::console::signed::Session;

#[derive(Deserialize)]
struct Route {
    name: String,
    model: Option<String>,
    limits: Vec<LimitView>,
    fallback: Vec<String>,
    guarded: bool,
    log_payloads: bool,
}

#[derive(Deserialize)]
struct Model {
    name: String,
    deployments: Vec<String>,
}

#[derive(Deserialize)]
struct Deployment {
    name: String,
    provider: String,
    base_url: String,
    model: String,
}

#[derive(Deserialize)]
struct ConfigView {
    version: String,
    route_details: Vec<Route>,
    models: Vec<Model>,
    deployments: Vec<Deployment>,
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

pub(crate) async fn page(State(c): State<Console>, Extension(s): Extension<Session>) -> Response {
    let a = c.api.get(&s.principal, "/admin/config").await;
    let body = match a.parse::<ConfigView>() {
        Some(cv) => html! {
            p { "Config version " code id="config-version" { (cv.version) } }
            table class="data" id="routes-table" {
                caption { "Routes, first match wins" }
                thead { tr {
                    th scope="col" { "Route" } th scope="col" { "Model" } th scope="col" { "Limits" }
                    th scope="col" { "Fallback" } th scope="col" { "Guardrails" } th scope="col" { "Payloads logged" }
                } }
                tbody {
                    @for r in &cv.route_details {
                        tr {
                            th scope="row" { (r.name) }
                            td { (r.model.as_deref().unwrap_or("the request's")) }
                            td { (limits_text(&r.limits)) }
                            td { (r.fallback.join(" → ")) }
                            td { (yes(r.guarded)) } td { (yes(r.log_payloads)) }
                        }
                    }
                }
            }
            table class="data" id="models-table" {
                caption { "Model aliases" }
                thead { tr { th scope="col" { "Alias" } th scope="col" { "Deployments" } } }
                tbody { @for m in &cv.models { tr { th scope="row" { (m.name) } td { (m.deployments.join(", ")) } } } }
            }
            table class="data" id="upstreams-table" {
                caption { "Deployments" }
                thead { tr { th scope="col" { "Deployment" } th scope="col" { "Provider" } th scope="col" { "Base URL" } th scope="col" { "Upstream model" } } }
                tbody {
                    @for d in &cv.deployments {
                        tr { th scope="row" { (d.name) } td { (d.provider) } td { (d.base_url) } td { (d.model) } }
                    }
                }
            }
        },
        None => refused(&a.message()),
    };
    layout::page_with_status(&s, "/console/routes", "Routes & models", a.status, body)
}
