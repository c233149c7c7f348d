//! Ending a call: `call.ended` (sealed transcript, per-turn metrics, quality) durable in the
//! outbox before the lease is released and the registration dropped.

use super::{CallLink, CallReport, LiveCalls};
use golos_control::ControlState;
use golos_domain::events::{CallEnded, CallEvent, TranscriptTurn};
use golos_domain::CallDirection;
use golos_domain::{AgentId, OrgId, PhoneNumber, Timestamp};
use std::sync::Arc;
use std::time::Duration;

/// Ends a call's bookkeeping once its engine has ended.
pub(super) struct Finisher {
    pub(super) calls: LiveCalls,
    pub(super) org_id: OrgId,
    pub(super) agent_id: AgentId,
    pub(super) direction: CallDirection,
    pub(super) started_at: Timestamp,
    pub(super) resumed_from: Option<String>,
    pub(super) metadata: Option<serde_json::Map<String, serde_json::Value>>,
    pub(super) from: Option<PhoneNumber>,
    pub(super) to: Option<PhoneNumber>,
    pub(super) registration: crate::lifecycle::CallRegistration,
    pub(super) link: Arc<CallLink>,
}

impl Finisher {
    pub(super) async fn finish(self, report: CallReport) {
        let Self {
            calls,
            org_id,
            agent_id,
            direction,
            started_at,
            resumed_from,
            metadata,
            from,
            to,
            registration,
            link,
        } = self;
        // The transport closes after the audio it holds: the goodbye is heard.
        link.request_end(report.reason);
        let duration_ms = i64::try_from(report.duration.as_millis()).unwrap_or(i64::MAX);
        let ended = CallEnded {
            call_id: link.call_id.clone(),
            org_id: org_id.clone(),
            agent_id,
            direction,
            from: from.as_ref().map(PhoneNumber::expose_e164),
            to: to.as_ref().map(PhoneNumber::expose_e164),
            started_at,
            ended_at: Timestamp::from_millis(started_at.as_millis().saturating_add(duration_ms)),
            duration_secs: report.duration.as_secs() + u64::from(report.duration.subsec_nanos() > 0),
            end_reason: report.reason,
            transcript: None,
            metrics: serde_json::json!({
                "turns": report.turns,
                "quality": report.quality,
                "line": link.line_report(),
                "resumed_from": resumed_from,
                "metadata": metadata,
            }),
        };
        let mut ended = ended;
        seal_transcript(&calls.state, &mut ended, &report.transcript).await;
        // Durable before the call is forgotten here: from now on it is billed even if this
        // worker dies. Its lease (which the sweeper would bill) is released by the
        // call-events consumer once this event's debit is in, not by the worker.
        if let Err(error) = golos_control::call_events::publish(&calls.state, &CallEvent::Ended(ended)).await {
            tracing::error!(alert = "call_event_lost", %error, "call.ended could not be serialised");
        }
        calls.worker.call_metrics.call_ended(report.duration, report.reason);
        // Last: a drain that sees the registry empty has every call.ended in the outbox.
        drop(registration);
    }
}

/// Seals the call's transcript into its `call.ended` before it is queued or stored anywhere
/// (inline, or as a transcript blob when the event would not fit a queue message). A crypto
/// or store failure is retried; after that the call is still reported (billing comes
/// first) without its transcript: a transcript is never queued in plaintext.
async fn seal_transcript(state: &ControlState, ended: &mut CallEnded, turns: &[TranscriptTurn]) {
    for attempt in 0..3u32 {
        match golos_control::transcripts::seal_into(state, ended, turns).await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(%error, attempt, "could not seal the call's transcript; retrying");
                tokio::time::sleep(Duration::from_millis(200) * 2u32.pow(attempt)).await;
            }
        }
    }
    ended.transcript = None;
    tracing::error!(alert = "transcript_lost", call = %ended.call_id, "the call's transcript could not be sealed; reported without it");
}
