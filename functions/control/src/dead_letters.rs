//! Dead letters: the messages golos gave up on, to inspect and to send back once their cause
//! is fixed. An org's admins and editors see the dead webhook deliveries of their org; the
//! operator sees every org's and the `call-events` queue's too. A redrive moves messages back
//! to their queue, where they are processed afresh (a webhook gets a new series of attempts).
//!
//! Both backends keep dead letters in a queue (SQS, or the embedded one), which can be looked
//! at but not searched: a listing reads at most [`SCAN_LIMIT`] of them and keeps the caller's.

use crate::audit::{self, Actor};
use crate::state::ControlState;
use crate::webhook_delivery::QueuedWebhook;
use crate::{ControlError, ControlResult};
use golos_domain::OrgId;
use golos_ports::{DeadLetter, Queue};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Fields of event data that hold phone numbers.
const NUMBER_FIELDS: [&str; 4] = ["from", "to", "destination", "transfer_to"];

fn mask_number(raw: &str) -> String {
    golos_domain::PhoneNumber::parse(raw).map_or_else(|_| "[redacted]".to_owned(), |number| number.to_string())
}

/// Dead letters read per listing or redrive.
pub const SCAN_LIMIT: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterQueue {
    Webhooks,
    /// The media pool's call events (operator only): bills and call records not written.
    CallEvents,
}

impl DeadLetterQueue {
    pub fn parse(name: &str) -> ControlResult<Self> {
        match name {
            "webhooks" => Ok(Self::Webhooks),
            "call-events" => Ok(Self::CallEvents),
            _ => Err(ControlError::invalid("invalid_queue", "queue is `webhooks` or `call-events`")),
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Webhooks => "webhooks",
            Self::CallEvents => "call-events",
        }
    }

    fn queue(self, state: &ControlState) -> &Arc<dyn Queue> {
        match self {
            Self::Webhooks => &state.queues.webhooks,
            Self::CallEvents => &state.queues.call_events,
        }
    }
}

/// Whose dead letters a caller may see.
#[derive(Debug, Clone)]
pub enum Scope {
    Org(OrgId),
    Operator,
}

/// A dead letter as the API shows it: what it was and why it died, never a transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterEntry {
    pub id: String,
    pub queue: DeadLetterQueue,
    pub org_id: Option<OrgId>,
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub endpoint_id: Option<String>,
    pub call_id: Option<String>,
    /// Why it was dead-lettered, when golos said so (else it failed `max_receives` times).
    pub reason: Option<String>,
    pub status_code: Option<u16>,
    pub attempts: u32,
    pub dead_lettered_at: Option<String>,
    /// The event's data without its (sealed) transcript.
    pub data: Option<serde_json::Value>,
}

fn describe(queue: DeadLetterQueue, letter: &DeadLetter) -> DeadLetterEntry {
    let mut entry = DeadLetterEntry {
        id: letter.id.clone(),
        queue,
        org_id: None,
        event_id: None,
        event_type: None,
        endpoint_id: None,
        call_id: None,
        reason: None,
        status_code: None,
        attempts: letter.receive_count,
        dead_lettered_at: None,
        data: None,
    };
    match queue {
        DeadLetterQueue::Webhooks => {
            let Ok(queued) = QueuedWebhook::parse(&letter.body) else {
                entry.reason = Some("unreadable".into());
                return entry;
            };
            let event = queued.event();
            entry.org_id = Some(event.org_id.clone());
            entry.event_id = Some(event.id.clone());
            entry.event_type = Some(event.kind.as_str().to_owned());
            entry.call_id = event.data.get("call_id").and_then(serde_json::Value::as_str).map(str::to_owned);
            let mut data = event.data.clone();
            if let Some(fields) = data.as_object_mut() {
                fields.remove("transcript");
                // Numbers as everywhere outside the delivery itself: masked.
                for (key, value) in fields.iter_mut() {
                    if NUMBER_FIELDS.contains(&key.as_str()) {
                        if let Some(masked) = value.as_str().map(mask_number) {
                            *value = serde_json::Value::String(masked);
                        }
                    }
                }
            }
            entry.data = Some(data);
            if let QueuedWebhook::Endpoint(delivery) = &queued {
                entry.endpoint_id = Some(delivery.endpoint_id.to_string());
                if let Some(note) = &delivery.dead_lettered {
                    entry.reason = Some(note.reason.clone());
                    entry.status_code = note.status_code;
                    entry.attempts = note.attempts;
                    entry.dead_lettered_at = Some(note.at.to_string());
                }
            }
        }
        DeadLetterQueue::CallEvents => {
            // Only the envelope's names: the body may hold numbers and a sealed transcript.
            let body: serde_json::Value = serde_json::from_str(&letter.body).unwrap_or_default();
            let text = |key: &str| body.get(key).and_then(serde_json::Value::as_str).map(str::to_owned);
            entry.org_id = text("org_id").and_then(|org| OrgId::parse(&org).ok());
            entry.event_type = text("type");
            entry.call_id = text("call_id");
        }
    }
    entry
}

