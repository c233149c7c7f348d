//! SIP trunks (issue #17): the operator records where an org's phone calls come from —
//! source networks, digest credentials, or both — and which of the org's granted numbers a
//! trunk carries. The digest password is envelope-encrypted under the trunk's own context and
//! never leaves the store through the API (a fingerprint tells which one is set). An org's
//! admins read their own trunks.

use crate::audit::{self, Actor};
use crate::state::ControlState;
use crate::{ControlError, ControlResult};
use golos_domain::trunks::{SipAddress, TrunkSpec, MAX_TRUNKS};
use golos_domain::{OrgId, PhoneNumber, TrunkId};
use golos_ports::{EncryptionContext, Envelope, PageRequest, PortError, SecretString, SipTrunk};
use std::collections::HashSet;

/// A trunk as the operator creates it.
#[derive(Debug, Clone, Default)]
pub struct NewTrunk {
    pub name: String,
    pub source_networks: Vec<String>,
    pub digest_username: Option<String>,
    pub digest_password: Option<String>,
    pub numbers: Vec<String>,
    pub enabled: Option<bool>,
    /// Where golos sends OPTIONS health checks (`host` or `host:port`); `None`: not probed.
    pub sip_address: Option<String>,
}

/// What an update changes; `None` keeps a field. `digest_username: Some(None)` removes the
/// digest credentials, `sip_address: Some(None)` stops the health checks.
#[derive(Debug, Clone, Default)]
pub struct TrunkChanges {
    pub name: Option<String>,
    pub source_networks: Option<Vec<String>>,
    pub digest_username: Option<Option<String>>,
    pub digest_password: Option<String>,
    pub numbers: Option<Vec<String>>,
    pub enabled: Option<bool>,
    pub sip_address: Option<Option<String>>,
}

/// The address as it is stored and probed (`host:port`); validated by `TrunkSpec` before.
fn normalised_sip_address(raw: Option<&str>) -> ControlResult<Option<String>> {
    raw.map(|raw| SipAddress::parse(raw).map(|a| a.to_string()).map_err(ControlError::internal)).transpose()
}

/// Longest digest password accepted.
const MAX_PASSWORD_BYTES: usize = 256;

fn password_context(trunk: &TrunkId) -> EncryptionContext {
    EncryptionContext::new([("trunk", trunk.as_str()), ("purpose", "sip-trunk-digest")])
}

fn check_password(password: &str) -> ControlResult<()> {
    if password.is_empty() || password.len() > MAX_PASSWORD_BYTES || password.chars().any(char::is_control) {
        return Err(ControlError::invalid(
            "invalid_digest_password",
            "the digest password must be 1-256 bytes without control characters",
        ));
    }
    Ok(())
}

/// The org's granted numbers, to check that a trunk carries only those.
async fn granted_numbers(state: &ControlState, org: &OrgId) -> ControlResult<HashSet<PhoneNumber>> {
    let mut granted = HashSet::new();
    let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
    loop {
        let result = state.numbers.list(org, &page).await?;
        granted.extend(result.items.into_iter().map(|n| n.number));
        match result.next_cursor {
            Some(cursor) => page = PageRequest::after(cursor, PageRequest::MAX_LIMIT),
            None => return Ok(granted),
        }
    }
}

async fn check_numbers(state: &ControlState, org: &OrgId, numbers: &[PhoneNumber]) -> ControlResult<()> {
    let granted = granted_numbers(state, org).await?;
    let issues: Vec<_> = numbers
        .iter()
        .enumerate()
        .filter(|(_, n)| !granted.contains(n))
        .map(|(i, _)| golos_domain::agent::ValidationIssue {
            field: format!("numbers[{i}]"),
            code: "number_not_granted",
            message: "grant the number to the organisation first (POST /v1/orgs/{org_id}/numbers)".into(),
        })
        .collect();
    if issues.is_empty() {
        Ok(())
    } else {
        Err(ControlError::Validation(issues))
    }
}

/// The trunk's digest password, for the SIP edge to check a trunk's answer to a challenge.
/// `None` when the trunk has no digest credentials.
pub async fn digest_password(state: &ControlState, trunk: &SipTrunk) -> ControlResult<Option<SecretString>> {
    let Some(sealed) = &trunk.digest_password else { return Ok(None) };
    let envelope = Envelope::from_bytes(sealed)?;
    let plaintext = state.crypto.decrypt(&envelope, &password_context(&trunk.id)).await?;
    let password = String::from_utf8(plaintext).map_err(|_| PortError::corrupt("digest password is not UTF-8"))?;
    Ok(Some(SecretString::new(password)))
}

async fn seal_password(state: &ControlState, trunk: &mut SipTrunk, password: &str) -> ControlResult<()> {
    check_password(password)?;
    let envelope = state.crypto.encrypt(password.as_bytes(), &password_context(&trunk.id)).await?;
    trunk.digest_password = Some(envelope.to_bytes());
    trunk.digest_fingerprint = Some(crate::credentials::fingerprint(password));
    Ok(())
}

