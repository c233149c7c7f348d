//! The shared port contracts, run against the embedded SQLite adapter.

use async_trait::async_trait;
use golos_local::LocalPlatform;
use golos_ports::{CallStore, Crypto, ManualClock, NumberStore, Queue, QueueConfig, Secrets, Stores};
use golos_testkit::{fixtures::T0, Harness, Scale};
use std::sync::Arc;
use std::time::Duration;

struct LocalHarness {
    platform: LocalPlatform,
    clock: ManualClock,
    // Dropped last: the platform's files live here.
    _dir: tempfile::TempDir,
}

fn make_harness() -> LocalHarness {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let platform = LocalPlatform::open(dir.path(), Arc::new(clock.clone())).expect("open");
    LocalHarness { platform, clock, _dir: dir }
}

#[async_trait]
impl Harness for LocalHarness {
    fn stores(&self) -> Stores {
        self.platform.stores()
    }

    fn numbers(&self) -> Arc<dyn NumberStore> {
        self.platform.numbers()
    }

    fn calls(&self) -> Arc<dyn CallStore> {
        self.platform.calls()
    }

    async fn queue(&self, config: QueueConfig) -> Arc<dyn Queue> {
        self.platform.queue(config).expect("queue")
    }

    fn crypto(&self) -> Arc<dyn Crypto> {
        self.platform.crypto()
    }

    fn secrets(&self) -> Arc<dyn Secrets> {
        self.platform.secrets()
    }

    async fn put_secret(&self, name: &str, value: &str) {
        self.platform.put_secret_file(name, value).expect("put secret");
    }

    async fn advance(&self, by: Duration) {
        self.clock.advance_millis(i64::try_from(by.as_millis()).expect("duration"));
    }

    fn scale(&self) -> Scale {
        Scale::Full
    }
}

golos_testkit::contract_tests!(std::future::ready(make_harness()));
