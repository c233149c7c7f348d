//! Erasing a caller's personal data (admins, `EraseData`): one call (`DELETE /v1/calls/{id}`)
//! or every call of a phone number, from or to it (`POST /v1/erasures`).
//!
//! An erased call keeps its record as a billing tombstone (id, agent, times, duration,
//! reason, cost, `erased_at`): the ledger already bills it by id, and invoices must still
//! add up. Its transcript, metrics (they carry the client's metadata), transcript blob and
//! conversation snapshot are deleted, and its numbers kept only masked. A call still in
//! progress stays erased when its end arrives. Recordings, once they exist, are erased here too.

use crate::common::{audit, JsonBody};
use crate::error::{ApiError, ApiResult};
use crate::middleware::{Caller, RequestContext};
use crate::state::ControlState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use golos_domain::rbac::Action;
use golos_domain::{CallId, OrgId, PhoneNumber, Timestamp};
use golos_ports::{CallRecord, PageRequest, PortError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Erases one call's personal data and its snapshot; `NotFound` if the org has no such call.
pub async fn erase_call_data(
    state: &ControlState,
    org: &OrgId,
    call: &CallId,
    at: Timestamp,
) -> Result<CallRecord, PortError> {
    let erased = state.calls.erase(org, call, at).await?;
    state.stores.contexts.delete(call).await?;
    Ok(erased)
}

/// Erases every call of `org` from or to `number`; returns the calls erased.
pub async fn erase_number(
    state: &ControlState,
    org: &OrgId,
    number: &PhoneNumber,
    at: Timestamp,
) -> Result<Vec<CallId>, PortError> {
    let mut found = Vec::new();
    let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
    loop {
        let result = state.calls.find_by_number(org, number, &page).await?;
        found.extend(result.items.into_iter().map(|call| call.id));
        match result.next_cursor {
            Some(cursor) => page = PageRequest::after(cursor, PageRequest::MAX_LIMIT),
            None => break,
        }
    }
    for call in &found {
        match erase_call_data(state, org, call, at).await {
            // Deleted by retention meanwhile: nothing left to erase.
            Ok(_) | Err(PortError::NotFound { .. }) => {}
            Err(other) => return Err(other),
        }
    }
    Ok(found)
}

fn parse_call_id(raw: &str) -> ApiResult<CallId> {
    CallId::parse(raw).map_err(|_| ApiError::not_found(format!("call {raw}")))
}

/// Erase one call's personal data: its transcript, metrics, snapshot and numbers (kept
/// masked). The record stays as a billing tombstone with `erased_at`. Erasing again changes
/// nothing.
#[utoipa::path(delete, path = "/v1/calls/{call_id}", tag = "calls", params(("call_id" = String, Path)),
    responses((status = 204, description = "erased"), (status = 403, description = "insufficient_role: admins only"),
        (status = 404, description = "not_found")))]
pub async fn erase_call(
    State(state): State<ControlState>,
    Extension(caller): Extension<Caller>,
    Extension(ctx): Extension<RequestContext>,
    Path(call_id): Path<String>,
) -> ApiResult<StatusCode> {
    let org = caller.member(Action::EraseData)?;
    let call = parse_call_id(&call_id)?;
    erase_call_data(&state, &org.id, &call, state.clock.now()).await?;
    audit(&state, &caller, &ctx, &org.id, "call.erase", call.as_str()).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErasureRequest {
    /// The caller's number in E.164 (`+` and the country code, then the number): every call from
    /// or to it is erased.
    pub phone_number: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErasureView {
    /// The number, masked: a response is logged and cached like any other.
    pub phone_number: String,
    pub erased_calls: usize,
    /// The calls erased now, as ids (tombstones remain for billing).
    pub call_ids: Vec<String>,
    pub erased_at: String,
}

/// Erase every call of a phone number in the organisation (from or to it): transcripts,
/// metrics, snapshots and numbers (kept masked); records stay as billing tombstones.
/// Repeating it erases nothing more.
#[utoipa::path(post, path = "/v1/erasures", tag = "calls", request_body = ErasureRequest,
    responses((status = 200, body = ErasureView), (status = 400, description = "invalid_phone_number"),
        (status = 403, description = "insufficient_role: admins only")))]
pub async fn erase_by_number(
    State(state): State<ControlState>,
    Extension(caller): Extension<Caller>,
    Extension(ctx): Extension<RequestContext>,
    JsonBody(body): JsonBody<ErasureRequest>,
) -> ApiResult<Json<ErasureView>> {
    let org = caller.member(Action::EraseData)?;
    // The refusal never repeats the number: error details are logged.
    let number = PhoneNumber::parse(&body.phone_number).map_err(|_| {
        ApiError::bad_request(
            "invalid_phone_number",
            "phone_number must be an E.164 number: + and the country code, then the number",
        )
    })?;
    let at = state.clock.now();
    let erased = erase_number(&state, &org.id, &number, at).await?;
    audit(&state, &caller, &ctx, &org.id, "data.erase", &number.masked()).await;
    tracing::info!(number = %number, calls = erased.len(), "personal data of a number erased");
    Ok(Json(ErasureView {
        phone_number: number.masked(),
        erased_calls: erased.len(),
        call_ids: erased.iter().map(ToString::to_string).collect(),
        erased_at: at.to_string(),
    }))
}
