//! Provider credentials of the caller's organisation: the keys its agents use with LLM, TTS
//! and STT providers. Write-only: a value goes in through `PUT` and never comes out of the
//! API again; lists show the name and a fingerprint. Values are envelope-encrypted (KMS data
//! key, AES-256-GCM) under a context that binds them to the org and the name, and only the
//! media worker decrypts them, for the calls of that org.

use crate::common::{audit, JsonBody, ListQuery, QueryParams};
use crate::error::{ApiError, ApiResult};
use crate::middleware::{Caller, RequestContext};
use crate::state::ControlState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use golos_domain::agent::AgentConfig;
use golos_domain::credentials::{is_credential_name, is_credential_value, MAX_CREDENTIALS_PER_ORG};
use golos_domain::rbac::Action;
use golos_domain::OrgId;
use golos_ports::{EncryptionContext, Envelope, PageRequest, ProviderCredential, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
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

fn encryption_context(org: &OrgId, name: &str) -> EncryptionContext {
    EncryptionContext::new([("org", org.as_str()), ("purpose", "provider-credential"), ("credential", name)])
}

pub fn fingerprint(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    digest.iter().take(8).fold(String::with_capacity(16), |mut hex, b| {
        use std::fmt::Write as _;
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

fn check_name(name: &str) -> ApiResult<()> {
    if is_credential_name(name) {
        Ok(())
    } else {
        Err(ApiError::bad_request("invalid_credential_name", "a credential name is 1-64 of [A-Za-z0-9_.-]"))
    }
}

/// Creates or replaces `name` in `org`; `true` when it was created.
pub async fn store(
    state: &ControlState,
    org: &OrgId,
    name: &str,
    value: &str,
) -> ApiResult<(bool, ProviderCredential)> {
    check_name(name)?;
    if !is_credential_value(value) {
        return Err(ApiError::bad_request(
            "invalid_credential_value",
            "the value must be non-empty, at most 16 KiB, without control characters",
        ));
    }
    let existing = state.stores.credentials.get(org, name).await?;
    // Counted, not held atomically like the agent quota: two creations racing at the limit
    // can end one over it, which costs a few bytes of store, not a tenant's isolation.
    if existing.is_none() {
        let limit = u32::try_from(MAX_CREDENTIALS_PER_ORG).unwrap_or(u32::MAX).min(PageRequest::MAX_LIMIT);
        let held = state.stores.credentials.list(org, &PageRequest::first(limit)).await?.items.len();
        if held >= MAX_CREDENTIALS_PER_ORG {
            return Err(ApiError::forbidden(
                "max_credentials_reached",
                format!("an organisation holds at most {MAX_CREDENTIALS_PER_ORG} provider credentials"),
            ));
        }
    }
    let envelope = state.crypto.encrypt(value.as_bytes(), &encryption_context(org, name)).await?;
    let now = state.clock.now();
    let credential = ProviderCredential {
        org_id: org.clone(),
        name: name.to_owned(),
        envelope: envelope.to_bytes(),
        fingerprint: fingerprint(value),
        created_at: existing.map_or(now, |e| e.created_at),
        updated_at: now,
    };
    let created = state.stores.credentials.put(&credential).await?;
    Ok((created, credential))
}

/// The values of the org's credentials named in `names`, for the media worker building a
/// call's provider chains. A name the org lacks, or a value that does not decrypt, is left
/// out (and logged by name): the tier is skipped and the chain falls through to the next.
pub async fn resolve(state: &ControlState, org: &OrgId, names: &[&str]) -> HashMap<String, SecretString> {
    let mut resolved = HashMap::new();
    for &name in names {
        match open(state, org, name).await {
            Ok(Some(value)) => {
                resolved.insert(name.to_owned(), value);
            }
            Ok(None) => tracing::warn!(credential = name, "an agent names a provider credential its org does not have"),
            Err(error) => tracing::warn!(credential = name, %error, "a provider credential could not be read"),
        }
    }
    resolved
}

async fn open(state: &ControlState, org: &OrgId, name: &str) -> Result<Option<SecretString>, golos_ports::PortError> {
    let Some(stored) = state.stores.credentials.get(org, name).await? else {
        return Ok(None);
    };
    let envelope = Envelope::from_bytes(&stored.envelope)?;
    let plaintext = state.crypto.decrypt(&envelope, &encryption_context(org, name)).await?;
    let value = String::from_utf8(plaintext).map_err(|_| golos_ports::PortError::corrupt("credential is not UTF-8"))?;
    Ok(Some(SecretString::new(value)))
}

/// Every credential an agent's tiers name must exist in its org; the issues point at the
/// tier, as validation does.
pub async fn check_agent_credentials(state: &ControlState, org: &OrgId, agent: &AgentConfig) -> ApiResult<()> {
    let mut issues = Vec::new();
    let providers = &agent.providers;
    let tiers = providers
        .llm
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("providers.llm[{i}].credentials_secret"), t.credentials_secret.as_deref()))
        .chain(
            providers
                .tts
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("providers.tts[{i}].credentials_secret"), t.credentials_secret.as_deref())),
        )
        .chain(
            providers
                .stt
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("providers.stt[{i}].credentials_secret"), t.credentials_secret.as_deref())),
        );
    let mut known: HashMap<&str, bool> = HashMap::new();
    for (field, name) in tiers {
        let Some(name) = name else { continue };
        let exists = if let Some(&exists) = known.get(name) {
            exists
        } else {
            let exists = state.stores.credentials.get(org, name).await?.is_some();
            known.insert(name, exists);
            exists
        };
        if !exists {
            issues.push(golos_domain::agent::ValidationIssue {
                field,
                code: "unknown_credential",
                message: format!(
                    "the organisation has no provider credential `{name}`; create it with PUT /v1/provider-credentials/{name}"
                ),
            });
        }
    }
    if issues.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(issues))
    }
}

