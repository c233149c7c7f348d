//! Durability across `kill -9`: a child process applies ledger events and prints each one
//! the store acknowledged; the parent kills it mid-stream, reopens the data directory and
//! checks that every acknowledged event survived and the balance still equals its entries.

use golos_domain::billing::{LedgerEventKind, PaymentProvider};
use golos_domain::{Kopecks, OrgId, Timestamp};
use golos_local::LocalPlatform;
use golos_ports::{Clock, PageRequest, SystemClock};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "GOLOS_CRASH_CHILD_DIR";
const OFFSET_ENV: &str = "GOLOS_CRASH_CHILD_OFFSET";
const ORG: &str = "org_crash";

fn event(n: u64) -> LedgerEventKind {
    LedgerEventKind::PaymentCredit {
        provider: PaymentProvider::Yookassa,
        payment_id: format!("p{n}"),
        amount: Kopecks::new(1 + (n % 97) as i64),
    }
}

/// The child side: does nothing unless the parent started this binary to be killed.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // Each round starts at another offset so it writes new keys, not only duplicates.
    let offset: u64 = std::env::var(OFFSET_ENV).ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    runtime.block_on(async move {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let platform = LocalPlatform::open(dir.as_ref(), clock).unwrap();
        let ledger = platform.stores().ledger;
        let org = OrgId::parse(ORG).unwrap();
        let tasks: Vec<_> = (0..8u64)
            .map(|t| {
                let (ledger, org) = (Arc::clone(&ledger), org.clone());
                tokio::spawn(async move {
                    for n in (offset + t..).step_by(8) {
                        let outcome = ledger.apply(&org, &event(n), Timestamp::from_millis(1)).await.unwrap();
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ACK {} {}", n, outcome.is_duplicate()).unwrap();
                        out.flush().unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_kill_9() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut acked = Vec::new();
    for round in 0..3u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .env(OFFSET_ENV, (round * 100_000).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let started = Instant::now();
        let mut this_round = 0;
        for line in stdout.lines() {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("ACK ") {
                let n: u64 = rest.split(' ').next().unwrap().parse().unwrap();
                acked.push(n);
                this_round += 1;
                // Kill at a different point each round, while writes are in flight.
                if this_round >= 300 + round * 250 || started.elapsed() > Duration::from_secs(20) {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert!(this_round > 0, "round {round}: the child acknowledged nothing");
    }

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let platform = LocalPlatform::open(dir.path(), clock).unwrap();
    let ledger = platform.stores().ledger;
    let org = OrgId::parse(ORG).unwrap();
    for n in &acked {
        let key = event(*n).idempotency_key();
        assert!(ledger.get(&org, &key).await.unwrap().is_some(), "acknowledged event {key} was lost");
    }
    let balance = ledger.balance(&org).await.unwrap();
    assert_eq!(balance, ledger.recompute_balance(&org).await.unwrap());
    let mut stored = 0;
    let mut page = PageRequest::first(100);
    loop {
        let result = ledger.list(&org, &page).await.unwrap();
        stored += result.items.len();
        match result.next_cursor {
            Some(cursor) => page = PageRequest::after(cursor, 100),
            None => break,
        }
    }
    assert!(stored >= acked.iter().collect::<std::collections::BTreeSet<_>>().len());
}
