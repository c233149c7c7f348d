//! The real `golos-call-events` Lambda binary through the Lambda Runtime API, on moto: an
//! SQS batch with a redelivered duplicate and a malformed record (partial batch failure),
//! and the EventBridge schedule that sweeps expired leases.

use golos_domain::{Kopecks, Timestamp};
use golos_ports::LeaseRequest;
use golos_testkit::fixtures;
use golos_testkit::lambda::{sqs_record, workspace_binary, LambdaProcess};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_batches_and_the_sweep_schedule_through_the_runtime_api() {
    let table = golos_testkit::moto::unique_name("golos-ce");
    let config = golos_aws::AwsConfig::on_endpoint(golos_testkit::moto::endpoint(), &table);
    let mut platform = golos_aws::AwsPlatform::connect(config).await.expect("connect to moto");
    platform.provision().await.expect("provision");
    platform.put_secret("api-key-pepper", "lambda-test-pepper").await.expect("pepper");
    platform.put_secret("call-token-key", "lambda-test-call-token-key").await.expect("call-token key");
    let stores = platform.stores();
    let (org, agent, call) = (fixtures::org_id(), fixtures::agent_id(), fixtures::call_id());
    stores.orgs.create(&fixtures::org(&org)).await.unwrap();
    stores.agents.create(&org, &agent, &fixtures::agent_config("a"), 50, fixtures::T0).await.unwrap();
    stores.ledger.apply(&org, &fixtures::credit("p1", 10_000), fixtures::T0).await.unwrap();
    let lease = |call| LeaseRequest {
        org_id: org.clone(),
        agent_id: agent.clone(),
        call_id: call,
        org_limit: 100,
        agent_limit: 10,
        ttl_ms: 30_000,
    };
    stores.leases.acquire(&lease(call.clone()), fixtures::T0).await.unwrap();

    let mut function =
        LambdaProcess::start(&workspace_binary("golos-call-events"), "golos-call-events", &platform.config().to_env())
            .await;
    let ended = json!({"type": "call.ended", "call_id": call, "org_id": org, "agent_id": agent, "direction": "web",
        "started_at": fixtures::T0, "ended_at": fixtures::T0.plus_secs(61), "duration_secs": 61,
        "end_reason": "caller_hangup"})
    .to_string();
    let batch = json!({"Records": [sqs_record("golos-call-events", "m-1", &ended), sqs_record("golos-call-events", "m-2", &ended), sqs_record("golos-call-events", "m-3", "{not json")]});
    let answer = function.invoke(batch).await;
    assert_eq!(answer, json!({"batchItemFailures": [{"itemIdentifier": "m-3"}]}), "only the malformed record fails");
    let rate = fixtures::org(&org).quotas.rate_per_minute.get();
    assert_eq!(
        stores.ledger.balance(&org).await.unwrap(),
        Kopecks::new(10_000 - 2 * rate),
        "debited once for 2 minutes"
    );
    assert_eq!(stores.leases.active(&org, None).await.unwrap(), 0, "the call's lease is released");

    // A worker that died: its lease expired long ago; the schedule frees the slot.
    let long_ago = Timestamp::from_millis(1_000);
    stores.leases.acquire(&lease(golos_domain::CallId::parse("call_orphan").unwrap()), long_ago).await.unwrap();
    let schedule = json!({"version": "0", "id": "e-1", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-11-25T10:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/golos-lease-sweeper"], "detail": {}});
    assert_eq!(function.invoke(schedule).await, json!({"swept": 1}));
    assert_eq!(stores.leases.active(&org, None).await.unwrap(), 0);
    let unknown = function.invoke(json!({"hello": "world"})).await;
    assert!(unknown.get("lambda_error").is_some(), "{unknown}");
}
