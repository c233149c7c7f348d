//! Webhook endpoints: versioned documents per org, created once and under the org's limit
//! (held atomically), updated only over the version read. The deliveries log: attempts put
//! by id, listed newest first in keyset pages until they expire, failures counted with a cap.

use crate::fixtures::{self, T0};
use crate::Harness;
use golos_domain::events::WebhookEventType;
use golos_domain::{OrgId, Timestamp, WebhookEndpointId};
use golos_ports::{
    DeliveryOutcome, PageRequest, PortError, SealedSigningSecret, WebhookDelivery, WebhookDeliveryStore,
    WebhookEndpoint,
};
use std::sync::Arc;

fn endpoint(org: &OrgId) -> WebhookEndpoint {
    WebhookEndpoint {
        id: fixtures::webhook_endpoint_id(),
        org_id: org.clone(),
        url: "https://crm.example.ru/golos".into(),
        event_types: vec![WebhookEventType::CallEnded],
        description: String::new(),
        enabled: true,
        secret: SealedSigningSecret {
            envelope: vec![1, 2, 3],
            fingerprint: "00112233aabbccdd".into(),
            expires_at: None,
        },
        previous_secret: None,
        version: 1,
        created_at: T0,
        updated_at: T0,
    }
}

pub async fn webhook_endpoints_are_versioned_documents_per_org(h: &impl Harness) {
    let store = h.stores().webhook_endpoints;
    let (org, other_org) = (fixtures::org_id(), fixtures::org_id());
    let (a, b) = (endpoint(&org), endpoint(&org));
    store.create(&a, 20).await.unwrap();
    store.create(&b, 20).await.unwrap();
    assert!(matches!(store.create(&a, 20).await, Err(PortError::AlreadyExists { .. })), "an id is taken once");
    assert_eq!(store.get(&org, &a.id).await.unwrap().as_ref(), Some(&a));
    assert_eq!(store.get(&other_org, &a.id).await.unwrap(), None, "another org does not see it");

    let rotated = WebhookEndpoint {
        url: "https://crm.example.ru/v2".into(),
        event_types: vec![WebhookEventType::CallStarted, WebhookEventType::EndpointDisabled],
        previous_secret: Some(SealedSigningSecret { expires_at: Some(T0.plus_millis(86_400_000)), ..a.secret.clone() }),
        ..a.clone()
    };
    assert_eq!(store.update(&rotated).await.unwrap(), 2);
    let stored = store.get(&org, &a.id).await.unwrap().expect("still there");
    assert_eq!(stored, WebhookEndpoint { version: 2, ..rotated }, "every field is kept");
    assert!(matches!(store.update(&a).await, Err(PortError::Conflict { expected: 1, actual: 2 })));
    // Of two updates from the same version exactly one wins.
    let (x, y) =
        (WebhookEndpoint { enabled: false, ..stored.clone() }, WebhookEndpoint { description: "y".into(), ..stored });
    let (rx, ry) = tokio::join!(store.update(&x), store.update(&y));
    assert_eq!([rx.is_ok(), ry.is_ok()].iter().filter(|ok| **ok).count(), 1, "{rx:?} {ry:?}");

    let mut expected = vec![a.id.clone(), b.id.clone()];
    expected.sort();
    let listed: Vec<_> = store.list(&org).await.unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(listed, expected, "the org's endpoints, ordered by id");
    assert!(store.list(&other_org).await.unwrap().is_empty());

    assert!(matches!(store.delete(&other_org, &a.id).await, Err(PortError::NotFound { .. })), "not across orgs");
    store.delete(&org, &a.id).await.unwrap();
    assert_eq!(store.get(&org, &a.id).await.unwrap(), None);
    assert!(matches!(store.delete(&org, &a.id).await, Err(PortError::NotFound { .. })));
    assert!(matches!(store.update(&a).await, Err(PortError::NotFound { .. })));
}

pub async fn webhook_endpoint_limit_is_atomic_and_deletes_free_slots(h: &impl Harness) {
    let store = h.stores().webhook_endpoints;
    let org = fixtures::org_id();
    let limit = 3;
    let attempts: Vec<_> = (0..6).map(|_| endpoint(&org)).collect();
    let results = futures::future::join_all(attempts.iter().map(|e| store.create(e, limit))).await;
    let created = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(created, 3, "exactly the limit wins: {results:?}");
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| matches!(e, PortError::QuotaExceeded { quota: "max_webhook_endpoints", limit: 3 })));
    let held = store.list(&org).await.unwrap();
    assert_eq!(held.len(), 3);
    // A deleted endpoint frees its slot; another org has its own.
    store.delete(&org, &held[0].id).await.unwrap();
    store.create(&endpoint(&org), limit).await.unwrap();
    assert!(matches!(store.create(&endpoint(&org), limit).await, Err(PortError::QuotaExceeded { .. })));
    store.create(&endpoint(&fixtures::org_id()), limit).await.unwrap();
    assert!(matches!(store.create(&endpoint(&org), 0).await, Err(PortError::QuotaExceeded { limit: 0, .. })));
}

