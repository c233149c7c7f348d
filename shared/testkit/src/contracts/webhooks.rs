//! Webhook endpoints: versioned documents per org, created once and under the org's limit
//! (held atomically), updated only over the version read.

use crate::fixtures::{self, T0};
use crate::Harness;
use golos_domain::events::WebhookEventType;
use golos_domain::OrgId;
use golos_ports::{PortError, SealedSigningSecret, WebhookEndpoint};

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
