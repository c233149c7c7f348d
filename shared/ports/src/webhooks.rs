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
