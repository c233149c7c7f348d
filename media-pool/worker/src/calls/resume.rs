//! Reconnects: after each turn the conversation is sealed and stored for [`RESUME_WINDOW`], and a
//! `start` naming that call loads it back, for the same org and agent only.

use super::session::{refusal, unavailable};
use super::LiveCalls;
use golos_call::Snapshot;
use golos_control::calls::snapshot_context;
use golos_control::ControlState;
use golos_domain::{AgentId, CallId, OrgId, Timestamp};
use golos_transports::golos::codes;
use golos_transports::ws::Refusal;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// How long a conversation can be resumed after its last turn (DESIGN.md §4).
pub const RESUME_WINDOW: Duration = Duration::from_secs(300);

/// A snapshot as stored: whose call it was, so only the same org and agent can resume it.
#[derive(Debug, Serialize, Deserialize)]
struct StoredContext {
    org_id: OrgId,
    agent_id: AgentId,
    snapshot: Snapshot,
}

pub(super) async fn load_resume(
    state: &ControlState,
    previous: &str,
    org: &OrgId,
    agent: &AgentId,
) -> Result<(CallId, Snapshot), Refusal> {
    let not_found =
        || refusal(codes::CALL_NOT_FOUND, "no call to resume with this id (unknown, or over 5 minutes ago)");
    let previous = CallId::parse(previous).map_err(|_| not_found())?;
    let bytes = state
        .stores
        .contexts
        .get(&previous, state.clock.now())
        .await
        .map_err(|e| unavailable(&e))?
        .ok_or_else(not_found)?;
    // Sealed under the caller's org and the call: another org's snapshot does not open.
    let envelope = golos_ports::Envelope::from_bytes(&bytes).map_err(|_| not_found())?;
    let plain = match state.crypto.decrypt(&envelope, &snapshot_context(org, &previous)).await {
        Ok(plain) => plain,
        Err(golos_ports::PortError::Corrupt { .. }) => return Err(not_found()),
        Err(error) => return Err(unavailable(&error)),
    };
    let stored: StoredContext = serde_json::from_slice(&plain).map_err(|_| not_found())?;
    if &stored.org_id != org || &stored.agent_id != agent {
        return Err(not_found());
    }
    Ok((previous, stored.snapshot))
}

impl LiveCalls {
    pub(super) fn snapshot_writer(
        &self,
        call: &CallId,
        org: &OrgId,
        agent: &AgentId,
    ) -> Arc<dyn Fn(Snapshot) + Send + Sync> {
        let state = self.state.clone();
        let runtime = self.runtime.clone();
        let (call, org, agent) = (call.clone(), org.clone(), agent.clone());
        Arc::new(move |snapshot: Snapshot| {
            let state = state.clone();
            let call = call.clone();
            let stored_org = org.clone();
            let stored = StoredContext { org_id: org.clone(), agent_id: agent.clone(), snapshot };
            let bytes = match serde_json::to_vec(&stored) {
                Ok(bytes) => bytes,
                Err(error) => return tracing::warn!(%error, "could not serialise the call's snapshot"),
            };
            runtime.spawn(async move {
                // The conversation is personal data: stored only as an envelope.
                let sealed = match state.crypto.encrypt(&bytes, &snapshot_context(&stored_org, &call)).await {
                    Ok(envelope) => envelope.to_bytes(),
                    Err(error) => return tracing::warn!(%error, "could not seal the call's snapshot; a reconnect cannot resume it"),
                };
                let window = i64::try_from(RESUME_WINDOW.as_millis()).unwrap_or(i64::MAX);
                let expires_at = Timestamp::from_millis(state.clock.now().as_millis().saturating_add(window));
                if let Err(error) = state.stores.contexts.put(&call, &sealed, expires_at).await {
                    tracing::warn!(%error, "could not store the call's snapshot; a reconnect cannot resume it");
                }
            });
        })
    }
}
