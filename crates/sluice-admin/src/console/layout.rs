//! The page around every console page: the navigation (only the pages the principal may
//! see), who is signed in, the sign-out button; and the small formatting helpers pages share.

use axum::http::{Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::signed::Session;
use crate::auth;

/// The pages, in the navigation's order: path, title, and the API route it needs.
const PAGES: &[(&str, &str, &str)] = &[
    ("/console", "Overview", "/admin/analytics"),
    ("/console/usage", "Usage", "/admin/analytics"),
    ("/console/keys", "Keys", "/admin/keys"),
    ("/console/budgets", "Budgets & alerts", "/admin/limits"),
    ("/console/deployments", "Deployments", "/admin/health"),
    ("/console/routes", "Routes & models", "/admin/config"),
    ("/console/requests", "Requests", "/admin/requests"),
    ("/console/audit", "Audit log", "/admin/audit"),
];

fn head(title: &str) -> Markup {
    html! {
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        title { (title) " · Sluice" }
        link rel="stylesheet" href="/console/console.css";
        link rel="icon" href="/console/icon.svg" type="image/svg+xml";
    }
}

/// A page without navigation (the sign-in).
pub(crate) fn bare(title: &str, status: StatusCode, body: Markup) -> Response {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(title)) }
            body { (body) }
        }
    };
    (status, Html(page.into_string())).into_response()
}

/// A signed-in page: `active` is its path in the navigation.
pub(crate) fn page(s: &Session, active: &str, title: &str, body: Markup) -> Response {
    page_with_status(s, active, title, StatusCode::OK, body)
}

pub(crate) fn page_with_status(s: &Session, active: &str, title: &str, status: StatusCode, body: Markup) -> Response {
    let who = &s.principal;
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(title)) }
            body {
                header {
                    a class="brand" href="/console" { "Sluice" }
                    nav aria-label="Console" {
                        @for (path, name, needs) in PAGES {
                            @if auth::may(who, &Method::GET, needs) {
                                a href=(path) aria-current=[(*path == active).then_some("page")] { (name) }
                            }
                        }
                    }
                    div class="who" {
                        span id="principal" data-role=(who.role.as_str()) {
                            (who.id) " · " (who.role.as_str())
                            @if let Some(t) = &who.tenant { " · tenant " (t) }
                        }
                        form method="post" action="/console/sign-out" {
                            (csrf(s))
                            button type="submit" id="sign-out" { "Sign out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    (status, Html(page.into_string())).into_response()
}

/// A refusal page outside any session (or before one is known).
pub(crate) fn problem(status: StatusCode, message: &str) -> Response {
    bare(
        "Refused",
        status,
        html! { main { h1 { "Refused" } p class="problem" role="alert" { (message) } p { a href="/console" { "Back to the console" } } } },
    )
}

/// The hidden field every form of a session carries.
pub(crate) fn csrf(s: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(s.csrf); }
}

/// A message box: what a write did, or why it was refused.
pub(crate) fn notice(ok: bool, message: &str) -> Markup {
    html! {
        @if ok { p class="notice" role="status" { (message) } }
        @else { p class="problem" role="alert" { (message) } }
    }
}

/// Micro-units as currency: `0.001234 USD`.
pub(crate) fn money(micros: f64, currency: &str) -> String {
    format!("{:.6} {currency}", micros / 1e6)
}

/// A number as a table shows it: integers without a fraction, others with up to three places.
pub(crate) fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// Unix milliseconds as `2026-12-05 14:02:11` (UTC).
pub(crate) fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}
