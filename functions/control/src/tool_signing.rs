//! Function-tool requests are signed so a tenant's endpoint can tell golos from anyone who
//! found its URL, the Standard Webhooks way (the convention customer webhooks will follow):
//!
//! - `webhook-id`: unique per tool call (`<call id>_<tool call id>`);
//! - `webhook-timestamp`: unix seconds;
//! - `webhook-signature`: `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<raw body>")>`.
//!
//! The key is the organisation's own, `HMAC-SHA256(platform secret, "golos/tool-signing/v1/"
//! followed by the org id)`, so no per-org secret needs storing, one org's key says nothing about
//! another's, and the platform secret (`tool-signing-key`) never leaves the platform. An admin
//! reads it as `whsec_<base64>` from `GET /v1/tool-signing-secret`; Standard Webhooks
//! libraries take it as it is.

use crate::state::ControlState;
use crate::{ControlError, ControlResult};
use base64::Engine as _;
use golos_domain::OrgId;
use golos_ports::{PortError, SecretString};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The platform secret every organisation's key derives from.
pub const TOOL_SIGNING_SECRET: &str = "tool-signing-key";
pub const ID_HEADER: &str = "webhook-id";
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "webhook-signature";
const DERIVATION_LABEL: &str = "golos/tool-signing/v1/";

/// One organisation's signing key.
#[derive(Clone)]
pub struct OrgSigningKey(Vec<u8>);

impl std::fmt::Debug for OrgSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OrgSigningKey([redacted])")
    }
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length")
}

impl OrgSigningKey {
    pub fn derive(platform_secret: &SecretString, org: &OrgId) -> Self {
        let mut mac = mac(platform_secret.expose().as_bytes());
        mac.update(DERIVATION_LABEL.as_bytes());
        mac.update(org.as_str().as_bytes());
        Self(mac.finalize().into_bytes().to_vec())
    }

    /// The key of a `whsec_<base64>` secret (a webhook endpoint's): the bytes after the prefix,
    /// as Standard Webhooks libraries read it. `None` for anything else.
    pub fn from_whsec(secret: &str) -> Option<Self> {
        let encoded = secret.strip_prefix("whsec_")?;
        base64::engine::general_purpose::STANDARD.decode(encoded).ok().filter(|key| !key.is_empty()).map(Self)
    }

    /// As Standard Webhooks libraries take it: `whsec_<base64 of the key>`.
    pub fn to_whsec(&self) -> String {
        format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(&self.0))
    }

    /// The `webhook-signature` value for a message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = mac(&self.0);
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The org's signing key, derived from the platform secret (`Unavailable`
/// `signing_unavailable` while the platform has none).
pub async fn org_key(state: &ControlState, org: &OrgId) -> ControlResult<OrgSigningKey> {
    match state.secrets.get(TOOL_SIGNING_SECRET).await {
        Ok(platform) => Ok(OrgSigningKey::derive(&platform, org)),
        Err(PortError::NotFound { .. }) => Err(ControlError::unavailable(
            "signing_unavailable",
            "the platform has no tool-signing-key secret; ask the operator",
        )),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_per_org_and_signatures_follow_standard_webhooks() {
        let platform = SecretString::new("platform-secret");
        let a = OrgSigningKey::derive(&platform, &OrgId::parse("org_a").unwrap());
        let b = OrgSigningKey::derive(&platform, &OrgId::parse("org_b").unwrap());
        assert_ne!(a.to_whsec(), b.to_whsec());
        assert!(a.to_whsec().starts_with("whsec_"));
        // The Standard Webhooks test vector: key whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw,
        // id msg_p5jXN8AQM9LWM0D4loKWxJek, timestamp 1614265330.
        let key = base64::engine::general_purpose::STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let vector = OrgSigningKey(key);
        assert_eq!(
            vector.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, br#"{"test": 2432232314}"#),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
