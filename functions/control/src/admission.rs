//! Admission (issue #4): before a call is answered it takes a lease, atomically against the
//! org's `max_concurrent_calls` and the agent's limit, after checking that the org has money
//! and minutes left. Over a concurrency limit the caller is held in a hold queue with a
//! position instead of being refused; a held call asks again (the media pool does so every
//! second while it plays "please hold") and keeps its place. Heartbeats extend a lease; a
//! sweeper frees the leases of workers that stopped heartbeating; release is idempotent.
//!
//! The media pool calls these functions in-process; operators' other components use the
//! same functions over HTTP (`/v1/admissions`).

use crate::common::JsonBody;
use crate::error::{ApiError, ApiResult};
use crate::middleware::Caller;
use crate::state::ControlState;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use golos_domain::{AgentId, CallId, OrgId, Timestamp};
use golos_ports::{AcquireOutcome, Lease, LeaseRequest, PortError, ReleaseOutcome};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use utoipa::ToSchema;

/// Default priority of a call in the hold queue; higher is served first.
pub const DEFAULT_PRIORITY: u8 = 5;
pub const MAX_PRIORITY: u8 = 9;

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

/// The order of the hold queue: higher priority first, then first come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    inverted_priority: u8,
    arrival: u64,
}

#[derive(Debug, Clone)]
struct Waiter {
    call: CallId,
    agent: AgentId,
    rank: Rank,
    reason: WaitReason,
    last_seen: Timestamp,
}

impl Waiter {
    /// Whether this waiter must be served before a call to `agent`: one waiting on the org's
    /// limit blocks every agent of the org, one waiting on an agent's limit only that agent.
    fn blocks(&self, agent: &AgentId) -> bool {
        self.reason == WaitReason::OrgLimit || &self.agent == agent
    }
}

/// Higher priority sorts first; out-of-range priorities count as the highest.
const fn inverted(priority: u8) -> u8 {
    MAX_PRIORITY.saturating_sub(priority)
}

/// Callers waiting for a slot, per org, in this process. A waiter that stops asking is
/// forgotten after `hold_stale_after_ms`, so a caller who hung up does not block the line.
#[derive(Debug, Default)]
pub struct HoldQueue {
    orgs: Mutex<HashMap<OrgId, Vec<Waiter>>>,
    arrivals: std::sync::atomic::AtomicU64,
}