pub async fn create(state: &ControlState, actor: &Actor, org: &OrgId, new: NewTrunk) -> ControlResult<SipTrunk> {
    if state.stores.orgs.get(org).await?.is_none() {
        return Err(ControlError::not_found(format!("organisation {org}")));
    }
    let spec = TrunkSpec {
        name: &new.name,
        source_networks: &new.source_networks,
        digest_username: new.digest_username.as_deref(),
        has_digest_password: new.digest_password.is_some(),
        numbers: &new.numbers,
        sip_address: new.sip_address.as_deref(),
    };
    let numbers = spec.validate().map_err(ControlError::Validation)?;
    let sip_address = normalised_sip_address(new.sip_address.as_deref())?;
    check_numbers(state, org, &numbers).await?;
    // Counted, not held atomically: two creations racing at the cap can end one over it,
    // which costs the SIP edge one more trunk in memory, nothing more.
    if state.stores.trunks.all().await?.len() >= MAX_TRUNKS {
        return Err(ControlError::forbidden(
            "max_trunks_reached",
            format!("the platform holds at most {MAX_TRUNKS} trunks"),
        ));
    }
    let now = state.clock.now();
    let mut trunk = SipTrunk {
        id: TrunkId::with_suffix(&state.ids.new_suffix()).map_err(ControlError::internal)?,
        org_id: org.clone(),
        name: new.name,
        source_networks: new.source_networks,
        digest_username: new.digest_username,
        digest_password: None,
        digest_fingerprint: None,
        numbers,
        enabled: new.enabled.unwrap_or(true),
        sip_address,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    if let Some(password) = &new.digest_password {
        seal_password(state, &mut trunk, password).await?;
    }
    state.stores.trunks.create(&trunk).await?;
    audit::record(state, actor, org, "sip_trunk.create", trunk.id.as_str()).await;
    Ok(trunk)
}

/// Every trunk (`org`: `None`), or one org's, ordered by id, one page after `cursor`.
pub async fn list(
    state: &ControlState,
    org: Option<&OrgId>,
    page: &PageRequest,
) -> ControlResult<golos_ports::Page<SipTrunk>> {
    let after = page.cursor.as_deref().unwrap_or_default();
    let limit = page.clamped_limit() as usize;
    let mut items: Vec<SipTrunk> = state
        .stores
        .trunks
        .all()
        .await?
        .into_iter()
        .filter(|t| org.is_none_or(|org| &t.org_id == org) && t.id.as_str() > after)
        .take(limit + 1)
        .collect();
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|t| t.id.to_string())
    } else {
        None
    };
    Ok(golos_ports::Page { items, next_cursor })
}

/// One trunk; another org's is as absent as one that does not exist.
pub async fn get(state: &ControlState, id: &str, org: Option<&OrgId>) -> ControlResult<SipTrunk> {
    let missing = || ControlError::not_found(format!("SIP trunk {id}"));
    let id = TrunkId::parse(id).map_err(|_| missing())?;
    match state.stores.trunks.get(&id).await? {
        Some(trunk) if org.is_none_or(|org| &trunk.org_id == org) => Ok(trunk),
        _ => Err(missing()),
    }
}

/// Applies `changes` over version `expected` (or over the current one when `None`).
pub async fn update(
    state: &ControlState,
    actor: &Actor,
    id: &str,
    changes: TrunkChanges,
    expected: Option<u64>,
) -> ControlResult<SipTrunk> {
    let mut trunk = get(state, id, None).await?;
    if let Some(expected) = expected {
        if expected != trunk.version {
            return Err(PortError::Conflict { expected, actual: trunk.version }.into());
        }
    }
    let name = changes.name.unwrap_or_else(|| trunk.name.clone());
    let source_networks = changes.source_networks.unwrap_or_else(|| trunk.source_networks.clone());
    let digest_username = changes.digest_username.unwrap_or_else(|| trunk.digest_username.clone());
    let numbers =
        changes.numbers.unwrap_or_else(|| trunk.numbers.iter().map(PhoneNumber::expose_e164).collect::<Vec<_>>());
    let sip_address = changes.sip_address.unwrap_or_else(|| trunk.sip_address.clone());
    let keeps_password = digest_username.is_some() && trunk.digest_password.is_some();
    let spec = TrunkSpec {
        name: &name,
        source_networks: &source_networks,
        digest_username: digest_username.as_deref(),
        has_digest_password: changes.digest_password.is_some() || keeps_password,
        numbers: &numbers,
        sip_address: sip_address.as_deref(),
    };
    let parsed = spec.validate().map_err(ControlError::Validation)?;
    let sip_address = normalised_sip_address(sip_address.as_deref())?;
    check_numbers(state, &trunk.org_id, &parsed).await?;
    if digest_username.is_none() {
        trunk.digest_password = None;
        trunk.digest_fingerprint = None;
    }
    if let Some(password) = &changes.digest_password {
        seal_password(state, &mut trunk, password).await?;
    }
    trunk.name = name;
    trunk.source_networks = source_networks;
    trunk.digest_username = digest_username;
    trunk.numbers = parsed;
    trunk.enabled = changes.enabled.unwrap_or(trunk.enabled);
    trunk.sip_address = sip_address;
    trunk.updated_at = state.clock.now();
    trunk.version = state.stores.trunks.update(&trunk).await?;
    audit::record(state, actor, &trunk.org_id, "sip_trunk.update", trunk.id.as_str()).await;
    Ok(trunk)
}

pub async fn delete(state: &ControlState, actor: &Actor, id: &str) -> ControlResult<()> {
    let trunk = get(state, id, None).await?;
    state.stores.trunks.delete(&trunk.id).await?;
    audit::record(state, actor, &trunk.org_id, "sip_trunk.delete", trunk.id.as_str()).await;
    Ok(())
}
