//! Store ports. Every method that must happen once is atomic in every adapter (a SQLite
//! transaction, a DynamoDB conditional write or `TransactWriteItems`).

use crate::records::{
    AcquireOutcome, AgentRecord, ApiKeyRecord, ApplyOutcome, IdempotencyBegin, Lease, LeaseRequest, LedgerEntry, Org,
    Page, PageRequest, ReleaseOutcome, StoredResponse,
};
use crate::Result;
use async_trait::async_trait;
use golos_domain::agent::AgentConfig;
use golos_domain::billing::LedgerEventKind;
use golos_domain::{AgentId, ApiKeyId, CallId, Kopecks, OrgId, Timestamp};
use std::fmt::Debug;
use std::sync::Arc;

#[async_trait]
pub trait OrgStore: Send + Sync + Debug {
    /// `AlreadyExists` when the id is taken.
    async fn create(&self, org: &Org) -> Result<()>;
    async fn get(&self, id: &OrgId) -> Result<Option<Org>>;
    /// Replaces name, plan, quotas, settings and the disabled flag if the stored version is
    /// still `org.version`, and returns the new version (one more). `Conflict` if another
    /// update came first, `NotFound` if absent.
    async fn update(&self, org: &Org) -> Result<u64>;
    /// Ordered by id.
    async fn list(&self, page: &PageRequest) -> Result<Page<Org>>;
}

