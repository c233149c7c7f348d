//! Delivering customer webhooks (issue #18): the consumer of the `webhooks` queue, run as the
//! `golos-webhooks` Lambda function in AWS and inside `golos serve` locally.
//!
//! A queued event is fanned out to every enabled endpoint of its org that subscribed to its
//! type, and POSTed to each at once, signed the Standard Webhooks way (`webhook-id`,
//! `webhook-timestamp`, `webhook-signature: v1,<base64>` with every live secret of the
//! endpoint) plus `X-Webhook-Attempt`. What happens next is per endpoint:
//!
//! - a 2xx answer: delivered;
//! - 400, 401, 403, 404, 410, or a URL the egress policy refuses: dead-lettered at once;
//! - anything else (another status, a timeout, a refused connection, a bad certificate): the
//!   endpoint's own retry message is queued with a per-message delay of 1, 2, 4 and 8 s
//!   (`retry_unit` × 2^(attempt − 1)), and after the last attempt it is dead-lettered.
//!
//! The consumer never sleeps on a retry: the queue holds the message until it is due. Every
//! attempt goes into the deliveries log; an endpoint with `disable_after_failures` failed
//! attempts within `disable_window` is disabled, audited, and announced to the org's other
//! endpoints as `endpoint.disabled`.
//!
//! A dead letter is the endpoint's retry message with its attempt count reset and a note of
//! why it died, so a redrive (`POST /v1/dead-letters/redrive`) starts a fresh series. Every
//! delivery of one event carries the event's deterministic id as `webhook-id`: a receiver
//! that drops repeats sees each fact once, whatever the retries and redrives.

use crate::audit::{self, Actor};
use crate::state::ControlState;
use crate::tool_signing::{OrgSigningKey, ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::webhook_payloads::{self as payloads, DeliveredEvent};
use crate::{call_events, transcripts, webhooks, ControlError};
use golos_domain::events::{WebhookEvent, WebhookEventType};
use golos_domain::{CallId, OrgId, Timestamp, WebhookDeliveryId, WebhookEndpointId};
use golos_egress::EgressError;
use golos_ports::{DeliveryOutcome, PortError, QueueMessage, WebhookDelivery, WebhookEndpoint};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub const ATTEMPT_HEADER: &str = "x-webhook-attempt";
/// Statuses that say the receiver will never take this delivery: retrying is pointless.
pub const PERMANENT_STATUSES: [u16; 5] = [400, 401, 403, 404, 410];
/// The most of a receiver's answer golos reads (and then drops: it is never stored).
const MAX_ANSWER_BYTES: usize = 4096;

/// How deliveries are made; `ControlConfig::webhooks`.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// The whole request, connection to the end of the answer.
    pub timeout: Duration,
    /// Attempts per endpoint before the delivery is dead-lettered.
    pub max_attempts: u32,
    /// The first retry's delay; each next one doubles it.
    pub retry_unit: Duration,
    /// Failed attempts within `disable_window` that disable an endpoint.
    pub disable_after_failures: u32,
    pub disable_window: Duration,
    /// How long the deliveries log keeps an attempt.
    pub keep_deliveries: Duration,
    /// A `call.ended` transcript up to this many bytes of JSON is inline; a longer one is
    /// replaced by a link to the call (`transcript_url`).
    pub inline_transcript_bytes: usize,
    /// Batches the local consumer works on at once.
    pub consumers: usize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_attempts: 5,
            retry_unit: Duration::from_secs(1),
            disable_after_failures: 10,
            disable_window: Duration::from_secs(3600),
            keep_deliveries: Duration::from_secs(30 * 86_400),
            inline_transcript_bytes: 64 * 1024,
            consumers: 4,
        }
    }
}

impl DeliveryConfig {
    /// The delay before attempt `attempt + 1`, after attempt `attempt` failed.
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        self.retry_unit.saturating_mul(1 << attempt.saturating_sub(1).min(16))
    }
}

/// One endpoint's delivery of one event, as queued for a retry and as dead-lettered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointDelivery {
    pub endpoint_id: WebhookEndpointId,
    /// The attempt this message is for (1-based).
    pub attempt: u32,
    pub event: WebhookEvent,
    /// Why it was dead-lettered, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_lettered: Option<DeadLetterNote>,
}

