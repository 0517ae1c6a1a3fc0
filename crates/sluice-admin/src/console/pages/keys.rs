//! Keys: the list (a page at a time), creating one (its secret shown on the next page only,
//! once), a key's detail with its run-time limits to edit, and revoking it. Write buttons are
//! drawn only for a principal the API would let write; the API decides either way.

use axum::Form;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::budgets::{LimitView, LimitsList, limit_form};
use super::{path, refused};
use crate::auth;
use crate::console::Console;
use crate::console::api::query;
use crate::console::layout::{self, csrf, notice};
use crate::console::signed::Session;

#[derive(Debug, Deserialize)]
pub(crate) struct Key {
    id: String,
    source: String,
    prefix: Option<String>,
    tenant: Option<String>,
    team: Option<String>,
    user: Option<String>,
    tier: Option<String>,
    models: Option<Vec<String>>,
    created_at: Option<String>,
    expires_at: Option<String>,
    revoked_at: Option<String>,
}

#[derive(Deserialize)]
struct KeyList {
    data: Vec<Key>,
    has_more: bool,
    last_id: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    after: Option<String>,
}

fn or_dash(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("—")
}

fn key_status(k: &Key) -> &'static str {
    if k.revoked_at.is_some() { "revoked" } else { "active" }
}

/// The create form (only for a principal that may create keys).
fn create_form(s: &Session) -> Markup {
    if !auth::may(&s.principal, &Method::POST, "/admin/keys") {
        return html! {};
    }
    let tenant = s.principal.tenant.as_deref();
    html! {
        details class="create" open {
            summary { "Create a key" }
            form method="post" action="/console/keys" id="create-key" {
                (csrf(s))
                label { "Id " input name="id" placeholder="generated when empty" pattern="[A-Za-z0-9_-]{1,64}"; }
                label { "Tenant "
                    @if let Some(t) = tenant { input name="tenant" value=(t) readonly; }
                    @else { input name="tenant"; }
                }
                label { "Team " input name="team"; }
                label { "User " input name="user"; }
                label { "Tier " input name="tier"; }
                label { "Models " input name="models" placeholder="comma-separated aliases; empty: all"; }
                button type="submit" id="create" { "Create" }
            }
        }
    }
}

async fn list_body(c: &Console, s: &Session, after: Option<&str>, top: Markup) -> (StatusCode, Markup) {
    let mut pairs = vec![("limit", "100")];
    if let Some(a) = after {
        pairs.push(("after", a));
    }
    let a = c.api.get(&s.principal, &format!("/admin/keys{}", query(&pairs))).await;
    let Some(list) = a.parse::<KeyList>() else {
        return (a.status, html! { (top) (refused(&a.message())) });
    };
    let body = html! {
        (top)
        (create_form(s))
        table class="data" id="keys-table" {
            caption { "Keys" }
            thead { tr {
                th scope="col" { "Id" } th scope="col" { "Source" } th scope="col" { "Prefix" } th scope="col" { "Tenant" }
                th scope="col" { "Team" } th scope="col" { "User" } th scope="col" { "Tier" } th scope="col" { "Models" }
                th scope="col" { "Created" } th scope="col" { "Status" }
            } }
            tbody {
                @for k in &list.data {
                    tr data-key=(k.id) {
                        th scope="row" { a href=(path("/console/keys", &k.id)) { (k.id) } }
                        td { (k.source) } td { (or_dash(&k.prefix)) } td { (or_dash(&k.tenant)) } td { (or_dash(&k.team)) }
                        td { (or_dash(&k.user)) } td { (or_dash(&k.tier)) }
                        td { (k.models.as_ref().map_or_else(|| "all".to_owned(), |m| m.join(", "))) }
                        td { (or_dash(&k.created_at)) } td class="status" { (key_status(k)) }
                    }
                }
                @if list.data.is_empty() { tr { td colspan="10" { "No keys." } } }
            }
        }
        @if list.has_more && let Some(last) = &list.last_id {
            p { a href={"/console/keys" (query(&[("after", last)]))} { "Next page" } }
        }
    };
    (StatusCode::OK, body)
}

pub(crate) async fn list(
    State(c): State<Console>,
    Extension(s): Extension<Session>,
    Query(q): Query<ListQuery>,
) -> Response {
    let (status, body) = list_body(&c, &s, q.after.as_deref(), html! {}).await;
    layout::page_with_status(&s, "/console/keys", "Keys", status, body)
}

#[derive(Deserialize)]
pub(crate) struct CreateForm {
    id: Option<String>,
    tenant: Option<String>,
    team: Option<String>,
    user: Option<String>,
    tier: Option<String>,
    models: Option<String>,
}

#[derive(Deserialize)]
struct Created {
    id: String,
    key: String,
}

