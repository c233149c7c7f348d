//! `/v1/admissions`: admission, heartbeats and release over HTTP for the operator's own
//! components (the media pool calls [`crate::admission`] in-process).

use super::error::{ApiError, ApiResult};
use super::extract::Authed;
use super::extract::JsonBody;
use crate::admission::{limit_end_reason, Admission, AdmissionRequest, Admissions, DEFAULT_PRIORITY, MAX_PRIORITY};
use crate::ControlError;
use axum::extract::Path;
use axum::Json;
use golos_domain::{AgentId, CallId, OrgId};
use golos_ports::{PortError, ReleaseOutcome};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdmissionBody {
    pub org_id: String,
    pub agent_id: String,
    /// The call to admit; generated when absent. Ask again with the same id while held.
    pub call_id: Option<String>,
    /// 0-9, default 5; higher is served first from the hold queue.
    pub priority: Option<u8>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdmissionView {
    /// `admitted`, `wait` or `rejected`.
    pub decision: &'static str,
    pub call_id: String,
    /// Admitted: the lease (its id is the call id) and until when it holds without a heartbeat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_ms: Option<i64>,
    /// Wait: 1 is next in line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u32>,
    /// Wait: `org_limit` or `agent_limit`. Rejected: `no_balance`, `minutes_exhausted`,
    /// `agent_disabled`, `org_disabled`, `unknown_agent`, `unknown_org`, `hold_queue_full`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseBody {
    pub org_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LeaseView {
    pub call_id: String,
    pub lease_expires_at: String,
    /// Present when the call must end now: `balance_exhausted` (the org's balance, less what
    /// its live calls have run up, is below its credit limit) or `minutes_exhausted`. Say a
    /// goodbye and end the call with this reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReleaseView {
    pub call_id: String,
    /// False when there was nothing to release (released before, swept, never taken).
    pub released: bool,
}

fn parse<T>(
    field: &str,
    raw: &str,
    parse: impl FnOnce(String) -> Result<T, golos_domain::DomainError>,
) -> ApiResult<T> {
    parse(raw.to_owned()).map_err(|e| ApiError::bad_request("invalid_id", format!("{field}: {e}")))
}

fn reason_name<T: Serialize>(reason: T) -> String {
    serde_json::to_value(reason).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// Ask whether a call may be answered now (operator).
#[utoipa::path(post, path = "/v1/admissions", tag = "admission", request_body = AdmissionBody,
    responses((status = 200, body = AdmissionView), (status = 403, description = "not the operator")))]
pub async fn admit_http(
    Authed { state, caller, .. }: Authed,
    JsonBody(body): JsonBody<AdmissionBody>,
) -> ApiResult<Json<AdmissionView>> {
    caller.require_operator()?;
    let call_id = match &body.call_id {
        Some(raw) => parse("call_id", raw, CallId::parse)?,
        None => CallId::with_suffix(&state.ids.new_suffix()).map_err(ApiError::internal)?,
    };
    let priority = body.priority.unwrap_or(DEFAULT_PRIORITY);
    if priority > MAX_PRIORITY {
        return Err(ApiError::bad_request("invalid_priority", "priority must be 0-9"));
    }
    let request = AdmissionRequest {
        org_id: parse("org_id", &body.org_id, OrgId::parse)?,
        agent_id: parse("agent_id", &body.agent_id, AgentId::parse)?,
        call_id,
        priority,
    };
    let mut view = AdmissionView {
        decision: "admitted",
        call_id: request.call_id.to_string(),
        lease_expires_at: None,
        heartbeat_interval_ms: None,
        position: None,
        retry_after_ms: None,
        reason: None,
        limit: None,
    };
    let admissions = Admissions::new(state);
    match admissions.admit(&request).await? {
        Admission::Admitted { lease } => {
            view.lease_expires_at = Some(lease.expires_at.to_string());
            view.heartbeat_interval_ms = i64::try_from(admissions.heartbeat_interval().as_millis()).ok();
        }
        Admission::Wait { position, reason, limit } => {
            view.decision = "wait";
            view.position = Some(position);
            view.retry_after_ms = Some(1_000);
            view.reason = Some(reason_name(reason));
            view.limit = Some(limit);
        }
        Admission::Rejected { reason } => {
            view.decision = "rejected";
            view.reason = Some(reason_name(reason));
        }
    }
    Ok(Json(view))
}

/// Extend a call's lease (operator).
#[utoipa::path(post, path = "/v1/admissions/{call_id}/heartbeat", tag = "admission", request_body = LeaseBody,
    params(("call_id" = String, Path)),
    responses((status = 200, body = LeaseView), (status = 404, description = "the lease was released or swept")))]
pub async fn heartbeat_http(
    Authed { state, caller, .. }: Authed,
    Path(call_id): Path<String>,
    JsonBody(body): JsonBody<LeaseBody>,
) -> ApiResult<Json<LeaseView>> {
    caller.require_operator()?;
    let call = parse("call_id", &call_id, CallId::parse)?;
    let org = parse("org_id", &body.org_id, OrgId::parse)?;
    let beat = Admissions::new(state).heartbeat(&org, &call).await.map_err(|e| match e {
        ControlError::Port(PortError::NotFound { .. }) => ApiError::not_found(format!("lease of call {call}")),
        other => other.into(),
    })?;
    Ok(Json(LeaseView {
        call_id: call.to_string(),
        lease_expires_at: beat.lease.expires_at.to_string(),
        end_reason: beat.end.map(|limit| limit_end_reason(limit).to_owned()),
    }))
}

/// Release a call's lease or its place in line (operator). Idempotent.
#[utoipa::path(post, path = "/v1/admissions/{call_id}/release", tag = "admission", request_body = LeaseBody,
    params(("call_id" = String, Path)),
    responses((status = 200, body = ReleaseView)))]
pub async fn release_http(
    Authed { state, caller, .. }: Authed,
    Path(call_id): Path<String>,
    JsonBody(body): JsonBody<LeaseBody>,
) -> ApiResult<Json<ReleaseView>> {
    caller.require_operator()?;
    let call = parse("call_id", &call_id, CallId::parse)?;
    let org = parse("org_id", &body.org_id, OrgId::parse)?;
    let released = matches!(Admissions::new(state).release(&org, &call).await?, ReleaseOutcome::Released(_));
    Ok(Json(ReleaseView { call_id: call.to_string(), released }))
}
