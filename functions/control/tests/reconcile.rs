//! Reconciliation over the embedded store: no drift after real traffic, and a balance
//! tampered with behind the ledger's back is reported.

use golos_control::reconcile::{reconcile_all, Drift};
use golos_domain::billing::{LedgerEventKind, PaymentProvider};
use golos_domain::plans::Plan;
use golos_domain::{CallId, Kopecks, OrgId, Timestamp};
use golos_ports::{Clock, Org, SystemClock};
use std::sync::Arc;

const T0: Timestamp = Timestamp::from_millis(1_795_305_600_000);

fn org(id: &str) -> Org {
    Org {
        id: OrgId::parse(id).unwrap(),
        name: id.into(),
        plan: Plan::Start,
        quotas: Plan::Start.default_quotas(),
        settings: serde_json::json!({}),
        disabled: false,
        created_at: T0,
        version: 1,
    }
}

#[tokio::test]
async fn drift_is_zero_after_traffic_and_tampering_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let platform = golos_local::LocalPlatform::open(dir.path(), clock).unwrap();
    let stores = platform.stores();
    for (i, id) in ["org_a", "org_b", "org_c"].iter().enumerate() {
        stores.orgs.create(&org(id)).await.unwrap();
        let org_id = OrgId::parse(*id).unwrap();
        for n in 0..20 {
            let credit = LedgerEventKind::PaymentCredit {
                provider: PaymentProvider::Yookassa,
                payment_id: format!("p{i}-{n}"),
                amount: Kopecks::new(10_000 + n),
            };
            stores.ledger.apply(&org_id, &credit, T0).await.unwrap();
            stores.ledger.apply(&org_id, &credit, T0).await.unwrap(); // a duplicate changes nothing
            let debit = LedgerEventKind::call_debit(
                CallId::parse(format!("call_{i}_{n}")).unwrap(),
                61 + n as u64,
                Kopecks::new(600),
            )
            .unwrap();
            stores.ledger.apply(&org_id, &debit, T0).await.unwrap();
        }
    }
    let clean = reconcile_all(&stores).await.unwrap();
    assert_eq!((clean.orgs_checked, clean.drifts.len()), (3, 0));

    // Move org_b's balance behind the ledger's back, as a bug or a manual edit would.
    let stored = stores.ledger.balance(&OrgId::parse("org_b").unwrap()).await.unwrap();
    drop(stores);
    drop(platform);
    let conn = rusqlite::Connection::open(dir.path().join("golos.db")).unwrap();
    let changed = conn.execute("UPDATE balances SET balance = balance + 1 WHERE org_id = 'org_b'", []).unwrap();
    assert_eq!(changed, 1, "the balances table holds one row per org");
    drop(conn);

    let platform = golos_local::LocalPlatform::open(dir.path(), Arc::new(SystemClock)).unwrap();
    let report = reconcile_all(&platform.stores()).await.unwrap();
    assert_eq!(
        report.drifts,
        vec![Drift { org: OrgId::parse("org_b").unwrap(), stored: Kopecks::new(stored.get() + 1), recomputed: stored }]
    );
}

fn call_record(org: &OrgId, id: &str, started_at: Timestamp, cost: Option<i64>) -> golos_ports::CallRecord {
    let ended = cost.is_some();
    golos_ports::CallRecord {
        id: CallId::parse(id).unwrap(),
        org_id: org.clone(),
        agent_id: golos_domain::AgentId::parse("agt_rec").unwrap(),
        direction: golos_ports::CallDirection::Web,
        from: None,
        to: None,
        status: if ended { golos_ports::CallStatus::Ended } else { golos_ports::CallStatus::InProgress },
        started_at,
        ended_at: ended.then(|| started_at.plus_secs(61)),
        duration_secs: ended.then_some(61),
        end_reason: ended.then_some(golos_domain::EndReason::CallerHangup),
        cost: cost.map(Kopecks::new),
        transcript: None,
        metrics: serde_json::json!({}),
        expires_at: None,
        erased: None,
    }
}

