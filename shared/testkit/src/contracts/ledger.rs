//! The ledger: exactly-once application, atomic balance, history.

use crate::fixtures::{self, call_debit, credit, Prng, T0};
use crate::Harness;
use golos_domain::billing::LedgerEventKind;
use golos_domain::{Kopecks, OrgId, Timestamp};
use golos_ports::{ApplyOutcome, PageRequest, PortError};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub async fn applies_once_and_answers_duplicates_with_the_original(h: &impl Harness) {
    let ledger = h.stores().ledger;
    let org = fixtures::org_id();
    assert_eq!(ledger.balance(&org).await.unwrap(), Kopecks::ZERO, "an org without events has zero");
    let payment = credit("pay-1", 50_000);
    let first = ledger.apply(&org, &payment, T0).await.unwrap();
    let ApplyOutcome::Applied(entry) = &first else { panic!("first apply must apply: {first:?}") };
    assert_eq!(
        (entry.key.as_str(), entry.delta, entry.applied_at),
        ("payment:yookassa:pay-1", Kopecks::new(50_000), T0)
    );
    assert_eq!(entry.event, payment);
    assert_eq!(ledger.balance(&org).await.unwrap(), Kopecks::new(50_000));

    // The same payment again, later: nothing changes and the original comes back.
    let again = ledger.apply(&org, &payment, T0.plus_secs(30)).await.unwrap();
    assert_eq!(again, ApplyOutcome::Duplicate(entry.clone()));
    // A different body under the same key is still a duplicate of the stored original.
    let forged = credit("pay-1", 99_999_999);
    assert_eq!(ledger.apply(&org, &forged, T0).await.unwrap(), ApplyOutcome::Duplicate(entry.clone()));
    assert_eq!(ledger.balance(&org).await.unwrap(), Kopecks::new(50_000));
    assert_eq!(ledger.get(&org, "payment:yookassa:pay-1").await.unwrap().as_ref(), Some(entry));
    assert_eq!(ledger.get(&org, "payment:yookassa:nope").await.unwrap(), None);

    // Keys are per org: the same payment id in another org is another event.
    let other = fixtures::org_id();
    assert!(!ledger.apply(&other, &payment, T0).await.unwrap().is_duplicate());
    assert_eq!(ledger.balance(&other).await.unwrap(), Kopecks::new(50_000));

    // Debits may take the balance below zero; the use-cases decide what that means.
    ledger.apply(&org, &call_debit("call_a", 601, 10_000), T0).await.unwrap();
    assert_eq!(ledger.balance(&org).await.unwrap(), Kopecks::new(50_000 - 110_000));
    assert_eq!(ledger.recompute_balance(&org).await.unwrap(), Kopecks::new(-60_000));
}

pub async fn call_debits_add_monthly_usage(h: &impl Harness) {
    let ledger = h.stores().ledger;
    let org = fixtures::org_id();
    let month = T0.year_month();
    assert_eq!(ledger.usage_minutes(&org, month).await.unwrap(), 0);
    ledger.apply(&org, &call_debit("call_u1", 61, 100), T0).await.unwrap(); // 2 minutes
    ledger.apply(&org, &call_debit("call_u2", 1, 100), T0).await.unwrap(); // 1 minute
    ledger.apply(&org, &call_debit("call_u2", 1, 100), T0).await.unwrap(); // duplicate: nothing
    ledger.apply(&org, &credit("pay-u", 1_000), T0).await.unwrap(); // not a call
    assert_eq!(ledger.usage_minutes(&org, month).await.unwrap(), 3);
    let next_month = Timestamp::from_millis(T0.as_millis() + 31 * 86_400_000);
    ledger.apply(&org, &call_debit("call_u3", 120, 100), next_month).await.unwrap();
    assert_eq!(ledger.usage_minutes(&org, month).await.unwrap(), 3);
    assert_eq!(ledger.usage_minutes(&org, next_month.year_month()).await.unwrap(), 2);
}

pub async fn history_is_newest_first_and_paginates(h: &impl Harness) {
    let ledger = h.stores().ledger;
    let org = fixtures::org_id();
    let mut expected = Vec::new();
    for i in 0..7 {
        let event = credit(&format!("hist-{i}"), 100 + i);
        ledger.apply(&org, &event, T0.plus_secs(i)).await.unwrap();
        expected.push(event.idempotency_key());
    }
    ledger.apply(&fixtures::org_id(), &credit("hist-foreign", 1), T0).await.unwrap();
    expected.reverse();
    let mut seen = Vec::new();
    let mut page = PageRequest::first(3);
    loop {
        let result = ledger.list(&org, &page).await.unwrap();
        assert!(result.items.len() <= 3);
        seen.extend(result.items.into_iter().map(|e| e.key));
        match result.next_cursor {
            Some(cursor) => page = PageRequest::after(cursor, 3),
            None => break,
        }
    }
    assert_eq!(seen, expected, "an org's entries, newest first, each once");
}

