//! Idempotency records, conversation snapshots and shared counters.

use crate::fixtures::{self, T0};
use crate::Harness;
use golos_domain::Timestamp;
use golos_ports::{IdempotencyBegin, StoredResponse};
use std::sync::Arc;

pub async fn idempotency_records(h: &impl Harness) {
    let store = h.stores().idempotency;
    let scope = fixtures::org_id().to_string();
    let claim = 30_000;
    let ttl = 86_400_000;
    assert_eq!(store.begin(&scope, "k1", "fp-a", claim, T0).await.unwrap(), IdempotencyBegin::Started);
    assert_eq!(store.begin(&scope, "k1", "fp-a", claim, T0).await.unwrap(), IdempotencyBegin::InProgress);
    assert_eq!(store.begin(&scope, "k1", "fp-b", claim, T0).await.unwrap(), IdempotencyBegin::Mismatch);
    let response =
        StoredResponse { status: 201, content_type: "application/json".into(), body: br#"{"id":"agt_1"}"#.to_vec() };
    store.complete(&scope, "k1", &response, T0.plus_millis(ttl)).await.unwrap();
    // Completing extends the record from the claim's seconds to the replay window.
    assert_eq!(
        store.begin(&scope, "k1", "fp-a", claim, T0.plus_millis(claim + 1)).await.unwrap(),
        IdempotencyBegin::Completed(response.clone())
    );
    assert_eq!(
        store.begin(&scope, "k1", "fp-a", claim, T0.plus_secs(10)).await.unwrap(),
        IdempotencyBegin::Completed(response.clone())
    );
    assert_eq!(store.begin(&scope, "k1", "fp-b", claim, T0.plus_secs(10)).await.unwrap(), IdempotencyBegin::Mismatch);
    // Scopes are separate, and an expired record is gone.
    assert_eq!(store.begin("other-scope", "k1", "fp-b", claim, T0).await.unwrap(), IdempotencyBegin::Started);
    assert_eq!(
        store.begin(&scope, "k1", "fp-b", claim, T0.plus_millis(ttl + 1)).await.unwrap(),
        IdempotencyBegin::Started
    );
    // A failed request gives its key back.
    assert_eq!(store.begin(&scope, "k2", "fp", claim, T0).await.unwrap(), IdempotencyBegin::Started);
    store.abandon(&scope, "k2").await.unwrap();
    assert_eq!(store.begin(&scope, "k2", "fp", claim, T0).await.unwrap(), IdempotencyBegin::Started);
    // A claim nobody completes (the process died, the client went away) lapses in seconds.
    assert_eq!(store.begin(&scope, "k4", "fp", claim, T0).await.unwrap(), IdempotencyBegin::Started);
    assert_eq!(
        store.begin(&scope, "k4", "fp", claim, T0.plus_millis(claim - 1)).await.unwrap(),
        IdempotencyBegin::InProgress
    );
    assert_eq!(store.begin(&scope, "k4", "fp", claim, T0.plus_millis(claim)).await.unwrap(), IdempotencyBegin::Started);
    // Racing first requests: exactly one starts.
    let racers = futures::future::join_all((0..10).map(|_| store.begin(&scope, "k3", "fp", claim, T0))).await;
    assert_eq!(racers.iter().filter(|r| matches!(r, Ok(IdempotencyBegin::Started))).count(), 1, "{racers:?}");
}

pub async fn context_snapshots_expire(h: &impl Harness) {
    let contexts = h.stores().contexts;
    let call = fixtures::call_id();
    assert_eq!(contexts.get(&call, T0).await.unwrap(), None);
    let snapshot = "контекст разговора".as_bytes().to_vec();
    contexts.put(&call, &snapshot, T0.plus_secs(300)).await.unwrap();
    assert_eq!(contexts.get(&call, T0.plus_secs(299)).await.unwrap(), Some(snapshot.clone()));
    assert_eq!(contexts.get(&call, T0.plus_secs(300)).await.unwrap(), None, "expired at its expiry time");
    let newer = b"turn 2".to_vec();
    contexts.put(&call, &newer, T0.plus_secs(600)).await.unwrap();
    assert_eq!(contexts.get(&call, T0.plus_secs(400)).await.unwrap(), Some(newer));
    contexts.delete(&call).await.unwrap();
    contexts.delete(&call).await.unwrap();
    assert_eq!(contexts.get(&call, T0).await.unwrap(), None);
}

pub async fn counters_are_atomic_per_window(h: &impl Harness) {
    let counters = h.stores().counters;
    let key = format!("rl:{}", fixtures::key_id());
    let hits = futures::future::join_all((0..50).map(|_| {
        let (counters, key) = (Arc::clone(&counters), key.clone());
        async move { counters.hit(&key, 60_000, T0.plus_secs(1)).await.unwrap() }
    }))
    .await;
    let mut sorted = hits.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=50).collect::<Vec<u64>>(), "each hit sees a distinct count");
    assert_eq!(counters.hit(&key, 60_000, T0.plus_secs(59)).await.unwrap(), 51, "same window");
    assert_eq!(counters.count(&key, 60_000, T0.plus_secs(30)).await.unwrap(), 51, "count reads without adding");
    assert_eq!(counters.count(&key, 60_000, T0.plus_secs(30)).await.unwrap(), 51);
    assert_eq!(counters.hit(&key, 60_000, T0.plus_secs(60)).await.unwrap(), 1, "the next window starts at one");
    assert_eq!(counters.count(&key, 60_000, T0.plus_secs(61)).await.unwrap(), 1);
    let unseen = format!("rl:{}", fixtures::key_id());
    assert_eq!(counters.count(&unseen, 60_000, T0).await.unwrap(), 0, "no hits, no count");
    assert_eq!(counters.hit("another", 60_000, T0).await.unwrap(), 1);
}