/// What a dead letter says about its death.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterNote {
    /// `permanent_status`, `invalid_url`, `attempts_exhausted` or `endpoint_disabled`.
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    pub attempts: u32,
    pub at: Timestamp,
}

/// What the `webhooks` queue carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QueuedWebhook {
    /// One endpoint's retry (or a redriven dead letter).
    Endpoint(EndpointDelivery),
    /// An event as emitted: fanned out to the org's endpoints.
    Event(WebhookEvent),
}

impl QueuedWebhook {
    pub fn parse(body: &str) -> Result<Self, PortError> {
        // serde's message may quote a value (a phone number in the data): say only where.
        serde_json::from_str(body).map_err(|e| {
            PortError::invalid(format!("malformed webhook message: {:?} error at column {}", e.classify(), e.column()))
        })
    }

    pub fn event(&self) -> &WebhookEvent {
        match self {
            Self::Endpoint(delivery) => &delivery.event,
            Self::Event(event) => event,
        }
    }
}

/// What a single attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResult {
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    /// A fixed description of a failure; `None` on a 2xx.
    pub error: Option<String>,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Worth another attempt.
    Retryable,
    /// Never worth another attempt (`reason` for the dead letter).
    Permanent(&'static str),
}

/// Signs and POSTs one event to one endpoint (no retries, no log): the one place a webhook
/// leaves golos.
pub async fn attempt(
    state: &ControlState,
    endpoint: &WebhookEndpoint,
    payload: &[u8],
    event_id: &str,
    attempt: u32,
) -> Result<AttemptResult, ControlError> {
    let now = state.clock.now();
    let timestamp = now.as_millis().div_euclid(1000);
    let signature = webhooks::signing_secrets(state, endpoint, now)
        .await?
        .iter()
        .filter_map(|secret| OrgSigningKey::from_whsec(secret.expose()))
        .map(|key| key.sign(event_id, timestamp, payload))
        .collect::<Vec<_>>()
        .join(" ");
    if signature.is_empty() {
        return Err(PortError::corrupt("webhook endpoint has no usable signing secret").into());
    }
    let started = Instant::now();
    let elapsed = |started: Instant| u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let request = match state.webhook_http.post(&endpoint.url) {
        Ok(request) => request,
        Err(error) => {
            return Ok(AttemptResult {
                status_code: None,
                latency_ms: 0,
                error: Some(egress_failure(&error).to_owned()),
                verdict: Verdict::Permanent("invalid_url"),
            })
        }
    };
    let sent = request
        .timeout(state.config.webhooks.timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(reqwest::header::USER_AGENT, concat!("golos-webhooks/", env!("CARGO_PKG_VERSION")))
        .header(ID_HEADER, event_id)
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .header(SIGNATURE_HEADER, signature)
        .header(ATTEMPT_HEADER, attempt.to_string())
        .body(payload.to_vec())
        .send()
        .await;
    let result = match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            // Read (a little of) the answer so the connection can be reused; it is not kept.
            let _ = tokio::time::timeout(
                state.config.webhooks.timeout,
                golos_egress::net::read_prefix(response, MAX_ANSWER_BYTES),
            )
            .await;
            let (error, verdict) = match status {
                200..=299 => (None, Verdict::Delivered),
                s if PERMANENT_STATUSES.contains(&s) => {
                    (Some(format!("the endpoint answered {s}")), Verdict::Permanent("permanent_status"))
                }
                s => (Some(format!("the endpoint answered {s}")), Verdict::Retryable),
            };
            AttemptResult { status_code: Some(status), latency_ms: elapsed(started), error, verdict }
        }
        Err(error) => {
            let (description, verdict) = transport_failure(&error);
            AttemptResult { status_code: None, latency_ms: elapsed(started), error: Some(description), verdict }
        }
    };
    Ok(result)
}

fn egress_failure(error: &EgressError) -> &'static str {
    match error {
        EgressError::InvalidUrl(_) | EgressError::Scheme(_) => "the endpoint URL is not valid",
        EgressError::PlainText(_) => "plain http is not allowed to this destination",
        EgressError::Userinfo => "the endpoint URL carries credentials",
        EgressError::Forbidden { .. }
        | EgressError::ForbiddenResolution { .. }
        | EgressError::PortNotAllowed { .. } => "the endpoint resolves to a destination golos does not connect to",
        _ => "the endpoint URL is not allowed",
    }
}

