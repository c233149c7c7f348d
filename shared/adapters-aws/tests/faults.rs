//! The adapters' answers to AWS faults, as real wire responses: a fault proxy in front of
//! moto answers chosen operations with DynamoDB's `TransactionCanceledException` (the
//! cancellation reasons `ValidationError`, `ThrottlingError`, `TransactionConflict`) or a
//! service's throttling and internal errors, and the real SDK parses them. A fault that
//! passes is retried away; one that persists is `Throttled` or `Unavailable` (503 in the
//! API, a retried message in the consumers), never `Invalid`.

use golos_aws::{AwsConfig, AwsPlatform};
use golos_domain::Kopecks;
use golos_ports::{AcquireOutcome, LeaseRequest, PortError, QueueConfig};
use golos_testkit::fault_proxy::{target, Fault, FaultProxy};
use golos_testkit::fixtures::{self, T0};
use golos_testkit::moto::unique_name;
use std::time::Duration;

const REASONS: [&str; 3] = ["ValidationError", "ThrottlingError", "TransactionConflict"];

/// A provisioned platform straight on moto (to set up and check), the same resources
/// through a fault proxy (to test), and the proxy.
async fn platforms() -> (AwsPlatform, AwsPlatform, FaultProxy) {
    let name = unique_name("faults");
    let mut direct = AwsPlatform::connect(AwsConfig {
        region: "us-east-1".to_owned(),
        endpoint_url: Some(golos_testkit::moto::endpoint()),
        table_name: name.clone(),
        queue_prefix: name.clone(),
        kms_key_id: None,
        secrets_prefix: name,
    })
    .await
    .unwrap();
    direct.provision().await.unwrap();
    let proxy = FaultProxy::start(&golos_testkit::moto::endpoint()).await;
    let config = AwsConfig { endpoint_url: Some(proxy.endpoint.clone()), ..direct.config().clone() };
    let faulty = AwsPlatform::connect(config).await.unwrap();
    (direct, faulty, proxy)
}

fn lease(org: &golos_domain::OrgId, call: &str) -> LeaseRequest {
    LeaseRequest {
        org_id: org.clone(),
        agent_id: fixtures::agent_id(),
        call_id: golos_domain::CallId::parse(call).unwrap(),
        org_limit: 10,
        agent_limit: 10,
        ttl_ms: 30_000,
    }
}

