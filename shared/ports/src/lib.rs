//! The narrow traits the use-cases need, and the records that cross them.
//!
//! Each port is a contract checked by `golos-testkit` against every adapter: the embedded
//! SQLite one (`golos-local`) and the AWS one (`golos-aws`). Ports know the domain and
//! nothing else; they hold no IO of their own beyond the envelope format of `crypto`.

pub mod clock;
pub mod control;
pub mod crypto;
pub mod error;
pub mod hold;
pub mod outbox;
pub mod queue;
pub mod records;
pub mod secrets;
pub mod stores;
pub mod trunks;
pub mod webhooks;

pub use clock::{Clock, Ids, ManualClock, SequentialIds, SystemClock, UuidIds};
pub use control::{
    AuditEntry, AuditLog, CallDirection, CallRecord, CallStatus, CallStore, CallWrite, CredentialStore, Erasure,
    NumberAssignment, NumberStore, ProviderCredential,
};
pub use crypto::{Crypto, EncryptionContext, Envelope};
pub use error::PortError;
pub use hold::{HoldQueue, HoldReason, HoldRequest, Waiter};
pub use outbox::{Outbox, OutboxEntry};
pub use queue::{DeadLetter, Queue, QueueConfig, QueueMessage};
#[allow(clippy::wildcard_imports)]
pub use records::*;
pub use secrets::{SecretString, Secrets};
pub use stores::*;
pub use trunks::{SipTrunk, SipTrunkStore};
pub use webhooks::{
    DeliveryOutcome, SealedSigningSecret, WebhookDelivery, WebhookDeliveryStore, WebhookEndpoint, WebhookEndpointStore,
};

pub type Result<T, E = PortError> = std::result::Result<T, E>;
