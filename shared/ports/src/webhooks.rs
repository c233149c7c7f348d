//! Customer webhook endpoints: where an org's events are delivered. At most
//! `golos_domain::webhooks::MAX_WEBHOOK_ENDPOINTS` per org, so the store keeps each as one
//! versioned document, lists an org's whole, and holds the per-org limit atomically.

use crate::Result;
use async_trait::async_trait;
use golos_domain::events::WebhookEventType;
use golos_domain::{OrgId, Timestamp, WebhookEndpointId};
use serde::{Deserialize, Serialize};
use std::fmt::Debug;

/// A signing secret as stored: envelope-encrypted under a context bound to the org and the
/// endpoint, never in plaintext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSigningSecret {
    pub envelope: Vec<u8>,
    /// The first 16 hex digits of the secret's SHA-256, to tell which one is in use.
    pub fingerprint: String,
    /// When a rotated-out secret stops signing; `None` for the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEndpoint {
    pub id: WebhookEndpointId,
    pub org_id: OrgId,
    pub url: String,
    /// A non-empty set, in the order the admin sent it.
    pub event_types: Vec<WebhookEventType>,
    pub description: String,
    /// A disabled endpoint is delivered nothing.
    pub enabled: bool,
    pub secret: SealedSigningSecret,
    /// The secret before the last rotation, which still signs until its `expires_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<SealedSigningSecret>,
    /// Starts at 1; each update adds one.
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[async_trait]
pub trait WebhookEndpointStore: Send + Sync + Debug {
    /// Stores a new endpoint (version 1). Atomically refuses with `QuotaExceeded` once its
    /// org has `max_per_org` endpoints, and with `AlreadyExists` if its id is taken.
    async fn create(&self, endpoint: &WebhookEndpoint, max_per_org: u32) -> Result<()>;
    async fn get(&self, org: &OrgId, id: &WebhookEndpointId) -> Result<Option<WebhookEndpoint>>;
    /// Replaces the endpoint if its stored version is `endpoint.version` and answers the new
    /// version; `Conflict` with the stored version otherwise, `NotFound` if it is gone.
    async fn update(&self, endpoint: &WebhookEndpoint) -> Result<u64>;
    /// Deletes it and frees its slot of the org's limit; `NotFound` if there is no such endpoint.
    async fn delete(&self, org: &OrgId, id: &WebhookEndpointId) -> Result<()>;
    /// Every endpoint of the org, ordered by id.
    async fn list(&self, org: &OrgId) -> Result<Vec<WebhookEndpoint>>;
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// The receiver answered 2xx.
    Delivered,
    /// It failed and another attempt is queued (`next_attempt_at`).
    Retrying,
    /// It failed for good (a permanent status, an invalid URL, or the last attempt) and the
    /// event went to the dead-letter queue.
    DeadLettered,
    /// It was not attempted: the endpoint was disabled or deleted meanwhile.
    Skipped,
    /// It failed and is not retried, nor counted against the endpoint: a test delivery.
    Failed,
}

impl DeliveryOutcome {
    /// The wire name (`dead_lettered`), as serde writes it and the stores index it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retrying => "retrying",
            Self::DeadLettered => "dead_lettered",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
        }
    }

    /// Counts towards disabling the endpoint.
    pub const fn is_failure(self) -> bool {
        matches!(self, Self::Retrying | Self::DeadLettered)
    }
}

/// One attempt to deliver one event to one endpoint, as the deliveries log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    pub id: golos_domain::WebhookDeliveryId,
    pub org_id: OrgId,
    pub endpoint_id: WebhookEndpointId,
    /// The event's deterministic id (`webhook-id`).
    pub event_id: String,
    pub event_type: WebhookEventType,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub outcome: DeliveryOutcome,
    /// The receiver's HTTP status, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// From sending the request to the end of the answer (or the failure).
    pub latency_ms: u64,
    /// A fixed description of the failure (never the receiver's body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Timestamp>,
    pub created_at: Timestamp,
    /// When the log forgets it (30 days by default).
    pub expires_at: Timestamp,
}

/// The deliveries log: what an org's admins see of each endpoint's traffic, and what the
/// failure count that disables an endpoint is read from.
#[async_trait]
pub trait WebhookDeliveryStore: Send + Sync + Debug {
    /// Keeps these attempts (a put by id: recording one twice keeps one).
    async fn record(&self, deliveries: &[WebhookDelivery]) -> Result<()>;
    /// An endpoint's unexpired attempts, newest first (by `created_at`, then id).
    async fn list(
        &self,
        org: &OrgId,
        endpoint: &WebhookEndpointId,
        page: &crate::PageRequest,
        now: Timestamp,
    ) -> Result<crate::Page<WebhookDelivery>>;
    /// How many failed attempts (`DeliveryOutcome::is_failure`) the endpoint had at or after
    /// `since`, counting no further than `cap`.
    async fn count_failures_since(
        &self,
        org: &OrgId,
        endpoint: &WebhookEndpointId,
        since: Timestamp,
        cap: u32,
    ) -> Result<u32>;
}