const DAY_MS: i64 = 86_400_000;

/// An attempt at `T0 + at_ms`, kept for 30 days.
fn delivery(org: &OrgId, endpoint: &WebhookEndpointId, at_ms: i64, outcome: DeliveryOutcome) -> WebhookDelivery {
    let created_at = T0.plus_millis(at_ms);
    WebhookDelivery {
        id: fixtures::webhook_delivery_id(),
        org_id: org.clone(),
        endpoint_id: endpoint.clone(),
        event_id: format!("evt_{at_ms}"),
        event_type: WebhookEventType::CallEnded,
        attempt: 1,
        outcome,
        status_code: match outcome {
            DeliveryOutcome::Delivered => Some(200),
            DeliveryOutcome::Retrying => Some(503),
            DeliveryOutcome::DeadLettered => Some(404),
            DeliveryOutcome::Skipped => None,
            DeliveryOutcome::Failed => Some(500),
        },
        latency_ms: 42,
        error: (outcome == DeliveryOutcome::Retrying).then(|| "status 503".to_owned()),
        next_attempt_at: (outcome == DeliveryOutcome::Retrying).then(|| created_at.plus_secs(2)),
        created_at,
        expires_at: created_at.plus_millis(30 * DAY_MS),
    }
}

/// Every page of the endpoint's log at `now`, `limit` at a time.
async fn all_pages(
    store: &Arc<dyn WebhookDeliveryStore>,
    org: &OrgId,
    endpoint: &WebhookEndpointId,
    limit: u32,
    now: Timestamp,
) -> Vec<Vec<WebhookDelivery>> {
    let mut pages = Vec::new();
    let mut request = PageRequest::first(limit);
    loop {
        let page = store.list(org, endpoint, &request, now).await.unwrap();
        pages.push(page.items);
        match page.next_cursor {
            Some(cursor) => request = PageRequest::after(cursor, limit),
            None => return pages,
        }
        assert!(pages.len() < 100, "paging does not end");
    }
}

pub async fn webhook_deliveries_are_listed_newest_first_in_pages(h: &impl Harness) {
    let store = h.stores().webhook_deliveries;
    let (org, other_org) = (fixtures::org_id(), fixtures::org_id());
    let (endpoint, other_endpoint) = (fixtures::webhook_endpoint_id(), fixtures::webhook_endpoint_id());
    // Seven attempts, two of them in the same millisecond (ordered by id then).
    let mut log: Vec<_> = [0, 1_000, 2_000, 2_000, 3_000, 60_000, 3_600_000]
        .iter()
        .map(|at| delivery(&org, &endpoint, *at, DeliveryOutcome::Delivered))
        .collect();
    store.record(&log[..4]).await.unwrap();
    store.record(&log[4..]).await.unwrap();
    store.record(&[delivery(&org, &other_endpoint, 500, DeliveryOutcome::Delivered)]).await.unwrap();
    store.record(&[]).await.unwrap();
    log.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    let now = T0.plus_millis(DAY_MS);

    let whole = store.list(&org, &endpoint, &PageRequest::first(100), now).await.unwrap();
    assert_eq!(whole.items, log, "newest first, every field kept");
    assert_eq!(whole.next_cursor, None);
    let pages = all_pages(&store, &org, &endpoint, 3, now).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
    assert_eq!(pages.concat(), log, "pages continue where the last one ended");
    let single = all_pages(&store, &org, &endpoint, 0, now).await;
    assert_eq!(single.len(), 7, "a limit of 0 is clamped to 1");
    assert_eq!(single.concat(), log);
    let big = store.list(&org, &endpoint, &PageRequest::first(10_000), now).await.unwrap();
    assert_eq!(big.items.len(), 7, "a big limit is clamped, not refused");

    assert!(
        store.list(&other_org, &endpoint, &PageRequest::first(100), now).await.unwrap().items.is_empty(),
        "not across orgs"
    );
    assert_eq!(store.list(&org, &other_endpoint, &PageRequest::first(100), now).await.unwrap().items.len(), 1);
    assert!(matches!(
        store.list(&org, &endpoint, &PageRequest::after("not a cursor", 3), now).await,
        Err(PortError::BadCursor { .. })
    ));
}

