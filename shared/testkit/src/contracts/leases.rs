//! Call admission leases.

use crate::fixtures::{self, T0};
use crate::Harness;
use golos_domain::{AgentId, OrgId};
use golos_ports::{AcquireOutcome, LeaseRequest, PortError, ReleaseOutcome};
use std::sync::Arc;

fn request(org: &OrgId, agent: &AgentId, org_limit: u32, agent_limit: u32) -> LeaseRequest {
    LeaseRequest {
        org_id: org.clone(),
        agent_id: agent.clone(),
        call_id: fixtures::call_id(),
        org_limit,
        agent_limit,
        ttl_ms: 30_000,
    }
}

/// 300 calls race for an org limit of 100 over 30 agents: exactly 100 are granted.
pub async fn concurrent_acquires_grant_exactly_the_limit(h: &impl Harness) {
    let leases = h.stores().leases;
    let org = fixtures::org_id();
    let agents: Vec<AgentId> = (0..30).map(|_| fixtures::agent_id()).collect();
    let outcomes = futures::future::join_all((0..300).map(|i| {
        let leases = Arc::clone(&leases);
        let req = request(&org, &agents[i % agents.len()], 100, 10);
        tokio::spawn(async move { leases.acquire(&req, T0).await })
    }))
    .await;
    let outcomes: Vec<AcquireOutcome> = outcomes.into_iter().map(|r| r.expect("task").expect("acquire")).collect();
    let granted = outcomes.iter().filter(|o| matches!(o, AcquireOutcome::Granted(_))).count();
    assert_eq!(granted, 100, "exactly the org limit is granted");
    assert!(outcomes
        .iter()
        .all(|o| matches!(o, AcquireOutcome::Granted(_) | AcquireOutcome::OrgLimitReached { limit: 100 })));
    assert_eq!(leases.active(&org, None).await.unwrap(), 100);
    let per_agent: u32 = futures::future::join_all(agents.iter().map(|a| leases.active(&org, Some(a))))
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .sum();
    assert_eq!(per_agent, 100, "agent counters agree with the org counter");
}

pub async fn agent_limit_and_idempotent_acquire(h: &impl Harness) {
    let leases = h.stores().leases;
    let (org, agent, other_agent) = (fixtures::org_id(), fixtures::agent_id(), fixtures::agent_id());
    let first = request(&org, &agent, 100, 2);
    let AcquireOutcome::Granted(lease) = leases.acquire(&first, T0).await.unwrap() else { panic!("first acquire") };
    assert_eq!((lease.acquired_at, lease.expires_at, &lease.call_id), (T0, T0.plus_millis(30_000), &first.call_id));
    // A retried acquire of the same call takes no second slot.
    assert_eq!(leases.acquire(&first, T0.plus_secs(1)).await.unwrap(), AcquireOutcome::AlreadyHeld(lease.clone()));
    assert!(matches!(leases.acquire(&request(&org, &agent, 100, 2), T0).await.unwrap(), AcquireOutcome::Granted(_)));
    assert_eq!(
        leases.acquire(&request(&org, &agent, 100, 2), T0).await.unwrap(),
        AcquireOutcome::AgentLimitReached { limit: 2 }
    );
    // The refused call took nothing: the org still has room for another agent.
    assert_eq!(leases.active(&org, None).await.unwrap(), 2);
    assert!(matches!(
        leases.acquire(&request(&org, &other_agent, 3, 2), T0).await.unwrap(),
        AcquireOutcome::Granted(_)
    ));
    assert_eq!(
        leases.acquire(&request(&org, &other_agent, 3, 2), T0).await.unwrap(),
        AcquireOutcome::OrgLimitReached { limit: 3 }
    );
    assert_eq!(leases.active(&org, Some(&agent)).await.unwrap(), 2);
    assert_eq!(leases.active(&org, Some(&other_agent)).await.unwrap(), 1);
}

