//! Property: any interleaving of the same set of billing events — credits, refunds, call
//! debits, each possibly delivered several times — leaves the same balance and the same
//! month's minutes in the real ledger, equal to the sum over the distinct events.

use golos_domain::billing::{billable_minutes, LedgerEventKind, PaymentProvider};
use golos_domain::Kopecks;
use golos_ports::{Clock, SystemClock};
use golos_testkit::fixtures::{self, T0};
use proptest::prelude::*;
use std::sync::Arc;

#[derive(Debug, Clone)]
enum Fact {
    Credit(i64),
    Refund(i64),
    Call(u64),
}

fn event(index: usize, fact: &Fact) -> LedgerEventKind {
    match fact {
        Fact::Credit(k) => fixtures::credit(&format!("p{index}"), *k),
        Fact::Refund(k) => LedgerEventKind::Refund {
            provider: PaymentProvider::Signed("acme".into()),
            refund_id: format!("r{index}"),
            amount: Kopecks::new(*k),
        },
        Fact::Call(secs) => fixtures::call_debit(&format!("call_{index}"), *secs, 450),
    }
}

fn fact() -> impl Strategy<Value = Fact> {
    prop_oneof![
        (1i64..1_000_000).prop_map(Fact::Credit),
        (1i64..100_000).prop_map(Fact::Refund),
        (0u64..7_200).prop_map(Fact::Call),
    ]
}

/// Applies `order` (indexes into `facts`) to a fresh ledger; returns (balance, minutes).
async fn replay(facts: &[Fact], order: &[usize]) -> (Kopecks, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let platform = golos_local::LocalPlatform::open(dir.path(), clock).expect("open");
    let ledger = platform.stores().ledger;
    let org = fixtures::org_id();
    for &i in order {
        ledger.apply(&org, &event(i, &facts[i]), T0).await.expect("apply");
    }
    (ledger.balance(&org).await.expect("balance"), ledger.usage_minutes(&org, T0.year_month()).await.expect("usage"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn every_interleaving_gives_the_same_balance(
        facts in prop::collection::vec(fact(), 1..25),
        repeats in prop::collection::vec(any::<prop::sample::Index>(), 0..15),
        seed_a in any::<u64>(),
        seed_b in any::<u64>(),
    ) {
        let mut deliveries: Vec<usize> = (0..facts.len()).collect();
        deliveries.extend(repeats.iter().map(|r| r.index(facts.len())));
        let shuffled = |seed: u64| {
            let mut order = deliveries.clone();
            let mut s = fixtures::Prng::new(seed);
            for i in (1..order.len()).rev() {
                order.swap(i, s.below(i as u64 + 1) as usize);
            }
            order
        };
        let expected_balance: i64 = facts.iter().enumerate().map(|(i, f)| event(i, f).balance_delta().unwrap().get()).sum();
        let expected_minutes: u64 = facts.iter().map(|f| if let Fact::Call(s) = f { billable_minutes(*s) } else { 0 }).sum();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (a, b) = runtime.block_on(async { (replay(&facts, &shuffled(seed_a)).await, replay(&facts, &shuffled(seed_b)).await) });
        prop_assert_eq!(a, b);
        prop_assert_eq!(a, (Kopecks::new(expected_balance), expected_minutes));
    }
}
