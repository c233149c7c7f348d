//! The hold queue: callers waiting for a concurrency slot, per organisation, in the store, so
//! every worker of a pool sees one line.
//!
//! The store keeps who waits and in which order they first arrived; the rules of the line
//! (who goes first, who blocks whom, a caller's position) are the pure functions below, so
//! both adapters and every worker apply the same ones:
//!
//! - higher `priority` first, then earlier `arrival`;
//! - a waiter held on the org's limit blocks every agent of the org, one held on an agent's
//!   limit only that agent;
//! - a caller keeps its place while it keeps asking (`hold` refreshes `last_seen`; its
//!   `arrival` and `priority` never change), and one that stopped asking for `stale_after_ms`
//!   is forgotten.

use crate::Result;
use async_trait::async_trait;
use golos_domain::{AgentId, CallId, OrgId, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt::Debug;

/// Default priority of a call in the hold queue (higher is served first), and the highest:
/// priorities run 0..=9, as an agent's `priority` does.
pub use golos_domain::agent::{DEFAULT_PRIORITY, MAX_PRIORITY};

/// Which limit a held caller waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldReason {
    OrgLimit,
    AgentLimit,
}

impl HoldReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::OrgLimit => "org_limit",
            Self::AgentLimit => "agent_limit",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "org_limit" => Some(Self::OrgLimit),
            "agent_limit" => Some(Self::AgentLimit),
            _ => None,
        }
    }
}

/// A caller asking to be (or stay) in line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRequest {
    pub org_id: OrgId,
    pub agent_id: AgentId,
    pub call_id: CallId,
    /// 0..=9; kept from the first `hold` of the call.
    pub priority: u8,
    pub reason: HoldReason,
}

/// One caller in line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiter {
    pub org_id: OrgId,
    pub agent_id: AgentId,
    pub call_id: CallId,
    pub priority: u8,
    /// Assigned by the store at the call's first `hold`, in the order of those first writes
    /// (distinct and increasing within an org, whichever worker wrote), and never changed.
    pub arrival: u64,
    /// The limit the caller waited for when it last asked.
    pub reason: HoldReason,
    /// When the call first joined the line.
    pub since: Timestamp,
    /// When the call last asked.
    pub last_seen: Timestamp,
}

/// A place in line: orders higher priority first, then first come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rank {
    inverted_priority: u8,
    arrival: u64,
}

impl Rank {
    /// The rank a call would have as a newcomer: behind everyone of its priority.
    pub const fn newcomer(priority: u8) -> Self {
        Self { inverted_priority: MAX_PRIORITY.saturating_sub(priority), arrival: u64::MAX }
    }
}

impl Waiter {
    pub const fn rank(&self) -> Rank {
        // Out-of-range priorities count as the highest.
        Rank { inverted_priority: MAX_PRIORITY.saturating_sub(self.priority), arrival: self.arrival }
    }

    /// Whether this waiter must be served before a call to `agent`.
    pub fn blocks(&self, agent: &AgentId) -> bool {
        self.reason == HoldReason::OrgLimit || &self.agent_id == agent
    }

    /// Whether it stopped asking: not seen for `stale_after_ms` at `now`.
    pub const fn is_stale(&self, now: Timestamp, stale_after_ms: i64) -> bool {
        self.last_seen.as_millis().saturating_add(stale_after_ms) <= now.as_millis()
    }
}

/// The waiters of `line` a call to `agent` of rank `rank` must let go first.
pub fn ahead<'a>(
    line: &'a [Waiter],
    call: &'a CallId,
    agent: &'a AgentId,
    rank: Rank,
) -> impl Iterator<Item = &'a Waiter> + 'a {
    line.iter().filter(move |w| &w.call_id != call && w.rank() < rank && w.blocks(agent))
}

/// Whether waiters ahead of the call block it, and on which limit: the org's if any of them
/// waits for the org, else the agent's. `None`: it may try to take a slot. A call already in
/// `line` keeps its rank; a newcomer goes behind everyone of its priority.
pub fn blocked_by(line: &[Waiter], call: &CallId, agent: &AgentId, priority: u8) -> Option<HoldReason> {
    let rank = line.iter().find(|w| &w.call_id == call).map_or(Rank::newcomer(priority), Waiter::rank);
    let mut blocked = None;
    for waiter in ahead(line, call, agent, rank) {
        if waiter.reason == HoldReason::OrgLimit {
            return Some(HoldReason::OrgLimit);
        }
        blocked = Some(HoldReason::AgentLimit);
    }
    blocked
}

