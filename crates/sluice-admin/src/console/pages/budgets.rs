//! Budgets and their alerts: the limits the config gives tiers, teams and tenants, the limits
//! set at run time (keys, teams, a key's end users) with forms to set or clear them, the
//! budget alerts' thresholds and the alert rules.

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::{Extension, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{path, refused};
use crate::auth;
use crate::console::Console;
use crate::console::layout::{self, csrf, money, notice, number};
use crate::console::signed::Session;

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct LimitView {
    pub name: String,
    pub amount: u64,
    pub burst: u64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct LimitsList {
    pub keys: BTreeMap<String, Vec<LimitView>>,
    pub teams: BTreeMap<String, Vec<LimitView>>,
    pub users: BTreeMap<String, Vec<LimitView>>,
}

#[derive(Deserialize)]
struct Budget {
    scope: String,
    name: String,
    limits: Vec<LimitView>,
}

#[derive(Deserialize)]
struct Rule {
    name: String,
    metric: String,
    by: String,
    window_s: u64,
    above: f64,
    min_requests: u64,
}

#[derive(Deserialize)]
struct Alerts {
    budget_thresholds: Vec<u8>,
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
struct ConfigView {
    currency: String,
    budgets: Vec<Budget>,
    alerts: Alerts,
}

/// The limits a form offers even when none is set.
const COMMON: [&str; 6] = [
    "requests_per_minute",
    "tokens_per_minute",
    "requests_per_day",
    "tokens_per_day",
    "cost_per_day",
    "cost_per_month",
];

fn is_cost(name: &str) -> bool {
    name.contains("cost_per_")
}

/// A limit's amount as the config writes it (cost in currency units, the rest whole numbers).
fn amount(l: &LimitView) -> String {
    if is_cost(&l.name) {
        number(l.amount as f64 / 1e6)
    } else {
        l.amount.to_string()
    }
}

pub(crate) fn limits_text(limits: &[LimitView]) -> String {
    limits
        .iter()
        .map(|l| {
            let burst = if l.burst != l.amount && !is_cost(&l.name) {
                format!(" (burst {})", l.burst)
            } else {
                String::new()
            };
            format!("{} {}{burst}", l.name, amount(l))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The form that sets (replaces) one key's, team's or end users' run-time limits: every limit
/// in force and the common ones; an empty field is no limit. Read-only without the role.
pub(crate) fn limit_form(s: &Session, scope: &str, name: &str, current: &[LimitView]) -> Markup {
    let may = auth::may(&s.principal, &Method::PUT, "/admin/limits/{scope}/{name}");
    let mut names: Vec<&str> = COMMON.to_vec();
    for l in current {
        if !names.contains(&l.name.as_str()) {
            names.push(&l.name);
        }
    }
    let value = |n: &str| current.iter().find(|l| l.name == n).map(amount).unwrap_or_default();
    if !may {
        return html! {
            p class="limits" { @if current.is_empty() { "None set at run time." } @else { (limits_text(current)) } }
        };
    }
    html! {
        form method="post" action="/console/limits" class="limits" id={"limits-" (scope) "-" (name)} {
            (csrf(s))
            input type="hidden" name="scope" value=(scope);
            input type="hidden" name="name" value=(name);
            @for n in &names {
                label { (n) " " input name=(n) value=(value(n)) inputmode="decimal" size="10"; }
            }
            button type="submit" class="set-limits" { "Save limits" }
        }
        @if !current.is_empty() {
            form method="post" action="/console/limits/clear" {
                (csrf(s))
                input type="hidden" name="scope" value=(scope);
                input type="hidden" name="name" value=(name);
                button type="submit" class="danger" { "Clear run-time limits" }
            }
        }
    }
}

fn runtime_table(s: &Session, title: &str, scope: &str, map: &BTreeMap<String, Vec<LimitView>>) -> Markup {
    html! {
        table class="data" id={"runtime-" (scope)} {
            caption { (title) }
            thead { tr { th scope="col" { "Name" } th scope="col" { "Limits" } } }
            tbody {
                @for (name, limits) in map {
                    tr {
                        th scope="row" {
                            @if scope == "keys" { a href=(path("/console/keys", name)) { (name) } } @else { (name) }
                        }
                        td { (limits_text(limits)) }
                    }
                }
                @if map.is_empty() { tr { td colspan="2" { "None." } } }
            }
        }
        @if scope == "teams" && auth::may(&s.principal, &Method::PUT, "/admin/limits/{scope}/{name}") {
            @for (name, limits) in map {
                details { summary { "Edit team " (name) } (limit_form(s, scope, name, limits)) }
            }
        }
    }
}

async fn page_body(c: &Console, s: &Session, top: Markup) -> Markup {
    let runtime = c.api.get(&s.principal, "/admin/limits").await;
    let config = c.api.get(&s.principal, "/admin/config").await;
    let may_set = auth::may(&s.principal, &Method::PUT, "/admin/limits/{scope}/{name}");
    html! {
        (top)
        h2 { "Set at run time" }
        @match runtime.parse::<LimitsList>() {
            Some(l) => {
                (runtime_table(s, "Keys' limits", "keys", &l.keys))
                (runtime_table(s, "Teams' limits", "teams", &l.teams))
                (runtime_table(s, "Each end user's limits, by key", "users", &l.users))
            }
            None => (refused(&runtime.message())),
        }
        @if may_set && s.principal.tenant.is_none() {
            details {
                summary { "Set a team's limits" }
                form method="post" action="/console/limits" class="limits" id="team-limits" {
                    (csrf(s))
                    input type="hidden" name="scope" value="teams";
                    label { "Team " input name="name" required; }
                    @for n in COMMON { label { (n) " " input name=(n) inputmode="decimal" size="10"; } }
                    button type="submit" { "Save limits" }
                }
            }
        }
        h2 { "In the config" }
        @match config.parse::<ConfigView>() {
            Some(cv) => {
                table class="data" id="budgets" {
                    caption { "Limits and budgets of tiers, teams and tenants (costs in " (cv.currency) ")" }
                    thead { tr { th scope="col" { "Scope" } th scope="col" { "Name" } th scope="col" { "Limits" } } }
                    tbody {
                        @for b in &cv.budgets { tr { td { (b.scope) } th scope="row" { (b.name) } td { (limits_text(&b.limits)) } } }
                        @if cv.budgets.is_empty() { tr { td colspan="3" { "None." } } }
                    }
                }
                h2 { "Alerts" }
                p id="budget-thresholds" {
                    @if cv.alerts.budget_thresholds.is_empty() { "No budget alerts are configured (budget_alerts)." }
                    @else {
                        "Budget alerts at "
                        (cv.alerts.budget_thresholds.iter().map(|t| format!("{t} %")).collect::<Vec<_>>().join(", "))
                        " of every cost limit."
                    }
                }
                table class="data" id="alert-rules" {
                    caption { "Alert rules" }
                    thead { tr {
                        th scope="col" { "Rule" } th scope="col" { "Metric" } th scope="col" { "By" } th scope="col" { "Window" }
                        th scope="col" { "Above" } th scope="col" { "Least requests" }
                    } }
                    tbody {
                        @for r in &cv.alerts.rules {
                            tr {
                                th scope="row" { (r.name) } td { (r.metric) } td { (r.by) } td { (r.window_s) " s" }
                                td { @if r.metric == "spend_per_hour" { (money(r.above * 1e6, &cv.currency)) } @else { (number(r.above)) } }
                                td { (r.min_requests) }
                            }
                        }
                        @if cv.alerts.rules.is_empty() { tr { td colspan="6" { "None." } } }
                    }
                }
            }
            None => p class="hint" { "The config's budgets and alert rules are gateway-wide: " (config.message()) }
        }
    }
}

pub(crate) async fn page(State(c): State<Console>, Extension(s): Extension<Session>) -> Response {
    let body = page_body(&c, &s, html! {}).await;
    layout::page(&s, "/console/budgets", "Budgets & alerts", body)
}

/// The scope and name a limits form names, and their API path.
fn target(form: &[(String, String)]) -> (String, String, String) {
    let field = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    };
    let (scope, name) = (field("scope"), field("name"));
    let uri = format!("{}/{}", path("/admin/limits", &scope), super::super::api::escape(&name));
    (scope, name, uri)
}

/// Where a limits write goes back to.
fn back(scope: &str, name: &str) -> String {
    if scope == "keys" {
        path("/console/keys", name)
    } else {
        "/console/budgets".to_owned()
    }
}

async fn after_write(c: &Console, s: &Session, scope: &str, name: &str, a: crate::console::api::Answer) -> Response {
    if a.ok() {
        return Redirect::to(&back(scope, name)).into_response();
    }
    let top = notice(false, &a.message());
    if scope == "keys" {
        let body = html! { (top) p { a href=(back(scope, name)) { "Back to key " (name) } } };
        return layout::page_with_status(s, "/console/keys", "Limits not saved", a.status, body);
    }
    let body = page_body(c, s, top).await;
    layout::page_with_status(s, "/console/budgets", "Budgets & alerts", a.status, body)
}

pub(crate) async fn set_limits(
    State(c): State<Console>,
    Extension(s): Extension<Session>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let (scope, name, uri) = target(&form);
    let mut limits = Map::new();
    for (k, v) in &form {
        let v = v.trim();
        if matches!(k.as_str(), "csrf" | "scope" | "name") || v.is_empty() {
            continue;
        }
        let value = match v.parse::<f64>() {
            Ok(n) => Value::from(n),
            Err(_) => Value::from(v),
        };
        limits.insert(k.clone(), value);
    }
    let a = if limits.is_empty() {
        c.api.call(&s.principal, Method::DELETE, &uri, None).await
    } else {
        c.api
            .call(&s.principal, Method::PUT, &uri, Some(&Value::Object(limits)))
            .await
    };
    // Clearing limits that were never set is no failure.
    if !a.ok() && limits_empty_and_absent(&a) {
        return Redirect::to(&back(&scope, &name)).into_response();
    }
    after_write(&c, &s, &scope, &name, a).await
}

fn limits_empty_and_absent(a: &crate::console::api::Answer) -> bool {
    a.status == StatusCode::NOT_FOUND && a.code().as_deref() == Some("not_found")
}

pub(crate) async fn clear_limits(
    State(c): State<Console>,
    Extension(s): Extension<Session>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let (scope, name, uri) = target(&form);
    let a = c.api.call(&s.principal, Method::DELETE, &uri, None).await;
    after_write(&c, &s, &scope, &name, a).await
}