pub async fn provider_credentials_per_org(h: &impl Harness) {
    use golos_ports::{PageRequest, PortError, ProviderCredential};
    let store = h.stores().credentials;
    let org = fixtures::org_id();
    let other = fixtures::org_id();
    let credential = |org: &golos_domain::OrgId, name: &str, fingerprint: &str, at| ProviderCredential {
        org_id: org.clone(),
        name: name.into(),
        envelope: vec![1, 2, 3, 0, 255],
        fingerprint: fingerprint.into(),
        created_at: at,
        updated_at: at,
    };
    assert_eq!(store.get(&org, "openai").await.unwrap(), None);
    assert!(store.put(&credential(&org, "openai", "aaaa", T0)).await.unwrap(), "created");
    assert!(!store.put(&credential(&org, "openai", "bbbb", T0.plus_secs(60))).await.unwrap(), "replaced");
    let stored = store.get(&org, "openai").await.unwrap().unwrap();
    assert_eq!((stored.fingerprint.as_str(), stored.created_at, stored.updated_at), ("bbbb", T0, T0.plus_secs(60)));
    assert_eq!(stored.envelope, vec![1, 2, 3, 0, 255]);
    // Another org's namespace is its own: the same name is another credential.
    assert_eq!(store.get(&other, "openai").await.unwrap(), None);
    assert!(store.put(&credential(&other, "openai", "cccc", T0)).await.unwrap());
    assert_eq!(store.get(&org, "openai").await.unwrap().unwrap().fingerprint, "bbbb");
    for name in ["deepgram", "anthropic", "elevenlabs"] {
        store.put(&credential(&org, name, "ffff", T0)).await.unwrap();
    }
    let first = store.list(&org, &PageRequest::first(2)).await.unwrap();
    let names: Vec<&str> = first.items.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["anthropic", "deepgram"]);
    let rest = store.list(&org, &PageRequest::after(first.next_cursor.unwrap(), 10)).await.unwrap();
    let names: Vec<&str> = rest.items.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["elevenlabs", "openai"]);
    assert_eq!(rest.next_cursor, None);
    store.delete(&org, "openai").await.unwrap();
    assert_eq!(store.get(&org, "openai").await.unwrap(), None);
    assert!(matches!(store.delete(&org, "openai").await, Err(PortError::NotFound { .. })));
    assert!(store.get(&other, "openai").await.unwrap().is_some(), "the other org's credential stays");
}

/// The outbox keeps one entry per id, lists what is older than a moment oldest first, and
/// forgets an entry once deleted.
pub async fn outbox_entries_are_written_once_and_listed_by_age(h: &impl Harness) {
    let outbox = h.stores().outbox;
    let tag = fixtures::call_id();
    let entry = |n: u32, at: Timestamp| golos_ports::OutboxEntry {
        id: format!("call.ended:{tag}_{n}"),
        body: format!("{{\"n\":{n}}}"),
        created_at: at,
    };
    assert!(outbox.put(&entry(2, T0.plus_secs(2))).await.unwrap());
    assert!(outbox.put(&entry(1, T0.plus_secs(1))).await.unwrap());
    let again = golos_ports::OutboxEntry { body: "{\"n\":\"changed\"}".to_owned(), ..entry(1, T0.plus_secs(9)) };
    assert!(!outbox.put(&again).await.unwrap(), "a second write of one fact keeps the first");
    let ours = |list: Vec<golos_ports::OutboxEntry>| {
        list.into_iter().filter(|e| e.id.contains(tag.as_str())).collect::<Vec<_>>()
    };
    let pending = ours(outbox.pending(T0.plus_secs(10), 100).await.unwrap());
    assert_eq!(pending, vec![entry(1, T0.plus_secs(1)), entry(2, T0.plus_secs(2))], "oldest first, first body kept");
    assert_eq!(ours(outbox.pending(T0.plus_secs(2), 100).await.unwrap()), vec![entry(1, T0.plus_secs(1))]);
    outbox.delete(&entry(1, T0).id).await.unwrap();
    outbox.delete(&entry(1, T0).id).await.unwrap();
    assert_eq!(ours(outbox.pending(T0.plus_secs(10), 100).await.unwrap()), vec![entry(2, T0.plus_secs(2))]);
}
