//! Stores of the control-plane API beyond the foundation: phone numbers, call records and
//! the audit log.

use crate::records::{Page, PageRequest};
use crate::Result;
use async_trait::async_trait;
use golos_domain::{AgentId, CallId, Kopecks, OrgId, PhoneNumber, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt::Debug;

/// A phone number the operator granted to an org, and the agent the org routes it to.
///
/// One record per number, grant and routing together: the number is the business's identity
/// on a trunk, so it belongs to at most one org, and a single record lets every write be one
/// conditional write on the number (no cross-record transaction), with the org as the
/// condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumberAssignment {
    pub number: PhoneNumber,
    pub org_id: OrgId,
    /// The agent answering calls to the number; `None` while it is granted but not routed.
    pub agent_id: Option<AgentId>,
    pub granted_at: Timestamp,
}

#[async_trait]
pub trait NumberStore: Send + Sync + Debug {
    /// Grants `number` to `org` (an operator decision). Granting it again to the same org
    /// changes nothing and answers the stored record (routing kept); a number granted to
    /// another org is `AlreadyExists`. Atomic: of orgs racing for one number exactly one wins.
    async fn grant(&self, org: &OrgId, number: &PhoneNumber, at: Timestamp) -> Result<NumberAssignment>;
    /// Withdraws the grant, and the routing with it; `NotFound` unless granted to `org`.
    async fn revoke(&self, org: &OrgId, number: &PhoneNumber) -> Result<()>;
    /// Routes a number granted to `org` to `agent`, or un-routes it (`None`), keeping the
    /// grant. `NotFound` unless the number is granted to `org`, whoever else may hold it.
    async fn assign(&self, org: &OrgId, number: &PhoneNumber, agent: Option<&AgentId>) -> Result<NumberAssignment>;
    /// Inbound routing: the org and agent answering calls to `number`. Only a number both
    /// granted and routed is found, so `agent_id` is always `Some`.
    async fn route(&self, number: &PhoneNumber) -> Result<Option<NumberAssignment>>;
    /// An org's granted numbers, routed or not, ordered by number.
    async fn list(&self, org: &OrgId, page: &PageRequest) -> Result<Page<NumberAssignment>>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallDirection {
    Inbound,
    Outbound,
    Web,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    InProgress,
    Ended,
    Failed,
}

/// A call as the API shows it. The transcript is stored envelope-encrypted: `transcript`
/// holds the envelope bytes, which the use-case decrypts for the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    pub id: CallId,
    pub org_id: OrgId,
    pub agent_id: AgentId,
    pub direction: CallDirection,
    pub from: Option<PhoneNumber>,
    pub to: Option<PhoneNumber>,
    pub status: CallStatus,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub duration_secs: Option<u64>,
    pub end_reason: Option<String>,
    pub cost: Option<Kopecks>,
    /// Envelope-encrypted transcript (JSON turns), if any.
    pub transcript: Option<Vec<u8>>,
    /// Per-turn latency metrics as JSON (not sensitive, kept readable for dashboards).
    pub metrics: serde_json::Value,
}

#[async_trait]
pub trait CallStore: Send + Sync + Debug {
    /// Inserts or replaces the record (calls are written at start and again at the end).
    async fn put(&self, call: &CallRecord) -> Result<()>;
    async fn get(&self, org: &OrgId, call: &CallId) -> Result<Option<CallRecord>>;
    /// Newest first (by `started_at`).
    async fn list(&self, org: &OrgId, page: &PageRequest) -> Result<Page<CallRecord>>;
}

/// Who did what, when, and from where: one line per administrative action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub org_id: OrgId,
    pub at: Timestamp,
    /// `key:<id>` or `operator`.
    pub actor: String,
    /// A stable name such as `agent.update`.
    pub action: String,
    /// What was acted on (`agt_…`, `key_…`, a masked number).
    pub target: String,
    pub ip: String,
    pub request_id: String,
}

#[async_trait]
pub trait AuditLog: Send + Sync + Debug {
    async fn append(&self, entry: &AuditEntry) -> Result<()>;
    /// Newest first.
    async fn list(&self, org: &OrgId, page: &PageRequest) -> Result<Page<AuditEntry>>;
}

/// One of an organisation's provider credentials. The value exists only as an envelope
/// (`Envelope::to_bytes`, encrypted under the context `{org, credential}`), so a store dump,
/// a backup or a log of the record reveals nothing.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderCredential {
    pub org_id: OrgId,
    pub name: String,
    pub envelope: Vec<u8>,
    /// The first 16 hex digits of the value's SHA-256, so an owner can tell which key is set.
    pub fingerprint: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Debug for ProviderCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderCredential")
            .field("org_id", &self.org_id)
            .field("name", &self.name)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// Provider credentials, per organisation: a namespace of its own, apart from the platform's
/// secrets (`Secrets`), so no name an org writes can reach a platform secret.
#[async_trait]
pub trait CredentialStore: Send + Sync + Debug {
    /// Creates or replaces `credential.name` in its org; a replacement keeps the first
    /// `created_at`. Returns whether it was created.
    async fn put(&self, credential: &ProviderCredential) -> Result<bool>;
    async fn get(&self, org: &OrgId, name: &str) -> Result<Option<ProviderCredential>>;
    /// An org's credentials, ordered by name.
    async fn list(&self, org: &OrgId, page: &PageRequest) -> Result<Page<ProviderCredential>>;
    /// `NotFound` if the org has no credential of that name.
    async fn delete(&self, org: &OrgId, name: &str) -> Result<()>;
}
