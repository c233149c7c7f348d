//! The restore drill of docs/disaster-recovery.md, on moto: a deployment with money in it
//! (orgs through the API, payment credits and a call debit through the ledger port), an
//! on-demand backup, writes after it, then the table restored from the backup and to a point
//! in time into new tables; a `golos serve` pointed at each restored table (`GOLOS_TABLE`)
//! answers the same balances and ledgers to the same API keys as at the restore point, and
//! `golos reconcile` over it finds no drift.
//!
//! moto restores a point in time as the table's latest state (it ignores the time asked),
//! so the point-in-time half checks the restore path and the redeploy, and the backup half
//! checks that a restore really leaves out what came after its point.

use golos_domain::billing::{LedgerEventKind, PaymentProvider};
use golos_domain::{CallId, Kopecks, OrgId, Timestamp};
use golos_tests::{golos_binary, AwsDeployment, RunningGolos};
use serde_json::{json, Value};

struct Org {
    id: OrgId,
    key: String,
}

/// What an org's admin sees of its money.
#[derive(Debug, PartialEq)]
struct Books {
    balance: i64,
    ledger: Vec<Value>,
}

async fn post(http: &reqwest::Client, base: &str, path: &str, key: &str, body: &Value) -> Value {
    let response = http.post(format!("{base}{path}")).header("X-API-Key", key).json(body).send().await.unwrap();
    assert!(response.status().is_success(), "{path}: {}", response.status());
    response.json().await.unwrap()
}

async fn get(http: &reqwest::Client, base: &str, path: &str, key: &str) -> Value {
    let response = http.get(format!("{base}{path}")).header("X-API-Key", key).send().await.unwrap();
    assert!(response.status().is_success(), "{path}: {}", response.status());
    response.json().await.unwrap()
}

async fn books(http: &reqwest::Client, golos: &RunningGolos, org: &Org) -> Books {
    let base = golos.base_url();
    let balance = get(http, &base, "/v1/balance", &org.key).await["balance_kopecks"].as_i64().expect("balance");
    let ledger = get(http, &base, "/v1/ledger", &org.key).await["items"].as_array().expect("ledger").clone();
    Books { balance, ledger }
}

fn credit(payment_id: &str, kopecks: i64) -> LedgerEventKind {
    LedgerEventKind::PaymentCredit {
        provider: PaymentProvider::Signed("test".into()),
        payment_id: payment_id.into(),
        amount: Kopecks::new(kopecks),
    }
}

/// `golos reconcile` over `env`: its exit status and output.
fn reconcile(env: &[(&str, &str)]) -> (bool, String) {
    let output = std::process::Command::new(golos_binary())
        .args(["reconcile", "--backend", "aws"])
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .output()
        .expect("golos reconcile");
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `env` with the table replaced.
fn on_table<'a>(env: &[(&'a str, &'a str)], table: &'a str) -> Vec<(&'a str, &'a str)> {
    env.iter().map(|&(k, v)| if k == "GOLOS_TABLE" { (k, table) } else { (k, v) }).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_table_has_the_balances_and_ledgers_of_its_restore_point() {
    let aws = AwsDeployment::provision("dr").await;
    let operator = aws.init_secrets().await;
    let env = aws.env();
    let table = aws.platform.config().table_name.clone();
    aws.platform.enable_point_in_time_recovery(None).await.expect("PITR on");

    let golos = RunningGolos::start_aws(&env);
    let (http, base) = (reqwest::Client::new(), golos.base_url());
    let ledger = aws.platform.stores().ledger;
    let mut orgs = Vec::new();
    for (n, name) in ["Café", "Bakery"].into_iter().enumerate() {
        let org = post(&http, &base, "/v1/orgs", &operator, &json!({"name": name})).await;
        let id = org["id"].as_str().unwrap().to_owned();
        let key_path = format!("/v1/orgs/{id}/api-keys");
        let key = post(&http, &base, &key_path, &operator, &json!({"name": "owner", "role": "admin"})).await;
        let org = Org { id: OrgId::parse(&id).unwrap(), key: key["token"].as_str().unwrap().to_owned() };
        let now = Timestamp::from_millis(1_000 * (n as i64 + 1));
        ledger.apply(&org.id, &credit(&format!("p-{n}"), 10_000 * (n as i64 + 1)), now).await.unwrap();
        // A 90-second call at 3 roubles a minute: two started minutes, 600 kopecks.
        let call = CallId::parse(format!("call_dr_{n}")).unwrap();
        let debit = LedgerEventKind::call_debit(call, 90, Kopecks::new(300)).unwrap();
        ledger.apply(&org.id, &debit, now).await.unwrap();
        orgs.push(org);
    }
    let mut at_backup = Vec::new();
    for org in &orgs {
        at_backup.push(books(&http, &golos, org).await);
    }
    assert_eq!(at_backup.iter().map(|b| b.balance).collect::<Vec<_>>(), [9_400, 19_400]);
    assert!(at_backup.iter().all(|b| b.ledger.len() == 2), "{at_backup:?}");

    let backup = aws.platform.create_backup(&format!("{table}-drill")).await.expect("backup");
    // After the backup: a payment that a restore from the backup must not have.
    ledger.apply(&orgs[0].id, &credit("p-late", 5_000), Timestamp::from_millis(10_000)).await.unwrap();
    let mut latest = Vec::new();
    for org in &orgs {
        latest.push(books(&http, &golos, org).await);
    }
    assert_eq!(latest[0].balance, 14_400);
    drop(golos);

    let from_backup = format!("{table}-from-backup");
    aws.platform.restore_from_backup(&backup, &from_backup).await.expect("restore from backup");
    let to_point = format!("{table}-to-point");
    aws.platform.restore_to_point_in_time(&to_point, None).await.expect("restore to a point in time");

    for (restored, expected) in [(&from_backup, &at_backup), (&to_point, &latest)] {
        let env = on_table(&env, restored);
        let golos = RunningGolos::start_aws(&env);
        for (org, books_then) in orgs.iter().zip(expected) {
            assert_eq!(&books(&http, &golos, org).await, books_then, "org {} on {restored}", org.id);
        }
        drop(golos);
        let (clean, report) = reconcile(&env);
        assert!(clean, "reconcile found drift on {restored}:\n{report}");
        assert!(report.contains("checked 2 organisations, 0 with drift"), "{report}");
    }
}