pub async fn rejects_invalid_events(h: &impl Harness) {
    let ledger = h.stores().ledger;
    let org = fixtures::org_id();
    let bad = [
        credit("neg", -5),
        credit("", 5),
        LedgerEventKind::CallDebit {
            call_id: fixtures::call_id(),
            duration_secs: 61,
            rate_per_minute: Kopecks::new(100),
            amount: Kopecks::new(1), // not ceil(61/60)*100
        },
    ];
    for event in &bad {
        assert!(matches!(ledger.apply(&org, event, T0).await, Err(PortError::Invalid { .. })), "{event:?}");
    }
    assert_eq!(ledger.balance(&org).await.unwrap(), Kopecks::ZERO, "a refused event writes nothing");
    assert!(ledger.list(&org, &PageRequest::first(10)).await.unwrap().items.is_empty());
}

/// 16 tasks apply a stream of credits and debits in which 30 % repeat an earlier key, all
/// interleaved. Each key must be applied exactly once, every duplicate must answer with the
/// stored original, and the balance must equal the sum of the unique events.
pub async fn concurrent_events_with_duplicates_balance_exactly(h: &impl Harness) {
    const TASKS: usize = 16;
    let ledger = h.stores().ledger;
    let total = h.scale().ledger_events();
    let orgs = [fixtures::org_id(), fixtures::org_id()];
    let mut rng = Prng::new(0x5EED_0001);
    let mut unique: Vec<(OrgId, LedgerEventKind)> = Vec::new();
    let mut stream: Vec<(OrgId, LedgerEventKind)> = Vec::with_capacity(total);
    while stream.len() < total {
        if !unique.is_empty() && rng.below(100) < 30 {
            let earlier = unique[rng.below(unique.len() as u64) as usize].clone();
            stream.push(earlier);
            continue;
        }
        let org = orgs[rng.below(2) as usize].clone();
        let n = unique.len();
        let event = match rng.below(3) {
            0 | 1 => credit(&format!("c-{n}"), 1 + rng.below(100_000) as i64),
            _ => call_debit(&format!("call_{n}"), rng.below(3_600), 1 + rng.below(1_000) as i64),
        };
        unique.push((org.clone(), event.clone()));
        stream.push((org, event));
    }
    let stream = Arc::new(stream);
    let tasks = (0..TASKS).map(|t| {
        let (ledger, stream) = (Arc::clone(&ledger), Arc::clone(&stream));
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for i in (t..stream.len()).step_by(TASKS) {
                let (org, event) = &stream[i];
                let outcome = ledger.apply(org, event, T0).await.unwrap_or_else(|e| panic!("apply {i} failed: {e}"));
                outcomes.push((org.clone(), event.clone(), outcome));
            }
            outcomes
        })
    });
    let mut applied: BTreeMap<(OrgId, String), usize> = BTreeMap::new();
    let mut outcomes = Vec::new();
    for task in tasks.collect::<Vec<_>>() {
        outcomes.extend(task.await.expect("task panicked"));
    }
    assert_eq!(outcomes.len(), total);
    for (org, event, outcome) in &outcomes {
        let entry = outcome.entry();
        assert_eq!((&entry.org_id, &entry.event), (org, event), "every answer carries the stored original");
        if !outcome.is_duplicate() {
            *applied.entry((org.clone(), entry.key.clone())).or_default() += 1;
        }
    }
    let unique_keys: BTreeSet<(OrgId, String)> = unique.iter().map(|(o, e)| (o.clone(), e.idempotency_key())).collect();
    assert_eq!(unique_keys.len(), unique.len(), "the generator made unique keys");
    assert_eq!(applied.len(), unique.len(), "every unique event was applied");
    assert!(applied.values().all(|&n| n == 1), "no key was applied twice");
    for org in &orgs {
        let expected =
            Kopecks::checked_sum(unique.iter().filter(|(o, _)| o == org).map(|(_, e)| e.balance_delta().unwrap()))
                .unwrap();
        assert_eq!(ledger.balance(org).await.unwrap(), expected, "balance is the sum of unique events");
        assert_eq!(ledger.recompute_balance(org).await.unwrap(), expected, "reconciliation agrees");
    }
}
