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
