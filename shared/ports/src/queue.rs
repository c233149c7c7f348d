//! A durable queue with SQS semantics: at-least-once delivery, per-message delay, a
//! visibility timeout during which a received message is hidden, a receive count, and a
//! dead-letter queue that takes a message once it has been received `max_receives` times
//! without being deleted.

use crate::Result;
use async_trait::async_trait;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// Logical name (`call-events`, `webhooks`); adapters map it to a table or a queue URL.
    pub name: String,
    /// Receives without a delete after which the message moves to the dead-letter queue.
    pub max_receives: u32,
    /// Visibility timeout used when a receive does not give one.
    pub default_visibility: Duration,
}

impl QueueConfig {
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), max_receives: 5, default_visibility: Duration::from_secs(30) }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    pub id: String,
    /// Handle of this delivery; deleting needs the latest one.
    pub receipt: String,
    pub body: String,
    /// 1 on the first delivery.
    pub receive_count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: String,
    pub body: String,
    pub receive_count: u32,
}

#[async_trait]
pub trait Queue: Send + Sync + std::fmt::Debug {
    fn config(&self) -> &QueueConfig;

    /// Enqueues `body`, invisible for `delay` (SQS allows up to 15 minutes). Returns the id.
    async fn send(&self, body: &str, delay: Duration) -> Result<String>;

    /// Up to `max` (1..=10) visible messages, each hidden for `visibility` afterwards.
    /// Returns at once when none is visible.
    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<QueueMessage>>;

    /// Acknowledges a delivery. Deleting an already deleted message is not an error.
    async fn delete(&self, receipt: &str) -> Result<()>;

    /// Hides a received message for `visibility` from now (0 makes it visible at once): how a
    /// consumer retries later with backoff. `NotFound` for a stale or unknown receipt.
    async fn change_visibility(&self, receipt: &str, visibility: Duration) -> Result<()>;

    /// Looks at up to `max` dead letters without removing them.
    async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>>;

    /// Moves up to `max` dead letters back to the queue with a fresh receive count; returns
    /// how many moved. At least once: a crash mid-move can deliver one twice, never lose one.
    async fn redrive(&self, max: usize) -> Result<usize>;

    /// Puts `body` straight into the dead-letter queue: a consumer's verdict that retrying it
    /// is pointless (a receiver that answered 404). Returns the dead letter's id.
    async fn dead_letter(&self, body: &str) -> Result<String>;

    /// Moves the dead letters with these ids back to the queue with a fresh receive count;
    /// returns how many moved (ids not in the dead-letter queue are skipped). At least once,
    /// as `redrive`.
    async fn redrive_ids(&self, ids: &[String]) -> Result<usize>;

    /// Waits at most `max` for a message to be sent to this queue from this process, so an
    /// idle consumer wakes as soon as there is work. An adapter that cannot tell answers
    /// `false` at once, and the consumer waits `max` itself.
    async fn wait_for_send(&self, _max: Duration) -> bool {
        false
    }

    /// Approximate visible + in-flight messages (for metrics and health).
    async fn depth(&self) -> Result<u64>;
}