/// A fixed description of a failed request (reqwest's text may quote the URL, which may hold
/// a tenant's token) and whether another attempt may help.
fn transport_failure(error: &reqwest::Error) -> (String, Verdict) {
    if let Some(egress) = golos_egress::net::egress_error_of(error) {
        return match egress {
            EgressError::Resolve { .. } | EgressError::Connect(_) | EgressError::Timeout(_) => {
                ("could not resolve or connect to the endpoint".to_owned(), Verdict::Retryable)
            }
            other => (egress_failure(other).to_owned(), Verdict::Permanent("invalid_url")),
        };
    }
    let description = if error.is_timeout() {
        "the endpoint did not answer in time"
    } else if is_certificate_error(error) {
        "the endpoint's TLS certificate was not accepted"
    } else if error.is_connect() {
        "could not connect to the endpoint"
    } else {
        "the request to the endpoint failed"
    };
    (description.to_owned(), Verdict::Retryable)
}

fn is_certificate_error(error: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        let text = current.to_string().to_ascii_lowercase();
        if text.contains("certificate") || text.contains("invalid peer") || text.contains("unknownissuer") {
            return true;
        }
        source = current.source();
    }
    false
}

/// The body an endpoint receives for `event`: the event with a `call.ended` transcript
/// decrypted at the last moment, inline up to the configured size, else as a link.
pub async fn payload(state: &ControlState, event: &WebhookEvent) -> Result<Vec<u8>, PortError> {
    let mut event = event.clone();
    if event.kind == WebhookEventType::CallEnded {
        open_transcript(state, &mut event).await?;
    }
    serde_json::to_vec(&DeliveredEvent::of(event)).map_err(PortError::invalid)
}

async fn open_transcript(state: &ControlState, event: &mut WebhookEvent) -> Result<(), PortError> {
    let Some(data) = event.data.as_object_mut() else { return Ok(()) };
    let sealed = data.get("transcript").cloned().unwrap_or_default();
    let Some(call) = data.get("call_id").and_then(serde_json::Value::as_str).and_then(|c| CallId::parse(c).ok()) else {
        return Ok(());
    };
    let turns = transcripts::open_webhook_transcript(state, &event.org_id, &call, &sealed).await?;
    let inline = match turns {
        None => serde_json::Value::Null,
        Some(turns) => {
            let value = serde_json::to_value(turns).map_err(PortError::invalid)?;
            let size = serde_json::to_vec(&value).map_or(usize::MAX, |bytes| bytes.len());
            if size <= state.config.webhooks.inline_transcript_bytes {
                value
            } else {
                data.insert("transcript_truncated".into(), json!(true));
                serde_json::Value::Null
            }
        }
    };
    data.insert("transcript".into(), inline);
    data.insert("transcript_url".into(), json!(format!("/v1/calls/{call}")));
    Ok(())
}

/// Processes one message of the `webhooks` queue; `Ok` once every endpoint is settled
/// (delivered, queued for a retry, or dead-lettered). An error leaves the message on the queue to
/// come back (its endpoints may then get a repeat, which their `webhook-id` lets them drop);
/// the queue's own dead-letter policy catches a message that keeps failing.
pub async fn process(state: &ControlState, body: &str) -> Result<(), PortError> {
    let queued = match QueuedWebhook::parse(body) {
        Ok(queued) => queued,
        Err(error) => {
            // Nothing can ever deliver it; keep it where an operator can look.
            state.queues.webhooks.dead_letter(body).await?;
            tracing::error!(%error, "unreadable webhook message dead-lettered");
            return Ok(());
        }
    };
    match queued {
        QueuedWebhook::Event(event) => {
            let endpoints = state.stores.webhook_endpoints.list(&event.org_id).await?;
            let subscribed: Vec<_> =
                endpoints.iter().filter(|e| e.enabled && e.event_types.contains(&event.kind)).collect();
            if subscribed.is_empty() {
                return Ok(());
            }
            let payload = payload(state, &event).await?;
            let results = futures::future::join_all(
                subscribed.iter().map(|endpoint| deliver(state, endpoint, &event, &payload, 1)),
            )
            .await;
            results.into_iter().collect::<Result<Vec<_>, _>>()?;
        }
        QueuedWebhook::Endpoint(delivery) => {
            let Some(endpoint) =
                state.stores.webhook_endpoints.get(&delivery.event.org_id, &delivery.endpoint_id).await?
            else {
                // Deleted since: nobody is left to deliver to.
                return Ok(());
            };
            if !endpoint.enabled {
                // Kept for a redrive once the endpoint is enabled again.
                dead_letter(
                    state,
                    &endpoint,
                    &delivery.event,
                    delivery.attempt.saturating_sub(1),
                    "endpoint_disabled",
                    None,
                )
                .await?;
                return Ok(());
            }
            let payload = payload(state, &delivery.event).await?;
            deliver(state, &endpoint, &delivery.event, &payload, delivery.attempt.max(1)).await?;
        }
    }
    Ok(())
}

