//! One connection's side of a call: the transport's [`CallSession`], which authorises the
//! caller, registers the call and hands it to admission, then routes the caller's audio and
//! key presses to the call's engine.

use super::admission::{Admit, Pending};
use super::resume::load_resume;
use super::{CallLink, LiveCalls, OUTPUT_QUEUE};
use crate::lifecycle::{EndReason, LiveCall, RegisterError};
use golos_call::Snapshot;
use golos_control::admission::RejectReason;
use golos_control::call_tokens::{self, CallAuthError};
use golos_domain::CallDirection;
use golos_domain::{CallId, OrgId, PhoneNumber};
use golos_ports::AgentRecord;
use golos_shard::OwnedInput;
use golos_transports::golos::codes;
use golos_transports::playout::Frame;
use golos_transports::ws::{Admitted, CallSession, Refusal, SessionOutput, StartRequest};
use std::sync::Arc;
use tokio::sync::mpsc;

/// One connection's side of a call.
pub(super) struct WorkerSession {
    pub(super) calls: LiveCalls,
    pub(super) direction: CallDirection,
    pub(super) link: Option<Arc<CallLink>>,
}

pub(super) fn refusal(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal { code, message: message.into() }
}

/// A store or queue failed: the peer learns that it may retry, the log learns what failed
/// (store text never goes to a peer).
pub(super) fn unavailable(error: &dyn std::fmt::Display) -> Refusal {
    tracing::warn!(%error, "a call could not be set up; the platform is unavailable");
    refusal(codes::UNAVAILABLE, "the platform is unavailable; try again shortly")
}

fn auth_refusal(error: &CallAuthError) -> Refusal {
    if let CallAuthError::Unavailable(_) = error {
        return unavailable(error);
    }
    let code = match error {
        CallAuthError::Unauthorized | CallAuthError::OrgDisabled => codes::UNAUTHORIZED,
        CallAuthError::AgentNotFound => codes::AGENT_NOT_FOUND,
        CallAuthError::Unavailable(_) => codes::UNAVAILABLE,
    };
    refusal(code, error.to_string())
}

pub(super) fn reject_refusal(reason: RejectReason) -> Refusal {
    let (code, message) = match reason {
        RejectReason::NoBalance => ("no_balance", "the organisation's balance is used up; top it up to take calls"),
        RejectReason::MinutesExhausted => ("minutes_exhausted", "the plan's minutes for this month are used up"),
        RejectReason::AgentDisabled => ("agent_disabled", "this agent is disabled"),
        RejectReason::OrgDisabled => (codes::UNAUTHORIZED, "this organisation is disabled"),
        RejectReason::UnknownOrg => (codes::UNAUTHORIZED, "no such organisation"),
        RejectReason::UnknownAgent => (codes::AGENT_NOT_FOUND, "no such agent"),
        RejectReason::HoldQueueFull => {
            ("hold_queue_full", "all lines are busy and the queue is full; call again later")
        }
    };
    refusal(code, message)
}

/// Why a call whose org and agent are known is not opened; each transport answers it in its
/// own terms (a WebSocket `error` code, a SIP status).
#[derive(Debug)]
pub(super) enum OpenRefusal {
    /// This worker is draining.
    Draining,
    /// A store or queue failed (logged where it happened).
    Unavailable,
    Internal(String),
    /// Admission said no.
    Rejected(RejectReason),
}

impl OpenRefusal {
    /// The WebSocket transports' `error`.
    pub(super) fn to_refusal(&self) -> Refusal {
        match self {
            Self::Draining => refusal(codes::UNAVAILABLE, "this worker is draining; connect again"),
            Self::Unavailable => refusal(codes::UNAVAILABLE, "the platform is unavailable; try again shortly"),
            Self::Internal(message) => refusal(codes::INTERNAL, message.clone()),
            Self::Rejected(reason) => reject_refusal(*reason),
        }
    }
}

/// A call whose org and agent are known, as any transport asks for it.
pub(super) struct CallRequest {
    pub(super) org_id: OrgId,
    pub(super) agent: AgentRecord,
    pub(super) resume: Option<(CallId, Snapshot)>,
    pub(super) metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// The caller and the dialled number of a phone call.
    pub(super) from: Option<PhoneNumber>,
    pub(super) to: Option<PhoneNumber>,
}

/// A registered call that admission took or put in line.
pub(super) struct OpenedCall {
    pub(super) link: Arc<CallLink>,
    /// What the call's engine (or its hold prompt) says to the caller's transport.
    pub(super) outputs: mpsc::Receiver<SessionOutput>,
    pub(super) admit: Admit,
}

impl LiveCalls {
    /// Registers the call (refused while draining) and asks admission for it: the part every
    /// transport shares once it knows who is called.
    pub(super) async fn open(&self, request: CallRequest, direction: CallDirection) -> Result<OpenedCall, OpenRefusal> {
        let CallRequest { org_id, agent, resume, metadata, from, to } = request;
        let call_id =
            CallId::with_suffix(&self.state.ids.new_suffix()).map_err(|e| OpenRefusal::Internal(e.to_string()))?;
        let (outputs_tx, outputs) = mpsc::channel(OUTPUT_QUEUE);
        let link = Arc::new(CallLink::new(call_id.clone(), outputs_tx));
        let ender_link = Arc::clone(&link);
        let registration = self
            .worker
            .registry
            .register_with(
                LiveCall { org_id: org_id.clone(), agent_id: agent.id.clone(), call_id },
                Some(Arc::new(move |reason| ender_link.request_end(reason))),
            )
            .map_err(|e| match e {
                RegisterError::Draining => OpenRefusal::Draining,
                other => OpenRefusal::Internal(other.to_string()),
            })?;
        let pending = Pending {
            org_id,
            agent_id: agent.id,
            agent: Arc::new(agent.config),
            resume,
            metadata,
            from,
            to,
            registration,
        };
        let admit = self.clone().admit(pending, &link, direction).await?;
        Ok(OpenedCall { link, outputs, admit })
    }
}

impl CallSession for WorkerSession {
    async fn on_start(&mut self, start: StartRequest) -> Result<Admitted, Refusal> {
        let calls = self.calls.clone();
        let state = &calls.state;
        let (org, agent) =
            call_tokens::authorize_call(state, &start.token, &start.agent_id).await.map_err(|e| auth_refusal(&e))?;
        let resume = match &start.call_id {
            Some(previous) => Some(load_resume(state, previous, &org.id, &agent.id).await?),
            None => None,
        };
        let request = CallRequest { org_id: org.id, agent, resume, metadata: start.metadata, from: None, to: None };
        // Boxed: admission's future would otherwise sit inside every connection's.
        let opened = Box::pin(calls.open(request, self.direction)).await.map_err(|refused| refused.to_refusal())?;
        self.link = Some(Arc::clone(&opened.link));
        Ok(Admitted { call_id: opened.link.call_id.to_string(), outputs: opened.outputs })
    }

    fn on_audio(&mut self, frame: Frame) {
        if let Some(handle) = self.link.as_ref().and_then(|l| l.handle.get()) {
            handle.audio(frame);
        }
    }

    fn on_mark(&mut self, _name: String) {}

    fn on_dtmf(&mut self, digit: char) {
        if let Some(handle) = self.link.as_ref().and_then(|l| l.handle.get()) {
            handle.input(OwnedInput::Dtmf { digit });
        }
    }

    fn on_hangup(&mut self) {
        if let Some(link) = &self.link {
            link.request_end(EndReason::CallerHangup);
        }
    }
}
