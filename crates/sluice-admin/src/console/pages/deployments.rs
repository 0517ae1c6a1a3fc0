//! Deployments as this instance sees them: breaker state, requests in flight (and the cap),
//! the load the server reports, latency EWMA, ejections.

use axum::extract::{Extension, State};
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::refused;
use crate::console::Console;
use crate::console::layout::{self, number};
use crate::console::signed::Session;

#[derive(Deserialize)]
struct Health {
    deployment: String,
    state: String,
    in_flight: i64,
    max_concurrency: Option<i64>,
    reported_load: u64,
    latency_ewma_ms: f64,
    ejections: u32,
}

#[derive(Deserialize)]
struct HealthList {
    deployments: Vec<Health>,
}

pub(crate) async fn page(State(c): State<Console>, Extension(s): Extension<Session>) -> Response {
    let a = c.api.get(&s.principal, "/admin/health").await;
    let body = match a.parse::<HealthList>() {
        Some(h) => html! {
            table class="data" id="deployments-table" {
                caption { "Deployments (this instance's view; breakers and in-flight counts are per instance)" }
                thead { tr {
                    th scope="col" { "Deployment" } th scope="col" { "Breaker" } th scope="col" { "In flight" }
                    th scope="col" { "Most at once" } th scope="col" { "Reported load" } th scope="col" { "Latency EWMA (ms)" }
                    th scope="col" { "Ejections" }
                } }
                tbody {
                    @for d in &h.deployments {
                        tr {
                            th scope="row" { (d.deployment) }
                            td class={"state " (d.state)} { (d.state) }
                            td { (d.in_flight) }
                            td { @if let Some(m) = d.max_concurrency { (m) } @else { "—" } }
                            td { (d.reported_load) }
                            td { (number(d.latency_ewma_ms)) }
                            td { (d.ejections) }
                        }
                    }
                }
            }
        },
        None => refused(&a.message()),
    };
    layout::page_with_status(&s, "/console/deployments", "Deployments", a.status, body)
}