pub async fn release_is_idempotent(h: &impl Harness) {
    let leases = h.stores().leases;
    let (org, agent) = (fixtures::org_id(), fixtures::agent_id());
    let req = request(&org, &agent, 1, 1);
    let AcquireOutcome::Granted(lease) = leases.acquire(&req, T0).await.unwrap() else { panic!("acquire") };
    let releases = futures::future::join_all((0..5).map(|_| leases.release(&org, &req.call_id))).await;
    let released = releases.iter().filter(|r| matches!(r, Ok(ReleaseOutcome::Released(_)))).count();
    assert_eq!(released, 1, "{releases:?}");
    assert!(releases.iter().all(
        |r| matches!(r, Ok(ReleaseOutcome::Released(l)) if *l == lease) || matches!(r, Ok(ReleaseOutcome::NotHeld))
    ));
    assert_eq!(leases.active(&org, None).await.unwrap(), 0);
    assert_eq!(leases.active(&org, Some(&agent)).await.unwrap(), 0);
    assert!(matches!(leases.heartbeat(&org, &req.call_id, 30_000, T0).await, Err(PortError::NotFound { .. })));
    assert_eq!(leases.release(&org, &fixtures::call_id()).await.unwrap(), ReleaseOutcome::NotHeld);
    // The slot is free again.
    assert!(matches!(leases.acquire(&request(&org, &agent, 1, 1), T0).await.unwrap(), AcquireOutcome::Granted(_)));
}

pub async fn expired_leases_are_swept_and_slots_reused(h: &impl Harness) {
    let leases = h.stores().leases;
    let (org, agent) = (fixtures::org_id(), fixtures::agent_id());
    let stale = request(&org, &agent, 2, 2);
    let alive = request(&org, &agent, 2, 2);
    leases.acquire(&stale, T0).await.unwrap();
    leases.acquire(&alive, T0).await.unwrap();
    // Only the live call's worker keeps heartbeating.
    let beat = leases.heartbeat(&org, &alive.call_id, 30_000, T0.plus_secs(20)).await.unwrap();
    assert_eq!(beat.expires_at, T0.plus_secs(50));
    assert_eq!(
        leases.acquire(&request(&org, &agent, 2, 2), T0.plus_secs(31)).await.unwrap(),
        AcquireOutcome::AgentLimitReached { limit: 2 },
        "an expired lease holds its slot until swept"
    );
    let of_org = |list: Vec<golos_ports::Lease>| {
        list.into_iter().filter(|l| l.org_id == org).map(|l| l.call_id).collect::<Vec<_>>()
    };
    assert!(of_org(leases.expired(T0.plus_secs(29), 100).await.unwrap()).is_empty(), "nothing expired yet");
    let expired = of_org(leases.expired(T0.plus_secs(31), 100).await.unwrap());
    assert_eq!(expired, vec![stale.call_id.clone()]);
    assert_eq!(
        of_org(leases.expired(T0.plus_secs(31), 100).await.unwrap()),
        expired,
        "listing is not releasing: the sweeper bills the lease first"
    );
    let mut listed = of_org(leases.list(&org).await.unwrap());
    listed.sort();
    let mut both = vec![stale.call_id.clone(), alive.call_id.clone()];
    both.sort();
    assert_eq!(listed, both, "the org's live calls, expired or not");
    assert!(matches!(leases.release(&org, &stale.call_id).await.unwrap(), ReleaseOutcome::Released(_)));
    assert!(of_org(leases.expired(T0.plus_secs(31), 100).await.unwrap()).is_empty(), "released once");
    assert_eq!(leases.active(&org, None).await.unwrap(), 1);
    assert!(matches!(
        leases.acquire(&request(&org, &agent, 2, 2), T0.plus_secs(31)).await.unwrap(),
        AcquireOutcome::Granted(_)
    ));
    assert_eq!(
        leases.release(&org, &stale.call_id).await.unwrap(),
        ReleaseOutcome::NotHeld,
        "a released lease is gone"
    );
}
