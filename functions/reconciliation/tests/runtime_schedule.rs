//! The real `golos-reconciliation` Lambda binary through the Lambda Runtime API, on moto:
//! the EventBridge schedule's event reconciles balances and calls; an ended call with its
//! debit passes, one whose debit is missing is reported (and published as a metric).

use golos_domain::billing::LedgerEventKind;
use golos_domain::{CallId, Kopecks, Timestamp};
use golos_ports::{CallDirection, CallRecord, CallStatus};
use golos_testkit::fixtures;
use golos_testkit::lambda::{workspace_binary, LambdaProcess};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_reports_unbilled_calls_through_the_runtime_api() {
    let table = golos_testkit::moto::unique_name("golos-rc");
    let config = golos_aws::AwsConfig::on_endpoint(golos_testkit::moto::endpoint(), &table);
    let mut platform = golos_aws::AwsPlatform::connect(config).await.expect("connect to moto");
    platform.provision().await.expect("provision");
    platform.put_secret("api-key-pepper", "lambda-test-pepper").await.expect("pepper");
    platform.put_secret("call-token-key", "lambda-test-call-token-key").await.expect("call-token key");
    let (stores, calls) = (platform.stores(), platform.calls());
    let org = fixtures::org_id();
    stores.orgs.create(&fixtures::org(&org)).await.unwrap();
    stores.ledger.apply(&org, &fixtures::credit("p1", 10_000), fixtures::T0).await.unwrap();
    // The window is counted back from the function's clock: the calls started an hour ago.
    let now = Timestamp::from_millis(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64,
    );
    let started_at = now.plus_secs(-3_600);
    let rate = Kopecks::new(600);
    let record = |id: &str| CallRecord {
        id: CallId::parse(id).unwrap(),
        org_id: org.clone(),
        agent_id: fixtures::agent_id(),
        direction: CallDirection::Web,
        from: None,
        to: None,
        status: CallStatus::Ended,
        started_at,
        ended_at: Some(started_at.plus_secs(61)),
        duration_secs: Some(61),
        end_reason: Some(golos_domain::EndReason::CallerHangup),
        cost: Some(Kopecks::new(1_200)),
        transcript: None,
        metrics: json!({}),
        expires_at: None,
        erased: None,
    };
    let billed = LedgerEventKind::call_debit(CallId::parse("call_billed").unwrap(), 61, rate).unwrap();
    stores.ledger.apply(&org, &billed, started_at).await.unwrap();
    calls.record_end(&record("call_billed")).await.unwrap();
    calls.record_end(&record("call_unbilled")).await.unwrap();

    let mut function = LambdaProcess::start(
        &workspace_binary("golos-reconciliation"),
        "golos-reconciliation",
        &platform.config().to_env(),
    )
    .await;
    let schedule = json!({"version": "0", "id": "e-2", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-11-25T10:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/golos-reconciliation"], "detail": {}});
    let report = function.invoke(schedule.clone()).await;
    assert_eq!(report["orgs_checked"], 1, "{report}");
    assert_eq!(report["drifts"], json!([]), "{report}");
    assert_eq!(report["calls_checked"], 2, "{report}");
    assert_eq!(
        report["unbilled_calls"],
        json!([{"org": org, "call": "call_unbilled", "cost": 1_200, "debited": Value::Null}]),
        "{report}"
    );

    // Billed late (as a redelivered call.ended would), the next run is clean.
    let late = LedgerEventKind::call_debit(CallId::parse("call_unbilled").unwrap(), 61, rate).unwrap();
    stores.ledger.apply(&org, &late, started_at).await.unwrap();
    let report = function.invoke(schedule).await;
    assert_eq!((report["calls_checked"].clone(), report["unbilled_calls"].clone()), (json!(2), json!([])), "{report}");
}