impl HoldQueue {
    fn next_arrival(&self) -> u64 {
        self.arrivals.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether waiters ahead of `call` block it, and on which limit: the org's if any of
    /// them waits for the org, else the agent's. `None`: it may try to take a slot.
    fn blocked_by(&self, request: &AdmissionRequest, now: Timestamp, stale_after_ms: i64) -> Option<WaitReason> {
        let mut orgs = self.orgs.lock().expect("hold queue lock");
        let waiters = orgs.get_mut(&request.org_id)?;
        waiters.retain(|w| w.last_seen.plus_millis(stale_after_ms) > now);
        let own = waiters.iter().find(|w| w.call == request.call_id).map(|w| w.rank);
        let own = own.unwrap_or(Rank { inverted_priority: inverted(request.priority), arrival: u64::MAX });
        let ahead =
            || waiters.iter().filter(|w| w.call != request.call_id && w.rank < own && w.blocks(&request.agent_id));
        if ahead().any(|w| w.reason == WaitReason::OrgLimit) {
            Some(WaitReason::OrgLimit)
        } else {
            ahead().next().map(|_| WaitReason::AgentLimit)
        }
    }

    /// Puts the call in line (or refreshes its place) and returns its 1-based position.
    fn hold(&self, request: &AdmissionRequest, reason: WaitReason, now: Timestamp) -> u32 {
        let arrival = self.next_arrival();
        let mut orgs = self.orgs.lock().expect("hold queue lock");
        let waiters = orgs.entry(request.org_id.clone()).or_default();
        let rank = if let Some(waiter) = waiters.iter_mut().find(|w| w.call == request.call_id) {
            waiter.last_seen = now;
            waiter.reason = reason;
            waiter.rank
        } else {
            let rank = Rank { inverted_priority: inverted(request.priority), arrival };
            waiters.push(Waiter {
                call: request.call_id.clone(),
                agent: request.agent_id.clone(),
                rank,
                reason,
                last_seen: now,
            });
            rank
        };
        1 + waiters.iter().filter(|w| w.call != request.call_id && w.rank < rank && w.blocks(&request.agent_id)).count()
            as u32
    }

    /// Forgets the call's place in line (it was admitted elsewhere, hung up, or ended).
    pub fn remove(&self, org: &OrgId, call: &CallId) {
        let mut orgs = self.orgs.lock().expect("hold queue lock");
        if let Some(waiters) = orgs.get_mut(org) {
            waiters.retain(|w| &w.call != call);
            if waiters.is_empty() {
                orgs.remove(org);
            }
        }
    }

    /// Callers held right now (for metrics).
    pub fn len(&self) -> usize {
        self.orgs.lock().expect("hold queue lock").values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Decides whether the call may be answered now, must wait, or is refused.
pub async fn admit(state: &ControlState, request: &AdmissionRequest) -> Result<Admission, PortError> {
    let now = state.clock.now();
    let reject = |reason| {
        // A held call refused now (its agent was disabled, say) must not keep blocking the line.
        state.hold.remove(&request.org_id, &request.call_id);
        tracing::info!(org = %request.org_id, call = %request.call_id, ?reason, "call refused at admission");
        Ok(Admission::Rejected { reason })
    };
    let Some(org) = state.stores.orgs.get(&request.org_id).await? else { return reject(RejectReason::UnknownOrg) };
    if org.disabled {
        return reject(RejectReason::OrgDisabled);
    }
    let Some(agent) = state.stores.agents.get(&request.org_id, &request.agent_id).await? else {
        return reject(RejectReason::UnknownAgent);
    };
    if !agent.config.enabled {
        return reject(RejectReason::AgentDisabled);
    }
    if !state.stores.ledger.balance(&org.id).await?.is_positive() {
        return reject(RejectReason::NoBalance);
    }
    if state.stores.ledger.usage_minutes(&org.id, now.year_month()).await? >= org.quotas.monthly_minutes {
        return reject(RejectReason::MinutesExhausted);
    }
    let org_limit = org.quotas.max_concurrent_calls;
    let agent_limit = org.quotas.max_concurrent_calls_per_agent.min(agent.config.limits.max_concurrent_calls);
    let stale_after = state.config.hold_stale_after_ms;
    if let Some(reason) = state.hold.blocked_by(request, now, stale_after) {
        // Someone who waited longer (or matters more) is first in line for the next slot.
        let position = state.hold.hold(request, reason, now);
        let limit = if reason == WaitReason::OrgLimit { org_limit } else { agent_limit };
        return Ok(Admission::Wait { position, reason, limit });
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
            state.hold.remove(&org.id, &request.call_id);
            return Ok(Admission::Admitted { lease });
        }
        AcquireOutcome::OrgLimitReached { limit } => (WaitReason::OrgLimit, limit),
        AcquireOutcome::AgentLimitReached { limit } => (WaitReason::AgentLimit, limit),
    };
    let position = state.hold.hold(request, reason, now);
    Ok(Admission::Wait { position, reason, limit })
}

/// Extends the call's lease by the lease TTL. `NotFound` once it was released or swept.
pub async fn heartbeat(state: &ControlState, org: &OrgId, call: &CallId) -> Result<Lease, PortError> {
    state.stores.leases.heartbeat(org, call, state.config.lease_ttl_ms, state.clock.now()).await
}

/// Frees the call's slot (and its place in line, if it was held). Idempotent.
pub async fn release(state: &ControlState, org: &OrgId, call: &CallId) -> Result<ReleaseOutcome, PortError> {
    state.hold.remove(org, call);
    state.stores.leases.release(org, call).await
}

/// Frees every lease whose worker stopped heartbeating; returns how many.
pub async fn sweep(state: &ControlState) -> Result<usize, PortError> {
    let mut swept = 0;
    loop {
        let batch = state.stores.leases.sweep_expired(state.clock.now(), 100).await?;
        for lease in &batch {
            tracing::warn!(org = %lease.org_id, call = %lease.call_id, "lease expired without heartbeat; slot freed");
        }
        swept += batch.len();
        state.metrics.leases_swept_total.fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if batch.len() < 100 {
            return Ok(swept);
        }
    }
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

// ---- HTTP ----

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdmissionBody {
    pub org_id: String,
    pub agent_id: String,
    /// The call to admit; generated when absent. Ask again with the same id while held.
    pub call_id: Option<String>,
    /// 0-9, default 5; higher is served first from the hold queue.
    pub priority: Option<u8>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdmissionView {
    /// `admitted`, `wait` or `rejected`.
    pub decision: &'static str,
    pub call_id: String,
    /// Admitted: the lease (its id is the call id) and until when it holds without a heartbeat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_ms: Option<i64>,
    /// Wait: 1 is next in line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u32>,
    /// Wait: `org_limit` or `agent_limit`. Rejected: `no_balance`, `minutes_exhausted`,
    /// `agent_disabled`, `org_disabled`, `unknown_agent`, `unknown_org`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseBody {
    pub org_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LeaseView {
    pub call_id: String,
    pub lease_expires_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReleaseView {
    pub call_id: String,
    /// False when there was nothing to release (released before, swept, never taken).
    pub released: bool,
}

fn parse<T>(
    field: &str,
    raw: &str,
    parse: impl FnOnce(String) -> Result<T, golos_domain::DomainError>,
) -> ApiResult<T> {
    parse(raw.to_owned()).map_err(|e| ApiError::bad_request("invalid_id", format!("{field}: {e}")))
}

fn reason_name<T: Serialize>(reason: T) -> String {
    serde_json::to_value(reason).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// Ask whether a call may be answered now (operator).
#[utoipa::path(post, path = "/v1/admissions", tag = "admission", request_body = AdmissionBody,
    responses((status = 200, body = AdmissionView), (status = 403, description = "not the operator")))]
pub async fn admit_http(
    State(state): State<ControlState>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<AdmissionBody>,
) -> ApiResult<Json<AdmissionView>> {
    caller.require_operator()?;
    let call_id = match &body.call_id {
        Some(raw) => parse("call_id", raw, CallId::parse)?,
        None => CallId::with_suffix(&state.ids.new_suffix()).map_err(ApiError::internal)?,
    };
    let priority = body.priority.unwrap_or(DEFAULT_PRIORITY);
    if priority > MAX_PRIORITY {
        return Err(ApiError::bad_request("invalid_priority", "priority must be 0-9"));
    }
    let request = AdmissionRequest {
        org_id: parse("org_id", &body.org_id, OrgId::parse)?,
        agent_id: parse("agent_id", &body.agent_id, AgentId::parse)?,
        call_id,
        priority,
    };
    let mut view = AdmissionView {
        decision: "admitted",
        call_id: request.call_id.to_string(),
        lease_expires_at: None,
        heartbeat_interval_ms: None,
        position: None,
        retry_after_ms: None,
        reason: None,
        limit: None,
    };
    match admit(&state, &request).await? {
        Admission::Admitted { lease } => {
            view.lease_expires_at = Some(lease.expires_at.to_string());
            view.heartbeat_interval_ms = Some(state.config.lease_ttl_ms / 3);
        }
        Admission::Wait { position, reason, limit } => {
            view.decision = "wait";
            view.position = Some(position);
            view.retry_after_ms = Some(1_000);
            view.reason = Some(reason_name(reason));
            view.limit = Some(limit);
        }
        Admission::Rejected { reason } => {
            view.decision = "rejected";
            view.reason = Some(reason_name(reason));
        }
    }
    Ok(Json(view))
}

/// Extend a call's lease (operator).
#[utoipa::path(post, path = "/v1/admissions/{call_id}/heartbeat", tag = "admission", request_body = LeaseBody,
    params(("call_id" = String, Path)),
    responses((status = 200, body = LeaseView), (status = 404, description = "the lease was released or swept")))]
pub async fn heartbeat_http(
    State(state): State<ControlState>,
    Extension(caller): Extension<Caller>,
    Path(call_id): Path<String>,
    JsonBody(body): JsonBody<LeaseBody>,
) -> ApiResult<Json<LeaseView>> {
    caller.require_operator()?;
    let call = parse("call_id", &call_id, CallId::parse)?;
    let org = parse("org_id", &body.org_id, OrgId::parse)?;
    let lease = heartbeat(&state, &org, &call).await.map_err(|e| match e {
        PortError::NotFound { .. } => ApiError::not_found(format!("lease of call {call}")),
        other => other.into(),
    })?;
    Ok(Json(LeaseView { call_id: call.to_string(), lease_expires_at: lease.expires_at.to_string() }))
}

/// Release a call's lease or its place in line (operator). Idempotent.
#[utoipa::path(post, path = "/v1/admissions/{call_id}/release", tag = "admission", request_body = LeaseBody,
    params(("call_id" = String, Path)),
    responses((status = 200, body = ReleaseView)))]
pub async fn release_http(
    State(state): State<ControlState>,
    Extension(caller): Extension<Caller>,
    Path(call_id): Path<String>,
    JsonBody(body): JsonBody<LeaseBody>,
) -> ApiResult<Json<ReleaseView>> {
    caller.require_operator()?;
    let call = parse("call_id", &call_id, CallId::parse)?;
    let org = parse("org_id", &body.org_id, OrgId::parse)?;
    let released = matches!(release(&state, &org, &call).await?, ReleaseOutcome::Released(_));
    Ok(Json(ReleaseView { call_id: call.to_string(), released }))
}