pub(crate) async fn create(
    State(c): State<Console>,
    Extension(s): Extension<Session>,
    Form(f): Form<CreateForm>,
) -> Response {
    let mut body = Map::new();
    for (name, v) in [
        ("id", &f.id),
        ("tenant", &f.tenant),
        ("team", &f.team),
        ("user", &f.user),
        ("tier", &f.tier),
    ] {
        if let Some(v) = v.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            body.insert(name.to_owned(), Value::from(v));
        }
    }
    let models: Vec<Value> = f
        .models
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(Value::from)
        .collect();
    if !models.is_empty() {
        body.insert("models".to_owned(), Value::Array(models));
    }
    let a = c
        .api
        .call(&s.principal, Method::POST, "/admin/keys", Some(&Value::Object(body)))
        .await;
    let top = match a.parse::<Created>() {
        Some(k) => html! {
            div class="notice" role="status" id="created" {
                p { "Key " strong { (k.id) } " created. Copy its secret now: it is shown this once, and the gateway keeps only its hash." }
                p { code id="new-key" { (k.key) } }
            }
        },
        None => notice(false, &a.message()),
    };
    let status = if a.ok() { StatusCode::OK } else { a.status };
    let (_, body) = list_body(&c, &s, None, top).await;
    layout::page_with_status(&s, "/console/keys", "Keys", status, body)
}

/// Every key, read a page at a time, until `id` is found.
async fn find(c: &Console, s: &Session, id: &str) -> Result<Option<Key>, (StatusCode, String)> {
    let mut after: Option<String> = None;
    loop {
        let mut pairs = vec![("limit", "1000")];
        if let Some(a) = &after {
            pairs.push(("after", a.as_str()));
        }
        let a = c.api.get(&s.principal, &format!("/admin/keys{}", query(&pairs))).await;
        let Some(list) = a.parse::<KeyList>() else {
            return Err((a.status, a.message()));
        };
        if let Some(k) = list.data.into_iter().find(|k| k.id == id) {
            return Ok(Some(k));
        }
        match (list.has_more, list.last_id) {
            (true, Some(last)) => after = Some(last),
            _ => return Ok(None),
        }
    }
}

pub(crate) async fn detail(
    State(c): State<Console>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    detail_page(&c, &s, &id, html! {}, StatusCode::OK).await
}

pub(crate) async fn detail_page(c: &Console, s: &Session, id: &str, top: Markup, status: StatusCode) -> Response {
    let key = match find(c, s, id).await {
        Ok(Some(k)) => k,
        Ok(None) => {
            return layout::page_with_status(
                s,
                "/console/keys",
                "Key",
                StatusCode::NOT_FOUND,
                html! { (top) (refused(&format!("No key {id:?}."))) },
            );
        }
        Err((status, m)) => return layout::page_with_status(s, "/console/keys", "Key", status, refused(&m)),
    };
    let limits: Vec<LimitView> = c
        .api
        .get(&s.principal, "/admin/limits")
        .await
        .parse::<LimitsList>()
        .and_then(|mut l| l.keys.remove(id))
        .unwrap_or_default();
    let can_revoke = key.source == "runtime"
        && key.revoked_at.is_none()
        && auth::may(&s.principal, &Method::DELETE, "/admin/keys/{id}");
    let body = html! {
        (top)
        dl class="facts" {
            dt { "Id" } dd id="key-id" { (key.id) }
            dt { "Source" } dd { (key.source) }
            dt { "Tenant" } dd { (or_dash(&key.tenant)) }
            dt { "Team" } dd { (or_dash(&key.team)) }
            dt { "User" } dd { (or_dash(&key.user)) }
            dt { "Tier" } dd { (or_dash(&key.tier)) }
            dt { "Models" } dd { (key.models.as_ref().map_or_else(|| "all".to_owned(), |m| m.join(", "))) }
            dt { "Expires" } dd { (or_dash(&key.expires_at)) }
            dt { "Status" } dd id="key-status" { (key_status(&key)) @if let Some(r) = &key.revoked_at { " at " (r) } }
        }
        @if can_revoke {
            form method="post" action={(path("/console/keys", &key.id)) "/revoke"} {
                (csrf(s))
                button type="submit" class="danger" id="revoke" { "Revoke this key" }
            }
        }
        h2 { "Run-time limits" }
        (limit_form(s, "keys", &key.id, &limits))
    };
    layout::page_with_status(s, "/console/keys", &format!("Key {}", key.id), status, body)
}

pub(crate) async fn revoke(
    State(c): State<Console>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let a = c
        .api
        .call(&s.principal, Method::DELETE, &path("/admin/keys", &id), None)
        .await;
    if a.ok() {
        return Redirect::to(&path("/console/keys", &id)).into_response();
    }
    detail_page(&c, &s, &id, notice(false, &a.message()), a.status).await
}
