//! Pure types and rules of golos: no IO, no async, no clock.
//!
//! Everything here is deterministic so that the control plane, the media pool and the tests
//! agree on what a kopeck, a quota, a role or a valid agent is.

pub mod agent;
pub mod billing;
pub mod calls;
pub mod credentials;
pub mod error;
pub mod events;
pub mod ids;
pub mod money;
pub mod phone;
pub mod plans;
pub mod rbac;
pub mod time;
pub mod trunks;
pub mod webhooks;

pub use calls::{CallDirection, EndReason, TranscriptRole};
pub use error::DomainError;
pub use ids::{AgentId, ApiKeyId, CallId, OrgId, TrunkId, WebhookDeliveryId, WebhookEndpointId};
pub use money::Kopecks;
pub use phone::PhoneNumber;
pub use time::Timestamp;
