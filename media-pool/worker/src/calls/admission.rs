//! Admission and hold: everything the worker asks of the control plane's admission, through
//! its narrow interface (`golos_control::admission::Admissions`: admit, heartbeat, release).
//! A call is admitted at once, or held in line with a spoken prompt until a slot frees; once
//! started, its lease is kept by heartbeats until the call ends. The worker releases a slot
//! only for a call that never started or a caller who left the line: a call that ran is
//! released by the call-events consumer once its end is billed, so its cost never drops out
//! of its org's spending between the two.

use super::hold_prompt::{hold_prompt, HoldPrompt};
use super::session::{reject_refusal, OpenRefusal};
use super::{CallLink, LiveCalls};
use golos_call::{EndReason, Snapshot};
use golos_control::admission::{Admission, AdmissionRequest};
use golos_domain::agent::AgentConfig;
use golos_domain::billing::SpendingLimit;
use golos_domain::CallDirection;
use golos_domain::{AgentId, CallId, OrgId, PhoneNumber};
use golos_shard::OwnedInput;
use golos_transports::ws::SessionOutput;
use std::sync::Arc;
use std::time::Duration;

/// What admission made of a new call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admit {
    /// Starting now.
    Started,
    /// In line, hearing the hold prompt; [`CallLink::wait_started`] says when it starts.
    Held,
}

/// Everything needed to start the engine once admitted.
pub(super) struct Pending {
    pub(super) org_id: OrgId,
    pub(super) agent_id: AgentId,
    pub(super) agent: Arc<AgentConfig>,
    pub(super) resume: Option<(CallId, Snapshot)>,
    /// The client's `start.metadata` (or a Twilio stream's parameters), kept with the call.
    pub(super) metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// A phone call's numbers, for its `call.started` and `call.ended`.
    pub(super) from: Option<PhoneNumber>,
    pub(super) to: Option<PhoneNumber>,
    pub(super) registration: crate::lifecycle::CallRegistration,
}

impl LiveCalls {
    /// Asks for the registered call's lease: an admitted call starts, one over a limit is held
    /// in line, both off the connection's task so `started` goes out at once.
    pub(super) async fn admit(
        self,
        pending: Pending,
        link: &Arc<CallLink>,
        direction: CallDirection,
    ) -> Result<Admit, OpenRefusal> {
        let request = AdmissionRequest {
            org_id: pending.org_id.clone(),
            agent_id: pending.agent_id.clone(),
            call_id: link.call_id.clone(),
            // The agent's priority: numbers carry no settings of their own, so a call to a
            // number is held with the priority of the agent it routes to.
            priority: pending.agent.priority,
        };
        let first = self.admissions.admit(&request).await.map_err(|error| {
            tracing::warn!(%error, "a call could not be admitted; the platform is unavailable");
            OpenRefusal::Unavailable
        })?;
        match first {
            Admission::Rejected { reason } => Err(OpenRefusal::Rejected(reason)),
            Admission::Admitted { .. } => {
                tokio::spawn(Box::pin(self.begin(pending, Arc::clone(link), direction)));
                Ok(Admit::Started)
            }
            Admission::Wait { position, .. } => {
                tokio::spawn(Box::pin(self.hold(request, pending, Arc::clone(link), direction, position)));
                Ok(Admit::Held)
            }
        }
    }