#[async_trait]
pub trait AgentStore: Send + Sync + Debug {
    /// Creates version 1. Atomically refuses with `QuotaExceeded` once the org has
    /// `max_agents` agents, and with `AlreadyExists` when the id is taken.
    async fn create(
        &self,
        org: &OrgId,
        id: &AgentId,
        config: &AgentConfig,
        max_agents: u32,
        now: Timestamp,
    ) -> Result<AgentRecord>;
    async fn get(&self, org: &OrgId, id: &AgentId) -> Result<Option<AgentRecord>>;
    /// Ordered by id.
    async fn list(&self, org: &OrgId, page: &PageRequest) -> Result<Page<AgentRecord>>;
    /// Writes `config` as `expected_version + 1` only if the stored version is
    /// `expected_version`; otherwise `Conflict` with the stored version. `NotFound` if absent.
    async fn update(
        &self,
        org: &OrgId,
        id: &AgentId,
        config: &AgentConfig,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<AgentRecord>;
    /// Deletes (if `expected_version` is given, only that version) and frees a quota slot.
    async fn delete(&self, org: &OrgId, id: &AgentId, expected_version: Option<u64>) -> Result<()>;
    async fn count(&self, org: &OrgId) -> Result<u32>;
}

#[async_trait]
pub trait ApiKeyStore: Send + Sync + Debug {
    /// `AlreadyExists` when the key id is taken.
    async fn create(&self, key: &ApiKeyRecord) -> Result<()>;
    /// Looked up by id alone: that is all an incoming request carries.
    async fn get(&self, id: &ApiKeyId) -> Result<Option<ApiKeyRecord>>;
    /// Keys of one org, ordered by id.
    async fn list(&self, org: &OrgId, page: &PageRequest) -> Result<Page<ApiKeyRecord>>;
    /// Sets `revoked_at` (a time in the future gives a rotated key its overlap). Revoking
    /// again stores the earlier of the two times (min). Returns the stored record; `NotFound` if absent.
    async fn revoke(&self, id: &ApiKeyId, at: Timestamp) -> Result<ApiKeyRecord>;
}

/// The balance and its history. Applying an event and moving the balance is one atomic
/// step, exactly once per idempotency key; credits and debits commute, so the balance is
/// the same for any order of the same events.
#[async_trait]
pub trait Ledger: Send + Sync + Debug {
    /// Applies `event` once. A call debit also adds its billable minutes to the usage of
    /// the month of `now`, in the same step.
    async fn apply(&self, org: &OrgId, event: &LedgerEventKind, now: Timestamp) -> Result<ApplyOutcome>;
    /// Zero for an org that never had an event.
    async fn balance(&self, org: &OrgId) -> Result<Kopecks>;
    /// Minutes debited in month `yyyymm`.
    async fn usage_minutes(&self, org: &OrgId, year_month: u32) -> Result<u64>;
    /// Newest first.
    async fn list(&self, org: &OrgId, page: &PageRequest) -> Result<Page<LedgerEntry>>;
    /// Looks one event up by its idempotency key.
    async fn get(&self, org: &OrgId, key: &str) -> Result<Option<LedgerEntry>>;
    /// The balance recomputed from every entry: for reconciliation, never on the hot path.
    async fn recompute_balance(&self, org: &OrgId) -> Result<Kopecks>;
}

/// Concurrency slots for calls, held against an org limit and an agent limit at once.
#[async_trait]
pub trait Leases: Send + Sync + Debug {
    /// Takes a slot for the call if both the org and the agent are under their limits, in
    /// one atomic step. Expired leases still hold their slot until swept. When both limits
    /// are reached the answer is `AgentLimitReached` (the narrower one).
    async fn acquire(&self, request: &LeaseRequest, now: Timestamp) -> Result<AcquireOutcome>;
    /// Extends a held lease to `now + ttl_ms`. `NotFound` if it was released or swept.
    async fn heartbeat(&self, org: &OrgId, call: &CallId, ttl_ms: i64, now: Timestamp) -> Result<Lease>;
    /// Frees the slot. Idempotent: a second release answers `NotHeld`.
    async fn release(&self, org: &OrgId, call: &CallId) -> Result<ReleaseOutcome>;
    /// Up to `max` leases that expired before `now`, oldest expiry first, still held: the
    /// sweeper bills each (its worker stopped heartbeating) before it releases it.
    async fn expired(&self, now: Timestamp, max: usize) -> Result<Vec<Lease>>;
    /// Every lease the org holds (at most its concurrency limit): what its live calls are
    /// running up.
    async fn list(&self, org: &OrgId) -> Result<Vec<Lease>>;
    /// Slots held by the org, or by one of its agents.
    async fn active(&self, org: &OrgId, agent: Option<&AgentId>) -> Result<u32>;
}

/// Records of `Idempotency-Key` API requests.
#[async_trait]
pub trait IdempotencyStore: Send + Sync + Debug {
    /// Claims `key` in `scope` for a request with `fingerprint`, atomically, for `claim_ttl_ms`:
    /// a claim whose request never completes (a crash, a dropped connection) lapses then. A
    /// record whose expiry passed counts as absent.
    async fn begin(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        claim_ttl_ms: i64,
        now: Timestamp,
    ) -> Result<IdempotencyBegin>;
    /// Stores the response of a started request, replayed until `expires_at`; `NotFound` if
    /// the claim is gone.
    async fn complete(&self, scope: &str, key: &str, response: &StoredResponse, expires_at: Timestamp) -> Result<()>;
    /// Forgets a claim whose request failed, so a retry may run it again.
    async fn abandon(&self, scope: &str, key: &str) -> Result<()>;
}

/// Conversation snapshots, so a reconnecting client resumes its call.
#[async_trait]
pub trait ContextStore: Send + Sync + Debug {
    async fn put(&self, call: &CallId, snapshot: &[u8], expires_at: Timestamp) -> Result<()>;
    /// `None` if absent or expired at `now`.
    async fn get(&self, call: &CallId, now: Timestamp) -> Result<Option<Vec<u8>>>;
    async fn delete(&self, call: &CallId) -> Result<()>;
}

/// Fixed-window counters shared by all instances (rate limits, failed-auth counts).
#[async_trait]
pub trait Counters: Send + Sync + Debug {
    /// Adds one to `key`'s counter in the window of `window_ms` containing `now` and returns
    /// the new count, atomically.
    async fn hit(&self, key: &str, window_ms: i64, now: Timestamp) -> Result<u64>;
    /// `key`'s count in the window containing `now`, without adding to it (0 if none).
    async fn count(&self, key: &str, window_ms: i64, now: Timestamp) -> Result<u64>;
}

/// The stores of one deployment, wired once at start-up and shared by every handler.
#[derive(Debug, Clone)]
pub struct Stores {
    pub orgs: Arc<dyn OrgStore>,
    pub agents: Arc<dyn AgentStore>,
    pub api_keys: Arc<dyn ApiKeyStore>,
    pub ledger: Arc<dyn Ledger>,
    pub leases: Arc<dyn Leases>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub contexts: Arc<dyn ContextStore>,
    pub counters: Arc<dyn Counters>,
    pub credentials: Arc<dyn crate::control::CredentialStore>,
    pub outbox: Arc<dyn crate::outbox::Outbox>,
    /// Callers waiting for a concurrency slot, one line per org for the whole pool.
    pub hold: Arc<dyn crate::hold::HoldQueue>,
    /// The operator's SIP trunks.
    pub trunks: Arc<dyn crate::trunks::SipTrunkStore>,
    /// Organisations' webhook endpoints.
    pub webhook_endpoints: Arc<dyn crate::webhooks::WebhookEndpointStore>,
    /// The log of webhook delivery attempts.
    pub webhook_deliveries: Arc<dyn crate::webhooks::WebhookDeliveryStore>,
}

/// A health check of one dependency, for `/health`.
#[async_trait]
pub trait HealthCheck: Send + Sync + Debug {
    fn name(&self) -> &'static str;
    async fn check(&self) -> Result<()>;
}