/// Every ended call in the window has its one debit; a missing debit and a debit that
/// differs from the record's cost are reported; live calls and calls before the window are
/// not checked.
async fn calls_are_checked_against_their_debits(stores: &golos_ports::Stores, calls: &dyn golos_ports::CallStore) {
    let org_id = OrgId::parse("org_calls").unwrap();
    stores.orgs.create(&org("org_calls")).await.unwrap();
    let credit = LedgerEventKind::PaymentCredit {
        provider: PaymentProvider::Yookassa,
        payment_id: "p-calls".into(),
        amount: Kopecks::new(100_000),
    };
    stores.ledger.apply(&org_id, &credit, T0).await.unwrap();
    let rate = Kopecks::new(600);
    let debit = |id: &str| LedgerEventKind::call_debit(CallId::parse(id).unwrap(), 61, rate).unwrap();
    // Billed: its debit is minus its cost.
    stores.ledger.apply(&org_id, &debit("call_billed"), T0).await.unwrap();
    calls.record_end(&call_record(&org_id, "call_billed", T0.plus_secs(10), Some(1_200))).await.unwrap();
    // Never debited (the bug this check exists for).
    calls.record_end(&call_record(&org_id, "call_unbilled", T0.plus_secs(20), Some(1_200))).await.unwrap();
    // Debited for another amount than its record says.
    stores.ledger.apply(&org_id, &debit("call_mismatch"), T0).await.unwrap();
    calls.record_end(&call_record(&org_id, "call_mismatch", T0.plus_secs(30), Some(1_800))).await.unwrap();
    // Live: its debit comes with its end.
    calls.record_start(&call_record(&org_id, "call_live", T0.plus_secs(40), None)).await.unwrap();
    // Before the window.
    calls.record_end(&call_record(&org_id, "call_old", T0.plus_secs(-2 * 86_400), Some(600))).await.unwrap();

    let since = T0.plus_secs(-86_400);
    let report = golos_control::reconcile::reconcile_calls(stores, calls, since).await.unwrap();
    assert_eq!(report.calls_checked, 3, "{report:?}");
    let mut unbilled: Vec<_> = report
        .unbilled_calls
        .iter()
        .map(|c| (c.org.to_string(), c.call.to_string(), c.cost.map(Kopecks::get), c.debited.map(Kopecks::get)))
        .collect();
    unbilled.sort();
    assert_eq!(
        unbilled,
        vec![
            ("org_calls".into(), "call_mismatch".into(), Some(1_800), Some(1_200)),
            ("org_calls".into(), "call_unbilled".into(), Some(1_200), None),
        ]
    );

    // Debiting the missing call clears it; the mismatch stays until someone corrects it.
    stores.ledger.apply(&org_id, &debit("call_unbilled"), T0).await.unwrap();
    let report = golos_control::reconcile::reconcile_calls(stores, calls, since).await.unwrap();
    let left: Vec<_> = report.unbilled_calls.iter().map(|c| c.call.to_string()).collect();
    assert_eq!(left, vec!["call_mismatch".to_owned()]);
    // A wider window reaches the old call, which was never debited.
    let report = golos_control::reconcile::reconcile_calls(stores, calls, T0.plus_secs(-3 * 86_400)).await.unwrap();
    assert_eq!(report.calls_checked, 4);
    assert_eq!(report.unbilled_calls.len(), 2);
}

#[tokio::test]
async fn ended_calls_have_one_debit_locally() {
    let dir = tempfile::tempdir().unwrap();
    let platform = golos_local::LocalPlatform::open(dir.path(), Arc::new(SystemClock)).unwrap();
    calls_are_checked_against_their_debits(&platform.stores(), platform.calls().as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_calls_have_one_debit_on_aws() {
    let name = golos_testkit::moto::unique_name("golos-rec");
    let mut platform =
        golos_aws::AwsPlatform::connect(golos_aws::AwsConfig::on_endpoint(golos_testkit::moto::endpoint(), &name))
            .await
            .expect("connect to moto");
    platform.provision().await.expect("provision");
    calls_are_checked_against_their_debits(&platform.stores(), platform.calls().as_ref()).await;
}
