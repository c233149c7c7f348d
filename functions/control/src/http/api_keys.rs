//! `/v1/api-keys`: the caller's organisation's keys (create with the secret shown once,
//! list, revoke, rotate).

use super::error::{ApiError, ApiResult};
use super::extract::Authed;
use super::extract::{optional_json, JsonBody, ListQuery, QueryParams};
use super::middleware::SecretInResponse;
use crate::api_keys::{self, IssuedKey, KeyRequest};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::{Extension, Json};
use golos_domain::rbac::{Action, Role};
use golos_ports::ApiKeyRecord;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// What the key is for, 1-100 characters.
    pub name: String,
    /// `admin`, `editor` or `viewer`.
    pub role: String,
    /// 1-365; default 365.
    pub expires_in_days: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub role: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
}

impl From<ApiKeyRecord> for KeyView {
    fn from(key: ApiKeyRecord) -> Self {
        Self {
            id: key.id.to_string(),
            org_id: key.org_id.to_string(),
            name: key.name,
            role: key.role.as_str().into(),
            created_at: key.created_at.to_string(),
            expires_at: key.expires_at.map(|t| t.to_string()),
            revoked_at: key.revoked_at.map(|t| t.to_string()),
        }
    }
}

/// A new key. `token` is shown only in this response; golos keeps only its hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    pub key: KeyView,
    /// Send it as `X-API-Key`. It cannot be shown again.
    pub token: String,
    /// For a rotation: the previous key and when it stops working.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<KeyView>,
}

impl From<IssuedKey> for CreatedKey {
    fn from(issued: IssuedKey) -> Self {
        Self { key: issued.record.into(), token: issued.token, previous: issued.previous.map(Into::into) }
    }
}

impl NewKey {
    /// The use-case's request, once the role is one golos knows.
    pub fn parse(self) -> ApiResult<KeyRequest> {
        let role: Role = self
            .role
            .parse()
            .map_err(|_| ApiError::bad_request("unknown_role", "role must be admin, editor or viewer"))?;
        Ok(KeyRequest { name: self.name, role, expires_in_days: self.expires_in_days })
    }
}

impl CreatedKey {
    /// Keeps the token out of the idempotency store (`SecretInResponse`).
    pub fn secret_marker(&self) -> Extension<SecretInResponse> {
        Extension(SecretInResponse { resource_id: self.key.id.clone() })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub items: Vec<KeyView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// How long the old key keeps working, 0-604800 seconds; default 86400.
    pub overlap_secs: Option<u64>,
}

/// Create an API key in the caller's organisation (admin).
#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys", request_body = NewKey, responses((status = 201, body = CreatedKey)))]
pub async fn create(
    Authed { state, caller, actor }: Authed,
    JsonBody(body): JsonBody<NewKey>,
) -> ApiResult<(StatusCode, Extension<SecretInResponse>, Json<CreatedKey>)> {
    let org = caller.member(Action::ManageApiKeys)?.id.clone();
    let created = CreatedKey::from(api_keys::issue(&state, &actor, &org, body.parse()?).await?);
    Ok((StatusCode::CREATED, created.secret_marker(), Json(created)))
}

/// List the organisation's API keys (admin); secrets are never shown.
#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys", params(ListQuery), responses((status = 200, body = KeyList)))]
pub async fn list(
    Authed { state, caller, .. }: Authed,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<Json<KeyList>> {
    let org = caller.member(Action::ReadApiKeys)?;
    let page = api_keys::list(&state, &org.id, &query.page()?).await?;
    Ok(Json(KeyList { items: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}

/// Revoke an API key now (admin). Revoking twice keeps the first time.
#[utoipa::path(delete, path = "/v1/api-keys/{key_id}", tag = "api-keys", params(("key_id" = String, Path)), responses((status = 200, body = KeyView), (status = 404)))]
pub async fn revoke(Authed { state, caller, actor }: Authed, Path(key_id): Path<String>) -> ApiResult<Json<KeyView>> {
    let org = caller.member(Action::ManageApiKeys)?.id.clone();
    Ok(Json(api_keys::revoke(&state, &actor, &org, &key_id).await?.into()))
}

/// Rotate an API key (admin): a new key with the same name and role; the old one keeps
/// working for the overlap so deployments can switch without downtime.
#[utoipa::path(post, path = "/v1/api-keys/{key_id}/rotate", tag = "api-keys", params(("key_id" = String, Path)), request_body = RotateKey, responses((status = 201, body = CreatedKey)))]
pub async fn rotate(
    Authed { state, caller, actor }: Authed,
    Path(key_id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Extension<SecretInResponse>, Json<CreatedKey>)> {
    // An empty POST rotates with the default overlap.
    let body: RotateKey = optional_json(&body)?;
    let org = caller.member(Action::ManageApiKeys)?.id.clone();
    let rotated = api_keys::rotate(&state, &actor, &org, &key_id, body.overlap_secs).await?;
    let created = CreatedKey::from(rotated);
    Ok((StatusCode::CREATED, created.secret_marker(), Json(created)))
}
