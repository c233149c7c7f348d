//! `/v1/agents/{id}/call-tokens`: short-lived tokens for web and mobile clients
//! ([`crate::call_tokens`]).

use super::error::ApiResult;
use super::extract::optional_json;
use super::extract::Authed;
use crate::call_tokens;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::Json;
use golos_domain::rbac::Action;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallTokenRequest {
    /// Seconds the token stays valid (default 600, at most 3600). It only has to last until
    /// the call starts; a call in progress is not cut when it expires.
    #[serde(default)]
    pub ttl_secs: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CallTokenView {
    /// Give this to the browser or app; it is the `token` of the WebSocket `start`.
    pub token: String,
    pub agent_id: String,
    pub expires_at: String,
}

/// Mint a short-lived call token for one agent (admin, editor): what web and mobile clients
/// present to start a call, so API keys never leave your servers.
#[utoipa::path(post, path = "/v1/agents/{agent_id}/call-tokens", tag = "agents", params(("agent_id" = String, Path)),
    request_body(content = CallTokenRequest, description = "optional {\"ttl_secs\": 600}"),
    responses((status = 201, body = CallTokenView), (status = 404, description = "no such agent"), (status = 422, description = "ttl_secs out of range")))]
pub async fn create(
    Authed { state, caller, actor }: Authed,
    Path(agent_id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<CallTokenView>)> {
    let org = caller.member(Action::PlaceCalls)?;
    let request: CallTokenRequest = optional_json(&body)?;
    let issued = call_tokens::issue(&state, &actor, &org.id, &agent_id, request.ttl_secs).await?;
    let view = CallTokenView {
        token: issued.token,
        agent_id: issued.agent_id.to_string(),
        expires_at: issued.expires_at.to_string(),
    };
    Ok((StatusCode::CREATED, Json(view)))
}
