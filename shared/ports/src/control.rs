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

pub use golos_domain::CallDirection;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    InProgress,
    Ended,
    Failed,
}

/// A call as the API shows it. The transcript is stored envelope-encrypted: `transcript`
/// holds the envelope bytes, which the use-case decrypts for the API.
///
/// A record is a small state machine: `in_progress` (written by [`CallStore::record_start`])
/// → `ended` or `failed` (written by [`CallStore::record_end`]); an ended or failed record
/// is final, and only [`CallStore::erase`] still changes it (removing its personal data).
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
    pub end_reason: Option<golos_domain::EndReason>,
    pub cost: Option<Kopecks>,
    /// Envelope-encrypted transcript (JSON turns), if any.
    pub transcript: Option<Vec<u8>>,
    /// Per-turn latency metrics as JSON (not sensitive, kept readable for dashboards).
    pub metrics: serde_json::Value,
    /// When the record is deleted (the org's retention): a DynamoDB TTL, the local sweeper.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// Set once the call's personal data was erased: the record stays as a billing tombstone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erased: Option<Erasure>,
}

/// What is left of an erased call's numbers, and when it was erased.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Erasure {
    pub at: Timestamp,
    /// The numbers as they are shown (`+7*****4567`): enough to tell calls apart on an
    /// invoice, not enough to call anyone.
    pub from_masked: Option<String>,
    pub to_masked: Option<String>,
}

impl CallRecord {
    pub const fn is_final(&self) -> bool {
        matches!(self.status, CallStatus::Ended | CallStatus::Failed)
    }

    /// Whether `number` is one of the call's parties.
    pub fn involves(&self, number: &PhoneNumber) -> bool {
        self.from.as_ref() == Some(number) || self.to.as_ref() == Some(number)
    }

    /// The record without its personal data: no transcript, no metrics (they carry the
    /// client's metadata), numbers kept only masked. Erasing again keeps the first time.
    #[must_use]
    pub fn erased_at(mut self, at: Timestamp) -> Self {
        let erasure = match self.erased.take() {
            Some(done) => Erasure {
                from_masked: done.from_masked.or_else(|| self.from.as_ref().map(PhoneNumber::masked)),
                to_masked: done.to_masked.or_else(|| self.to.as_ref().map(PhoneNumber::masked)),
                ..done
            },
            None => Erasure {
                at,
                from_masked: self.from.as_ref().map(PhoneNumber::masked),
                to_masked: self.to.as_ref().map(PhoneNumber::masked),
            },
        };
        self.from = None;
        self.to = None;
        self.transcript = None;
        self.metrics = serde_json::json!({});
        self.erased = Some(erasure);
        self
    }

    /// The state machine of [`CallStore::record_end`], shared by the adapters so both decide
    /// alike: what to write over `stored` for the end `end`, or `None` when `stored` is
    /// already final (the end is a replay, or lost a race; nothing is written).
    ///
    /// Numbers the end does not carry keep those of the start; an erased in-progress record
    /// stays erased (the end's personal data is dropped).
    pub fn merge_end(stored: Option<&Self>, end: &Self) -> Option<Self> {
        let Some(stored) = stored else {
            return Some(end.clone());
        };
        if stored.is_final() {
            return None;
        }
        let mut merged = end.clone();
        merged.from = merged.from.or_else(|| stored.from.clone());
        merged.to = merged.to.or_else(|| stored.to.clone());
        if let Some(erasure) = &stored.erased {
            merged.erased = Some(erasure.clone());
            merged = merged.erased_at(erasure.at);
        }
        Some(merged)
    }
}

/// What a conditional write of a call record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallWrite {
    /// The record was written; this is what is stored now.
    Written(CallRecord),
    /// Nothing was written (a replay, or the record had moved on): the stored record.
    Unchanged(CallRecord),
}

impl CallWrite {
    pub fn record(&self) -> &CallRecord {
        match self {
            Self::Written(r) | Self::Unchanged(r) => r,
        }
    }

    pub fn into_record(self) -> CallRecord {
        match self {
            Self::Written(r) | Self::Unchanged(r) => r,
        }
    }

    pub const fn written(&self) -> bool {
        matches!(self, Self::Written(_))
    }
}

/// Call records, written by conditional writes only (a SQLite transaction, a DynamoDB
/// `ConditionExpression`), so events arriving late, twice or out of order cannot undo an end.
#[async_trait]
pub trait CallStore: Send + Sync + Debug {
    /// Records a call's start: creates the record only if there is none. A replay, or a start
    /// arriving after the end, writes nothing and answers the stored record. `Invalid` unless
    /// `call.status` is `in_progress`.
    async fn record_start(&self, call: &CallRecord) -> Result<CallWrite>;
    /// Records a call's end: writes only if the record is absent or still `in_progress`
    /// (see [`CallRecord::merge_end`]); an ended or failed record is never overwritten, and
    /// the stored one is answered. `Invalid` unless `call.status` is `ended` or `failed`.
    async fn record_end(&self, call: &CallRecord) -> Result<CallWrite>;
    async fn get(&self, org: &OrgId, call: &CallId) -> Result<Option<CallRecord>>;
    /// Newest first (by `started_at`).
    async fn list(&self, org: &OrgId, page: &PageRequest) -> Result<Page<CallRecord>>;
    /// Removes the call's personal data ([`CallRecord::erased_at`]) and keeps the record as a
    /// tombstone; also deletes its transcript blob. Atomic against a concurrent end (an end
    /// that comes later stays erased). Erasing again changes nothing. `NotFound` if absent.
    async fn erase(&self, org: &OrgId, call: &CallId, at: Timestamp) -> Result<CallRecord>;
    /// The org's calls (erased ones excluded) from or to `number`, in no particular order.
    async fn find_by_number(&self, org: &OrgId, number: &PhoneNumber, page: &PageRequest) -> Result<Page<CallRecord>>;
    /// Deletes up to `max` records (and transcript blobs) whose `expires_at` is before
    /// `now`; returns the calls deleted. Where the store expires items itself (DynamoDB
    /// TTL) this may find nothing to do.
    async fn delete_expired(&self, now: Timestamp, max: usize) -> Result<Vec<(OrgId, CallId)>>;

    /// Keeps an envelope-encrypted transcript too large for a queue message under the call,
    /// until `expires_at` (replaces one kept before).
    async fn put_transcript_blob(
        &self,
        org: &OrgId,
        call: &CallId,
        envelope: &[u8],
        expires_at: Timestamp,
    ) -> Result<()>;
    /// `None` if absent or expired at `now`.
    async fn transcript_blob(&self, org: &OrgId, call: &CallId, now: Timestamp) -> Result<Option<Vec<u8>>>;
    async fn delete_transcript_blob(&self, org: &OrgId, call: &CallId) -> Result<()>;
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
