//! Admission (issue #4): before a call is answered it takes a lease, atomically against the
//! org's `max_concurrent_calls` and the agent's limit, after checking that the org has money
//! and minutes left. Over a concurrency limit the caller is held in the org's hold queue with
//! a position instead of being refused; a held call asks again (the media pool does so every
//! second while it plays "please hold") and keeps its place. Heartbeats extend a lease and
//! re-check the org's spending, so live calls end when money or minutes run out (issue #15);
//! the sweeper ends and bills the calls of workers that stopped heartbeating, then frees
//! their slots; release is idempotent.
//!
//! The hold queue is in the store (`HoldQueue`), so every worker of a pool sees one line:
//! higher priority first, then arrival; a newcomer never takes a slot someone is waiting
//! for; a caller that stops asking for `hold_stale_after_ms` is forgotten; at most
//! `hold_max_waiters_per_org` callers wait per org.
//!
//! The media pool calls these functions in-process; operators' other components use the
//! same functions over HTTP (`http::admission`, `/v1/admissions`).

use crate::state::ControlState;
use crate::{ControlError, ControlResult};
use golos_domain::billing::{started_minutes, Spending, SpendingLimit};
use golos_domain::events::{WebhookEvent, WebhookEventType};
use golos_domain::{AgentId, CallId, Kopecks, OrgId, Timestamp};
use golos_ports::hold::{self, HoldReason, HoldRequest, Waiter};
use golos_ports::{AcquireOutcome, Lease, LeaseRequest, Org, PortError, ReleaseOutcome};
use serde::Serialize;
use utoipa::ToSchema;

pub use golos_ports::hold::{DEFAULT_PRIORITY, MAX_PRIORITY};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionRequest {
    pub org_id: OrgId,
    pub agent_id: AgentId,
    pub call_id: CallId,
    pub priority: u8,
}

/// Why a held call waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WaitReason {
    OrgLimit,
    AgentLimit,
}

impl From<HoldReason> for WaitReason {
    fn from(reason: HoldReason) -> Self {
        match reason {
            HoldReason::OrgLimit => Self::OrgLimit,
            HoldReason::AgentLimit => Self::AgentLimit,
        }
    }
}

impl From<WaitReason> for HoldReason {
    fn from(reason: WaitReason) -> Self {
        match reason {
            WaitReason::OrgLimit => Self::OrgLimit,
            WaitReason::AgentLimit => Self::AgentLimit,
        }
    }
}

/// Why a call is refused outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    UnknownOrg,
    OrgDisabled,
    UnknownAgent,
    AgentDisabled,
    NoBalance,
    MinutesExhausted,
    /// Over a concurrency limit with `hold_max_waiters_per_org` callers already in line.
    HoldQueueFull,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Admitted {
        lease: Lease,
    },
    /// Over a concurrency limit: hold the caller; `position` 1 is next in line.
    Wait {
        position: u32,
        reason: WaitReason,
        limit: u32,
    },
    Rejected {
        reason: RejectReason,
    },
}

/// Forgets the call's place in the org's hold queue (it was admitted, refused or released):
/// the one function that gives up a place. Best effort: a place that could not be removed
/// lapses after `hold_stale_after_ms` anyway, so a failure is only logged.
async fn leave_line(state: &ControlState, org: &OrgId, call: &CallId) {
    if let Err(error) = state.stores.hold.leave(org, call).await {
        tracing::warn!(%org, %call, %error, "could not leave the hold queue; the place lapses when stale");
    }
}

/// Admission as the media pool, the call-events consumer and `/v1/admissions` use it, and
/// nothing else of the control plane: admit a call (or hold it in line), keep its lease with
/// heartbeats, learn a held call's place, release. Leases and places in line are released
/// only here ([`Admissions::release`]): by the worker for a call that never started or a
/// caller who left the line, by the call-events consumer once a call's end is billed, and
/// by the sweeper for a call whose worker was lost.
#[derive(Debug, Clone)]
pub struct Admissions {
    state: ControlState,
}

impl Admissions {
    pub const fn new(state: ControlState) -> Self {
        Self { state }
    }

    /// Whether the call may be answered now, must wait (asking again with the same call id
    /// keeps its place), or is refused.
    pub async fn admit(&self, request: &AdmissionRequest) -> ControlResult<Admission> {
        admit(&self.state, request).await
    }

