//! `/v1/tool-signing-secret`: the org's key for verifying function-tool requests
//! ([`crate::tool_signing`]).

use super::error::ApiResult;
use super::extract::Authed;
use crate::tool_signing;
use axum::Json;
use golos_domain::rbac::Action;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct ToolSigningSecret {
    /// `whsec_<base64>`: verify `webhook-signature` on function-tool requests with it.
    pub secret: String,
}

/// The organisation's function-tool signing secret (admin).
#[utoipa::path(get, path = "/v1/tool-signing-secret", tag = "agents",
    responses((status = 200, body = ToolSigningSecret), (status = 503, description = "signing_unavailable: the platform has no tool-signing-key")))]
pub async fn secret(Authed { state, caller, .. }: Authed) -> ApiResult<Json<ToolSigningSecret>> {
    let org = caller.member(Action::ManageWebhooks)?;
    Ok(Json(ToolSigningSecret { secret: tool_signing::org_key(&state, &org.id).await?.to_whsec() }))
}
