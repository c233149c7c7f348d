//! Ledger throughput and latency under contention: 16 tasks apply 20,000 billing events
//! (credits and call debits over a few orgs, ~30 % repeated keys) through the group-commit
//! writer with `synchronous=FULL`, then the balances are checked against the unique events.
//!
//! Run: `cargo bench -p golos-local --bench ledger` (N can be overridden with `LEDGER_EVENTS`).

use golos_domain::billing::LedgerEventKind;
use golos_domain::{Kopecks, OrgId};
use golos_local::LocalPlatform;
use golos_ports::{Clock, SystemClock};
use golos_testkit::fixtures::{self, call_debit, credit, Prng};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

const TASKS: usize = 16;
const ORGS: usize = 4;

fn workload(total: usize) -> (Vec<(OrgId, LedgerEventKind)>, BTreeMap<OrgId, Kopecks>) {
    let orgs: Vec<OrgId> = (0..ORGS).map(|_| fixtures::org_id()).collect();
    let mut rng = Prng::new(0xBE7C_4001);
    let mut unique: Vec<(OrgId, LedgerEventKind)> = Vec::new();
    let mut stream = Vec::with_capacity(total);
    while stream.len() < total {
        if !unique.is_empty() && rng.below(100) < 30 {
            stream.push(unique[rng.below(unique.len() as u64) as usize].clone());
            continue;
        }
        let org = orgs[rng.below(ORGS as u64) as usize].clone();
        let n = unique.len();
        let event = if rng.below(3) < 2 {
            credit(&format!("bench-{n}"), 1 + rng.below(100_000) as i64)
        } else {
            call_debit(&format!("call_bench{n}"), rng.below(3_600), 1 + rng.below(1_000) as i64)
        };
        unique.push((org.clone(), event.clone()));
        stream.push((org, event));
    }
    let mut expected: BTreeMap<OrgId, Kopecks> = orgs.into_iter().map(|o| (o, Kopecks::ZERO)).collect();
    for (org, event) in &unique {
        let delta = event.balance_delta().expect("delta");
        let sum = expected.entry(org.clone()).or_default();
        *sum = sum.checked_add(delta).expect("no overflow");
    }
    (stream, expected)
}

/// The disk's own fsync latency, printed next to the results: with `synchronous=FULL` every
/// group commit waits for one, so it bounds what the ledger can do on this machine.
fn fsync_baseline(dir: &std::path::Path) -> (f64, f64) {
    use std::io::Write;
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path).expect("probe");
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("hist");
    for _ in 0..200 {
        file.write_all(&[0u8; 4096]).expect("write");
        let begin = Instant::now();
        file.sync_data().expect("fsync");
        hist.saturating_record(begin.elapsed().as_micros() as u64);
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    (hist.value_at_quantile(0.5) as f64 / 1000.0, hist.value_at_quantile(0.99) as f64 / 1000.0)
}

async fn run(total: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (fsync_p50, fsync_p99) = fsync_baseline(dir.path());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let platform = LocalPlatform::open(dir.path(), Arc::clone(&clock)).expect("open");
    let ledger = platform.stores().ledger;
    let (stream, expected) = workload(total);
    let stream = Arc::new(stream);

    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (ledger, stream, clock) = (Arc::clone(&ledger), Arc::clone(&stream), Arc::clone(&clock));
            tokio::spawn(async move {
                let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("hist");
                let mut duplicates = 0usize;
                for i in (t..stream.len()).step_by(TASKS) {
                    let (org, event) = &stream[i];
                    let begin = Instant::now();
                    let outcome = ledger.apply(org, event, clock.now()).await.expect("apply");
                    hist.saturating_record(begin.elapsed().as_micros() as u64);
                    duplicates += usize::from(outcome.is_duplicate());
                }
                (hist, duplicates)
            })
        })
        .collect();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("hist");
    let mut duplicates = 0;
    for task in tasks {
        let (h, d) = task.await.expect("task");
        hist.add(h).expect("merge");
        duplicates += d;
    }
    let elapsed = started.elapsed();

    for (org, want) in &expected {
        let got = ledger.balance(org).await.expect("balance");
        assert_eq!(got, *want, "balance of {org} must be the sum of its unique events");
        let recomputed = ledger.recompute_balance(org).await.expect("recompute");
        assert_eq!(recomputed, *want, "reconciliation of {org}");
    }

    let ms = |us: u64| us as f64 / 1000.0;
    println!(
        "ledger apply: {total} events ({duplicates} duplicates) by {TASKS} tasks over {ORGS} orgs in {:.3} s",
        elapsed.as_secs_f64()
    );
    println!("  throughput: {:.0} events/s", total as f64 / elapsed.as_secs_f64());
    println!(
        "  latency: p50 {:.3} ms, p99 {:.3} ms, p999 {:.3} ms, max {:.3} ms",
        ms(hist.value_at_quantile(0.50)),
        ms(hist.value_at_quantile(0.99)),
        ms(hist.value_at_quantile(0.999)),
        ms(hist.max())
    );
    println!("  disk fsync alone: p50 {fsync_p50:.3} ms, p99 {fsync_p99:.3} ms");
    println!("  balances: all {ORGS} equal the sum of unique events (and the recomputation)");
}

fn main() {
    // `cargo bench` passes `--bench`; this harness takes no arguments of its own.
    let total = std::env::var("LEDGER_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(run(total));
}
