//! Calls: list and detail with the decrypted transcript and per-turn metrics. The media
//! pool writes the records; this is the read side.

use crate::common::{ListQuery, QueryParams};
use crate::error::{ApiError, ApiResult};
use crate::middleware::Caller;
use crate::state::ControlState;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use golos_domain::rbac::Action;
use golos_domain::{CallId, OrgId};
use golos_ports::{CallRecord, EncryptionContext};
use serde::Serialize;
use utoipa::ToSchema;

/// The encryption context of a call transcript: bound to the org and the purpose.
pub fn transcript_context(org: &OrgId) -> EncryptionContext {
    EncryptionContext::new([("org", org.as_str()), ("purpose", "transcript")])
}

/// The encryption context of a call's conversation snapshot (what a reconnect resumes):
/// bound to the org and the call, so a snapshot read back under another org or for another
/// call does not decrypt.
pub fn snapshot_context(org: &OrgId, call: &CallId) -> EncryptionContext {
    EncryptionContext::new([("org", org.as_str()), ("call", call.as_str()), ("purpose", "snapshot")])
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CallView {
    pub id: String,
    pub agent_id: String,
    /// `inbound`, `outbound` or `web`.
    pub direction: String,
    /// Masked (`+7*****4567`): callers' numbers are personal data.
    pub from: Option<String>,
    pub to: Option<String>,
    /// `in_progress`, `ended` or `failed`.
    pub status: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub duration_secs: Option<u64>,
    pub end_reason: Option<String>,
    pub cost_kopecks: Option<i64>,
    /// Turns of the conversation (detail view only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub transcript: Option<serde_json::Value>,
    #[schema(value_type = Object)]
    pub metrics: serde_json::Value,
    /// When the call's personal data was erased (its transcript and metrics are gone, its
    /// numbers only masked); absent for calls not erased.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub erased_at: Option<String>,
}

fn view(call: CallRecord, transcript: Option<serde_json::Value>) -> CallView {
    let enum_name = |v: serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let erased = call.erased.clone();
    CallView {
        id: call.id.to_string(),
        agent_id: call.agent_id.to_string(),
        direction: enum_name(serde_json::to_value(call.direction).unwrap_or_default()),
        from: call.from.map(|n| n.masked()).or_else(|| erased.as_ref().and_then(|e| e.from_masked.clone())),
        to: call.to.map(|n| n.masked()).or_else(|| erased.as_ref().and_then(|e| e.to_masked.clone())),
        status: enum_name(serde_json::to_value(call.status).unwrap_or_default()),
        started_at: call.started_at.to_string(),
        ended_at: call.ended_at.map(|t| t.to_string()),
        duration_secs: call.duration_secs,
        end_reason: call.end_reason,
        cost_kopecks: call.cost.map(golos_domain::Kopecks::get),
        transcript,
        metrics: call.metrics,
        erased_at: erased.map(|e| e.at.to_string()),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CallList {
    pub items: Vec<CallView>,
    pub next_cursor: Option<String>,
}

/// Calls, newest first (without transcripts).
#[utoipa::path(get, path = "/v1/calls", tag = "calls", params(ListQuery), responses((status = 200, body = CallList)))]
pub async fn list(
    State(state): State<ControlState>,
    Extension(caller): Extension<Caller>,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<Json<CallList>> {
    let org = caller.member(Action::ReadCalls)?;
    let page = state.calls.list(&org.id, &query.page()?).await?;
    Ok(Json(CallList { items: page.items.into_iter().map(|c| view(c, None)).collect(), next_cursor: page.next_cursor }))
}

/// One call with its transcript and per-turn metrics.
#[utoipa::path(get, path = "/v1/calls/{call_id}", tag = "calls", params(("call_id" = String, Path)), responses((status = 200, body = CallView), (status = 404)))]
pub async fn get(
    State(state): State<ControlState>,
    Extension(caller): Extension<Caller>,
    Path(call_id): Path<String>,
) -> ApiResult<Json<CallView>> {
    let org = caller.member(Action::ReadCalls)?;
    let id = CallId::parse(&call_id).map_err(|_| ApiError::not_found(format!("call {call_id}")))?;
    let mut call = state.calls.get(&org.id, &id).await?.ok_or_else(|| ApiError::not_found(format!("call {id}")))?;
    let transcript = match call.transcript.take() {
        Some(bytes) => {
            let json = crate::transcripts::open_json(&state, &org.id, &bytes).await?;
            Some(serde_json::from_slice(&json).map_err(ApiError::internal)?)
        }
        None => Some(serde_json::json!([])),
    };
    Ok(Json(view(call, transcript)))
}
