//! `DELETE /v1/calls/{id}` and `POST /v1/erasures`: erasing a caller's personal data
//! ([`crate::erasure`]).

use super::error::{ApiError, ApiResult};
use super::extract::Authed;
use super::extract::JsonBody;
use crate::erasure;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::Json;
use golos_domain::rbac::Action;
use golos_domain::PhoneNumber;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Erase one call's personal data: its transcript, metrics, snapshot and numbers (kept
/// masked). The record stays as a billing tombstone with `erased_at`. Erasing again changes
/// nothing.
#[utoipa::path(delete, path = "/v1/calls/{call_id}", tag = "calls", params(("call_id" = String, Path)),
    responses((status = 204, description = "erased"), (status = 403, description = "insufficient_role: admins only"),
        (status = 404, description = "not_found")))]
pub async fn erase_call(Authed { state, caller, actor }: Authed, Path(call_id): Path<String>) -> ApiResult<StatusCode> {
    let org = caller.member(Action::EraseData)?;
    erasure::erase_call(&state, &actor, &org.id, &call_id).await?;
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
    Authed { state, caller, actor }: Authed,
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
    let erased = erasure::erase_by_number(&state, &actor, &org.id, &number).await?;
    Ok(Json(ErasureView {
        phone_number: number.masked(),
        erased_calls: erased.calls.len(),
        call_ids: erased.calls.iter().map(ToString::to_string).collect(),
        erased_at: erased.at.to_string(),
    }))
}
