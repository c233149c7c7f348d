//! The `call-events` consumer (issue #4): `call.started` / `call.ended` from the media pool.
//! A call's end debits `ceil(duration_s/60) * rate` once per call id (the ledger's
//! idempotency key `call:<id>`), adds its minutes to the month's usage in the same step,
//! releases the call's lease, records the call's start and end by conditional writes (an
//! ended record is never overwritten, see `CallStore`) with the transcript envelope the event
//! carries (sealed by the worker, inline or by reference: `transcripts`), and
//! queues customer webhooks: `call.started`, `call.ended`, and `balance.low` /
//! `quota.exceeded` while the org is below its balance threshold or over its minutes (ids
//! per org and day / month, so a receiver sees one per period).
//!
//! Delivery is at least once, so every step is idempotent: a redelivered event changes
//! nothing and re-queues webhooks under the same deterministic event ids. The Lambda
//! (`functions/call-events`) and the local consumer (`run_consumer`) call the same `process`.

use crate::state::{ControlMetrics, ControlState};
use crate::webhook_payloads as payloads;
use crate::{retention, transcripts, ControlError, ControlResult};
use golos_domain::billing::{billable_minutes, LedgerEventKind};
use golos_domain::events::{
    CallEnded, CallEvent, CallStarted, SealedTranscript, Transcript, WebhookEvent, WebhookEventType,
};
use golos_domain::{EndReason, Kopecks, PhoneNumber, Timestamp};
use golos_ports::{
    ApplyOutcome, CallDirection, CallRecord, CallStatus, Lease, Org, OutboxEntry, PortError, Queue, QueueMessage,
};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The org setting that overrides the `balance.low` threshold, in kopecks.
pub const BALANCE_LOW_SETTING: &str = "balance_low_kopecks";
/// Without the setting, `balance.low` fires below this many minutes of calls at the org's rate.
pub const BALANCE_LOW_DEFAULT_MINUTES: i64 = 10;

/// What processing one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Processed {
    /// The call's start was recorded.
    Started,
    /// The call was debited now.
    Debited,
    /// The call had been debited before (a redelivery); nothing moved.
    AlreadyDebited,
}

/// Whether a failure will go away by itself. Malformed events and unknown orgs will not:
/// they are left to reach the dead-letter queue, where an operator can inspect them.
pub fn is_permanent(error: &PortError) -> bool {
    matches!(error, PortError::Invalid { .. } | PortError::NotFound { .. })
}

