//! Short-lived call tokens: what a browser or mobile app presents in the WebSocket `start`
//! instead of an API key, which must never reach a client. Minted by a member who may place
//! calls (`POST /v1/agents/{id}/call-tokens`), valid for one agent until it expires.
//!
//! A token is `ct_<payload>.<mac>`: base64url JSON `{o, a, e}` (org, agent, expiry in ms) and
//! base64url HMAC-SHA256 of the payload under the platform's call-token key (a secret of its
//! own, not the API-key pepper): rotating that key ends every outstanding token. Stateless, so a
//! media worker checks it without a store round trip and the Lambda API can mint it; the
//! worker still loads the org and agent, so a disabled org or a deleted agent stops new calls
//! at once.

use crate::audit::{self, Actor};
use crate::keys;
use crate::state::ControlState;
use crate::{ControlError, ControlResult};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use golos_domain::rbac::Action;
use golos_domain::{AgentId, OrgId, Timestamp};
use golos_ports::{AgentRecord, Org, SecretString};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const CALL_TOKEN_PREFIX: &str = "ct_";
pub const DEFAULT_TTL_SECS: u32 = 600;
pub const MAX_TTL_SECS: u32 = 3_600;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    o: String,
    a: String,
    e: i64,
}

fn mac(key: &SecretString, payload: &str) -> Vec<u8> {
    // Domain-separated as well, in case an operator ever gives both secrets one value.
    let mut mac = Hmac::<Sha256>::new_from_slice(key.expose().as_bytes()).expect("HMAC takes any key length");
    mac.update(b"golos call token v1\0");
    mac.update(payload.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// A token for `agent` of `org`, valid until `expires_at`.
pub fn mint(key: &SecretString, org: &OrgId, agent: &AgentId, expires_at: Timestamp) -> String {
    let claims = Claims { o: org.to_string(), a: agent.to_string(), e: expires_at.as_millis() };
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("claims serialize"));
    let signature = URL_SAFE_NO_PAD.encode(mac(key, &payload));
    format!("{CALL_TOKEN_PREFIX}{payload}.{signature}")
}

/// Why a call could not be authorised; each maps to a stable WebSocket error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallAuthError {
    #[error("the token is missing, malformed, expired or not valid for this agent")]
    Unauthorized,
    #[error("no such agent in the token's organisation")]
    AgentNotFound,
    #[error("this organisation is disabled")]
    OrgDisabled,
    #[error("the platform could not check the token: {0}")]
    Unavailable(String),
}

impl From<golos_ports::PortError> for CallAuthError {
    fn from(err: golos_ports::PortError) -> Self {
        Self::Unavailable(err.to_string())
    }
}

/// Checks a call token's signature and expiry; returns the org and agent it is for.
pub fn verify(key: &SecretString, token: &str, now: Timestamp) -> Option<(OrgId, AgentId)> {
    let rest = token.strip_prefix(CALL_TOKEN_PREFIX)?;
    let (payload, signature) = rest.split_once('.')?;
    let presented = URL_SAFE_NO_PAD.decode(signature).ok()?;
    if !bool::from(mac(key, payload).ct_eq(&presented)) {
        return None;
    }
    let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    if claims.e <= now.as_millis() {
        return None;
    }
    Some((OrgId::parse(&claims.o).ok()?, AgentId::parse(&claims.a).ok()?))
}

