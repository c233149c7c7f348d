//! What a live call tells the org's webhook endpoints while it runs: `agent.escalation_triggered`
//! when the LLM calls `escalate_to_human`, and `call.transfer` once a transfer's outcome is
//! known (DESIGN.md §3, docs/api.md "Webhooks").
//!
//! The sink calls this on the shard's thread, so nothing here waits: each event is queued by a
//! task on the I/O runtime. Queueing is best effort, like `call.shutdown_initiated`: a failure
//! is logged (never with the numbers or the LLM's text) and the call goes on.

use golos_call::TransferCause;
use golos_control::webhook_payloads as payloads;
use golos_control::ControlState;
use golos_domain::events::{WebhookEvent, WebhookEventType};
use golos_domain::{AgentId, CallDirection, CallId, OrgId, Timestamp};

/// The most of the LLM's escalation reason a webhook carries, in characters.
pub(crate) const MAX_REASON_CHARS: usize = 500;
/// Why a transfer failed when the call ended before the line answered it.
pub(crate) const ENDED_DURING_TRANSFER: &str = "the call ended before the transfer completed";
/// Failure reasons are golos's own fixed texts; this bounds them all the same.
const MAX_FAILURE_CHARS: usize = 200;

/// Who the call is, for its webhooks. `from`/`to`: E.164 of a phone call (personal data: they
/// go to the org's own endpoints, never into a log).
pub(crate) struct CallIdentity {
    pub call_id: CallId,
    pub org_id: OrgId,
    pub agent_id: AgentId,
    pub direction: CallDirection,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// A transfer handed to the line, waiting for its outcome.
struct PendingTransfer {
    n: u32,
    destination: String,
    cause: TransferCause,
    requested_at: Timestamp,
}

/// One call's webhook events. Escalations and transfers are numbered within the call, so each
/// event's id (`evt_<type>_<call_id>_<n>`) names one fact and a re-queued event keeps it.
pub(crate) struct CallWebhooks {
    state: ControlState,
    runtime: tokio::runtime::Handle,
    call: CallIdentity,
    escalations: u32,
    transfers: u32,
    pending: Option<PendingTransfer>,
}

impl CallWebhooks {
    pub(crate) fn new(state: ControlState, runtime: tokio::runtime::Handle, call: CallIdentity) -> Self {
        Self { state, runtime, call, escalations: 0, transfers: 0, pending: None }
    }

    /// The engine reported `escalate_to_human`; `transfer_to` is where the call now goes, if anywhere.
    pub(crate) fn escalation(&mut self, reason: &str, transfer_to: Option<&str>) {
        self.escalations += 1;
        let now = self.state.clock.now();
        let data = payloads::data(&payloads::EscalationTriggeredData {
            call_id: self.call.call_id.to_string(),
            agent_id: self.call.agent_id.to_string(),
            direction: self.call.direction.as_str().to_owned(),
            from: self.call.from.clone(),
            to: self.call.to.clone(),
            reason: cap(reason, MAX_REASON_CHARS).to_owned(),
            transfer_to: transfer_to.map(str::to_owned),
            triggered_at: now.to_string(),
        });
        let subject = format!("{}_{}", self.call.call_id, self.escalations);
        self.queue(WebhookEventType::EscalationTriggered, &subject, now, data);
    }

    /// The engine handed the caller to `destination`; its outcome follows with [`Self::transfer_ended`].
    pub(crate) fn transfer_requested(&mut self, destination: &str, cause: TransferCause) {
        if self.pending.is_some() {
            // The engine asks for one transfer at a time; a second would be a bug there.
            self.transfer_ended(Err(ENDED_DURING_TRANSFER));
        }
        self.transfers += 1;
        self.pending = Some(PendingTransfer {
            n: self.transfers,
            destination: destination.to_owned(),
            cause,
            requested_at: self.state.clock.now(),
        });
    }

    /// Whether a transfer waits for its outcome.
    pub(crate) fn transfer_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// The pending transfer's outcome (nothing if none is pending): `Err` carries golos's
    /// fixed text of why it failed.
    pub(crate) fn transfer_ended(&mut self, outcome: Result<(), &str>) {
        let Some(transfer) = self.pending.take() else { return };
        let now = self.state.clock.now();
        let (status, reason) = match outcome {
            Ok(()) => ("completed", None),
            Err(reason) => ("failed", Some(cap(reason, MAX_FAILURE_CHARS))),
        };
        let data = payloads::data(&payloads::CallTransferData {
            call_id: self.call.call_id.to_string(),
            agent_id: self.call.agent_id.to_string(),
            direction: self.call.direction.as_str().to_owned(),
            from: self.call.from.clone(),
            to: self.call.to.clone(),
            destination: transfer.destination,
            status: status.to_owned(),
            reason: reason.map(str::to_owned),
            initiated_by: transfer.cause.as_str().to_owned(),
            requested_at: transfer.requested_at.to_string(),
            ended_at: now.to_string(),
        });
        let subject = format!("{}_{}", self.call.call_id, transfer.n);
        self.queue(WebhookEventType::CallTransfer, &subject, now, data);
    }

