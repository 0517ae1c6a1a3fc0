//! Who calls the admin API and what they may do.
//!
//! A caller is a [`Principal`]: the bootstrap token (`admin.token_env`, the first admin), a
//! principal from the key store (`sluice admin create --role … [--tenant …]`; only the
//! token's SHA-256 is kept), or — only when no bootstrap token is configured, which the config
//! allows on a loopback listener alone — the local operator, an admin. Every route has one
//! entry in [`POLICY`]: the role it needs and whether a tenant-confined principal may call it
//! at all (handlers then show and change only that tenant's things). A route without an entry
//! is refused to everyone: new routes are closed until they are given a policy.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use sluice_gateway::Gateway;
use utoipa::ToSchema;

use crate::error::{error, store_unavailable};

/// What a principal may do: read; read and change keys, limits and the cache; everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// The caller of one admin request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub id: String,
    pub role: Role,
    /// Confined to this tenant's keys, limits, usage and cache entries.
    pub tenant: Option<String>,
}

impl Principal {
    /// Whether this principal may see or change something of `tenant`'s.
    pub fn sees(&self, tenant: Option<&str>) -> bool {
        self.tenant.as_deref().is_none_or(|own| tenant == Some(own))
    }
}

/// Who may call a route: the least role, and whether tenant-confined principals may.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub method: &'static str,
    pub path: &'static str,
    pub role: Role,
    pub tenants: bool,
}

const fn rule(method: &'static str, path: &'static str, role: Role, tenants: bool) -> Rule {
    Rule {
        method,
        path,
        role,
        tenants,
    }
}

/// Every admin route's rule (the README's permission matrix says the same).
pub const POLICY: &[Rule] = &[
    rule("GET", "/admin/openapi.json", Role::Viewer, true),
    rule("GET", "/metrics", Role::Viewer, false),
    rule("GET", "/admin/keys", Role::Viewer, true),
    rule("POST", "/admin/keys", Role::Operator, true),
    rule("DELETE", "/admin/keys/{id}", Role::Operator, true),
    rule("GET", "/admin/limits", Role::Viewer, true),
    rule("PUT", "/admin/limits/{scope}/{name}", Role::Operator, true),
    rule("DELETE", "/admin/limits/{scope}/{name}", Role::Operator, true),
    rule("GET", "/admin/usage", Role::Viewer, true),
    rule("GET", "/admin/analytics", Role::Viewer, true),
    rule("DELETE", "/admin/cache", Role::Operator, true),
    rule("GET", "/admin/cache/stats", Role::Viewer, false),
    rule("GET", "/admin/config", Role::Viewer, false),
    rule("GET", "/admin/health", Role::Viewer, false),
    rule("POST", "/admin/reload", Role::Admin, false),
    rule("GET", "/admin/audit", Role::Viewer, true),
    rule("GET", "/admin/payloads", Role::Operator, true),
    rule("GET", "/admin/requests", Role::Viewer, true),
    rule("GET", "/admin/principals", Role::Admin, false),
    rule("POST", "/admin/principals", Role::Admin, false),
    rule("DELETE", "/admin/principals/{id}", Role::Admin, false),
];

/// The rule of a matched route.
pub fn rule_of(method: &Method, path: &str) -> Option<&'static Rule> {
    POLICY.iter().find(|r| r.method == method.as_str() && r.path == path)
}

/// SHA-256 of an admin token (what the store keeps).
pub fn token_hash(token: &str) -> [u8; 32] {
    sluice_gateway::keys::hash_key(token)
}

/// The local operator: whoever reaches a loopback listener configured without a bootstrap
/// token.
pub(crate) fn local_operator() -> Principal {
    Principal {
        id: "local".to_owned(),
        role: Role::Admin,
        tenant: None,
    }
}

/// The principal whose admin token has this SHA-256: the bootstrap token's (the first admin)
/// or an active one in the store.
pub(crate) async fn principal_of(gw: &Gateway, hash: &[u8; 32]) -> Result<Option<Principal>, sluice_store::StoreError> {
    if let Some(b) = &gw.snapshot().config.admin.token
        && subtle_eq(&token_hash(b.expose()), hash)
    {
        return Ok(Some(Principal {
            id: "bootstrap".to_owned(),
            role: Role::Admin,
            tenant: None,
        }));
    }
    Ok(gw.store.principal(hash).await?.and_then(|p| {
        Role::parse(&p.role).map(|role| Principal {
            id: p.id,
            role,
            tenant: p.tenant,
        })
    }))
}

/// Authentication: the request's principal (an extension), or 401.
pub(crate) async fn authenticate(State(gw): State<Arc<Gateway>>, mut req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(token_hash);
    let has_bootstrap = gw.snapshot().config.admin.token.is_some();
    let principal = match (&presented, has_bootstrap) {
        (Some(hash), _) => match principal_of(&gw, hash).await {
            Ok(p) => p,
            Err(e) => return store_unavailable(e),
        },
        // No bootstrap token: the listener is on loopback (the config refuses anything else),
        // and whoever reaches it there is the local operator.
        (None, false) => Some(local_operator()),
        (None, true) => None,
    };
    let Some(principal) = principal else {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_admin_token",
            "A valid admin token is required.",
        );
    };
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// Why a principal may not call a route under `rule` (none: it may).
pub fn refusal(principal: &Principal, rule: &Rule) -> Option<Refusal> {
    if principal.tenant.is_some() && !rule.tenants {
        return Some(Refusal::GatewayWide);
    }
    (principal.role < rule.role).then_some(Refusal::Role)
}

/// What [`refusal`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The route is gateway-wide and the principal is confined to a tenant.
    GatewayWide,
    /// The principal's role is below the route's.
    Role,
}

/// Whether `principal` may call `method path` (a route template, as in [`POLICY`]).
pub fn may(principal: &Principal, method: &Method, path: &str) -> bool {
    rule_of(method, path).is_some_and(|r| refusal(principal, r).is_none())
}

/// Authorization: the matched route's rule against the principal's role and tenant.
pub(crate) async fn authorize(req: Request, next: Next) -> Response {
    let rule = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|p| rule_of(req.method(), p.as_str()));
    let Some(principal) = req.extensions().get::<Principal>() else {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_admin_token",
            "A valid admin token is required.",
        );
    };
    let Some(rule) = rule else {
        return error(StatusCode::FORBIDDEN, "forbidden", "No role may call this route.");
    };
    match refusal(principal, rule) {
        Some(Refusal::GatewayWide) => error(
            StatusCode::FORBIDDEN,
            "tenant_forbidden",
            "This route is gateway-wide; a principal confined to a tenant may not call it.",
        ),
        Some(Refusal::Role) => error(
            StatusCode::FORBIDDEN,
            "role_forbidden",
            format!(
                "This needs the {} role; {} has {}.",
                rule.role.as_str(),
                principal.id,
                principal.role.as_str()
            ),
        ),
        None => next.run(req).await,
    }
}

/// Constant-time comparison (length leaks, content does not).
pub(crate) fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