/// One attempt at one endpoint, and whatever follows from it: the log line, the retry or the
/// dead letter, and disabling the endpoint after too many failures.
async fn deliver(
    state: &ControlState,
    endpoint: &WebhookEndpoint,
    event: &WebhookEvent,
    payload: &[u8],
    attempt_number: u32,
) -> Result<(), PortError> {
    let config = &state.config.webhooks;
    let result = match attempt(state, endpoint, payload, &event.id, attempt_number).await {
        Ok(result) => result,
        Err(ControlError::Port(error)) => return Err(error),
        Err(other) => return Err(PortError::unavailable(other.to_string())),
    };
    let now = state.clock.now();
    let (outcome, next_attempt_at) = match result.verdict {
        Verdict::Delivered => (DeliveryOutcome::Delivered, None),
        Verdict::Retryable if attempt_number < config.max_attempts => {
            let delay = config.retry_delay(attempt_number);
            let retry = EndpointDelivery {
                endpoint_id: endpoint.id.clone(),
                attempt: attempt_number + 1,
                event: event.clone(),
                dead_lettered: None,
            };
            let body = serde_json::to_string(&retry).map_err(PortError::invalid)?;
            state.queues.webhooks.send(&body, delay).await?;
            let due = now.plus_millis(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
            (DeliveryOutcome::Retrying, Some(due))
        }
        Verdict::Retryable => {
            dead_letter(state, endpoint, event, attempt_number, "attempts_exhausted", result.status_code).await?;
            (DeliveryOutcome::DeadLettered, None)
        }
        Verdict::Permanent(reason) => {
            dead_letter(state, endpoint, event, attempt_number, reason, result.status_code).await?;
            (DeliveryOutcome::DeadLettered, None)
        }
    };
    let metrics = &state.metrics;
    match outcome {
        DeliveryOutcome::Delivered => metrics.webhook_deliveries_succeeded_total.fetch_add(1, Ordering::Relaxed),
        _ => metrics.webhook_deliveries_failed_total.fetch_add(1, Ordering::Relaxed),
    };
    record(state, endpoint, event, attempt_number, outcome, &result, next_attempt_at).await?;
    if outcome.is_failure() {
        tracing::info!(org = %endpoint.org_id, endpoint = %endpoint.id, event = %event.id, attempt = attempt_number,
            status = ?result.status_code, error = result.error.as_deref().unwrap_or_default(), ?outcome,
            "webhook delivery failed");
        disable_if_failing(state, endpoint).await?;
    }
    Ok(())
}

async fn record(
    state: &ControlState,
    endpoint: &WebhookEndpoint,
    event: &WebhookEvent,
    attempt: u32,
    outcome: DeliveryOutcome,
    result: &AttemptResult,
    next_attempt_at: Option<Timestamp>,
) -> Result<WebhookDelivery, PortError> {
    let now = state.clock.now();
    let keep = i64::try_from(state.config.webhooks.keep_deliveries.as_millis()).unwrap_or(i64::MAX);
    let delivery = WebhookDelivery {
        id: WebhookDeliveryId::parse(format!("whd_{}", state.ids.new_suffix())).map_err(PortError::invalid)?,
        org_id: endpoint.org_id.clone(),
        endpoint_id: endpoint.id.clone(),
        event_id: event.id.clone(),
        event_type: event.kind,
        attempt,
        outcome,
        status_code: result.status_code,
        latency_ms: result.latency_ms,
        error: result.error.clone(),
        next_attempt_at,
        created_at: now,
        expires_at: now.plus_millis(keep),
    };
    state.stores.webhook_deliveries.record(std::slice::from_ref(&delivery)).await?;
    Ok(delivery)
}

async fn dead_letter(
    state: &ControlState,
    endpoint: &WebhookEndpoint,
    event: &WebhookEvent,
    attempts: u32,
    reason: &str,
    status_code: Option<u16>,
) -> Result<(), PortError> {
    let letter = EndpointDelivery {
        endpoint_id: endpoint.id.clone(),
        // A redrive starts a fresh series of attempts.
        attempt: 1,
        event: event.clone(),
        dead_lettered: Some(DeadLetterNote { reason: reason.to_owned(), status_code, attempts, at: state.clock.now() }),
    };
    let body = serde_json::to_string(&letter).map_err(PortError::invalid)?;
    state.queues.webhooks.dead_letter(&body).await?;
    state.metrics.webhook_dead_letters_total.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// The actor the audit log names for what the deliverer does on its own.
fn deliverer() -> Actor {
    Actor { name: "system:webhooks".into(), client_ip: String::new(), request_id: String::new() }
}

/// Disables `endpoint` once it has failed `disable_after_failures` times within the window:
/// once (a conditional update), with an audit entry and an `endpoint.disabled` event to the
/// org's other endpoints.
async fn disable_if_failing(state: &ControlState, endpoint: &WebhookEndpoint) -> Result<(), PortError> {
    let config = &state.config.webhooks;
    let now = state.clock.now();
    let window = i64::try_from(config.disable_window.as_millis()).unwrap_or(i64::MAX);
    let failures = state
        .stores
        .webhook_deliveries
        .count_failures_since(&endpoint.org_id, &endpoint.id, now.plus_millis(-window), config.disable_after_failures)
        .await?;
    if failures < config.disable_after_failures {
        return Ok(());
    }
    let Some(mut current) = state.stores.webhook_endpoints.get(&endpoint.org_id, &endpoint.id).await? else {
        return Ok(());
    };
    if !current.enabled {
        return Ok(());
    }
    current.enabled = false;
    current.updated_at = now;
    match state.stores.webhook_endpoints.update(&current).await {
        Ok(_) => {}
        // Someone else changed it meanwhile (an admin, or another consumer that disabled it):
        // their version stands; the next failure looks again.
        Err(PortError::Conflict { .. } | PortError::NotFound { .. }) => return Ok(()),
        Err(error) => return Err(error),
    }
    state.metrics.webhook_endpoints_disabled_total.fetch_add(1, Ordering::Relaxed);
    audit::record(state, &deliverer(), &endpoint.org_id, "webhook_endpoint.disable", endpoint.id.as_str()).await;
    tracing::warn!(org = %endpoint.org_id, endpoint = %endpoint.id, failures, "webhook endpoint disabled after failed deliveries");
    let data = payloads::data(&payloads::EndpointDisabledData {
        endpoint_id: endpoint.id.to_string(),
        url: endpoint.url.clone(),
        failures,
        window_secs: config.disable_window.as_secs(),
        disabled_at: now.to_string(),
    });
    // The version it was disabled at names the fact: disabled again later is a new event.
    let subject = format!("{}_{}", endpoint.id, current.version);
    let event = WebhookEvent::new(WebhookEventType::EndpointDisabled, &subject, endpoint.org_id.clone(), now, data);
    call_events::emit(state, event).await
}

/// Processes one received batch concurrently; returns the messages that failed (for the
/// Lambda's partial batch failures, and for the local consumer to leave on the queue).
pub async fn process_batch<'a>(
    state: &ControlState,
    messages: &'a [QueueMessage],
) -> Vec<(&'a QueueMessage, PortError)> {
    let results = futures::future::join_all(messages.iter().map(|m| process(state, &m.body))).await;
    messages
        .iter()
        .zip(results)
        .filter_map(|(message, result)| match result {
            Ok(()) => None,
            Err(error) => {
                tracing::warn!(message = %message.id, receives = message.receive_count, %error,
                    "webhook message failed; it will come back");
                Some((message, error))
            }
        })
        .collect()
}

/// The local consumer: `consumers` loops receive from the embedded queue until `shutdown`,
/// each processing its batch and deleting what was settled. A failed message is left hidden
/// for a few seconds and comes back (and reaches the dead-letter queue after `max_receives`).
pub async fn run_consumer(
    state: ControlState,
    idle_poll: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    let (stop, _) = tokio::sync::watch::channel(false);
    let loops: Vec<_> = (0..state.config.webhooks.consumers.max(1))
        .map(|_| {
            let (state, mut stopped) = (state.clone(), stop.subscribe());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stopped.changed() => return,
                        () = consume_once(&state, idle_poll) => {}
                    }
                }
            })
        })
        .collect();
    shutdown.await;
    let _ = stop.send(true);
    for handle in loops {
        let _ = handle.await;
    }
}