pub async fn webhook_deliveries_are_put_by_id_and_expire(h: &impl Harness) {
    let store = h.stores().webhook_deliveries;
    let (org, endpoint) = (fixtures::org_id(), fixtures::webhook_endpoint_id());
    let first = delivery(&org, &endpoint, 0, DeliveryOutcome::Retrying);
    let settled = WebhookDelivery { outcome: DeliveryOutcome::DeadLettered, status_code: Some(404), ..first.clone() };
    // Twice in one slice, the last one wins; again in another: still one attempt.
    store.record(&[first.clone(), settled.clone()]).await.unwrap();
    store.record(std::slice::from_ref(&settled)).await.unwrap();
    let now = T0.plus_millis(1_000);
    let listed = store.list(&org, &endpoint, &PageRequest::first(10), now).await.unwrap().items;
    assert_eq!(listed, std::slice::from_ref(&settled), "recording one twice keeps one");
    assert_eq!(store.count_failures_since(&org, &endpoint, T0, 10).await.unwrap(), 1);

    let short = WebhookDelivery {
        expires_at: T0.plus_millis(DAY_MS),
        ..delivery(&org, &endpoint, 10, DeliveryOutcome::Delivered)
    };
    store.record(std::slice::from_ref(&short)).await.unwrap();
    let at = |ms: i64| {
        let store = Arc::clone(&store);
        let (org, endpoint) = (org.clone(), endpoint.clone());
        async move {
            let page = store.list(&org, &endpoint, &PageRequest::first(10), T0.plus_millis(ms)).await.unwrap();
            page.items.into_iter().map(|d| d.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(at(DAY_MS - 1).await, [short.id.clone(), settled.id.clone()]);
    assert_eq!(at(DAY_MS).await, std::slice::from_ref(&settled.id), "gone once expired (expires_at <= now)");
    assert_eq!(at(30 * DAY_MS).await, Vec::<golos_domain::WebhookDeliveryId>::new(), "the log forgets everything");

    // Later attempts still record and list after older ones expired.
    let later = WebhookDelivery {
        expires_at: T0.plus_millis(60 * DAY_MS),
        ..delivery(&org, &endpoint, 31 * DAY_MS, DeliveryOutcome::Delivered)
    };
    store.record(std::slice::from_ref(&later)).await.unwrap();
    assert_eq!(at(31 * DAY_MS).await, [later.id]);
}

pub async fn webhook_delivery_failures_are_counted_since_with_a_cap(h: &impl Harness) {
    let store = h.stores().webhook_deliveries;
    let (org, other_org, endpoint) = (fixtures::org_id(), fixtures::org_id(), fixtures::webhook_endpoint_id());
    let mut log = vec![
        delivery(&org, &endpoint, 0, DeliveryOutcome::Retrying),
        delivery(&org, &endpoint, 1_000, DeliveryOutcome::Delivered),
        delivery(&org, &endpoint, 2_000, DeliveryOutcome::Skipped),
        delivery(&org, &endpoint, 2_500, DeliveryOutcome::Failed),
        delivery(&org, &endpoint, 3_000, DeliveryOutcome::DeadLettered),
    ];
    log.extend((0..12).map(|i| delivery(&org, &endpoint, 10_000 + i * 100, DeliveryOutcome::Retrying)));
    // Another org's attempts under the same endpoint id count for neither.
    log.push(delivery(&other_org, &endpoint, 20_000, DeliveryOutcome::Retrying));
    store.record(&log).await.unwrap();

    let count = |since_ms: i64, cap: u32| {
        let store = Arc::clone(&store);
        let (org, endpoint) = (org.clone(), endpoint.clone());
        async move { store.count_failures_since(&org, &endpoint, T0.plus_millis(since_ms), cap).await.unwrap() }
    };
    assert_eq!(
        count(0, 100).await,
        14,
        "retrying and dead-lettered count; delivered, skipped and a failed test do not"
    );
    assert_eq!(count(0, 10).await, 10, "counting stops at the cap");
    assert_eq!(count(0, 0).await, 0);
    assert_eq!(count(3_000, 100).await, 13, "at or after since");
    assert_eq!(count(3_001, 100).await, 12);
    assert_eq!(count(10_550, 100).await, 6);
    assert_eq!(count(20_001, 100).await, 0);
    assert_eq!(store.count_failures_since(&other_org, &endpoint, T0, 100).await.unwrap(), 1);
    assert_eq!(store.count_failures_since(&org, &fixtures::webhook_endpoint_id(), T0, 100).await.unwrap(), 0);
}
