//! The control-plane stores (calls, audit; numbers are in the shared contracts) and SQS details, against moto.

use golos_aws::{AwsConfig, AwsPlatform};
use golos_domain::{PhoneNumber, Timestamp};
use golos_ports::{AuditEntry, CallDirection, CallRecord, CallStatus, PageRequest, PortError, QueueConfig};
use golos_testkit::fixtures::{self, T0};
use golos_testkit::moto::unique_name;
use std::time::Duration;

async fn platform() -> AwsPlatform {
    let mut platform = AwsPlatform::connect(AwsConfig {
        region: "us-east-1".to_owned(),
        endpoint_url: Some(golos_testkit::moto::endpoint()),
        table_name: unique_name("golos"),
        queue_prefix: unique_name("golos"),
        kms_key_id: None,
        secrets_prefix: unique_name("golos"),
    })
    .await
    .unwrap();
    platform.provision().await.unwrap();
    platform
}

#[tokio::test]
async fn calls_newest_first_with_transcripts_and_audit_log() {
    let p = platform().await;
    let calls = p.calls();
    let org = fixtures::org_id();
    let record = |i: i64, transcript: Option<Vec<u8>>| CallRecord {
        id: fixtures::call_id(),
        org_id: org.clone(),
        agent_id: fixtures::agent_id(),
        direction: CallDirection::Inbound,
        from: Some(PhoneNumber::parse("+79161234567").unwrap()),
        to: None,
        status: CallStatus::InProgress,
        started_at: T0.plus_secs(i),
        ended_at: None,
        duration_secs: None,
        end_reason: None,
        cost: None,
        transcript,
        metrics: serde_json::json!({"turns": i}),
        expires_at: None,
        erased: None,
    };
    let mut written = Vec::new();
    for i in 0..3 {
        let call = record(i, (i == 1).then(|| vec![0, 1, 2, 255]));
        calls.record_start(&call).await.unwrap();
        written.push(call);
    }
    written[0].status = CallStatus::Ended;
    written[0].ended_at = Some(T0.plus_secs(90));
    calls.record_end(&written[0]).await.unwrap();
    assert_eq!(calls.get(&org, &written[0].id).await.unwrap().as_ref(), Some(&written[0]));
    assert_eq!(calls.get(&org, &written[1].id).await.unwrap().as_ref(), Some(&written[1]));
    let mut seen = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let result = calls.list(&org, &page).await.unwrap();
        seen.extend(result.items);
        match result.next_cursor {
            Some(c) => page = PageRequest::after(c, 2),
            None => break,
        }
    }
    written.reverse();
    assert_eq!(seen, written);

    let audit = p.audit();
    let entry = |action: &str, at: Timestamp| AuditEntry {
        org_id: org.clone(),
        at,
        actor: "operator".into(),
        action: action.into(),
        target: "agt_x".into(),
        ip: "127.0.0.1".into(),
        request_id: "req".into(),
    };
    for (action, at) in [("a", T0), ("b", T0), ("c", T0.plus_secs(1)), ("d", T0.plus_secs(1))] {
        audit.append(&entry(action, at)).await.unwrap();
    }
    audit.append(&AuditEntry { org_id: fixtures::org_id(), ..entry("foreign", T0) }).await.unwrap();
    let first = audit.list(&org, &PageRequest::first(3)).await.unwrap();
    let second = audit.list(&org, &PageRequest::after(first.next_cursor.clone().unwrap(), 3)).await.unwrap();
    let actions: Vec<String> = first.items.into_iter().chain(second.items).map(|e| e.action).collect();
    assert_eq!(actions, ["d", "c", "b", "a"], "newest first, writes of one instant in reverse order");
    assert_eq!(second.next_cursor, None);
}

#[tokio::test]
async fn stale_receipts_and_delay_clamping() {
    let p = platform().await;
    let queue = p.queue(QueueConfig::new("jobs")).await.unwrap();
    queue.send("a", Duration::from_secs(3_600)).await.unwrap(); // clamped to 15 minutes
    assert!(queue.receive(10, Duration::from_secs(1)).await.unwrap().is_empty());
    queue.send("b", Duration::ZERO).await.unwrap();
    let got = queue.receive(50, Duration::from_millis(1)).await.unwrap(); // rounds up to 1 s
    assert_eq!(got.len(), 1);
    queue.delete(&got[0].receipt).await.unwrap();
    queue.delete(&got[0].receipt).await.unwrap();
    assert!(matches!(queue.change_visibility(&got[0].receipt, Duration::ZERO).await, Err(PortError::NotFound { .. })));
    assert_eq!(queue.depth().await.unwrap(), 1, "the delayed message still counts");
}