/// Authorises a call to `agent_id` with a call token or an API key of a role that may place
/// calls, and loads the org and the agent.
pub async fn authorize_call(
    state: &ControlState,
    token: &str,
    agent_id: &str,
) -> Result<(Org, AgentRecord), CallAuthError> {
    let now = state.clock.now();
    let agent_id = AgentId::parse(agent_id).map_err(|_| CallAuthError::AgentNotFound)?;
    let org_id = if token.starts_with(CALL_TOKEN_PREFIX) {
        let (org, agent) = verify(&state.call_token_key, token, now).ok_or(CallAuthError::Unauthorized)?;
        if agent != agent_id {
            return Err(CallAuthError::Unauthorized);
        }
        org
    } else {
        let (key_id, secret) = keys::parse(token).ok_or(CallAuthError::Unauthorized)?;
        let record = state.stores.api_keys.get(&key_id).await?;
        let record = record
            .filter(|r| keys::verify(&state.pepper, secret, &r.secret_hash) && r.is_usable_at(now))
            .ok_or(CallAuthError::Unauthorized)?;
        if !golos_domain::rbac::can(record.role, Action::PlaceCalls) {
            return Err(CallAuthError::Unauthorized);
        }
        record.org_id
    };
    let org = state.stores.orgs.get(&org_id).await?.ok_or(CallAuthError::Unauthorized)?;
    if org.disabled {
        return Err(CallAuthError::OrgDisabled);
    }
    let agent = state.stores.agents.get(&org.id, &agent_id).await?.ok_or(CallAuthError::AgentNotFound)?;
    Ok((org, agent))
}

/// A call token just minted.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub agent_id: AgentId,
    pub expires_at: Timestamp,
}

/// Mints a token for one of the org's agents, valid for `ttl_secs` (default 600, 1-3600).
pub async fn issue(
    state: &ControlState,
    actor: &Actor,
    org: &OrgId,
    agent_id: &str,
    ttl_secs: Option<u32>,
) -> ControlResult<IssuedToken> {
    let id = AgentId::parse(agent_id).map_err(|_| ControlError::not_found(format!("agent {agent_id}")))?;
    state.stores.agents.get(org, &id).await?.ok_or_else(|| ControlError::not_found(format!("agent {id}")))?;
    let ttl = ttl_secs.unwrap_or(DEFAULT_TTL_SECS);
    if ttl == 0 || ttl > MAX_TTL_SECS {
        return Err(ControlError::Validation(vec![golos_domain::agent::ValidationIssue {
            field: "ttl_secs".into(),
            code: "out_of_range",
            message: format!("ttl_secs must be 1..={MAX_TTL_SECS}"),
        }]));
    }
    let expires_at = Timestamp::from_millis(state.clock.now().as_millis() + i64::from(ttl) * 1_000);
    let token = mint(&state.call_token_key, org, &id, expires_at);
    audit::record(state, actor, org, "agent.call_token", id.as_str()).await;
    Ok(IssuedToken { token, agent_id: id, expires_at })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (OrgId, AgentId) {
        (OrgId::with_suffix("o1").unwrap(), AgentId::with_suffix("a1").unwrap())
    }

    #[test]
    fn a_minted_token_verifies_until_it_expires() {
        let pepper = SecretString::new("pepper");
        let (org, agent) = ids();
        let token = mint(&pepper, &org, &agent, Timestamp::from_millis(10_000));
        assert_eq!(verify(&pepper, &token, Timestamp::from_millis(9_999)), Some((org, agent)));
        assert_eq!(verify(&pepper, &token, Timestamp::from_millis(10_000)), None);
    }

    #[test]
    fn a_token_dies_with_the_key_that_minted_it() {
        let (org, agent) = ids();
        let old_key = SecretString::new("call-token-key-before-rotation");
        let token = mint(&old_key, &org, &agent, Timestamp::from_millis(10_000));
        let rotated = SecretString::new("call-token-key-after-rotation");
        assert_eq!(verify(&rotated, &token, Timestamp::from_millis(0)), None);
    }

    #[test]
    fn tampered_or_foreign_tokens_do_not_verify() {
        let pepper = SecretString::new("pepper");
        let (org, agent) = ids();
        let token = mint(&pepper, &org, &agent, Timestamp::from_millis(10_000));
        let now = Timestamp::from_millis(0);
        assert_eq!(verify(&SecretString::new("other"), &token, now), None);
        let (payload, signature) = token.split_once('.').unwrap();
        let other_claims = URL_SAFE_NO_PAD.encode(br#"{"o":"org_o2","a":"ag_a1","e":99999999}"#);
        assert_eq!(verify(&pepper, &format!("ct_{other_claims}.{signature}"), now), None);
        assert_eq!(verify(&pepper, payload, now), None);
        assert_eq!(verify(&pepper, "ct_garbage", now), None);
    }
}
