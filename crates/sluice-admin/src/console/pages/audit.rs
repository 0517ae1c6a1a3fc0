//! The audit log: who changed what, when, with the before and after; newest first, a page at a
//! time, and the chain's head (what `sluice audit verify --head` checks against).

use axum::extract::{Extension, Query, State};
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::refused;
use crate::console::Console;
use crate::console::api::query;
use crate::console::layout::{self, time};
use crate::console::signed::Session;

const PAGE: i64 = 50;

#[derive(Deserialize)]
struct Entry {
    seq: i64,
    at: i64,
    actor: String,
    role: Option<String>,
    action: String,
    target: Option<String>,
    tenant: Option<String>,
    before: Option<String>,
    after: Option<String>,
    hash: String,
}

#[derive(Deserialize)]
struct Head {
    seq: i64,
    hash: String,
}

#[derive(Deserialize)]
struct AuditPage {
    data: Vec<Entry>,
    head: Option<Head>,
}

#[derive(Deserialize)]
pub(crate) struct AuditQuery {
    after: Option<i64>,
}

/// A JSON text shortened for a table cell (the API has it whole).
fn short(v: &Option<String>) -> String {
    let v = v.as_deref().unwrap_or("");
    match v.char_indices().nth(160) {
        Some((i, _)) => format!("{}…", &v[..i]),
        None => v.to_owned(),
    }
}

pub(crate) async fn page(
    State(c): State<Console>,
    Extension(s): Extension<Session>,
    Query(q): Query<AuditQuery>,
) -> Response {
    let get = |after: i64| {
        let c = c.clone();
        let who = s.principal.clone();
        async move {
            let limit = PAGE.to_string();
            let after = after.to_string();
            c.api
                .get(
                    &who,
                    &format!("/admin/audit{}", query(&[("limit", &limit), ("after", &after)])),
                )
                .await
        }
    };
    // Without a page asked for, the newest entries: start from the head (when the principal
    // may see it) one page back.
    let mut a = get(q.after.unwrap_or(0)).await;
    if q.after.is_none()
        && let Some(head) = a.parse::<AuditPage>().and_then(|p| p.head)
        && head.seq > PAGE
    {
        a = get(head.seq - PAGE).await;
    }
    let Some(mut page) = a.parse::<AuditPage>() else {
        return layout::page_with_status(&s, "/console/audit", "Audit log", a.status, refused(&a.message()));
    };
    page.data.reverse();
    let oldest = page.data.last().map(|e| e.seq);
    let body = html! {
        @if let Some(h) = &page.head {
            p { "Head: entry " (h.seq) ", hash " code id="audit-head" { (h.hash) } }
        }
        table class="data" id="audit-table" {
            caption { "Admin writes and config reloads, newest first" }
            thead { tr {
                th scope="col" { "#" } th scope="col" { "When (UTC)" } th scope="col" { "Who" } th scope="col" { "Action" }
                th scope="col" { "Target" } th scope="col" { "Tenant" } th scope="col" { "Before" } th scope="col" { "After" }
                th scope="col" { "Hash" }
            } }
            tbody {
                @for e in &page.data {
                    tr {
                        th scope="row" { (e.seq) }
                        td { (time(e.at)) }
                        td { (e.actor) @if let Some(r) = &e.role { " (" (r) ")" } }
                        td class="action" { (e.action) }
                        td { (e.target.as_deref().unwrap_or("—")) }
                        td { (e.tenant.as_deref().unwrap_or("—")) }
                        td { code { (short(&e.before)) } }
                        td { code { (short(&e.after)) } }
                        td { code { (e.hash.get(..12).unwrap_or(&e.hash)) } }
                    }
                }
                @if page.data.is_empty() { tr { td colspan="9" { "No entries." } } }
            }
        }
        @if let Some(o) = oldest && o > 1 {
            p { a href={"/console/audit" (query(&[("after", &(o - PAGE - 1).max(0).to_string())]))} { "Older entries" } }
        }
    };
    layout::page(&s, "/console/audit", "Audit log", body)
}
