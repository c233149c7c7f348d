//! The hold queue: one line per org for every worker on the store.

use crate::fixtures::{self, T0};
use crate::Harness;
use golos_domain::{AgentId, CallId, OrgId};
use golos_ports::hold::{blocked_by, position};
use golos_ports::{HoldReason, HoldRequest, PortError, Waiter};
use std::sync::Arc;

const STALE_MS: i64 = 15_000;
const CAP: u32 = 100;

fn request(org: &OrgId, agent: &AgentId, priority: u8, reason: HoldReason) -> HoldRequest {
    HoldRequest { org_id: org.clone(), agent_id: agent.clone(), call_id: fixtures::call_id(), priority, reason }
}

fn calls(line: &[Waiter]) -> Vec<&CallId> {
    line.iter().map(|w| &w.call_id).collect()
}

/// Higher priority first, then arrival; a refresh keeps the place (and the first priority).
pub async fn hold_orders_by_priority_then_arrival(h: &impl Harness) {
    let hold = h.stores().hold;
    let (org, agent) = (fixtures::org_id(), fixtures::agent_id());
    let first = request(&org, &agent, 5, HoldReason::AgentLimit);
    let second = request(&org, &agent, 5, HoldReason::AgentLimit);
    let urgent = request(&org, &agent, 9, HoldReason::AgentLimit);
    let low = request(&org, &agent, 0, HoldReason::AgentLimit);
    let mut joined = Vec::new();
    for (i, r) in [&first, &second, &urgent, &low].into_iter().enumerate() {
        joined.push(hold.hold(r, T0.plus_millis(i as i64), STALE_MS, CAP).await.unwrap());
    }
    assert!(joined.windows(2).all(|w| w[0].arrival < w[1].arrival), "arrivals follow first writes: {joined:?}");
    assert_eq!((joined[0].since, joined[0].last_seen, joined[0].priority), (T0, T0, 5));
    let line = hold.line(&org, T0.plus_secs(1), STALE_MS).await.unwrap();
    assert_eq!(calls(&line), [&urgent.call_id, &first.call_id, &second.call_id, &low.call_id]);
    assert_eq!(line.iter().map(|w| position(&line, w)).collect::<Vec<_>>(), [1, 2, 3, 4]);

    // Asking again, even with another priority or limit, never moves a caller back or forth.
    let mut again = first.clone();
    again.priority = 0;
    again.reason = HoldReason::OrgLimit;
    let refreshed = hold.hold(&again, T0.plus_secs(2), STALE_MS, CAP).await.unwrap();
    assert_eq!((refreshed.arrival, refreshed.priority, refreshed.since), (joined[0].arrival, 5, T0));
    assert_eq!((refreshed.last_seen, refreshed.reason), (T0.plus_secs(2), HoldReason::OrgLimit));
    let line = hold.line(&org, T0.plus_secs(2), STALE_MS).await.unwrap();
    assert_eq!(calls(&line), [&urgent.call_id, &first.call_id, &second.call_id, &low.call_id]);
    assert_eq!(line[1], refreshed);
    assert!(hold.line(&fixtures::org_id(), T0, STALE_MS).await.unwrap().is_empty(), "lines are per org");
}

/// A waiter that stops asking is forgotten; one that keeps asking keeps its place; a
/// forgotten caller who asks again goes to the back.
pub async fn hold_forgets_waiters_that_stop_asking(h: &impl Harness) {
    let hold = h.stores().hold;
    let (org, agent) = (fixtures::org_id(), fixtures::agent_id());
    let gone = request(&org, &agent, 5, HoldReason::OrgLimit);
    let asking = request(&org, &agent, 5, HoldReason::OrgLimit);
    let old_gone = hold.hold(&gone, T0, STALE_MS, CAP).await.unwrap();
    hold.hold(&asking, T0.plus_secs(1), STALE_MS, CAP).await.unwrap();
    hold.hold(&asking, T0.plus_secs(10), STALE_MS, CAP).await.unwrap();
    let line = hold.line(&org, T0.plus_millis(STALE_MS - 1), STALE_MS).await.unwrap();
    assert_eq!(calls(&line), [&gone.call_id, &asking.call_id], "not stale yet");
    let line = hold.line(&org, T0.plus_millis(STALE_MS), STALE_MS).await.unwrap();
    assert_eq!(calls(&line), [&asking.call_id], "stale after stale_after_ms without asking");
    let back = hold.hold(&gone, T0.plus_secs(20), STALE_MS, CAP).await.unwrap();
    assert!(back.arrival > old_gone.arrival && back.since == T0.plus_secs(20), "{back:?}");
    let line = hold.line(&org, T0.plus_secs(20), STALE_MS).await.unwrap();
    assert_eq!(calls(&line), [&asking.call_id, &gone.call_id], "a forgotten caller goes to the back");
    // A stale waiter not yet swept out by `line` is not revived by asking again either.
    let late = request(&org, &agent, 9, HoldReason::OrgLimit);
    let first_late = hold.hold(&late, T0.plus_secs(21), STALE_MS, CAP).await.unwrap();
    let revived = hold.hold(&late, T0.plus_secs(40), STALE_MS, CAP).await.unwrap();
    assert!(revived.arrival > first_late.arrival && revived.since == T0.plus_secs(40), "{revived:?}");
    assert!(hold.leave(&org, &late.call_id).await.unwrap());
    assert!(!hold.leave(&org, &late.call_id).await.unwrap(), "leaving is idempotent");
    assert!(!hold.leave(&org, &fixtures::call_id()).await.unwrap());
}

