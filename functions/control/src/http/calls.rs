//! `/v1/calls`: list and detail (with the decrypted transcript and per-turn metrics).

use super::error::ApiResult;
use super::extract::Authed;
use super::extract::{ListQuery, QueryParams};
use crate::calls;
use axum::extract::Path;
use axum::Json;
use golos_domain::rbac::Action;
use golos_ports::CallRecord;
use serde::Serialize;
use utoipa::ToSchema;

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
        direction: call.direction.as_str().to_owned(),
        from: call.from.map(|n| n.masked()).or_else(|| erased.as_ref().and_then(|e| e.from_masked.clone())),
        to: call.to.map(|n| n.masked()).or_else(|| erased.as_ref().and_then(|e| e.to_masked.clone())),
        status: enum_name(serde_json::to_value(call.status).unwrap_or_default()),
        started_at: call.started_at.to_string(),
        ended_at: call.ended_at.map(|t| t.to_string()),
        duration_secs: call.duration_secs,
        end_reason: call.end_reason.map(|reason| reason.as_str().to_owned()),
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
    Authed { state, caller, .. }: Authed,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<Json<CallList>> {
    let org = caller.member(Action::ReadCalls)?;
    let page = calls::list(&state, &org.id, &query.page()?).await?;
    Ok(Json(CallList { items: page.items.into_iter().map(|c| view(c, None)).collect(), next_cursor: page.next_cursor }))
}

/// One call with its transcript and per-turn metrics.
#[utoipa::path(get, path = "/v1/calls/{call_id}", tag = "calls", params(("call_id" = String, Path)), responses((status = 200, body = CallView), (status = 404)))]
pub async fn get(Authed { state, caller, .. }: Authed, Path(call_id): Path<String>) -> ApiResult<Json<CallView>> {
    let org = caller.member(Action::ReadCalls)?;
    let (call, transcript) = calls::get(&state, &org.id, &call_id).await?;
    Ok(Json(view(call, Some(transcript))))
}
