//! Contract suites for every port, run against every adapter.
//!
//! An adapter's test crate implements [`Harness`] and invokes [`contract_tests!`]; each
//! contract is then one `#[tokio::test]` there. The suites only see the ports, so one suite
//! holds both adapters to the same semantics.

pub mod contracts;
pub mod fault_proxy;
pub mod fixtures;
pub mod lambda;
pub mod moto;
pub mod yookassa;

use async_trait::async_trait;
use golos_ports::{CallStore, Crypto, NumberStore, Queue, QueueConfig, Secrets, Stores};
use std::sync::Arc;
use std::time::Duration;

/// How much work the heavy contracts do: the full figures locally, a tenth against moto,
/// which serves one request at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Full,
    Reduced,
}

impl Scale {
    pub const fn ledger_events(self) -> usize {
        match self {
            Self::Full => 20_000,
            Self::Reduced => 2_000,
        }
    }
}

/// One fresh, isolated instance of an adapter (its own database, table, queues).
#[async_trait]
pub trait Harness: Send + Sync {
    fn stores(&self) -> Stores;
    fn numbers(&self) -> Arc<dyn NumberStore>;
    fn calls(&self) -> Arc<dyn CallStore>;
    /// A new queue (and its dead-letter queue) unique to this harness.
    async fn queue(&self, config: QueueConfig) -> Arc<dyn Queue>;
    fn crypto(&self) -> Arc<dyn Crypto>;
    fn secrets(&self) -> Arc<dyn Secrets>;
    /// Stores a secret the way an operator would (a file, Secrets Manager).
    async fn put_secret(&self, name: &str, value: &str);
    /// Lets queue time pass: advances a manual clock, or waits for a server's real clock.
    async fn advance(&self, by: Duration);
    fn scale(&self) -> Scale;
}
