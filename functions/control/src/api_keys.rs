//! API keys of the caller's organisation: create (secret shown once), list, revoke, rotate.

use crate::common::{audit, JsonBody, ListQuery, QueryParams};
use crate::error::{ApiError, ApiResult};
use crate::keys;
use crate::middleware::{Caller, RequestContext, SecretInResponse};
use crate::state::ControlState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use golos_domain::rbac::{Action, Role};
use golos_domain::{ApiKeyId, OrgId};
use golos_ports::ApiKeyRecord;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

const DAY_MS: i64 = 86_400_000;
/// The reviews' maximum key lifetime.
const MAX_LIFETIME_DAYS: u32 = 365;
const MAX_ROTATION_OVERLAP_SECS: u64 = 7 * 86_400;

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

pub(crate) async fn issue_key(state: &ControlState, org: &OrgId, body: NewKey) -> ApiResult<CreatedKey> {
    if body.name.trim().is_empty() || body.name.chars().count() > 100 {
        return Err(ApiError::bad_request("invalid_name", "name must be 1-100 characters"));
    }
    let role: Role =
        body.role.parse().map_err(|_| ApiError::bad_request("unknown_role", "role must be admin, editor or viewer"))?;
    let days = body.expires_in_days.unwrap_or(MAX_LIFETIME_DAYS);
    if !(1..=MAX_LIFETIME_DAYS).contains(&days) {
        return Err(ApiError::bad_request("invalid_expiry", "expires_in_days must be 1-365"));
    }
    let minted = keys::mint(&state.pepper).map_err(ApiError::internal)?;
    let now = state.clock.now();
    let record = ApiKeyRecord {
        id: minted.id,
        org_id: org.clone(),
        name: body.name,
        role,
        secret_hash: minted.secret_hash,
        created_at: now,
        expires_at: Some(now.plus_millis(i64::from(days) * DAY_MS)),
        revoked_at: None,
    };
    state.stores.api_keys.create(&record).await?;
    Ok(CreatedKey { key: record.into(), token: minted.token.expose().to_owned(), previous: None })
}

async fn own_key(state: &ControlState, org: &OrgId, raw_id: &str) -> ApiResult<ApiKeyRecord> {
    let id = ApiKeyId::parse(raw_id).map_err(|_| ApiError::not_found(format!("API key {raw_id}")))?;
    match state.stores.api_keys.get(&id).await? {
        Some(key) if &key.org_id == org => Ok(key),
        _ => Err(ApiError::not_found(format!("API key {id}"))),
    }
}

/// Create an API key in the caller's organisation (admin).
#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys", request_body = NewKey, responses((status = 201, body = CreatedKey)))]
pub async fn create(
    State(state): State<ControlState>,
    Extension(caller): Extension<Caller>,
    Extension(ctx): Extension<RequestContext>,
    JsonBody(body): JsonBody<NewKey>,
) -> ApiResult<(StatusCode, Extension<SecretInResponse>, Json<CreatedKey>)> {
    let org = caller.member(Action::ManageApiKeys)?.id.clone();
    let created = issue_key(&state, &org, body).await?;
    audit(&state, &caller, &ctx, &org, "api_key.create", &created.key.id).await;
    Ok((StatusCode::CREATED, created.secret_marker(), Json(created)))
}

/// List the organisation's API keys (admin); secrets are never shown.
#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys", params(ListQuery), responses((status = 200, body = KeyList)))]
pub async fn list(
    State(state): State<ControlState>,
    Extension(caller): Extension<Caller>,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<Json<KeyList>> {
    let org = caller.member(Action::ReadApiKeys)?;
    let page = state.stores.api_keys.list(&org.id, &query.page()?).await?;
    Ok(Json(KeyList { items: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}

/// Revoke an API key now (admin). Revoking twice keeps the first time.
#[utoipa::path(delete, path = "/v1/api-keys/{key_id}", tag = "api-keys", params(("key_id" = String, Path)), responses((status = 200, body = KeyView), (status = 404)))]
pub async fn revoke(
    State(state): State<ControlState>,
    Extension(caller): Extension<Caller>,
    Extension(ctx): Extension<RequestContext>,
    Path(key_id): Path<String>,
) -> ApiResult<Json<KeyView>> {
    let org = caller.member(Action::ManageApiKeys)?.id.clone();
    let key = own_key(&state, &org, &key_id).await?;
    let revoked = state.stores.api_keys.revoke(&key.id, state.clock.now()).await?;
    audit(&state, &caller, &ctx, &org, "api_key.revoke", key.id.as_str()).await;
    Ok(Json(revoked.into()))
}

/// Rotate an API key (admin): a new key with the same name and role; the old one keeps
/// working for the overlap so deployments can switch without downtime.
#[utoipa::path(post, path = "/v1/api-keys/{key_id}/rotate", tag = "api-keys", params(("key_id" = String, Path)), request_body = RotateKey, responses((status = 201, body = CreatedKey)))]
pub async fn rotate(
    State(state): State<ControlState>,
    Extension(caller): Extension<Caller>,
    Extension(ctx): Extension<RequestContext>,
    Path(key_id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Extension<SecretInResponse>, Json<CreatedKey>)> {
    // An empty POST rotates with the default overlap.
    let body: RotateKey = crate::common::optional_json(&body)?;
    let org = caller.member(Action::ManageApiKeys)?.id.clone();
    let old = own_key(&state, &org, &key_id).await?;
    let now = state.clock.now();
    if !old.is_usable_at(now) {
        return Err(ApiError::new(StatusCode::CONFLICT, "key_not_active", "only an active key can be rotated"));
    }
    let overlap = body.overlap_secs.unwrap_or(86_400);
    if overlap > MAX_ROTATION_OVERLAP_SECS {
        return Err(ApiError::bad_request("invalid_overlap", "overlap_secs must be 0-604800"));
    }
    let lifetime_days = old.expires_at.map_or(MAX_LIFETIME_DAYS, |exp| {
        u32::try_from(((exp.as_millis() - old.created_at.as_millis()) / DAY_MS).clamp(1, i64::from(MAX_LIFETIME_DAYS)))
            .unwrap_or(MAX_LIFETIME_DAYS)
    });
    let mut created = issue_key(
        &state,
        &org,
        NewKey { name: old.name.clone(), role: old.role.as_str().into(), expires_in_days: Some(lifetime_days) },
    )
    .await?;
    let previous = state.stores.api_keys.revoke(&old.id, now.plus_secs(i64::try_from(overlap).unwrap_or(0))).await?;
    created.previous = Some(previous.into());
    audit(&state, &caller, &ctx, &org, "api_key.rotate", old.id.as_str()).await;
    Ok((StatusCode::CREATED, created.secret_marker(), Json(created)))
}