/// Processes one queued event (its JSON body).
pub async fn process(state: &ControlState, body: &str) -> Result<Processed, PortError> {
    // serde's message may quote the offending value (a phone number, say): log only where.
    let event: CallEvent = serde_json::from_str(body).map_err(|e| {
        PortError::invalid(format!(
            "malformed call event: {:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    let org =
        state.stores.orgs.get(event.org_id()).await?.ok_or_else(|| {
            PortError::not_found(format!("organisation {} of call {}", event.org_id(), event.call_id()))
        })?;
    match event {
        CallEvent::Started(started) => call_started(state, &org, started).await,
        CallEvent::Ended(ended) => call_ended(state, &org, ended).await,
    }
}

fn number(raw: Option<&String>) -> Option<PhoneNumber> {
    raw.and_then(|n| PhoneNumber::parse(n).ok())
}

async fn call_started(state: &ControlState, org: &Org, started: CallStarted) -> Result<Processed, PortError> {
    // Created only if absent: a redelivered or late start never reopens an ended call.
    let record = CallRecord {
        id: started.call_id.clone(),
        org_id: org.id.clone(),
        agent_id: started.agent_id.clone(),
        direction: started.direction,
        from: number(started.from.as_ref()),
        to: number(started.to.as_ref()),
        status: CallStatus::InProgress,
        started_at: started.started_at,
        ended_at: None,
        duration_secs: None,
        end_reason: None,
        cost: None,
        transcript: None,
        metrics: json!({}),
        expires_at: Some(retention::expiry(org, started.started_at)),
        erased: None,
    };
    state.calls.record_start(&record).await?;
    let data = payloads::data(&payloads::CallStartedData {
        call_id: started.call_id.to_string(),
        agent_id: started.agent_id.to_string(),
        direction: started.direction.as_str().to_owned(),
        from: started.from.clone(),
        to: started.to.clone(),
        started_at: started.started_at.to_string(),
    });
    emit(
        state,
        WebhookEvent::new(
            WebhookEventType::CallStarted,
            started.call_id.as_str(),
            org.id.clone(),
            started.started_at,
            data,
        ),
    )
    .await?;
    Ok(Processed::Started)
}

/// The `balance.low` threshold of an org.
pub fn balance_low_threshold(org: &Org) -> Kopecks {
    org.settings.get(BALANCE_LOW_SETTING).and_then(serde_json::Value::as_i64).map_or_else(
        || Kopecks::new(org.quotas.rate_per_minute.get().saturating_mul(BALANCE_LOW_DEFAULT_MINUTES)),
        Kopecks::new,
    )
}

pub(crate) async fn call_ended(state: &ControlState, org: &Org, ended: CallEnded) -> Result<Processed, PortError> {
    let debit = LedgerEventKind::call_debit(ended.call_id.clone(), ended.duration_secs, org.quotas.rate_per_minute)
        .map_err(|e| PortError::invalid(e.to_string()))?;
    // Minutes count in the month the call ended, whenever the event is processed.
    let outcome = state.stores.ledger.apply(&org.id, &debit, ended.ended_at).await?;
    let cost = outcome.entry().delta.checked_neg().map_err(|e| PortError::invalid(e.to_string()))?;
    // Released here, once the debit is in: until then the call's run-up counts against
    // its org's spending as a live lease, so no moment exists in which it counts nowhere.
    release_slot(state, &org.id, &ended.call_id).await?;

    let transcript = transcripts::envelope_of(state, &ended).await?;
    let record = CallRecord {
        id: ended.call_id.clone(),
        org_id: org.id.clone(),
        agent_id: ended.agent_id.clone(),
        direction: ended.direction,
        from: number(ended.from.as_ref()),
        to: number(ended.to.as_ref()),
        status: if ended.end_reason.is_error() { CallStatus::Failed } else { CallStatus::Ended },
        started_at: ended.started_at,
        ended_at: Some(ended.ended_at),
        duration_secs: Some(ended.duration_secs),
        end_reason: Some(ended.end_reason),
        cost: Some(cost),
        transcript,
        metrics: ended.metrics.clone(),
        expires_at: Some(retention::expiry(org, ended.ended_at)),
        erased: None,
    };
    // Written only over a live or absent record; a replay answers the stored end, whose
    // transcript the webhook then refers to (none if it was erased meanwhile).
    let stored = state.calls.record_end(&record).await?.into_record();

    // Threshold events go first: they are small, and must not depend on the larger
    // call.ended message being accepted. Their ids are per org and period, so re-emitting
    // them on every call end while the condition holds (which also covers concurrent debits
    // and redeliveries) gives receivers one event per period.
    let balance = state.stores.ledger.balance(&org.id).await?;
    let threshold = balance_low_threshold(org);
    if balance < threshold {
        let day = ended.ended_at.to_string().get(..10).unwrap_or_default().replace('-', "");
        let data = payloads::data(&payloads::BalanceLowData {
            balance_kopecks: balance.get(),
            threshold_kopecks: threshold.get(),
            call_id: Some(ended.call_id.to_string()),
            live_calls: None,
        });
        let subject = format!("{}_{day}", org.id);
        emit(state, WebhookEvent::new(WebhookEventType::BalanceLow, &subject, org.id.clone(), ended.ended_at, data))
            .await?;
    }
    let month = ended.ended_at.year_month();
    let used = state.stores.ledger.usage_minutes(&org.id, month).await?;
    if used > org.quotas.monthly_minutes {
        let included = org.quotas.monthly_minutes;
        let data = payloads::data(&payloads::QuotaExceededData {
            quota: "monthly_minutes".into(),
            used,
            included,
            month: month.to_string(),
        });
        let subject = format!("{}_monthly_minutes_{month}_{included}", org.id);
        emit(state, WebhookEvent::new(WebhookEventType::QuotaExceeded, &subject, org.id.clone(), ended.ended_at, data))
            .await?;
    }

    let data = payloads::data(&payloads::CallEndedData {
        call_id: ended.call_id.to_string(),
        agent_id: ended.agent_id.to_string(),
        direction: ended.direction.as_str().to_owned(),
        from: ended.from.clone(),
        to: ended.to.clone(),
        started_at: ended.started_at.to_string(),
        ended_at: ended.ended_at.to_string(),
        duration_secs: ended.duration_secs,
        billed_minutes: billable_minutes(ended.duration_secs),
        cost_kopecks: cost.get(),
        end_reason: ended.end_reason.as_str().to_owned(),
        // Sealed on the queue; opened by the deliverer.
        transcript: transcripts::for_webhook(stored.transcript.as_deref()),
        transcript_url: None,
        transcript_truncated: None,
        metrics: stored.metrics,
    });
    let subject = ended.call_id.as_str();
    emit(state, WebhookEvent::new(WebhookEventType::CallEnded, subject, org.id.clone(), ended.ended_at, data)).await?;
    if matches!(ended.transcript, Some(Transcript::Sealed(SealedTranscript::Blob))) {
        // Recorded and announced: the blob has served its event (it would expire anyway).
        if let Err(error) = state.calls.delete_transcript_blob(&org.id, &ended.call_id).await {
            tracing::warn!(%error, call = %ended.call_id, "could not delete a consumed transcript blob; it expires");
        }
    }
    let processed = match outcome {
        ApplyOutcome::Applied(_) => Processed::Debited,
        ApplyOutcome::Duplicate(_) => Processed::AlreadyDebited,
    };
    tracing::info!(org = %org.id, call = %ended.call_id, cost = %cost, ?processed, "call ended");
    Ok(processed)
}

// ---- the outbox: a call's events survive the worker and the queue ----

/// How old an outbox entry must be before a relay (the sweeper) sends it: the worker that
/// wrote it sends it itself at once; this only picks up what a dead worker or a queue outage
/// left behind.
pub const OUTBOX_RELAY_AFTER: Duration = Duration::from_secs(30);
/// How often the worker tries the queue itself before leaving an event to the relay.
const DIRECT_SEND_ATTEMPTS: u32 = 3;

/// The outbox id of a call's `call.ended`.
pub(crate) fn ended_outbox_id(call: &golos_domain::CallId) -> String {
    format!("call.ended:{call}")
}

fn outbox_id(event: &CallEvent) -> String {
    match event {
        CallEvent::Started(_) => format!("call.started:{}", event.call_id()),
        CallEvent::Ended(_) => ended_outbox_id(event.call_id()),
    }
}

/// Makes a call event durable, then queues it. Returns once the event is in the outbox (the
/// store is retried, with backoff up to 5 s, for as long as it takes: until then nothing
/// else of the call is released, so a worker that dies here leaves a lease the sweeper
/// bills). The queue is tried a few times; if it is down, the entry stays in the outbox and
/// the relay (`relay_outbox`, run by the sweeper) delivers it later. Never dropped.
pub async fn publish(state: &ControlState, event: &CallEvent) -> Result<(), PortError> {
    let body = serde_json::to_string(event).map_err(PortError::invalid)?;
    let entry = OutboxEntry { id: outbox_id(event), body, created_at: state.clock.now() };
    let mut delay = Duration::from_millis(100);
    let mut attempt = 0u32;
    loop {
        match state.stores.outbox.put(&entry).await {
            Ok(_) => break,
            Err(error) => {
                attempt += 1;
                if attempt == 10 {
                    tracing::error!(alert = "call_event_outbox_failing", %error, call = %event.call_id(),
                        "a call event cannot be written to the outbox; still retrying");
                } else {
                    tracing::warn!(%error, attempt, call = %event.call_id(), "could not write a call event to the outbox; retrying");
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    for attempt in 0..DIRECT_SEND_ATTEMPTS {
        match state.queues.call_events.send(&entry.body, Duration::ZERO).await {
            Ok(_) => {
                if let Err(error) = state.stores.outbox.delete(&entry.id).await {
                    // Sent twice at worst: the consumer is idempotent.
                    tracing::warn!(%error, "a queued call event stays in the outbox; the relay will send it again");
                }
                return Ok(());
            }
            Err(error) => {
                tracing::warn!(%error, attempt, call = %event.call_id(), "could not queue a call event; retrying");
                tokio::time::sleep(Duration::from_millis(200) * 2u32.pow(attempt)).await;
            }
        }
    }
    tracing::warn!(call = %event.call_id(), "the call-events queue is unavailable; the event waits in the outbox for the relay");
    Ok(())
}

/// Queues every outbox entry older than `older_than`, removing each once the queue took it.
/// Stops at the first failed send (the queue is down: the next run goes on). Returns how
/// many it relayed.
pub async fn relay_outbox(state: &ControlState, older_than: Duration) -> Result<usize, PortError> {
    let age = i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX);
    let before = Timestamp::from_millis(state.clock.now().as_millis().saturating_sub(age));
    let mut relayed = 0;
    loop {
        let entries = state.stores.outbox.pending(before, 100).await?;
        for entry in &entries {
            state.queues.call_events.send(&entry.body, Duration::ZERO).await?;
            state.stores.outbox.delete(&entry.id).await?;
            relayed += 1;
            tracing::info!(entry = %entry.id, "relayed a call event left in the outbox");
        }
        if entries.len() < 100 {
            return Ok(relayed);
        }
    }
}

/// Ends a call whose worker stopped heartbeating (its lease expired): billed once, as if it
/// ended at its last heartbeat, with `end_reason` `worker_lost`, through the same path as a
/// worker's own `call.ended` (which, arriving later, then changes nothing: the debit's key
/// is the call id and an ended record is never overwritten). The lease is released last.
pub async fn end_lost_call(state: &ControlState, lease: &Lease) -> Result<(), PortError> {
    let Some(org) = state.stores.orgs.get(&lease.org_id).await? else {
        // Nothing to bill: the slot must not stay held forever.
        release_slot(state, &lease.org_id, &lease.call_id).await?;
        return Ok(());
    };
    let last_heartbeat = Timestamp::from_millis(
        lease.expires_at.as_millis().saturating_sub(state.config.lease_ttl_ms).max(lease.acquired_at.as_millis()),
    );
    let record = state.calls.get(&org.id, &lease.call_id).await?;
    let started_at = record.as_ref().map_or(lease.acquired_at, |r| r.started_at).min(last_heartbeat);
    let direction = record.as_ref().map_or(CallDirection::Web, |r| r.direction);
    let duration_ms = last_heartbeat.as_millis().saturating_sub(started_at.as_millis());
    let ended = CallEnded {
        call_id: lease.call_id.clone(),
        org_id: org.id.clone(),
        agent_id: lease.agent_id.clone(),
        direction,
        from: None,
        to: None,
        started_at,
        ended_at: last_heartbeat,
        duration_secs: u64::try_from(duration_ms).unwrap_or(0).div_ceil(1000),
        end_reason: EndReason::WorkerLost,
        transcript: None,
        metrics: json!({"recovered_by": "sweeper", "lease_expired_at": lease.expires_at.to_string()}),
    };
    call_ended(state, &org, ended).await?;
    Ok(())
}

/// Releases through admission, the one place leases and places in line are released.
async fn release_slot(
    state: &ControlState,
    org: &golos_domain::OrgId,
    call: &golos_domain::CallId,
) -> Result<(), PortError> {
    match crate::admission::release(state, org, call).await {
        Ok(_) => Ok(()),
        Err(ControlError::Port(error)) => Err(error),
        Err(other) => Err(PortError::unavailable(other.to_string())),
    }
}

/// Queues a customer webhook for the webhooks consumer.
pub async fn emit(state: &ControlState, event: WebhookEvent) -> Result<(), PortError> {
    let body = serde_json::to_string(&event).map_err(PortError::invalid)?;
    state.queues.webhooks.send(&body, Duration::ZERO).await?;
    state.metrics.webhook_events_emitted_total.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Backoff before a failed event is delivered again: 2, 4, 8 … seconds, at most 5 minutes.
fn retry_delay(receive_count: u32) -> Duration {
    Duration::from_secs(1u64 << receive_count.clamp(1, 8)).min(Duration::from_secs(300))
}

/// Processes one received batch; starts of calls go before ends so a batch holding both
/// of one call leaves its record ended. Returns the messages that failed.
pub async fn process_batch<'a>(
    state: &ControlState,
    messages: &'a [QueueMessage],
) -> Vec<(&'a QueueMessage, PortError)> {
    let is_end = |m: &QueueMessage| m.body.contains("\"call.ended\"");
    let (mut starts, mut ends): (Vec<_>, Vec<_>) = messages.iter().partition(|m| !is_end(m));
    starts.sort_by_key(|m| m.id.clone());
    ends.sort_by_key(|m| m.id.clone());
    let mut failed = Vec::new();
    for group in [starts, ends] {
        let results = futures::future::join_all(group.iter().map(|m| process(state, &m.body))).await;
        for (message, result) in group.into_iter().zip(results) {
            match result {
                Ok(_) => ControlMetrics::incr(&state.metrics.call_events_processed_total),
                Err(error) => {
                    ControlMetrics::incr(&state.metrics.call_events_failed_total);
                    let permanent = is_permanent(&error);
                    tracing::warn!(message = %message.id, receives = message.receive_count, permanent, error = %error,
                        "call event failed; it will be retried and, failing that, dead-lettered");
                    failed.push((message, error));
                }
            }
        }
    }
    failed
}

/// The local consumer: receives from the embedded queue until `shutdown`, processes each
/// batch, deletes what succeeded, and leaves failures to come back with backoff (and reach
/// the dead-letter queue after `max_receives`).
pub async fn run_consumer(
    state: ControlState,
    queue: std::sync::Arc<dyn Queue>,
    idle_poll: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let received = tokio::select! {
            () = &mut shutdown => return,
            received = queue.receive(10, Duration::from_secs(30)) => received,
        };
        let messages = match received {
            Ok(messages) => messages,
            Err(err) => {
                tracing::error!(error = %err, "receiving call events failed");
                Vec::new()
            }
        };
        if messages.is_empty() {
            tokio::select! {
                () = &mut shutdown => return,
                () = idle(queue.as_ref(), idle_poll) => continue,
            }
        }
        let failed = process_batch(&state, &messages).await;
        for message in &messages {
            let failure = failed.iter().find(|(m, _)| m.id == message.id);
            let result = match failure {
                None => queue.delete(&message.receipt).await,
                Some((_, error)) if is_permanent(error) => {
                    queue.change_visibility(&message.receipt, Duration::ZERO).await
                }
                Some(_) => queue.change_visibility(&message.receipt, retry_delay(message.receive_count)).await,
            };
            if let Err(err) = result {
                tracing::error!(message = %message.id, error = %err, "acknowledging a call event failed; it will be redelivered");
            }
        }
    }
}

/// Waits for work on an empty queue: until a send from this process wakes it (the embedded
/// queue can tell), else `idle_poll`.
pub async fn idle(queue: &dyn Queue, idle_poll: Duration) {
    if !queue.wait_for_send(idle_poll).await {
        tokio::time::sleep(idle_poll).await;
    }
}

/// Queues a call event reported from outside this process (another media worker, another
/// call source); a plaintext transcript is sealed before it is queued. Returns the message id.
pub async fn enqueue(state: &ControlState, mut event: CallEvent) -> ControlResult<String> {
    if let CallEvent::Ended(ended) = &mut event {
        if ended.ended_at < ended.started_at {
            return Err(ControlError::invalid("invalid_call_event", "ended_at is before started_at"));
        }
        // Plaintext turns arrive over TLS; only their envelope is queued.
        transcripts::seal_plain(state, ended).await?;
    }
    let body = serde_json::to_string(&event).map_err(ControlError::internal)?;
    Ok(state.queues.call_events.send(&body, Duration::ZERO).await?)
}