#[tokio::test]
async fn zero_limits_refuse_the_first_request() {
    use golos_ports::{AcquireOutcome, LeaseRequest};
    let p = platform().await;
    let stores = p.stores();
    let org = fixtures::org_id();
    assert!(matches!(
        stores.agents.create(&org, &fixtures::agent_id(), &fixtures::agent_config("a"), 0, T0).await,
        Err(PortError::QuotaExceeded { quota: "max_agents", limit: 0 })
    ));
    let request = |org_limit, agent_limit| LeaseRequest {
        org_id: org.clone(),
        agent_id: fixtures::agent_id(),
        call_id: fixtures::call_id(),
        org_limit,
        agent_limit,
        ttl_ms: 1_000,
    };
    assert_eq!(stores.leases.acquire(&request(0, 5), T0).await.unwrap(), AcquireOutcome::OrgLimitReached { limit: 0 });
    assert_eq!(
        stores.leases.acquire(&request(5, 0), T0).await.unwrap(),
        AcquireOutcome::AgentLimitReached { limit: 0 }
    );
    assert_eq!(stores.leases.active(&org, None).await.unwrap(), 0);
}

#[tokio::test]
async fn kms_itself_enforces_the_encryption_context() {
    use golos_ports::EncryptionContext;
    let p = platform().await;
    let crypto = p.crypto();
    let envelope = crypto.encrypt(b"x", &EncryptionContext::new([("org", "a")])).await.unwrap();
    // Refused by KMS before AES-GCM is even tried (the AAD would refuse it too).
    match crypto.decrypt(&envelope, &EncryptionContext::new([("org", "b")])).await {
        Err(PortError::Corrupt { reason }) => assert!(reason.contains("KMS"), "{reason}"),
        other => panic!("a wrong context must be Corrupt, got {other:?}"),
    }
}

/// Records written by the previous version (a plain `PutItem`, no `status` attribute) still
/// take their end and an erasure: the conditions accept a missing `status` once.
#[tokio::test]
async fn records_written_before_status_was_an_attribute_still_end_and_erase() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use golos_ports::CallWrite;
    let table = unique_name("golos");
    let mut p = AwsPlatform::connect(AwsConfig {
        region: "us-east-1".to_owned(),
        endpoint_url: Some(golos_testkit::moto::endpoint()),
        table_name: table.clone(),
        queue_prefix: unique_name("golos"),
        kms_key_id: None,
        secrets_prefix: unique_name("golos"),
    })
    .await
    .unwrap();
    p.provision().await.unwrap();
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(golos_testkit::moto::endpoint())
        .credentials_provider(aws_credential_types::Credentials::new("test", "test", None, None, "test"))
        .load()
        .await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let (org, agent) = (fixtures::org_id(), fixtures::agent_id());
    let legacy = |call: &golos_domain::CallId, status: CallStatus| CallRecord {
        id: call.clone(),
        org_id: org.clone(),
        agent_id: agent.clone(),
        direction: CallDirection::Inbound,
        from: Some(PhoneNumber::parse("+79161234567").unwrap()),
        to: None,
        status,
        started_at: T0,
        ended_at: None,
        duration_secs: None,
        end_reason: None,
        cost: None,
        transcript: None,
        metrics: serde_json::json!({}),
        expires_at: None,
        erased: None,
    };
    let (live, done) = (fixtures::call_id(), fixtures::call_id());
    for (call, status) in [(&live, CallStatus::InProgress), (&done, CallStatus::Ended)] {
        let s = |v: String| AttributeValue::S(v);
        client
            .put_item()
            .table_name(&table)
            .item("pk", s(format!("ORG#{org}")))
            .item("sk", s(format!("CALLREC#{call}")))
            .item("gsi1pk", s(format!("ORG#{org}#CALLS")))
            .item("gsi1sk", s(format!("{:020}#{call}", T0.as_millis())))
            .item("data", s(serde_json::to_string(&legacy(call, status)).unwrap()))
            .send()
            .await
            .unwrap();
    }
    let calls = p.calls();
    let end = CallRecord { status: CallStatus::Ended, from: None, ..legacy(&live, CallStatus::Ended) };
    let written = calls.record_end(&end).await.unwrap();
    assert!(
        matches!(&written, CallWrite::Written(r) if r.status == CallStatus::Ended && r.from.is_some()),
        "{written:?}"
    );
    assert!(!calls.record_end(&end).await.unwrap().written(), "now a replay");
    let erased = calls.erase(&org, &done, T0.plus_secs(5)).await.unwrap();
    assert_eq!((erased.from, erased.erased.map(|e| e.at)), (None, Some(T0.plus_secs(5))));
}
