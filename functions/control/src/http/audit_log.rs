//! The audit log of administrative actions (admin).

use super::error::ApiResult;
use super::extract::Authed;
use super::extract::{ListQuery, QueryParams};
use crate::audit;
use axum::Json;
use golos_domain::rbac::Action;
use golos_ports::AuditEntry;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    pub at: String,
    /// `key:<id>` or `operator`.
    pub actor: String,
    pub action: String,
    pub target: String,
    pub ip: String,
    pub request_id: String,
}

impl From<AuditEntry> for AuditView {
    fn from(e: AuditEntry) -> Self {
        Self {
            at: e.at.to_string(),
            actor: e.actor,
            action: e.action,
            target: e.target,
            ip: e.ip,
            request_id: e.request_id,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    pub items: Vec<AuditView>,
    pub next_cursor: Option<String>,
}

/// Who did what, when and from where; newest first.
#[utoipa::path(get, path = "/v1/audit-log", tag = "audit", params(ListQuery), responses((status = 200, body = AuditList)))]
pub async fn list(
    Authed { state, caller, .. }: Authed,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<Json<AuditList>> {
    let org = caller.member(Action::ReadAuditLog)?;
    let page = audit::list(&state, &org.id, &query.page()?).await?;
    Ok(Json(AuditList { items: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}