/// `waiter`'s 1-based position among the `line` (which may or may not include it): 1 is next.
pub fn position(line: &[Waiter], waiter: &Waiter) -> u32 {
    let ahead = ahead(line, &waiter.call_id, &waiter.agent_id, waiter.rank()).count();
    u32::try_from(ahead).unwrap_or(u32::MAX).saturating_add(1)
}

/// Sorts waiters into line order (the order of `Rank`).
pub fn sort_line(line: &mut [Waiter]) {
    line.sort_by(|a, b| a.rank().cmp(&b.rank()).then_with(|| a.call_id.as_str().cmp(b.call_id.as_str())));
}

/// The hold queue of every org, shared by every worker on the store.
#[async_trait]
pub trait HoldQueue: Send + Sync + Debug {
    /// The org's waiters in line order, without those not seen for `stale_after_ms` at
    /// `now`, which are forgotten (deleted, unless they asked again meanwhile).
    async fn line(&self, org: &OrgId, now: Timestamp, stale_after_ms: i64) -> Result<Vec<Waiter>>;
    /// Puts the call in line, or refreshes its place: the first time (or after it went
    /// stale) it is stored with a new `arrival`, by a conditional write, so two workers
    /// asking for one call at once store it once; after that only `last_seen` and `reason`
    /// change. `QuotaExceeded { quota: "hold_queue" }` when the org already has
    /// `max_waiters` callers in line and this call is not one of them. Returns the stored
    /// waiter.
    async fn hold(
        &self,
        request: &HoldRequest,
        now: Timestamp,
        stale_after_ms: i64,
        max_waiters: u32,
    ) -> Result<Waiter>;
    /// Forgets the call's place (admitted, hung up, refused). Idempotent: `false` when it
    /// was not in line.
    async fn leave(&self, org: &OrgId, call: &CallId) -> Result<bool>;
}

/// The quota name of a full hold queue in `PortError::QuotaExceeded`.
pub const HOLD_QUEUE_QUOTA: &str = "hold_queue";

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(call: &str, agent: &str, priority: u8, arrival: u64, reason: HoldReason) -> Waiter {
        Waiter {
            org_id: OrgId::parse("org_a").unwrap(),
            agent_id: AgentId::parse(agent).unwrap(),
            call_id: CallId::parse(call).unwrap(),
            priority,
            arrival,
            reason,
            since: Timestamp::from_millis(0),
            last_seen: Timestamp::from_millis(0),
        }
    }

    #[test]
    fn priority_then_arrival_and_who_blocks_whom() {
        let mut line = vec![
            waiter("call_b", "agt_x", 5, 2, HoldReason::AgentLimit),
            waiter("call_a", "agt_x", 5, 1, HoldReason::AgentLimit),
            waiter("call_c", "agt_y", 9, 3, HoldReason::OrgLimit),
        ];
        sort_line(&mut line);
        let order: Vec<&str> = line.iter().map(|w| w.call_id.as_str()).collect();
        assert_eq!(order, ["call_c", "call_a", "call_b"]);
        assert_eq!(line.iter().map(|w| position(&line, w)).collect::<Vec<_>>(), [1, 2, 3]);
        let (x, z) = (AgentId::parse("agt_x").unwrap(), AgentId::parse("agt_z").unwrap());
        let newcomer = CallId::parse("call_new").unwrap();
        assert_eq!(blocked_by(&line, &newcomer, &z, 5), Some(HoldReason::OrgLimit), "org waiters block every agent");
        assert_eq!(blocked_by(&line[1..], &newcomer, &z, 5), None, "an agent's line blocks only that agent");
        assert_eq!(blocked_by(&line[1..], &newcomer, &x, 5), Some(HoldReason::AgentLimit));
        assert_eq!(blocked_by(&line, &line[0].call_id, &line[0].agent_id, 0), None, "the head keeps its rank");
        assert_eq!(blocked_by(&line[1..], &newcomer, &x, 9), None, "higher priority goes ahead");
    }
}