fn visible_to(scope: &Scope, entry: &DeadLetterEntry) -> bool {
    match scope {
        Scope::Operator => true,
        Scope::Org(org) => entry.org_id.as_ref() == Some(org),
    }
}

fn check_queue(scope: &Scope, queue: DeadLetterQueue) -> ControlResult<()> {
    match (scope, queue) {
        (Scope::Org(_), DeadLetterQueue::CallEvents) => Err(ControlError::Forbidden {
            code: "operator_only",
            detail: "only the platform operator sees the call-events dead letters".into(),
        }),
        _ => Ok(()),
    }
}

async fn scan(state: &ControlState, scope: &Scope, queue: DeadLetterQueue) -> ControlResult<Vec<DeadLetterEntry>> {
    check_queue(scope, queue)?;
    let letters = queue.queue(state).dead_letters(SCAN_LIMIT).await?;
    Ok(letters.iter().map(|letter| describe(queue, letter)).filter(|entry| visible_to(scope, entry)).collect())
}

/// Up to `limit` of the caller's dead letters in `queue`, oldest first.
pub async fn list(
    state: &ControlState,
    scope: &Scope,
    queue: DeadLetterQueue,
    limit: usize,
) -> ControlResult<Vec<DeadLetterEntry>> {
    let mut entries = scan(state, scope, queue).await?;
    entries.truncate(limit);
    Ok(entries)
}

/// What a redrive did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redriven {
    pub redriven: usize,
    /// Asked-for ids that are not (or no longer) the caller's dead letters.
    pub not_found: Vec<String>,
}

/// Moves the caller's dead letters in `queue` back (those named in `ids`, or all of them up to
/// [`SCAN_LIMIT`]); audit-logged per org.
pub async fn redrive(
    state: &ControlState,
    actor: &Actor,
    scope: &Scope,
    queue: DeadLetterQueue,
    ids: Option<&[String]>,
) -> ControlResult<Redriven> {
    let entries = scan(state, scope, queue).await?;
    let chosen: Vec<&DeadLetterEntry> = match ids {
        None => entries.iter().collect(),
        Some(ids) => {
            let wanted: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
            entries.iter().filter(|entry| wanted.contains(entry.id.as_str())).collect()
        }
    };
    let not_found =
        ids.unwrap_or_default().iter().filter(|id| !chosen.iter().any(|entry| &&entry.id == id)).cloned().collect();
    let chosen_ids: Vec<String> = chosen.iter().map(|entry| entry.id.clone()).collect();
    let redriven = if chosen_ids.is_empty() { 0 } else { queue.queue(state).redrive_ids(&chosen_ids).await? };
    let mut per_org: BTreeMap<&OrgId, usize> = BTreeMap::new();
    for entry in &chosen {
        if let Some(org) = &entry.org_id {
            *per_org.entry(org).or_default() += 1;
        }
    }
    for (org, count) in per_org {
        let target = format!("{}:{count}", queue.as_str());
        audit::record(state, actor, org, "dead_letters.redrive", &target).await;
    }
    tracing::info!(queue = queue.as_str(), redriven, actor = %actor.name, "dead letters redriven");
    Ok(Redriven { redriven, not_found })
}