    /// Queues the event on the runtime: the shard does not wait for the store.
    fn queue(&self, kind: WebhookEventType, subject: &str, at: Timestamp, data: serde_json::Value) {
        let event = WebhookEvent::new(kind, subject, self.call.org_id.clone(), at, data);
        let state = self.state.clone();
        let call = self.call.call_id.clone();
        self.runtime.spawn(async move {
            if let Err(error) = golos_control::call_events::emit(&state, event).await {
                // Telling the customer is best effort; the call goes on. The event's data
                // (numbers, the LLM's words) stays out of the log.
                tracing::warn!(%call, event = kind.as_str(), %error, "could not queue a webhook event");
            }
        });
    }
}

/// `text`'s first `max` characters.
fn cap(text: &str, max: usize) -> &str {
    text.char_indices().nth(max).map_or(text, |(at, _)| &text[..at])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    /// Everything on the embedded backend's webhooks queue once `count` events are there.
    async fn queued(state: &ControlState, count: usize) -> Vec<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut events = Vec::new();
        while events.len() < count {
            assert!(tokio::time::Instant::now() < deadline, "only {events:#?} were queued");
            for message in state.queues.webhooks.receive(10, Duration::from_secs(60)).await.unwrap() {
                events.push(serde_json::from_str(&message.body).unwrap());
            }
        }
        events.sort_by_key(|e: &serde_json::Value| e["id"].as_str().unwrap().to_owned());
        events
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn escalations_and_transfers_are_numbered_within_the_call() {
        let dir = tempfile::tempdir().unwrap();
        let backend = golos_bootstrap::Backend::Local { data_dir: dir.path().to_path_buf() };
        let state = golos_bootstrap::control_state(&backend, golos_control::ControlConfig::default()).await.unwrap();
        let call = CallIdentity {
            call_id: CallId::parse("call_w1").unwrap(),
            org_id: OrgId::parse("org_w").unwrap(),
            agent_id: AgentId::parse("agt_w").unwrap(),
            direction: CallDirection::Inbound,
            from: Some("+79161234567".to_owned()),
            to: Some("+74951234567".to_owned()),
        };
        let mut webhooks = CallWebhooks::new(state.clone(), tokio::runtime::Handle::current(), call);
        webhooks.escalation("wants a person", Some("+74959876543"));
        webhooks.transfer_requested("+74959876543", TransferCause::EscalateToHuman);
        assert!(webhooks.transfer_pending());
        webhooks.transfer_ended(Err("the line is busy"));
        webhooks.transfer_ended(Ok(()));
        webhooks.escalation(&"ж".repeat(600), None);
        webhooks.transfer_requested("+74950000000", TransferCause::TransferCall);
        webhooks.transfer_ended(Ok(()));
        assert!(!webhooks.transfer_pending());

        let events = queued(&state, 4).await;
        let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert_eq!(
            ids,
            [
                "evt_agent_escalation_triggered_call_w1_1",
                "evt_agent_escalation_triggered_call_w1_2",
                "evt_call_transfer_call_w1_1",
                "evt_call_transfer_call_w1_2",
            ],
            "one event per fact, none for an outcome without a pending transfer"
        );
        let first = &events[0]["data"];
        assert_eq!(first["reason"], "wants a person");
        assert_eq!(first["transfer_to"], "+74959876543");
        assert_eq!((&first["from"], &first["to"]), (&json!("+79161234567"), &json!("+74951234567")));
        assert_eq!(first["direction"], "inbound");
        assert_eq!(events[0]["org_id"], "org_w");
        let second = &events[1]["data"];
        assert_eq!(second["reason"].as_str().unwrap().chars().count(), MAX_REASON_CHARS);
        assert_eq!(second["transfer_to"], serde_json::Value::Null);
        let failed = &events[2]["data"];
        assert_eq!(
            (&failed["status"], &failed["reason"], &failed["initiated_by"]),
            (&json!("failed"), &json!("the line is busy"), &json!("escalate_to_human"))
        );
        let completed = &events[3]["data"];
        assert_eq!(
            (&completed["status"], &completed["reason"], &completed["initiated_by"], &completed["destination"]),
            (&json!("completed"), &serde_json::Value::Null, &json!("transfer_call"), &json!("+74950000000"))
        );
        assert!(completed["requested_at"].as_str().unwrap() <= completed["ended_at"].as_str().unwrap());
    }

    #[test]
    fn reasons_are_capped_on_character_boundaries() {
        assert_eq!(cap("короткий", 500), "короткий");
        assert_eq!(cap("жалоба", 3), "жал");
        assert_eq!(cap(&"я".repeat(600), MAX_REASON_CHARS).chars().count(), MAX_REASON_CHARS);
    }
}
