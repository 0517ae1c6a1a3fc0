//! The audit log through the API: reading it a page at a time, and what every write appends
//! (who, what, whose, before and after — never a secret).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sluice_gateway::Gateway;
use sluice_store::audit::{AuditEntry, NewAudit};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::error::{ErrorBody, bad_limit, page_limit, store_unavailable};
use crate::extract::Q;

/// Appends what `who` did to the audit log (`before`/`after` as JSON values).
pub(crate) async fn record(
    gw: &Gateway,
    who: &Principal,
    action: &str,
    (target, tenant): (Option<&str>, Option<&str>),
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) {
    gw.audit(NewAudit {
        actor: who.id.clone(),
        role: Some(who.role.as_str().to_owned()),
        actor_tenant: who.tenant.clone(),
        action: action.to_owned(),
        target: target.map(str::to_owned),
        tenant: tenant.map(str::to_owned),
        before: before.map(|v| v.to_string()),
        after: after.map(|v| v.to_string()),
    })
    .await;
}

/// A key or principal revoked (what both revocations answer).
#[derive(Debug, Serialize, ToSchema)]
pub struct Revoked {
    pub id: String,
    pub revoked: bool,
}

/// Records a revocation (`key.revoke`, `principal.revoke`) of `id`, and answers it.
pub(crate) async fn revoked(gw: &Gateway, who: &Principal, action: &str, id: String, tenant: Option<&str>) -> Response {
    let (before, after) = (
        serde_json::json!({"id": id, "revoked": false}),
        serde_json::json!({"id": id, "revoked": true}),
    );
    record(gw, who, action, (Some(&id), tenant), Some(before), Some(after)).await;
    Json(Revoked { id, revoked: true }).into_response()
}

/// One audit entry.
#[derive(ToSchema)]
#[schema(as = AuditEntry)]
#[allow(dead_code)] // the schema of `sluice_store::audit::AuditEntry`
struct AuditEntrySchema {
    seq: i64,
    /// Unix milliseconds.
    at: i64,
    /// A principal's id, `bootstrap`, `local`, or `signal`/`file` for a reload.
    actor: String,
    role: Option<String>,
    actor_tenant: Option<String>,
    /// `key.create`, `key.revoke`, `limits.set`, `limits.clear`, `cache.purge`,
    /// `principal.create`, `principal.revoke`, `config.reload`.
    action: String,
    target: Option<String>,
    tenant: Option<String>,
    /// JSON text.
    before: Option<String>,
    after: Option<String>,
    prev_hash: String,
    hash: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditHead {
    pub seq: i64,
    pub hash: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Always `list`.
    pub object: &'static str,
    #[schema(value_type = Vec<AuditEntrySchema>)]
    pub data: Vec<AuditEntry>,
    pub has_more: bool,
    pub last_seq: Option<i64>,
    /// The whole log's head (gateway-wide principals only).
    pub head: Option<AuditHead>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Entries per page, 1–1000 (default 100).
    pub limit: Option<u32>,
    /// Entries after this sequence number.
    pub after: Option<i64>,
}

/// The audit log, oldest first, a page at a time (a tenant-confined principal: its tenant's).
#[utoipa::path(get, path = "/admin/audit", tag = "audit", params(AuditQuery),
    responses(
        (status = 200, description = "A page of the audit log", body = AuditPage),
        (status = 400, description = "A bad page request", body = ErrorBody),
        (status = 401, description = "No valid admin token", body = ErrorBody),
        (status = 403, description = "The role or the tenant may not", body = ErrorBody),
        (status = 503, description = "The store did not answer", body = ErrorBody),
    ))]
pub(crate) async fn list(
    State(gw): State<Arc<Gateway>>,
    Extension(who): Extension<Principal>,
    Q(q): Q<AuditQuery>,
) -> Response {
    let Some(limit) = page_limit(q.limit, 100, 1000) else {
        return bad_limit(1000);
    };
    let after = q.after.unwrap_or(0).max(0);
    let mut data = match gw
        .store
        .audit_entries(after, i64::from(limit) + 1, who.tenant.as_deref())
        .await
    {
        Ok(d) => d,
        Err(e) => return store_unavailable(e),
    };
    let has_more = data.len() > limit as usize;
    data.truncate(limit as usize);
    let head = match who.tenant {
        Some(_) => None,
        None => match gw.store.audit_head().await {
            Ok(h) => h.map(|(seq, hash)| AuditHead { seq, hash }),
            Err(e) => return store_unavailable(e),
        },
    };
    Json(AuditPage {
        object: "list",
        last_seq: data.last().map(|e| e.seq),
        data,
        has_more,
        head,
    })
    .into_response()
}
