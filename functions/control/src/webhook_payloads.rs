//! What customers receive: the `data` of each kind of webhook event, as typed structs that
//! the emitters serialize and the OpenAPI document describes (components `WebhookEvent` and
//! `*Data`), so the schema and the wire cannot drift apart.
//!
//! Phone numbers are raw E.164 here: a webhook goes to the organisation's own endpoint, over
//! TLS, signed, and a CRM needs the number. They are never logged, and the dead-letter
//! listing masks them.

use golos_domain::events::WebhookEvent;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of every delivery: `POST` to the endpoint as `application/json`, with the
/// `webhook-id`, `webhook-timestamp`, `webhook-signature` and `X-Webhook-Attempt` headers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveredEvent {
    /// Deterministic per fact (`evt_<type>_<subject>`), equal to the `webhook-id` header: drop
    /// one you have seen and each fact arrives once, whatever the retries and redrives.
    pub id: String,
    /// `call.started`, `call.ended`, `balance.low`, `quota.exceeded`,
    /// `agent.escalation_triggered`, `call.transfer`, `call.shutdown_initiated`,
    /// `endpoint.disabled`, or `webhook.test`.
    #[serde(rename = "type")]
    pub kind: String,
    pub org_id: String,
    /// RFC 3339, when the fact happened.
    pub created_at: String,
    /// One of the `*Data` schemas, by `type`.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

impl DeliveredEvent {
    pub fn of(event: WebhookEvent) -> Self {
        Self {
            id: event.id,
            kind: event.kind.as_str().to_owned(),
            org_id: event.org_id.to_string(),
            created_at: event.created_at.to_string(),
            data: event.data,
        }
    }
}

/// `call.started`: a call was answered (or a web call connected) and its agent is talking.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CallStartedData {
    pub call_id: String,
    pub agent_id: String,
    /// `inbound`, `outbound` or `web`.
    pub direction: String,
    /// The caller's number, E.164; absent for web calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The number called, E.164; absent for web calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// RFC 3339.
    pub started_at: String,
}

/// One line of a delivered transcript.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TranscriptTurnData {
    /// `user`, `assistant`, `tool` or `system`.
    pub role: String,
    pub text: String,
    /// Milliseconds since the call started.
    pub at_ms: u64,
}

/// `call.ended`: the call is over and billed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CallEndedData {
    pub call_id: String,
    pub agent_id: String,
    pub direction: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    pub started_at: String,
    pub ended_at: String,
    /// Connected seconds.
    pub duration_secs: u64,
    /// Started minutes, what the call is billed by.
    pub billed_minutes: u64,
    /// What the call cost, in kopecks.
    pub cost_kopecks: i64,
    /// `caller_hangup`, `agent_hangup`, `transfer`, `timeout`, `failed`, `worker_shutdown`,
    /// `worker_lost`, …
    pub end_reason: String,
    /// The conversation, decrypted at delivery; `null` without one, or when it is longer than
    /// the inline limit (64 KiB; then `transcript_truncated` is true: fetch it from
    /// `transcript_url` with the organisation's API key).
    #[schema(value_type = Option<Vec<TranscriptTurnData>>)]
    pub transcript: serde_json::Value,
    /// `/v1/calls/{call_id}` on the golos API: the call with its whole transcript.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript_truncated: Option<bool>,
    /// Per-turn latencies, line quality (`line.media`: loss, jitter, MOS) and the transfer's
    /// outcome, as the media pool measured them.
    #[schema(value_type = Object)]
    pub metrics: serde_json::Value,
}

/// `balance.low`: the prepaid balance fell under the organisation's threshold (at most once a
/// day).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BalanceLowData {
    pub balance_kopecks: i64,
    pub threshold_kopecks: i64,
    /// The call whose debit crossed the threshold, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// True when seen while calls were live (before they ran into the limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_calls: Option<bool>,
}

/// `quota.exceeded`: a plan quota is used up (once per month and quota).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QuotaExceededData {
    /// `monthly_minutes`.
    pub quota: String,
    pub used: u64,
    pub included: u64,
    /// `YYYY-MM`.
    pub month: String,
}

/// `agent.escalation_triggered`: the agent's LLM called `escalate_to_human`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EscalationTriggeredData {
    pub call_id: String,
    pub agent_id: String,
    pub direction: String,
    /// The call's numbers, E.164; null on a web call.
    pub from: Option<String>,
    pub to: Option<String>,
    /// The LLM's words for why (may quote the caller), at most 500 characters; "" if none.
    pub reason: String,
    /// Where the call is now being transferred (its outcome follows as `call.transfer`);
    /// null when a person is to follow up after the call.
    pub transfer_to: Option<String>,
    pub triggered_at: String,
}

/// `call.transfer`: a transfer's outcome.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CallTransferData {
    pub call_id: String,
    pub agent_id: String,
    pub direction: String,
    pub from: Option<String>,
    pub to: Option<String>,
    /// Where the caller was handed, E.164.
    pub destination: String,
    /// `completed` or `failed`.
    pub status: String,
    /// Null when completed; else golos's fixed text of why (`the line is busy`, …).
    pub reason: Option<String>,
    /// `transfer_call` or `escalate_to_human`.
    pub initiated_by: String,
    pub requested_at: String,
    pub ended_at: String,
}

/// `call.shutdown_initiated`: a media worker is draining; these calls end within the grace
/// period.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ShutdownInitiatedData {
    pub worker_id: String,
    pub call_ids: Vec<String>,
    pub agent_ids: Vec<String>,
    pub grace_period_secs: u64,
    pub drain_deadline: String,
}

/// `endpoint.disabled`: one of the organisation's endpoints was disabled after repeated
/// failed deliveries; `PATCH /v1/webhook-endpoints/{id}` with `{"enabled": true}` re-enables
/// it, and `POST /v1/dead-letters/redrive` sends what it missed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EndpointDisabledData {
    pub endpoint_id: String,
    pub url: String,
    pub failures: u32,
    pub window_secs: u64,
    pub disabled_at: String,
}

/// `webhook.test`: sent by `POST /v1/webhook-endpoints/{id}/test` to that endpoint only.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TestData {
    pub endpoint_id: String,
    pub message: String,
}

/// The `data` of an event as JSON (they are plain structs: this cannot fail).
pub fn data(payload: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(payload).unwrap_or_default()
}
