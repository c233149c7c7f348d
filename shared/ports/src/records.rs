//! Records that cross the store ports.

use golos_domain::agent::AgentConfig;
use golos_domain::billing::LedgerEventKind;
use golos_domain::plans::{Plan, Quotas};
use golos_domain::rbac::Role;
use golos_domain::{AgentId, ApiKeyId, CallId, Kopecks, OrgId, Timestamp};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Org {
    pub id: OrgId,
    pub name: String,
    pub plan: Plan,
    pub quotas: Quotas,
    /// Free-form settings (webhook URL, retention days, …), validated by the use-cases.
    pub settings: serde_json::Value,
    pub disabled: bool,
    pub created_at: Timestamp,
    /// Bumped by every update; `OrgStore::update` writes only over the version it read, so
    /// two edits never silently undo each other (an operator's disable, say).
    #[serde(default = "first_version")]
    pub version: u64,
}

const fn first_version() -> u64 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub org_id: OrgId,
    pub id: AgentId,
    pub config: AgentConfig,
    /// Starts at 1 and grows by one with every update; the `ETag` of the API.
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub id: ApiKeyId,
    pub org_id: OrgId,
    pub name: String,
    pub role: Role,
    /// Hex HMAC-SHA256 of the secret under the server pepper; the secret is never stored.
    pub secret_hash: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

impl ApiKeyRecord {
    pub fn is_usable_at(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none_or(|at| at > now) && self.expires_at.is_none_or(|at| at > now)
    }
}

/// One applied billing event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub org_id: OrgId,
    /// The event's idempotency key; unique per org.
    pub key: String,
    pub event: LedgerEventKind,
    pub delta: Kopecks,
    pub applied_at: Timestamp,
}

/// The answer to applying a billing event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// First time this key was seen: the balance moved by `delta`.
    Applied(LedgerEntry),
    /// The key was applied before; nothing changed. Carries the stored original, which may
    /// differ from what was just sent if the sender reused a key for another event.
    Duplicate(LedgerEntry),
}

impl ApplyOutcome {
    pub fn entry(&self) -> &LedgerEntry {
        match self {
            Self::Applied(e) | Self::Duplicate(e) => e,
        }
    }

    pub const fn is_duplicate(&self) -> bool {
        matches!(self, Self::Duplicate(_))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRequest {
    pub org_id: OrgId,
    pub agent_id: AgentId,
    pub call_id: CallId,
    pub org_limit: u32,
    pub agent_limit: u32,
    pub ttl_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub org_id: OrgId,
    pub agent_id: AgentId,
    pub call_id: CallId,
    pub acquired_at: Timestamp,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcquireOutcome {
    Granted(Lease),
    /// This call already holds a lease (a retried acquire); no second slot was taken.
    AlreadyHeld(Lease),
    OrgLimitReached {
        limit: u32,
    },
    AgentLimitReached {
        limit: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOutcome {
    Released(Lease),
    /// Nothing to release: released before, swept, or never taken.
    NotHeld,
}

/// A stored API response for `Idempotency-Key` replays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyBegin {
    /// First request with this key: proceed, then `complete` (or `abandon` on failure).
    Started,
    /// Another request with this key is being processed right now.
    InProgress,
    /// Done before: replay this response.
    Completed(StoredResponse),
    /// The key was used for a different request (another fingerprint).
    Mismatch,
}

/// A page of a listing; `next_cursor` is opaque and `None` on the last page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PageRequest {
    pub cursor: Option<String>,
    /// 1..=100; adapters clamp to that range.
    pub limit: u32,
}

impl PageRequest {
    pub const MAX_LIMIT: u32 = 100;

    pub fn first(limit: u32) -> Self {
        Self { cursor: None, limit }
    }

    pub fn after(cursor: impl Into<String>, limit: u32) -> Self {
        Self { cursor: Some(cursor.into()), limit }
    }

    pub fn clamped_limit(&self) -> u32 {
        self.limit.clamp(1, Self::MAX_LIMIT)
    }
}
