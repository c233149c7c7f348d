//! Phone numbers: the operator grants a number to one org, which then routes it.

use crate::fixtures::{self, T0};
use crate::Harness;
use golos_domain::PhoneNumber;
use golos_ports::{PageRequest, PortError};
use std::sync::Arc;

fn number(raw: &str) -> PhoneNumber {
    PhoneNumber::parse(raw).expect("test number")
}

pub async fn numbers_are_granted_to_one_org(h: &impl Harness) {
    let numbers = h.numbers();
    let (org, other) = (fixtures::org_id(), fixtures::org_id());
    let n = number("+7 916 123-45-67");
    let granted = numbers.grant(&org, &n, T0).await.unwrap();
    assert_eq!((&granted.number, &granted.org_id, &granted.agent_id, granted.granted_at), (&n, &org, &None, T0));
    assert_eq!(numbers.route(&n).await.unwrap(), None, "granted but not routed is not routable");
    // Granting again to the same org is idempotent and keeps the routing.
    let agent = fixtures::agent_id();
    numbers.assign(&org, &n, Some(&agent)).await.unwrap();
    let again = numbers.grant(&org, &n, T0.plus_secs(60)).await.unwrap();
    assert_eq!((again.agent_id.as_ref(), again.granted_at), (Some(&agent), T0), "a repeated grant changes nothing");
    // Another org cannot take it, nor route it, nor revoke it.
    assert!(matches!(numbers.grant(&other, &n, T0).await, Err(PortError::AlreadyExists { .. })));
    assert!(matches!(numbers.assign(&other, &n, Some(&fixtures::agent_id())).await, Err(PortError::NotFound { .. })));
    assert!(matches!(numbers.assign(&other, &n, None).await, Err(PortError::NotFound { .. })));
    assert!(matches!(numbers.revoke(&other, &n).await, Err(PortError::NotFound { .. })));
    let routed = numbers.route(&n).await.unwrap().expect("still routed");
    assert_eq!((routed.org_id, routed.agent_id), (org.clone(), Some(agent)));
}

pub async fn routing_requires_a_grant(h: &impl Harness) {
    let numbers = h.numbers();
    let org = fixtures::org_id();
    let n = number("+74951234567");
    let agent = fixtures::agent_id();
    assert!(matches!(numbers.assign(&org, &n, Some(&agent)).await, Err(PortError::NotFound { .. })));
    assert_eq!(numbers.route(&n).await.unwrap(), None);
    numbers.grant(&org, &n, T0).await.unwrap();
    let routed = numbers.assign(&org, &n, Some(&agent)).await.unwrap();
    assert_eq!(routed.agent_id.as_ref(), Some(&agent));
    assert_eq!(numbers.route(&n).await.unwrap(), Some(routed.clone()));
    // Re-routing moves it within the org.
    let moved_to = fixtures::agent_id();
    let moved = numbers.assign(&org, &n, Some(&moved_to)).await.unwrap();
    assert_eq!(numbers.route(&n).await.unwrap().and_then(|r| r.agent_id), Some(moved_to));
    // Un-routing keeps the grant.
    let unrouted = numbers.assign(&org, &n, None).await.unwrap();
    assert_eq!(unrouted.agent_id, None);
    assert_eq!(numbers.route(&n).await.unwrap(), None);
    assert_eq!(numbers.list(&org, &PageRequest::first(10)).await.unwrap().items, vec![unrouted]);
    assert_eq!(moved.granted_at, T0);
}

pub async fn revoking_removes_the_routing(h: &impl Harness) {
    let numbers = h.numbers();
    let (org, other) = (fixtures::org_id(), fixtures::org_id());
    let n = number("+74951234567");
    numbers.grant(&org, &n, T0).await.unwrap();
    numbers.assign(&org, &n, Some(&fixtures::agent_id())).await.unwrap();
    numbers.revoke(&org, &n).await.unwrap();
    assert_eq!(numbers.route(&n).await.unwrap(), None);
    assert!(numbers.list(&org, &PageRequest::first(10)).await.unwrap().items.is_empty());
    assert!(matches!(numbers.revoke(&org, &n).await, Err(PortError::NotFound { .. })));
    assert!(matches!(numbers.assign(&org, &n, None).await, Err(PortError::NotFound { .. })));
    // Once revoked, the number can be granted to another org.
    let regranted = numbers.grant(&other, &n, T0.plus_secs(1)).await.unwrap();
    assert_eq!((regranted.org_id, regranted.agent_id), (other, None));
}

pub async fn numbers_list_per_org_in_order(h: &impl Harness) {
    let numbers = h.numbers();
    let (org, other) = (fixtures::org_id(), fixtures::org_id());
    let (a, b) = (number("+74951234567"), number("+79161234567"));
    let agent = fixtures::agent_id();
    numbers.grant(&org, &b, T0).await.unwrap();
    let routed_b = numbers.assign(&org, &b, Some(&agent)).await.unwrap();
    let granted_a = numbers.grant(&org, &a, T0).await.unwrap();
    numbers.grant(&other, &number("+78121234567"), T0).await.unwrap();
    let first = numbers.list(&org, &PageRequest::first(1)).await.unwrap();
    assert_eq!(first.items, vec![granted_a], "ordered by number");
    let rest = numbers.list(&org, &PageRequest::after(first.next_cursor.expect("a second page"), 1)).await.unwrap();
    assert_eq!((rest.items, rest.next_cursor), (vec![routed_b], None));
}

pub async fn concurrent_grants_of_one_number_have_one_winner(h: &impl Harness) {
    let numbers = h.numbers();
    let n = number("+74951234567");
    let orgs: Vec<_> = (0..8).map(|_| fixtures::org_id()).collect();
    let results = futures::future::join_all(orgs.iter().map(|org| {
        let (numbers, org, n) = (Arc::clone(&numbers), org.clone(), n.clone());
        async move { numbers.grant(&org, &n, T0).await }
    }))
    .await;
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one org wins the number: {results:?}");
    assert!(
        results.iter().filter(|r| r.is_err()).all(|r| matches!(r, Err(PortError::AlreadyExists { .. }))),
        "the losers learn it is taken: {results:?}"
    );
    let winner = winners[0].org_id.clone();
    for org in orgs.iter().filter(|o| **o != winner) {
        assert!(numbers.list(org, &PageRequest::first(10)).await.unwrap().items.is_empty());
    }
    let agent = fixtures::agent_id();
    numbers.assign(&winner, &n, Some(&agent)).await.unwrap();
    assert_eq!(numbers.route(&n).await.unwrap().map(|r| r.org_id), Some(winner));
}