    /// Extends the call's lease and re-checks its org's spending; `NotFound` once the lease
    /// is gone (released, or swept and billed as lost).
    pub async fn heartbeat(&self, org: &OrgId, call: &CallId) -> ControlResult<Heartbeat> {
        heartbeat(&self.state, org, call).await
    }

    /// How often a live call heartbeats: a third of the lease TTL, at most 20 s (the
    /// spending re-check must run at least every minute).
    pub fn heartbeat_interval(&self) -> std::time::Duration {
        let ttl = u64::try_from(self.state.config.lease_ttl_ms).unwrap_or(30_000);
        std::time::Duration::from_millis(ttl / 3).min(std::time::Duration::from_secs(20))
    }

    /// A held call's place in its org's line (1 is next), `None` when it is not in line.
    pub async fn hold_position(&self, org: &OrgId, call: &CallId) -> ControlResult<Option<u32>> {
        let state = &self.state;
        let line = state.stores.hold.line(org, state.clock.now(), state.config.hold_stale_after_ms).await?;
        Ok(line.iter().find(|waiter| &waiter.call_id == call).map(|waiter| hold::position(&line, waiter)))
    }

    /// Frees the call's slot and its place in line. Idempotent.
    pub async fn release(&self, org: &OrgId, call: &CallId) -> ControlResult<ReleaseOutcome> {
        release(&self.state, org, call).await
    }
}

/// Puts the call in line (or refreshes its place) and answers its position among `line`.
async fn wait(
    state: &ControlState,
    request: &AdmissionRequest,
    line: &[Waiter],
    reason: WaitReason,
    limit: u32,
) -> Result<Admission, PortError> {
    let hold_request = HoldRequest {
        org_id: request.org_id.clone(),
        agent_id: request.agent_id.clone(),
        call_id: request.call_id.clone(),
        priority: request.priority,
        reason: reason.into(),
    };
    let config = &state.config;
    let stored = state
        .stores
        .hold
        .hold(&hold_request, state.clock.now(), config.hold_stale_after_ms, config.hold_max_waiters_per_org)
        .await;
    match stored {
        Ok(waiter) => Ok(Admission::Wait { position: hold::position(line, &waiter), reason, limit }),
        Err(PortError::QuotaExceeded { .. }) => {
            tracing::warn!(org = %request.org_id, call = %request.call_id, "hold queue full; call refused");
            Ok(Admission::Rejected { reason: RejectReason::HoldQueueFull })
        }
        Err(other) => Err(other),
    }
}

/// Decides whether the call may be answered now, must wait, or is refused.
pub(crate) async fn admit(state: &ControlState, request: &AdmissionRequest) -> Result<Admission, ControlError> {
    let now = state.clock.now();
    let reject = |reason| async move {
        // A held call refused now (its agent was disabled, say) must not keep blocking the line.
        leave_line(state, &request.org_id, &request.call_id).await;
        tracing::info!(org = %request.org_id, call = %request.call_id, ?reason, "call refused at admission");
        Ok(Admission::Rejected { reason })
    };
    let Some(org) = state.stores.orgs.get(&request.org_id).await? else {
        return reject(RejectReason::UnknownOrg).await;
    };
    if org.disabled {
        return reject(RejectReason::OrgDisabled).await;
    }
    let Some(agent) = state.stores.agents.get(&request.org_id, &request.agent_id).await? else {
        return reject(RejectReason::UnknownAgent).await;
    };
    if !agent.config.enabled {
        return reject(RejectReason::AgentDisabled).await;
    }
    // What the org's other live calls have run up counts against its money and minutes, so
    // a kopeck cannot start a hundred calls (docs/billing.md, "How far a balance can go").
    match spending(state, &org, Some(&request.call_id), now).await?.admits() {
        Ok(()) => {}
        Err(SpendingLimit::Balance) => return reject(RejectReason::NoBalance).await,
        Err(SpendingLimit::MonthlyMinutes) => return reject(RejectReason::MinutesExhausted).await,
    }
    let org_limit = org.quotas.max_concurrent_calls;
    let agent_limit = org.quotas.max_concurrent_calls_per_agent.min(agent.config.limits.max_concurrent_calls);
    let limit_of = |reason| if reason == WaitReason::OrgLimit { org_limit } else { agent_limit };
    let line = state.stores.hold.line(&org.id, now, state.config.hold_stale_after_ms).await?;
    if let Some(reason) = hold::blocked_by(&line, &request.call_id, &request.agent_id, request.priority) {
        // Someone who waited longer (or matters more) is first in line for the next slot.
        let reason = WaitReason::from(reason);
        return Ok(wait(state, request, &line, reason, limit_of(reason)).await?);
    }
    let lease_request = LeaseRequest {
        org_id: org.id.clone(),
        agent_id: request.agent_id.clone(),
        call_id: request.call_id.clone(),
        org_limit,
        agent_limit,
        ttl_ms: state.config.lease_ttl_ms,
    };
    let (reason, limit) = match state.stores.leases.acquire(&lease_request, now).await? {
        AcquireOutcome::Granted(lease) | AcquireOutcome::AlreadyHeld(lease) => {
            if line.iter().any(|w| w.call_id == request.call_id) {
                leave_line(state, &org.id, &request.call_id).await;
            }
            return Ok(Admission::Admitted { lease });
        }
        AcquireOutcome::OrgLimitReached { limit } => (WaitReason::OrgLimit, limit),
        AcquireOutcome::AgentLimitReached { limit } => (WaitReason::AgentLimit, limit),
    };
    Ok(wait(state, request, &line, reason, limit).await?)
}