    /// Holds the caller with a spoken prompt, asking for a slot every `hold_poll`, until
    /// admitted, refused, hung up or held for `hold_max`.
    pub(super) async fn hold(
        self,
        request: AdmissionRequest,
        pending: Pending,
        link: Arc<CallLink>,
        direction: CallDirection,
        position: u32,
    ) {
        let chains = self.chains_for(&pending.org_id, &pending.agent).await;
        let text = hold_prompt(&pending.agent.language, position);
        let prompt = HoldPrompt::speak(&self.pool, &self.runtime, &pending.agent, chains, &link, &text);
        let give_up = tokio::time::Instant::now() + self.config.hold_max;
        loop {
            tokio::select! {
                () = link.wait_ended() => {
                    self.leave(&request.org_id, &request.call_id).await;
                    return;
                }
                () = tokio::time::sleep(self.config.hold_poll) => {}
            }
            if tokio::time::Instant::now() >= give_up {
                self.leave(&request.org_id, &request.call_id).await;
                let _ = link.outputs.try_send(SessionOutput::End { reason: "hold_timeout".into() });
                return;
            }
            match self.admissions.admit(&request).await {
                Ok(Admission::Admitted { .. }) => {
                    // A clear first: the rest of the hold prompt must not run into the greeting.
                    prompt.stop().await;
                    let _ = link.outputs.send(SessionOutput::Clear).await;
                    return Box::pin(self.begin(pending, link, direction)).await;
                }
                Ok(Admission::Wait { .. }) => {}
                Ok(Admission::Rejected { reason }) => {
                    let refused = reject_refusal(reason);
                    let _ =
                        link.outputs.try_send(SessionOutput::Event(golos_transports::golos::ServerMessage::Error {
                            code: refused.code.to_owned(),
                            message: refused.message,
                        }));
                    // The transport closes after the audio it holds, and the engine hands it
                    // the prompt only as it plays: the caller hears the prompt out first.
                    prompt.played_out(&link).await;
                    let _ = link.outputs.try_send(SessionOutput::End { reason: "rejected".into() });
                    return;
                }
                Err(error) => tracing::warn!(%error, "admission failed while holding a caller; asking again"),
            }
        }
    }
}

impl LiveCalls {
    /// Keeps the call's lease and ends the call when the control plane says so: its org ran
    /// out of money or minutes (the agent says a goodbye first), or its lease is gone (the
    /// sweeper billed it as lost after heartbeats failed for a whole TTL).
    pub(super) async fn heartbeat(self, org: OrgId, link: Arc<CallLink>) {
        let mut every = tokio::time::interval(self.config.heartbeat_every);
        every.tick().await;
        loop {
            tokio::select! {
                () = link.wait_ended() => return,
                _ = every.tick() => {}
            }
            let end = match self.admissions.heartbeat(&org, &link.call_id).await {
                Ok(beat) => match beat.end {
                    Some(SpendingLimit::Balance) => EndReason::BalanceExhausted,
                    Some(SpendingLimit::MonthlyMinutes) => EndReason::MinutesExhausted,
                    None => continue,
                },
                Err(golos_control::ControlError::Port(golos_ports::PortError::NotFound { .. })) => EndReason::LeaseLost,
                Err(error) => {
                    tracing::warn!(%error, call = %link.call_id, "lease heartbeat failed");
                    continue;
                }
            };
            tracing::info!(call = %link.call_id, reason = ?end, "ending the call at the control plane's request");
            if let Some(handle) = link.handle.get() {
                handle.input(OwnedInput::EndPolitely { reason: end });
            }
            // The engine hangs up after its goodbye (at most `goodbye_max`); if it does not,
            // the call is ended regardless.
            tokio::select! {
                () = link.wait_ended() => {}
                () = tokio::time::sleep(POLITE_END_BACKSTOP) => link.request_end(end),
            }
            return;
        }
    }
}

/// How long a call asked to end politely may take over its goodbye before it is cut.
const POLITE_END_BACKSTOP: Duration = Duration::from_secs(15);

impl LiveCalls {
    /// Gives up the call's slot or place in line: it never started (hung up while being
    /// admitted) or its caller left the line. Best effort: a slot left behind lapses with its
    /// lease, a place when it goes stale.
    pub(super) async fn leave(&self, org: &OrgId, call: &CallId) {
        if let Err(error) = self.admissions.release(org, call).await {
            tracing::warn!(%error, %call, "could not release the call's slot; it lapses with its lease");
        }
    }
}
