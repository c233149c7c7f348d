//! The transactional outbox of the media pool: a message that must reach a queue (a call's
//! end, which is what bills it) is first written to the store, and only removed once the
//! queue has taken it. A worker that dies, or a queue that is down for a while, loses
//! nothing: whoever relays the outbox later (any worker, the sweeper) sends it.

use crate::Result;
use async_trait::async_trait;
use golos_domain::Timestamp;
use std::fmt::Debug;

/// One message waiting to be queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Deterministic per fact (`call.ended:<call id>`), so writing it twice keeps one.
    pub id: String,
    /// The queue message body.
    pub body: String,
    pub created_at: Timestamp,
}

#[async_trait]
pub trait Outbox: Send + Sync + Debug {
    /// Stores the entry unless one with its id exists (a conditional put); returns whether
    /// this call wrote it. An existing entry keeps its first body.
    async fn put(&self, entry: &OutboxEntry) -> Result<bool>;
    /// Up to `max` entries written before `before`, oldest first.
    async fn pending(&self, before: Timestamp, max: usize) -> Result<Vec<OutboxEntry>>;
    /// Removes an entry once its message is queued. Removing an absent entry is not an error.
    async fn delete(&self, id: &str) -> Result<()>;
}
