//! SIP trunks: the operator's record of where an org's phone calls come from. Few (at most
//! `golos_domain::trunks::MAX_TRUNKS`), written rarely, read whole by the SIP edge, so the
//! store keeps each as one versioned document and lists them all at once.

use crate::Result;
use async_trait::async_trait;
use golos_domain::{OrgId, PhoneNumber, Timestamp, TrunkId};
use serde::{Deserialize, Serialize};
use std::fmt::Debug;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipTrunk {
    pub id: TrunkId,
    /// The org whose numbers the trunk carries, and whose calls it bills.
    pub org_id: OrgId,
    pub name: String,
    /// Where its INVITEs may come from (CIDR or single addresses, validated by the domain).
    pub source_networks: Vec<String>,
    pub digest_username: Option<String>,
    /// The digest password, envelope-encrypted under the trunk's own context: never
    /// returned by the API, decrypted only by the SIP edge.
    pub digest_password: Option<Vec<u8>>,
    /// The first 16 hex digits of the password's SHA-256, to tell which one is set.
    pub digest_fingerprint: Option<String>,
    pub numbers: Vec<PhoneNumber>,
    /// A disabled trunk's INVITEs are refused `403`.
    pub enabled: bool,
    /// Where golos sends the trunk's OPTIONS health checks, `host:port` as
    /// `golos_domain::trunks::SipAddress` writes it; `None`: not probed. Absent from records
    /// written before it existed, which therefore read as `None` (no migration needed: both
    /// stores keep the trunk as one JSON document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_address: Option<String>,
    /// Starts at 1; each update adds one.
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[async_trait]
pub trait SipTrunkStore: Send + Sync + Debug {
    /// Stores a new trunk (version 1); `AlreadyExists` if its id is taken.
    async fn create(&self, trunk: &SipTrunk) -> Result<()>;
    async fn get(&self, id: &TrunkId) -> Result<Option<SipTrunk>>;
    /// Replaces the trunk if its stored version is `trunk.version` and answers the new
    /// version; `Conflict` with the stored version otherwise, `NotFound` if it is gone.
    async fn update(&self, trunk: &SipTrunk) -> Result<u64>;
    /// `NotFound` if there is no such trunk.
    async fn delete(&self, id: &TrunkId) -> Result<()>;
    /// Every trunk, ordered by id.
    async fn all(&self) -> Result<Vec<SipTrunk>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_stored_before_sip_address_existed_reads_as_not_probed() {
        let created_at = Timestamp::from_millis(1_767_225_600_000);
        let trunk = SipTrunk {
            id: TrunkId::parse("trk_01").unwrap(),
            org_id: OrgId::parse("org_a").unwrap(),
            name: "Exolve".into(),
            source_networks: vec!["185.71.76.0/27".into()],
            digest_username: None,
            digest_password: None,
            digest_fingerprint: None,
            numbers: vec![],
            enabled: true,
            sip_address: None,
            version: 3,
            created_at,
            updated_at: created_at,
        };
        let written = serde_json::to_value(&trunk).unwrap();
        assert!(written.get("sip_address").is_none(), "an unprobed trunk's document is as it was before");
        let old: SipTrunk = serde_json::from_value(written).unwrap();
        assert_eq!(old, trunk);
        let probed = SipTrunk { sip_address: Some("sip.exolve.ru:5060".into()), ..trunk };
        let back: SipTrunk = serde_json::from_str(&serde_json::to_string(&probed).unwrap()).unwrap();
        assert_eq!(back, probed);
    }
}
