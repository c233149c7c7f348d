//! The real `golos-sweeper` Lambda binary through the Lambda Runtime API, on moto: the
//! EventBridge schedule's event frees the slot of a worker that stopped heartbeating, and
//! leaves a live call's slot alone.

use golos_ports::LeaseRequest;
use golos_testkit::fixtures;
use golos_testkit::lambda::{workspace_binary, LambdaProcess};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_sweeps_expired_leases_through_the_runtime_api() {
    let table = golos_testkit::moto::unique_name("golos-sw");
    let config = golos_aws::AwsConfig::on_endpoint(golos_testkit::moto::endpoint(), &table);
    let mut platform = golos_aws::AwsPlatform::connect(config).await.expect("connect to moto");
    platform.provision().await.expect("provision");
    platform.put_secret("api-key-pepper", "lambda-test-pepper").await.expect("pepper");
    platform.put_secret("call-token-key", "lambda-test-call-token-key").await.expect("call-token key");
    let stores = platform.stores();
    let (org, agent) = (fixtures::org_id(), fixtures::agent_id());
    stores.orgs.create(&fixtures::org(&org)).await.unwrap();
    stores.agents.create(&org, &agent, &fixtures::agent_config("a"), 50, fixtures::T0).await.unwrap();
    let lease = |call: &str, ttl_ms| LeaseRequest {
        org_id: org.clone(),
        agent_id: agent.clone(),
        call_id: golos_domain::CallId::parse(call).unwrap(),
        org_limit: 100,
        agent_limit: 10,
        ttl_ms,
    };
    // A worker that died long ago, and a live call whose lease runs for another hour.
    stores.leases.acquire(&lease("call_orphan", 30_000), golos_domain::Timestamp::from_millis(1_000)).await.unwrap();
    let now = golos_domain::Timestamp::from_millis(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64,
    );
    stores.leases.acquire(&lease("call_live", 3_600_000), now).await.unwrap();

    let mut function =
        LambdaProcess::start(&workspace_binary("golos-sweeper"), "golos-sweeper", &platform.config().to_env()).await;
    let schedule = json!({"version": "0", "id": "e-1", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-11-25T10:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/golos-sweeper"], "detail": {}});
    assert_eq!(function.invoke(schedule.clone()).await, json!({"swept": 1}));
    assert_eq!(stores.leases.active(&org, None).await.unwrap(), 1, "the live call keeps its slot");
    assert_eq!(function.invoke(schedule).await, json!({"swept": 0}), "a second sweep finds nothing");
}
