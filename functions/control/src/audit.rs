//! The audit log: who did what to which resource, written after the action succeeded.

use crate::state::ControlState;
use crate::ControlResult;
use golos_domain::OrgId;
use golos_ports::{AuditEntry, Page, PageRequest};

/// Who asked for an action, as the audit log records it.
#[derive(Debug, Clone)]
pub struct Actor {
    /// `operator` or `key:<id>`.
    pub name: String,
    pub client_ip: String,
    pub request_id: String,
}

/// Records an administrative action after it succeeded. If the store refuses the line, the
/// action has already happened, so failing the request would mislead the client into a
/// retry; the full entry goes to the error log instead, which is the secondary audit trail.
pub async fn record(state: &ControlState, actor: &Actor, org: &OrgId, action: &str, target: &str) {
    let entry = AuditEntry {
        org_id: org.clone(),
        at: state.clock.now(),
        actor: actor.name.clone(),
        action: action.to_owned(),
        target: target.to_owned(),
        ip: actor.client_ip.clone(),
        request_id: actor.request_id.clone(),
    };
    match state.audit.append(&entry).await {
        Ok(()) => tracing::info!(audit = action, target, actor = %entry.actor, "admin action"),
        Err(err) => {
            tracing::error!(error = %err, audit = action, target, actor = %entry.actor, org = %org, ip = %entry.ip, request_id = %entry.request_id, "audit log write failed");
        }
    }
}

/// One page of an org's audit log, newest first.
pub async fn list(state: &ControlState, org: &OrgId, page: &PageRequest) -> ControlResult<Page<AuditEntry>> {
    Ok(state.audit.list(org, page).await?)
}