/// One receive and what follows; sleeps `idle_poll` when the queue is empty.
async fn consume_once(state: &ControlState, idle_poll: Duration) {
    if deliver_ready(state).await == 0 {
        call_events::idle(state.queues.webhooks.as_ref(), idle_poll).await;
    }
}

/// Receives one batch of due messages, processes it and acknowledges each message: deleted
/// when settled, else hidden for a few seconds to come back. Returns how many it received.
pub async fn deliver_ready(state: &ControlState) -> usize {
    let queue = &state.queues.webhooks;
    // Long enough to cover a batch of attempts that all time out.
    let visibility = state.config.webhooks.timeout.saturating_mul(3);
    let messages = match queue.receive(10, visibility).await {
        Ok(messages) => messages,
        Err(error) => {
            tracing::error!(%error, "receiving webhooks failed");
            return 0;
        }
    };
    let failed = process_batch(state, &messages).await;
    for message in &messages {
        let result = if failed.iter().any(|(m, _)| m.id == message.id) {
            queue.change_visibility(&message.receipt, Duration::from_secs(5)).await
        } else {
            queue.delete(&message.receipt).await
        };
        if let Err(error) = result {
            tracing::error!(message = %message.id, %error, "acknowledging a webhook message failed; it will come back");
        }
    }
    messages.len()
}

