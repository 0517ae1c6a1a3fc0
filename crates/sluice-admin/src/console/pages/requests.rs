//! Recent requests from the ledger (who, where, status, tokens, cost, latency, how they ended;
//! no text), and for operators the payloads of routes that log them — stored only after their
//! redaction rules ran.

use axum::extract::{Extension, Query, State};
use axum::http::Method;
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::refused;
use crate::auth;
use crate::console::Console;
use crate::console::api::query;
use crate::console::layout::{self, money, time};
use crate::console::signed::Session;

#[derive(Deserialize)]
struct Row {
    request_id: String,
    started_at: i64,
    key_id: Option<String>,
    tenant: Option<String>,
    route: Option<String>,
    model: Option<String>,
    deployment: Option<String>,
    state: String,
    http_status: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    cost_micros: i64,
    latency_us: Option<i64>,
    error_class: Option<String>,
    cache: Option<String>,
    guardrail: Option<String>,
}

#[derive(Deserialize)]
struct Rows {
    data: Vec<Row>,
    has_more: bool,
}

#[derive(Deserialize)]
struct Payload {
    request_id: String,
    at: i64,
    route: Option<String>,
    redacted: bool,
    request: String,
    response: String,
}

#[derive(Deserialize)]
struct Payloads {
    data: Vec<Payload>,
}

#[derive(Deserialize)]
pub(crate) struct RequestsQuery {
    before: Option<i64>,
}

fn dash(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("—")
}

pub(crate) async fn page(
    State(c): State<Console>,
    Extension(s): Extension<Session>,
    Query(q): Query<RequestsQuery>,
) -> Response {
    let before = q.before.map(|b| b.to_string());
    let mut pairs = vec![("limit", "50")];
    if let Some(b) = &before {
        pairs.push(("before", b.as_str()));
    }
    let a = c
        .api
        .get(&s.principal, &format!("/admin/requests{}", query(&pairs)))
        .await;
    let Some(rows) = a.parse::<Rows>() else {
        return layout::page_with_status(&s, "/console/requests", "Requests", a.status, refused(&a.message()));
    };
    let currency = c.gw.snapshot().currency.to_string();
    let payloads = if auth::may(&s.principal, &Method::GET, "/admin/payloads") {
        c.api
            .get(&s.principal, "/admin/payloads?limit=20")
            .await
            .parse::<Payloads>()
            .map(|p| p.data)
    } else {
        None
    };
    let body = html! {
        table class="data" id="requests-table" {
            caption { "Recent requests, newest first" }
            thead { tr {
                th scope="col" { "Started (UTC)" } th scope="col" { "Request" } th scope="col" { "Key" } th scope="col" { "Tenant" }
                th scope="col" { "Route" } th scope="col" { "Model" } th scope="col" { "Deployment" } th scope="col" { "Status" }
                th scope="col" { "Tokens in/out" } th scope="col" { "Cost" } th scope="col" { "Latency (ms)" }
                th scope="col" { "Error" } th scope="col" { "Cache" } th scope="col" { "Guardrail" }
            } }
            tbody {
                @for r in &rows.data {
                    tr {
                        td { (time(r.started_at)) }
                        th scope="row" { code { (r.request_id) } }
                        td { (dash(&r.key_id)) } td { (dash(&r.tenant)) } td { (dash(&r.route)) } td { (dash(&r.model)) }
                        td { (dash(&r.deployment)) }
                        td { @if r.state == "open" { "in flight" } @else { (r.http_status) } }
                        td { (r.prompt_tokens) " / " (r.completion_tokens) }
                        td { (money(r.cost_micros as f64, &currency)) }
                        td { @if let Some(us) = r.latency_us { (format!("{:.1}", us as f64 / 1000.0)) } @else { "—" } }
                        td { (dash(&r.error_class)) } td { (dash(&r.cache)) } td { (dash(&r.guardrail)) }
                    }
                }
                @if rows.data.is_empty() { tr { td colspan="14" { "No requests recorded." } } }
            }
        }
        @if rows.has_more && let Some(last) = rows.data.last() {
            p { a href={"/console/requests" (query(&[("before", &last.started_at.to_string())]))} { "Older requests" } }
        }
        @if let Some(p) = &payloads {
            h2 { "Logged payloads (redacted before they were stored)" }
            @if p.is_empty() { p { "No route logs payloads, or none has been stored yet." } }
            @for x in p {
                details class="payload" {
                    summary { (time(x.at)) " · " code { (x.request_id) } " · " (dash(&x.route)) @if !x.redacted { " · not redacted" } }
                    h3 { "Request" } pre { (x.request) }
                    h3 { "Answer" } pre { (x.response) }
                }
            }
        }
    };
    layout::page(&s, "/console/requests", "Requests", body)
}