/// The org's money and minutes at `now`, with the started minutes of its live calls (all
/// but `except`, the call asking).
pub async fn spending(
    state: &ControlState,
    org: &Org,
    except: Option<&CallId>,
    now: Timestamp,
) -> Result<Spending, PortError> {
    let balance = state.stores.ledger.balance(&org.id).await?;
    let used_minutes = state.stores.ledger.usage_minutes(&org.id, now.year_month()).await?;
    let live_minutes = state
        .stores
        .leases
        .list(&org.id)
        .await?
        .iter()
        .filter(|lease| Some(&lease.call_id) != except)
        .map(|lease| started_minutes(now.as_millis().saturating_sub(lease.acquired_at.as_millis())))
        .sum();
    Ok(Spending {
        balance,
        credit_limit: org.quotas.credit_limit,
        rate_per_minute: org.quotas.rate_per_minute,
        used_minutes,
        monthly_minutes: org.quotas.monthly_minutes,
        live_minutes,
    })
}

/// A heartbeat's answer: the extended lease, and whether the call must now end politely
/// because its org ran out of money or minutes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub lease: Lease,
    pub end: Option<SpendingLimit>,
}

/// Extends the call's lease by the lease TTL and re-checks the org's spending (each live
/// call heartbeats at least every 20 s). `NotFound` once the lease was released or swept:
/// the sweeper has billed the call as lost, and its worker must end it.
pub(crate) async fn heartbeat(state: &ControlState, org: &OrgId, call: &CallId) -> Result<Heartbeat, ControlError> {
    let now = state.clock.now();
    let lease = state.stores.leases.heartbeat(org, call, state.config.lease_ttl_ms, now).await?;
    // A failed check keeps the call: ending calls because a read failed would turn a store
    // hiccup into dropped calls, and the next heartbeat checks again.
    let end = match check_live_spending(state, org, now).await {
        Ok(end) => end,
        Err(error) => {
            tracing::warn!(%org, %call, %error, "could not re-check the org's spending; the call goes on");
            None
        }
    };
    Ok(Heartbeat { lease, end })
}

async fn check_live_spending(
    state: &ControlState,
    org: &OrgId,
    now: Timestamp,
) -> Result<Option<SpendingLimit>, PortError> {
    let Some(org) = state.stores.orgs.get(org).await? else { return Ok(None) };
    let spending = spending(state, &org, None, now).await?;
    let threshold = crate::call_events::balance_low_threshold(&org);
    if spending.available() < threshold {
        warn_balance_low(state, &org, spending.available(), threshold, now).await;
    }
    Ok(spending.sustains().err())
}

