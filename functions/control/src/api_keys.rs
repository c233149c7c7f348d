//! API keys of an organisation: issue (the secret shown once), list, revoke, rotate.

use crate::audit::{self, Actor};
use crate::keys;
use crate::state::ControlState;
use crate::{ControlError, ControlResult};
use golos_domain::rbac::Role;
use golos_domain::{ApiKeyId, OrgId};
use golos_ports::{ApiKeyRecord, Page, PageRequest};

const DAY_MS: i64 = 86_400_000;
/// The reviews' maximum key lifetime.
pub const MAX_LIFETIME_DAYS: u32 = 365;
pub const MAX_ROTATION_OVERLAP_SECS: u64 = 7 * 86_400;
pub const DEFAULT_ROTATION_OVERLAP_SECS: u64 = 86_400;

/// What a new key is: a name, a role and a lifetime (default and most: 365 days).
#[derive(Debug, Clone)]
pub struct KeyRequest {
    pub name: String,
    pub role: Role,
    pub expires_in_days: Option<u32>,
}

/// A key just made. `token` exists only here: golos keeps only its hash.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub record: ApiKeyRecord,
    pub token: String,
    /// For a rotation: the previous key, with when it stops working.
    pub previous: Option<ApiKeyRecord>,
}

async fn mint(state: &ControlState, org: &OrgId, request: KeyRequest) -> ControlResult<IssuedKey> {
    if request.name.trim().is_empty() || request.name.chars().count() > 100 {
        return Err(ControlError::invalid("invalid_name", "name must be 1-100 characters"));
    }
    let days = request.expires_in_days.unwrap_or(MAX_LIFETIME_DAYS);
    if !(1..=MAX_LIFETIME_DAYS).contains(&days) {
        return Err(ControlError::invalid("invalid_expiry", "expires_in_days must be 1-365"));
    }
    let minted = keys::mint(&state.pepper).map_err(ControlError::internal)?;
    let now = state.clock.now();
    let record = ApiKeyRecord {
        id: minted.id,
        org_id: org.clone(),
        name: request.name,
        role: request.role,
        secret_hash: minted.secret_hash,
        created_at: now,
        expires_at: Some(now.plus_millis(i64::from(days) * DAY_MS)),
        revoked_at: None,
    };
    state.stores.api_keys.create(&record).await?;
    Ok(IssuedKey { record, token: minted.token.expose().to_owned(), previous: None })
}

/// Issues a key in `org`, which must exist (the operator hands an org its first admin key
/// this way; members issue keys in their own org).
pub async fn issue(state: &ControlState, actor: &Actor, org: &OrgId, request: KeyRequest) -> ControlResult<IssuedKey> {
    if state.stores.orgs.get(org).await?.is_none() {
        return Err(ControlError::not_found(format!("organisation {org}")));
    }
    let issued = mint(state, org, request).await?;
    audit::record(state, actor, org, "api_key.create", issued.record.id.as_str()).await;
    Ok(issued)
}

pub async fn list(state: &ControlState, org: &OrgId, page: &PageRequest) -> ControlResult<Page<ApiKeyRecord>> {
    Ok(state.stores.api_keys.list(org, page).await?)
}

/// A key of `org`; another org's key is as absent as one that never existed.
async fn own_key(state: &ControlState, org: &OrgId, raw_id: &str) -> ControlResult<ApiKeyRecord> {
    let id = ApiKeyId::parse(raw_id).map_err(|_| ControlError::not_found(format!("API key {raw_id}")))?;
    match state.stores.api_keys.get(&id).await? {
        Some(key) if &key.org_id == org => Ok(key),
        _ => Err(ControlError::not_found(format!("API key {id}"))),
    }
}

/// Revokes a key now. Revoking twice keeps the first time.
pub async fn revoke(state: &ControlState, actor: &Actor, org: &OrgId, key_id: &str) -> ControlResult<ApiKeyRecord> {
    let key = own_key(state, org, key_id).await?;
    let revoked = state.stores.api_keys.revoke(&key.id, state.clock.now()).await?;
    audit::record(state, actor, org, "api_key.revoke", key.id.as_str()).await;
    Ok(revoked)
}

/// A new key with the old one's name, role and lifetime; the old one keeps working for
/// `overlap_secs` (default a day) so deployments switch without downtime.
pub async fn rotate(
    state: &ControlState,
    actor: &Actor,
    org: &OrgId,
    key_id: &str,
    overlap_secs: Option<u64>,
) -> ControlResult<IssuedKey> {
    let old = own_key(state, org, key_id).await?;
    let now = state.clock.now();
    if !old.is_usable_at(now) {
        return Err(ControlError::conflict("key_not_active", "only an active key can be rotated"));
    }
    let overlap = overlap_secs.unwrap_or(DEFAULT_ROTATION_OVERLAP_SECS);
    if overlap > MAX_ROTATION_OVERLAP_SECS {
        return Err(ControlError::invalid("invalid_overlap", "overlap_secs must be 0-604800"));
    }
    let lifetime_days = old.expires_at.map_or(MAX_LIFETIME_DAYS, |exp| {
        u32::try_from(((exp.as_millis() - old.created_at.as_millis()) / DAY_MS).clamp(1, i64::from(MAX_LIFETIME_DAYS)))
            .unwrap_or(MAX_LIFETIME_DAYS)
    });
    let request = KeyRequest { name: old.name.clone(), role: old.role, expires_in_days: Some(lifetime_days) };
    let mut issued = mint(state, org, request).await?;
    let previous = state.stores.api_keys.revoke(&old.id, now.plus_secs(i64::try_from(overlap).unwrap_or(0))).await?;
    issued.previous = Some(previous);
    audit::record(state, actor, org, "api_key.rotate", old.id.as_str()).await;
    Ok(issued)
}