/// Create or replace a provider credential (admin, editor). The value is never shown again.
#[utoipa::path(put, path = "/v1/provider-credentials/{name}", tag = "provider-credentials", params(("name" = String, Path)), request_body = CredentialValue,
    responses((status = 201, body = CredentialView, description = "created"), (status = 200, body = CredentialView, description = "replaced")))]
pub async fn put(
    State(state): State<ControlState>,
    Extension(caller): Extension<Caller>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<CredentialValue>,
) -> ApiResult<(StatusCode, Json<CredentialView>)> {
    let org = caller.member(Action::ManageProviderCredentials)?.id.clone();
    let (created, credential) = store(&state, &org, &name, &body.value).await?;
    audit(&state, &caller, &ctx, &org, "provider_credential.put", &credential.name).await;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(credential.into())))
}

/// List the organisation's provider credentials by name and fingerprint (admin, editor).
#[utoipa::path(get, path = "/v1/provider-credentials", tag = "provider-credentials", params(ListQuery), responses((status = 200, body = CredentialList)))]
pub async fn list(
    State(state): State<ControlState>,
    Extension(caller): Extension<Caller>,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<Json<CredentialList>> {
    let org = caller.member(Action::ReadProviderCredentials)?;
    let page = state.stores.credentials.list(&org.id, &query.page()?).await?;
    Ok(Json(CredentialList { items: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}

/// Delete a provider credential (admin, editor). Agents naming it skip that tier from then on.
#[utoipa::path(delete, path = "/v1/provider-credentials/{name}", tag = "provider-credentials", params(("name" = String, Path)), responses((status = 204), (status = 404)))]
pub async fn delete(
    State(state): State<ControlState>,
    Extension(caller): Extension<Caller>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let org = caller.member(Action::ManageProviderCredentials)?.id.clone();
    check_name(&name).map_err(|_| ApiError::not_found(format!("provider credential {name}")))?;
    state.stores.credentials.delete(&org, &name).await?;
    audit(&state, &caller, &ctx, &org, "provider_credential.delete", &name).await;
    Ok(StatusCode::NO_CONTENT)
}