fn assert_retryable(result: Result<impl std::fmt::Debug, PortError>, what: &str) -> PortError {
    let err = result.expect_err(what);
    assert!(err.is_retryable(), "{what}: {err:?} must be Throttled or Unavailable");
    assert!(!matches!(err, PortError::Invalid { .. }), "{what}: {err:?}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passing_cancellations_are_retried_to_success() {
    let (direct, faulty, proxy) = platforms().await;
    let org = fixtures::org_id();
    let mut expected = 0;
    for (i, reason) in REASONS.into_iter().enumerate() {
        let before = proxy.injected();
        proxy.fail_times(target::TRANSACT_WRITE_ITEMS, Fault::transaction_canceled(reason), 2);
        let outcome = faulty.stores().ledger.apply(&org, &fixtures::credit(&format!("p{i}"), 1_000), T0).await;
        assert!(matches!(outcome, Ok(golos_ports::ApplyOutcome::Applied(_))), "{reason}: {outcome:?}");
        assert_eq!(proxy.injected() - before, 2, "{reason}: both faults were answered, then it went through");
        expected += 1_000;

        proxy.fail_times(target::TRANSACT_WRITE_ITEMS, Fault::transaction_canceled(reason), 2);
        let acquired = faulty.stores().leases.acquire(&lease(&org, &format!("call_ok{i}")), T0).await;
        assert!(matches!(acquired, Ok(AcquireOutcome::Granted(_))), "{reason}: {acquired:?}");
    }
    assert_eq!(direct.stores().ledger.balance(&org).await.unwrap(), Kopecks::new(expected), "each applied once");
    assert_eq!(direct.stores().leases.active(&org, None).await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_cancellations_are_retryable_errors_and_write_nothing() {
    let (direct, faulty, proxy) = platforms().await;
    let org = fixtures::org_id();
    for reason in REASONS {
        proxy.fail_for(target::TRANSACT_WRITE_ITEMS, Fault::transaction_canceled(reason), Duration::from_secs(120));
        let before = proxy.injected();
        let err = assert_retryable(
            faulty.stores().ledger.apply(&org, &fixtures::credit(reason, 500), T0).await,
            &format!("ledger apply under {reason}"),
        );
        let attempts = proxy.injected() - before;
        assert!(attempts >= 3, "{reason}: retried before giving up ({attempts} attempts)");
        if reason == "ThrottlingError" {
            assert!(matches!(err, PortError::Throttled { .. }), "{err:?}");
        } else {
            assert!(matches!(err, PortError::Unavailable { .. }), "{err:?}");
        }
        assert_retryable(
            faulty.stores().leases.acquire(&lease(&org, "call_blocked"), T0).await,
            &format!("lease acquire under {reason}"),
        );
        proxy.heal();
    }
    assert_eq!(direct.stores().ledger.balance(&org).await.unwrap(), Kopecks::ZERO, "nothing was applied");
    assert_eq!(direct.stores().leases.active(&org, None).await.unwrap(), 0, "no slot was taken");
    // Healed, the same events apply once.
    for reason in REASONS {
        faulty.stores().ledger.apply(&org, &fixtures::credit(reason, 500), T0).await.unwrap();
    }
    assert_eq!(direct.stores().ledger.balance(&org).await.unwrap(), Kopecks::new(1_500));
}

/// Whole-request errors of each service, after the SDK's own retries, keep their meaning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_faults_of_every_service_are_retryable() {
    let (_direct, faulty, proxy) = platforms().await;
    let org = fixtures::org_id();
    let window = Duration::from_secs(120);
    let cases = [
        (
            target::GET_ITEM,
            Fault::error(400, "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException", "slow down"),
            true,
        ),
        (target::GET_ITEM, Fault::error(400, "com.amazonaws.dynamodb.v20120810#RequestLimitExceeded", "limit"), true),
        (target::GET_ITEM, Fault::error(500, "com.amazonaws.dynamodb.v20120810#InternalServerError", "oops"), false),
        (target::GET_ITEM, Fault::error(400, "com.amazon.coral.validate#ValidationException", "refused"), false),
    ];
    for (op, fault, throttled) in cases {
        proxy.fail_for(op, fault.clone(), window);
        let err = assert_retryable(faulty.stores().ledger.balance(&org).await, &format!("{fault:?}"));
        assert_eq!(matches!(err, PortError::Throttled { .. }), throttled, "{fault:?}: {err:?}");
        proxy.heal();
    }

    let queue = faulty.queue(QueueConfig::new(unique_name("q"))).await.unwrap();
    proxy.fail_for(target::SQS_SEND_MESSAGE, Fault::error(400, "com.amazonaws.sqs#RequestThrottled", "slow"), window);
    let err = assert_retryable(queue.send("{}", Duration::ZERO).await, "SQS send throttled");
    assert!(matches!(err, PortError::Throttled { .. }), "{err:?}");
    proxy.heal();
    queue.send("{}", Duration::ZERO).await.expect("healed");

    let crypto = faulty.crypto();
    let context = golos_ports::EncryptionContext::new([("org", "org_x")]);
    let envelope = crypto.encrypt(b"secret", &context).await.unwrap();
    proxy.fail_for(target::KMS_DECRYPT, Fault::error(500, "KMSInternalException", "kms down"), window);
    let err = assert_retryable(crypto.decrypt(&envelope, &context).await, "KMS decrypt failing");
    assert!(matches!(err, PortError::Unavailable { .. }), "{err:?}");
    proxy.heal();
    proxy.fail_for(target::KMS_DECRYPT, Fault::error(400, "ThrottlingException", "kms slow"), window);
    let err = assert_retryable(crypto.decrypt(&envelope, &context).await, "KMS decrypt throttled");
    assert!(matches!(err, PortError::Throttled { .. }), "{err:?}");
    proxy.heal();
    assert_eq!(crypto.decrypt(&envelope, &context).await.unwrap(), b"secret");

    faulty.put_secret("probe", "value").await.unwrap();
    proxy.fail_for(target::SECRETS_GET_SECRET_VALUE, Fault::error(400, "ThrottlingException", "secrets slow"), window);
    let err = assert_retryable(faulty.secrets().get("probe").await, "Secrets Manager throttled");
    assert!(matches!(err, PortError::Throttled { .. }), "{err:?}");
}
