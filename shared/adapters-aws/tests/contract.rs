//! The port contract suites against moto, over the real aws-sdk-rust wire protocol.

use async_trait::async_trait;
use golos_aws::{AwsConfig, AwsPlatform};
use golos_ports::{CallStore, Crypto, NumberStore, Queue, QueueConfig, Secrets, Stores};
use golos_testkit::moto::unique_name;
use golos_testkit::{Harness, Scale};
use std::sync::Arc;
use std::time::Duration;

struct AwsHarness {
    platform: AwsPlatform,
}

fn config() -> AwsConfig {
    AwsConfig {
        region: "us-east-1".to_owned(),
        endpoint_url: Some(golos_testkit::moto::endpoint()),
        table_name: unique_name("golos"),
        queue_prefix: unique_name("golos"),
        kms_key_id: None,
        secrets_prefix: unique_name("golos"),
    }
}

async fn harness() -> AwsHarness {
    let mut platform = AwsPlatform::connect(config()).await.expect("connect");
    platform.provision().await.expect("provision");
    AwsHarness { platform }
}

#[async_trait]
impl Harness for AwsHarness {
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
        self.platform.queue(config).await.expect("create queue")
    }

    fn crypto(&self) -> Arc<dyn Crypto> {
        self.platform.crypto()
    }

    fn secrets(&self) -> Arc<dyn Secrets> {
        self.platform.secrets()
    }

    async fn put_secret(&self, name: &str, value: &str) {
        self.platform.put_secret(name, value).await.expect("put secret");
    }

    async fn advance(&self, by: Duration) {
        // moto keeps real time.
        tokio::time::sleep(by).await;
    }

    fn scale(&self) -> Scale {
        Scale::Reduced
    }
}

golos_testkit::contract_tests!(harness());

// Behaviour beyond the shared contracts.

#[tokio::test]
async fn provisioning_and_queue_creation_are_idempotent() {
    let cfg = config();
    let mut platform = AwsPlatform::connect(cfg.clone()).await.unwrap();
    platform.provision().await.unwrap();
    platform.provision().await.unwrap();
    platform.health().check().await.unwrap();
    assert_eq!(platform.health().name(), "dynamodb");
    let first = platform.queue(QueueConfig::new("jobs")).await.unwrap();
    first.send("kept", Duration::ZERO).await.unwrap();
    // Same name, other settings: the existing queue is used as it is (Terraform owns it).
    let mut changed = QueueConfig::new("jobs");
    changed.max_receives = 2;
    changed.default_visibility = Duration::from_secs(10);
    let second = platform.queue(changed).await.unwrap();
    assert_eq!(second.depth().await.unwrap(), 1);
}

#[tokio::test]
async fn secrets_are_overwritten_and_missing_table_is_unhealthy() {
    let h = harness().await;
    h.platform.put_secret("pepper", "one").await.unwrap();
    h.platform.put_secret("pepper", "two").await.unwrap();
    assert_eq!(h.platform.secrets().get("pepper").await.unwrap().expose(), "two");
    let mut cfg = config();
    cfg.table_name = unique_name("missing");
    let orphan = AwsPlatform::connect(cfg).await.unwrap();
    assert!(orphan.health().check().await.is_err());
}

#[tokio::test]
async fn unreachable_endpoint_is_unavailable() {
    let mut cfg = config();
    cfg.endpoint_url = Some("http://127.0.0.1:9".to_owned());
    let platform = AwsPlatform::connect(cfg).await.unwrap();
    let err = platform.stores().ledger.balance(&golos_testkit::fixtures::org_id()).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}
