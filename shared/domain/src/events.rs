//! Events that cross process boundaries: what the media pool reports about a call (the
//! `call-events` queue) and what golos tells customers (the `webhooks` queue).
//!
//! Both are delivered at least once. Every event therefore carries a deterministic id
//! derived from the fact it reports, so a consumer that sees it twice can tell.

use crate::{AgentId, CallDirection, CallId, EndReason, OrgId, Timestamp, TranscriptRole};
use serde::{Deserialize, Serialize};

/// What the media pool reports about a call, in the order it happens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum CallEvent {
    #[serde(rename = "call.started")]
    Started(CallStarted),
    #[serde(rename = "call.ended")]
    Ended(CallEnded),
}

impl CallEvent {
    pub fn org_id(&self) -> &OrgId {
        match self {
            Self::Started(e) => &e.org_id,
            Self::Ended(e) => &e.org_id,
        }
    }

    pub fn call_id(&self) -> &CallId {
        match self {
            Self::Started(e) => &e.call_id,
            Self::Ended(e) => &e.call_id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallStarted {
    pub call_id: CallId,
    pub org_id: OrgId,
    pub agent_id: AgentId,
    pub direction: CallDirection,
    /// E.164, or absent for web calls. Personal data: never logged raw.
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    pub started_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallEnded {
    pub call_id: CallId,
    pub org_id: OrgId,
    pub agent_id: AgentId,
    pub direction: CallDirection,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    pub started_at: Timestamp,
    pub ended_at: Timestamp,
    /// Connected time in whole seconds; what the call is billed by.
    pub duration_secs: u64,
    pub end_reason: EndReason,
    /// The conversation, sealed before it was queued: a transcript never crosses a queue in
    /// plaintext. `None` when the call had no turns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript: Option<Transcript>,
    /// Per-turn and call-level latency metrics, as the media pool measured them.
    #[serde(default)]
    pub metrics: serde_json::Value,
}

/// A call's transcript as an event carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Transcript {
    /// Envelope-encrypted, in the message or by reference: what every producer queues.
    Sealed(SealedTranscript),
    /// Plaintext turns: accepted by `POST /v1/call-events` (over TLS), which seals them before
    /// queueing, and from events queued by a version that did not seal yet; never queued now.
    Plain(Vec<TranscriptTurn>),
}

/// An envelope-encrypted transcript (the JSON turns, under the org's transcript context).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stored_in", rename_all = "snake_case")]
pub enum SealedTranscript {
    /// In the message itself: the envelope's bytes in standard base64.
    Message { envelope: String },
    /// Too large for a queue message (SQS: 256 KiB): the envelope is kept in the store as the
    /// call's transcript blob, until its expiry (longer than the queue and its DLQ keep a message).
    Blob,
    /// (Webhooks) The call record's transcript: read it from the record at delivery.
    CallRecord,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscriptTurn {
    pub role: TranscriptRole,
    pub text: String,
    /// Milliseconds since the call started.
    pub at_ms: u64,
}

/// The kinds of customer webhooks (DESIGN.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WebhookEventType {
    #[serde(rename = "call.started")]
    CallStarted,
    #[serde(rename = "call.ended")]
    CallEnded,
    #[serde(rename = "agent.escalation_triggered")]
    EscalationTriggered,
    #[serde(rename = "call.shutdown_initiated")]
    ShutdownInitiated,
    #[serde(rename = "balance.low")]
    BalanceLow,
    #[serde(rename = "quota.exceeded")]
    QuotaExceeded,
    #[serde(rename = "call.transfer")]
    CallTransfer,
    /// An endpoint of the org was disabled after repeated failed deliveries (told to its
    /// other endpoints).
    #[serde(rename = "endpoint.disabled")]
    EndpointDisabled,
    /// Sent by `POST /v1/webhook-endpoints/{id}/test` to that endpoint only; not subscribable.
    #[serde(rename = "webhook.test")]
    Test,
}

impl WebhookEventType {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CallStarted => "call.started",
            Self::CallEnded => "call.ended",
            Self::EscalationTriggered => "agent.escalation_triggered",
            Self::ShutdownInitiated => "call.shutdown_initiated",
            Self::BalanceLow => "balance.low",
            Self::QuotaExceeded => "quota.exceeded",
            Self::CallTransfer => "call.transfer",
            Self::EndpointDisabled => "endpoint.disabled",
            Self::Test => "webhook.test",
        }
    }

    /// Every kind, in the order the docs list them: what an endpoint may subscribe to.
    pub const ALL: [Self; 8] = [
        Self::CallStarted,
        Self::CallEnded,
        Self::BalanceLow,
        Self::QuotaExceeded,
        Self::EscalationTriggered,
        Self::CallTransfer,
        Self::ShutdownInitiated,
        Self::EndpointDisabled,
    ];

    /// The kind of a wire name (`call.ended`); `None` for a name golos does not emit.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// One customer webhook, as queued for delivery and as the customer receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEvent {
    /// Deterministic (`evt_<type>_<subject>`): a re-emitted event keeps its id, so receivers
    /// can drop repeats.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: WebhookEventType,
    pub org_id: OrgId,
    pub created_at: Timestamp,
    pub data: serde_json::Value,
}

impl WebhookEvent {
    pub fn new(
        kind: WebhookEventType,
        subject: &str,
        org_id: OrgId,
        created_at: Timestamp,
        data: serde_json::Value,
    ) -> Self {
        let id = format!("evt_{}_{subject}", kind.as_str().replace('.', "_"));
        Self { id, kind, org_id, created_at, data }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_events_have_a_stable_wire_form() {
        let json = r#"{"type":"call.ended","call_id":"call_1","org_id":"org_1","agent_id":"agt_1","direction":"web",
            "started_at":1000,"ended_at":62000,"duration_secs":61,"end_reason":"caller_hangup"}"#;
        let event: CallEvent = serde_json::from_str(json).unwrap();
        let CallEvent::Ended(ended) = &event else { panic!("not ended") };
        assert_eq!((ended.duration_secs, ended.transcript.as_ref()), (61, None));
        let back: CallEvent = serde_json::from_str(&serde_json::to_string(&event).unwrap()).unwrap();
        assert_eq!(back, event);
        assert!(serde_json::from_str::<CallEvent>(r#"{"type":"call.exploded","call_id":"call_1"}"#).is_err());
    }

    #[test]
    fn transcripts_are_sealed_on_the_wire_and_plain_ones_are_still_read() {
        let base = r#""type":"call.ended","call_id":"call_1","org_id":"org_1","agent_id":"agt_1","direction":"web",
            "started_at":1000,"ended_at":62000,"duration_secs":61,"end_reason":"caller_hangup""#;
        let parse = |transcript: &str| -> CallEnded {
            let event: CallEvent = serde_json::from_str(&format!("{{{base},\"transcript\":{transcript}}}")).unwrap();
            let CallEvent::Ended(ended) = event else { panic!("not ended") };
            ended
        };
        let inline = parse(r#"{"stored_in":"message","envelope":"AQID"}"#);
        assert_eq!(inline.transcript, Some(Transcript::Sealed(SealedTranscript::Message { envelope: "AQID".into() })));
        assert_eq!(parse(r#"{"stored_in":"blob"}"#).transcript, Some(Transcript::Sealed(SealedTranscript::Blob)));
        let plain = parse(r#"[{"role":"user","text":"Алло","at_ms":5}]"#);
        assert!(matches!(plain.transcript, Some(Transcript::Plain(turns)) if turns[0].text == "Алло"));
        let wire = serde_json::to_value(CallEvent::Ended(inline)).unwrap();
        assert_eq!(wire["transcript"], serde_json::json!({"stored_in": "message", "envelope": "AQID"}));
    }

    #[test]
    fn webhook_ids_are_deterministic() {
        let org = OrgId::parse("org_1").unwrap();
        let a = WebhookEvent::new(
            WebhookEventType::BalanceLow,
            "call_9",
            org.clone(),
            Timestamp::from_millis(1),
            serde_json::Value::Null,
        );
        let b = WebhookEvent::new(
            WebhookEventType::BalanceLow,
            "call_9",
            org,
            Timestamp::from_millis(2),
            serde_json::Value::Null,
        );
        assert_eq!(a.id, "evt_balance_low_call_9");
        assert_eq!(a.id, b.id);
        assert_eq!(serde_json::to_value(&a).unwrap()["type"], "balance.low");
    }
}