/// `balance.low` while calls are live, before they run into the limit: once per org and day
/// from heartbeats (a shared counter keeps the other heartbeats quiet), with the event id
/// the call-ended path uses, so a receiver sees one per day either way.
async fn warn_balance_low(state: &ControlState, org: &Org, available: Kopecks, threshold: Kopecks, now: Timestamp) {
    let day = now.to_string().get(..10).unwrap_or_default().replace('-', "");
    let counter = format!("balance-low:{}:{day}", org.id);
    match state.stores.counters.hit(&counter, 86_400_000, now).await {
        Ok(1) => {}
        Ok(_) => return,
        Err(error) => return tracing::warn!(org = %org.id, %error, "could not count balance.low warnings"),
    }
    let data = crate::webhook_payloads::data(&crate::webhook_payloads::BalanceLowData {
        balance_kopecks: available.get(),
        threshold_kopecks: threshold.get(),
        call_id: None,
        live_calls: Some(true),
    });
    let subject = format!("{}_{day}", org.id);
    let event = WebhookEvent::new(WebhookEventType::BalanceLow, &subject, org.id.clone(), now, data);
    if let Err(error) = crate::call_events::emit(state, event).await {
        tracing::warn!(org = %org.id, %error, "could not queue balance.low");
    }
}

/// Frees the call's slot and its place in line, if it was held: the one function that
/// releases a lease. Idempotent.
pub(crate) async fn release(state: &ControlState, org: &OrgId, call: &CallId) -> Result<ReleaseOutcome, ControlError> {
    leave_line(state, org, call).await;
    Ok(state.stores.leases.release(org, call).await?)
}

/// Ends the calls whose worker stopped heartbeating, billed once from their last heartbeat
/// (`worker_lost`), then releases their slots; relays what workers left in the outbox.
/// Returns how many calls it ended.
pub async fn sweep(state: &ControlState) -> Result<usize, ControlError> {
    let mut swept = 0;
    // A call whose `call.ended` is still in the outbox (the queue was down) ended on its
    // worker: relayed, its own event bills it and frees its slot. Billed here as lost, it
    // would be billed to its last heartbeat with the wrong reason.
    let unsent_ends: std::collections::HashSet<String> =
        state.stores.outbox.pending(state.clock.now(), 1_000).await?.into_iter().map(|entry| entry.id).collect();
    loop {
        let batch = state.stores.leases.expired(state.clock.now(), 100).await?;
        let mut ended = 0;
        for lease in &batch {
            if unsent_ends.contains(&crate::call_events::ended_outbox_id(&lease.call_id)) {
                continue;
            }
            tracing::warn!(org = %lease.org_id, call = %lease.call_id, "lease expired without heartbeat; billing the call as lost");
            match crate::call_events::end_lost_call(state, lease).await {
                Ok(()) => ended += 1,
                Err(error) => tracing::error!(org = %lease.org_id, call = %lease.call_id, %error,
                    "could not end a lost call; the next sweep tries again"),
            }
        }
        swept += ended;
        state.metrics.leases_swept_total.fetch_add(ended as u64, std::sync::atomic::Ordering::Relaxed);
        // A full batch that made progress may have more behind it; one that made none would
        // only fail again now.
        if batch.len() < 100 || ended == 0 {
            break;
        }
    }
    if let Err(error) = crate::call_events::relay_outbox(state, crate::call_events::OUTBOX_RELAY_AFTER).await {
        tracing::warn!(%error, "could not relay the call-event outbox; the next sweep tries again");
    }
    Ok(swept)
}

/// Runs `sweep` every `interval` until `shutdown` resolves (the local stand-in for the
/// scheduled Lambda).
pub async fn run_sweeper(
    state: ControlState,
    interval: std::time::Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retention_due = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = ticker.tick() => {
                if let Err(err) = sweep(&state).await {
                    tracing::error!(error = %err, "lease sweep failed; retrying at the next tick");
                }
                if tokio::time::Instant::now() >= retention_due {
                    retention_due += crate::retention::SWEEP_EVERY;
                    if let Err(err) = crate::retention::sweep(&state).await {
                        tracing::error!(error = %err, "retention sweep failed; retrying at the next");
                    }
                }
            }
        }
    }
}

/// The `end_reason` of a call ended by a spending limit.
pub const fn limit_end_reason(limit: SpendingLimit) -> &'static str {
    match limit {
        SpendingLimit::Balance => "balance_exhausted",
        SpendingLimit::MonthlyMinutes => "minutes_exhausted",
    }
}