/// One waiting on the org's limit blocks every agent of the org; one waiting on an agent's
/// limit blocks only that agent; nobody blocks a caller ahead of them.
pub async fn hold_blocks_by_org_and_agent_limits(h: &impl Harness) {
    let hold = h.stores().hold;
    let (org, x, y) = (fixtures::org_id(), fixtures::agent_id(), fixtures::agent_id());
    let on_x = request(&org, &x, 5, HoldReason::AgentLimit);
    hold.hold(&on_x, T0, STALE_MS, CAP).await.unwrap();
    let line = hold.line(&org, T0, STALE_MS).await.unwrap();
    let newcomer = fixtures::call_id();
    assert_eq!(blocked_by(&line, &newcomer, &x, 5), Some(HoldReason::AgentLimit));
    assert_eq!(blocked_by(&line, &newcomer, &y, 5), None, "an agent's line does not hold up another agent");
    assert_eq!(blocked_by(&line, &on_x.call_id, &x, 5), None, "the head of the line may take a slot");
    assert_eq!(blocked_by(&line, &newcomer, &x, 9), None, "a higher priority goes ahead");

    let on_org = request(&org, &y, 5, HoldReason::OrgLimit);
    let joined = hold.hold(&on_org, T0.plus_secs(1), STALE_MS, CAP).await.unwrap();
    let line = hold.line(&org, T0.plus_secs(1), STALE_MS).await.unwrap();
    assert_eq!(blocked_by(&line, &newcomer, &x, 5), Some(HoldReason::OrgLimit), "the org's line blocks every agent");
    assert_eq!(blocked_by(&line, &newcomer, &fixtures::agent_id(), 5), Some(HoldReason::OrgLimit));
    assert_eq!(blocked_by(&line, &on_org.call_id, &y, 5), None, "the x waiter is not in y's way");
    assert_eq!(position(&line, &joined), 1);
    assert_eq!(blocked_by(&line, &newcomer, &y, 5), Some(HoldReason::OrgLimit));
    assert_eq!(line.iter().map(|w| position(&line, w)).collect::<Vec<_>>(), [1, 1]);
}

/// At most `max_waiters` per org: beyond that a newcomer is refused, a waiter still refreshes.
pub async fn hold_queue_is_bounded_per_org(h: &impl Harness) {
    let hold = h.stores().hold;
    let (org, agent) = (fixtures::org_id(), fixtures::agent_id());
    let waiting: Vec<HoldRequest> = (0..3).map(|_| request(&org, &agent, 5, HoldReason::OrgLimit)).collect();
    for r in &waiting {
        hold.hold(r, T0, STALE_MS, 3).await.unwrap();
    }
    let refused = hold.hold(&request(&org, &agent, 9, HoldReason::OrgLimit), T0, STALE_MS, 3).await;
    assert!(matches!(refused, Err(PortError::QuotaExceeded { quota: "hold_queue", limit: 3 })), "{refused:?}");
    hold.hold(&waiting[0], T0.plus_secs(1), STALE_MS, 3).await.expect("a waiter refreshes in a full line");
    hold.hold(&request(&fixtures::org_id(), &agent, 5, HoldReason::OrgLimit), T0, STALE_MS, 3)
        .await
        .expect("another org has its own line");
    assert!(hold.leave(&org, &waiting[1].call_id).await.unwrap());
    hold.hold(&request(&org, &agent, 5, HoldReason::OrgLimit), T0, STALE_MS, 3).await.expect("room again");
    // Forgotten waiters make room too.
    let later = T0.plus_millis(STALE_MS + 500);
    hold.hold(&waiting[0], later, STALE_MS, 3).await.unwrap();
    hold.hold(&request(&org, &agent, 5, HoldReason::OrgLimit), later, STALE_MS, 3).await.expect("stale ones left");
    assert_eq!(hold.line(&org, later, STALE_MS).await.unwrap().len(), 2);
    let zero = hold.hold(&request(&org, &agent, 5, HoldReason::OrgLimit), later, STALE_MS, 0).await;
    assert!(matches!(zero, Err(PortError::QuotaExceeded { .. })), "{zero:?}");
}

/// Callers joining at once through many workers get distinct places, each stored once, and
/// the cap holds under the race.
pub async fn concurrent_holds_get_distinct_places(h: &impl Harness) {
    let hold = h.stores().hold;
    let (org, agent) = (fixtures::org_id(), fixtures::agent_id());
    let requests: Vec<HoldRequest> = (0..12).map(|_| request(&org, &agent, 5, HoldReason::OrgLimit)).collect();
    // Every caller asks twice at once (two workers), and there is room for 10 of 12.
    let outcomes = futures::future::join_all(requests.iter().chain(requests.iter()).map(|r| {
        let (hold, r) = (Arc::clone(&hold), r.clone());
        tokio::spawn(async move { hold.hold(&r, T0, STALE_MS, 10).await })
    }))
    .await;
    let mut arrivals = Vec::new();
    for outcome in outcomes {
        match outcome.expect("task") {
            Ok(waiter) => arrivals.push((waiter.call_id, waiter.arrival)),
            Err(PortError::QuotaExceeded { .. }) => {}
            Err(other) => panic!("hold: {other}"),
        }
    }
    arrivals.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    arrivals.dedup();
    let line = hold.line(&org, T0, STALE_MS).await.unwrap();
    assert_eq!(line.len(), 10, "exactly the cap joined");
    let mut distinct: Vec<u64> = line.iter().map(|w| w.arrival).collect();
    distinct.dedup();
    assert_eq!(distinct.len(), 10, "distinct arrivals: {line:?}");
    for waiter in &line {
        assert!(arrivals.contains(&(waiter.call_id.clone(), waiter.arrival)), "both askers saw one stored place");
    }
    assert_eq!(arrivals.len(), 10, "each caller was stored once: {arrivals:?}");
}
