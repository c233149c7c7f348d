//! Provider credentials of the caller's organisation: the keys its agents use with LLM, TTS
//! and STT providers. Write-only: a value goes in through `PUT` and never comes out of the
//! API again; lists show the name and a fingerprint. Values are envelope-encrypted (KMS data
//! key, AES-256-GCM) under a context that binds them to the org and the name, and only the
//! media worker decrypts them, for the calls of that org.

use crate::audit::{self, Actor};
use crate::state::ControlState;
use crate::{ControlError, ControlResult};
use golos_domain::agent::AgentConfig;
use golos_domain::credentials::{is_credential_name, is_credential_value, MAX_CREDENTIALS_PER_ORG};
use golos_domain::OrgId;
use golos_ports::{EncryptionContext, Envelope, Page, PageRequest, ProviderCredential, SecretString};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

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

fn check_name(name: &str) -> ControlResult<()> {
    if is_credential_name(name) {
        Ok(())
    } else {
        Err(ControlError::invalid("invalid_credential_name", "a credential name is 1-64 of [A-Za-z0-9_.-]"))
    }
}

/// Creates or replaces `name` in `org`; `true` when it was created.
pub async fn store(
    state: &ControlState,
    org: &OrgId,
    name: &str,
    value: &str,
) -> ControlResult<(bool, ProviderCredential)> {
    check_name(name)?;
    if !is_credential_value(value) {
        return Err(ControlError::invalid(
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
            return Err(ControlError::forbidden(
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
pub async fn check_agent_credentials(state: &ControlState, org: &OrgId, agent: &AgentConfig) -> ControlResult<()> {
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
        Err(ControlError::Validation(issues))
    }
}

/// Creates or replaces `name` for an admin or editor; `true` when it was created.
pub async fn put(
    state: &ControlState,
    actor: &Actor,
    org: &OrgId,
    name: &str,
    value: &str,
) -> ControlResult<(bool, ProviderCredential)> {
    let stored = store(state, org, name, value).await?;
    audit::record(state, actor, org, "provider_credential.put", name).await;
    Ok(stored)
}

pub async fn list(state: &ControlState, org: &OrgId, page: &PageRequest) -> ControlResult<Page<ProviderCredential>> {
    Ok(state.stores.credentials.list(org, page).await?)
}

/// Deletes `name`; agents naming it skip that tier from then on.
pub async fn delete(state: &ControlState, actor: &Actor, org: &OrgId, name: &str) -> ControlResult<()> {
    check_name(name).map_err(|_| ControlError::not_found(format!("provider credential {name}")))?;
    state.stores.credentials.delete(org, name).await?;
    audit::record(state, actor, org, "provider_credential.delete", name).await;
    Ok(())
}