/// `POST /v1/webhook-endpoints/{id}/test`: a `webhook.test` event delivered to this endpoint
/// only, now, once (no retry, no dead letter), and logged like any delivery.
pub async fn send_test(state: &ControlState, org: &OrgId, endpoint_id: &str) -> Result<WebhookDelivery, ControlError> {
    let endpoint = webhooks::get(state, org, endpoint_id).await?;
    let now = state.clock.now();
    let subject = format!("{}_{}", endpoint.id, state.ids.new_suffix());
    let data = payloads::data(&payloads::TestData {
        endpoint_id: endpoint.id.to_string(),
        message: "a test delivery from golos".into(),
    });
    let event = WebhookEvent::new(WebhookEventType::Test, &subject, org.clone(), now, data);
    let payload = serde_json::to_vec(&DeliveredEvent::of(event.clone())).map_err(ControlError::internal)?;
    let result = attempt(state, &endpoint, &payload, &event.id, 1).await?;
    let outcome = match result.verdict {
        Verdict::Delivered => DeliveryOutcome::Delivered,
        _ => DeliveryOutcome::Failed,
    };
    // A test says how the endpoint answers; it does not count towards disabling it.
    Ok(record(state, &endpoint, &event, 1, outcome, &result, None).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_one_two_four_eight_seconds() {
        let config = DeliveryConfig::default();
        let delays: Vec<u64> = (1..config.max_attempts).map(|a| config.retry_delay(a).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8]);
    }

    #[test]
    fn queued_messages_tell_events_from_endpoint_deliveries() {
        let event = WebhookEvent::new(
            WebhookEventType::CallStarted,
            "call_1",
            OrgId::parse("org_1").unwrap(),
            Timestamp::from_millis(5),
            json!({"call_id": "call_1"}),
        );
        let as_event = serde_json::to_string(&event).unwrap();
        assert_eq!(QueuedWebhook::parse(&as_event).unwrap(), QueuedWebhook::Event(event.clone()));
        let retry = EndpointDelivery {
            endpoint_id: WebhookEndpointId::parse("whe_1").unwrap(),
            attempt: 3,
            event,
            dead_lettered: None,
        };
        let as_retry = serde_json::to_string(&retry).unwrap();
        assert_eq!(QueuedWebhook::parse(&as_retry).unwrap(), QueuedWebhook::Endpoint(retry));
        assert!(QueuedWebhook::parse("{\"id\": 5}").is_err());
    }
}
