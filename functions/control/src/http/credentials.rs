//! `/v1/provider-credentials`: write-only provider keys of the caller's organisation
//! ([`crate::credentials`]).

use super::error::ApiResult;
use super::extract::Authed;
use super::extract::{JsonBody, ListQuery, QueryParams};
use crate::credentials;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::Json;
use golos_domain::rbac::Action;
use golos_ports::ProviderCredential;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialValue {
    /// The provider's key (or credentials document), up to 16 KiB. Never returned.
    pub value: String,
}

/// A credential as the API shows it: never its value.
#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialView {
    pub name: String,
    /// The first 16 hex digits of the value's SHA-256: `printf %s "$KEY" | sha256sum | cut -c1-16`.
    pub fingerprint: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<ProviderCredential> for CredentialView {
    fn from(c: ProviderCredential) -> Self {
        Self {
            name: c.name,
            fingerprint: c.fingerprint,
            created_at: c.created_at.to_string(),
            updated_at: c.updated_at.to_string(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialList {
    pub items: Vec<CredentialView>,
    pub next_cursor: Option<String>,
}

/// Create or replace a provider credential (admin, editor). The value is never shown again.
#[utoipa::path(put, path = "/v1/provider-credentials/{name}", tag = "provider-credentials", params(("name" = String, Path)), request_body = CredentialValue,
    responses((status = 201, body = CredentialView, description = "created"), (status = 200, body = CredentialView, description = "replaced")))]
pub async fn put(
    Authed { state, caller, actor }: Authed,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<CredentialValue>,
) -> ApiResult<(StatusCode, Json<CredentialView>)> {
    let org = caller.member(Action::ManageProviderCredentials)?.id.clone();
    let (created, credential) = credentials::put(&state, &actor, &org, &name, &body.value).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(credential.into())))
}

/// List the organisation's provider credentials by name and fingerprint (admin, editor).
#[utoipa::path(get, path = "/v1/provider-credentials", tag = "provider-credentials", params(ListQuery), responses((status = 200, body = CredentialList)))]
pub async fn list(
    Authed { state, caller, .. }: Authed,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<Json<CredentialList>> {
    let org = caller.member(Action::ReadProviderCredentials)?;
    let page = credentials::list(&state, &org.id, &query.page()?).await?;
    Ok(Json(CredentialList { items: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}

/// Delete a provider credential (admin, editor). Agents naming it skip that tier from then on.
#[utoipa::path(delete, path = "/v1/provider-credentials/{name}", tag = "provider-credentials", params(("name" = String, Path)), responses((status = 204), (status = 404)))]
pub async fn delete(Authed { state, caller, actor }: Authed, Path(name): Path<String>) -> ApiResult<StatusCode> {
    let org = caller.member(Action::ManageProviderCredentials)?.id.clone();
    credentials::delete(&state, &actor, &org, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
