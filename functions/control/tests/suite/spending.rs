//! Issue #15's money cases: what live calls run up bounds what an org can spend, a call whose
//! worker died is billed once, and a call's end survives a queue outage.

use super::{TestApp, OPERATOR_TOKEN, T0};
use golos_control::call_events::{process, publish, relay_outbox, Processed, OUTBOX_RELAY_AFTER};
use golos_domain::billing::{LedgerEventKind, PaymentProvider};
use golos_domain::events::CallEvent;
use golos_domain::EndReason;
use golos_domain::{CallId, Kopecks, OrgId};
use golos_ports::{PortError, Queue, QueueConfig, QueueMessage};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The start plan's price of a minute.
const RATE: i64 = 600;

async fn credit(app: &TestApp, org: &OrgId, id: &str, kopecks: i64) {
    let event = LedgerEventKind::PaymentCredit {
        provider: PaymentProvider::Signed("test".into()),
        payment_id: id.into(),
        amount: Kopecks::new(kopecks),
    };
    app.state.stores.ledger.apply(org, &event, T0).await.unwrap();
}

async fn admit(app: &TestApp, org: &str, agent: &str, call: &str) -> Value {
    let reply =
        app.post("/v1/admissions", OPERATOR_TOKEN, &json!({"org_id": org, "agent_id": agent, "call_id": call})).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body
}

async fn heartbeat(app: &TestApp, org: &str, call: &str) -> (StatusCode, Value) {
    let reply = app.post(&format!("/v1/admissions/{call}/heartbeat"), OPERATOR_TOKEN, &json!({"org_id": org})).await;
    (reply.status, reply.body)
}

fn ended(org: &str, agent: &str, call: &str, started_at: i64, duration_secs: u64, reason: &str) -> String {
    json!({"type": "call.ended", "call_id": call, "org_id": org, "agent_id": agent, "direction": "web",
        "started_at": started_at, "ended_at": started_at + 1000 * duration_secs as i64,
        "duration_secs": duration_secs, "end_reason": reason, "transcript": [], "metrics": {}})
    .to_string()
}

async fn webhook_types(app: &TestApp) -> Vec<String> {
    let mut types = Vec::new();
    loop {
        let batch = app.state.queues.webhooks.receive(10, Duration::from_secs(60)).await.unwrap();
        if batch.is_empty() {
            return types;
        }
        for message in batch {
            app.state.queues.webhooks.delete(&message.receipt).await.unwrap();
            let event: Value = serde_json::from_str(&message.body).unwrap();
            types.push(event["type"].as_str().unwrap_or_default().to_owned());
        }
    }
}

/// Two minutes and a kopeck admit three calls (each in its first minute when the next asks);
/// the first heartbeat finds 3 minutes run up and ends them all `balance_exhausted`, and the
/// org ends one minute per live call below its limit at most. A credit limit lets it go on;
/// the month's minutes end calls the same way.
pub async fn spending_is_bounded_while_calls_run(app: &TestApp) {
    let (org_id, admin) = app.org_with_admin().await;
    let org = OrgId::parse(&org_id).unwrap();
    let agent = app.create_agent(&admin, "a").await.body["id"].as_str().unwrap().to_owned();
    credit(app, &org, "p1", 2 * RATE + 1).await;

    for call in ["call_1", "call_2", "call_3"] {
        assert_eq!(admit(app, &org_id, &agent, call).await["decision"], "admitted", "{call}");
        assert_eq!(admit(app, &org_id, &agent, call).await["decision"], "admitted", "asking again: its own minute");
    }
    let fourth = admit(app, &org_id, &agent, "call_4").await;
    assert_eq!((fourth["decision"].as_str(), fourth["reason"].as_str()), (Some("rejected"), Some("no_balance")));

    app.clock.advance_millis(10_000);
    for call in ["call_1", "call_2", "call_3"] {
        let (status, beat) = heartbeat(app, &org_id, call).await;
        assert_eq!(status, StatusCode::OK, "{beat:?}");
        assert_eq!(beat["end_reason"], "balance_exhausted", "{call}: {beat:?}");
    }
    assert!(webhook_types(app).await.contains(&"balance.low".to_owned()), "warned while the calls ran");
    // The media side says goodbye and reports each end (12 s: one started minute each).
    for call in ["call_1", "call_2", "call_3"] {
        let body = ended(&org_id, &agent, call, T0.as_millis(), 12, "balance_exhausted");
        assert_eq!(process(&app.state, &body).await.unwrap(), Processed::Debited);
    }
    let balance = app.state.stores.ledger.balance(&org).await.unwrap();
    assert_eq!(balance, Kopecks::new(2 * RATE + 1 - 3 * RATE));
    assert!(balance.get() >= -3 * RATE, "at most one minute per live call below the limit");
    assert_eq!(app.state.stores.leases.active(&org, None).await.unwrap(), 0);
    assert_eq!(admit(app, &org_id, &agent, "call_5").await["reason"], "no_balance");

    // The operator extends credit: the org may owe up to 20 minutes.
    let quotas = json!({"quotas": {"credit_limit": 20 * RATE}});
    let patched =
        app.call(Method::PATCH, &format!("/v1/orgs/{org_id}"), Some(OPERATOR_TOKEN), Some(&quotas), &[]).await;
    assert_eq!(patched.status, StatusCode::OK, "{:?}", patched.body);
    let own = json!({"quotas": {"credit_limit": 1_000_000}});
    let refused = app.call(Method::PATCH, &format!("/v1/orgs/{org_id}"), Some(&admin), Some(&own), &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "an org cannot extend its own credit: {:?}", refused.body);
    assert_eq!(admit(app, &org_id, &agent, "call_6").await["decision"], "admitted");
    app.clock.advance_millis(30_000);
    let (_, beat) = heartbeat(app, &org_id, "call_6").await;
    assert!(beat.get("end_reason").is_none(), "within credit: {beat:?}");

    // Minutes: the month's last minute may run out, the next one ends the call.
    let quotas = json!({"quotas": {"credit_limit": 20 * RATE, "monthly_minutes": 4}});
    let patched =
        app.call(Method::PATCH, &format!("/v1/orgs/{org_id}"), Some(OPERATOR_TOKEN), Some(&quotas), &[]).await;
    assert_eq!(patched.status, StatusCode::OK, "{:?}", patched.body);
    let (_, beat) = heartbeat(app, &org_id, "call_6").await;
    assert!(beat.get("end_reason").is_none(), "3 used + this call's first minute = 4: {beat:?}");
    app.clock.advance_millis(31_000);
    let (_, beat) = heartbeat(app, &org_id, "call_6").await;
    assert_eq!(beat["end_reason"], "minutes_exhausted", "its second minute is the month's fifth");
    assert_eq!(admit(app, &org_id, &agent, "call_7").await["reason"], "minutes_exhausted");
}

/// A worker killed mid-call stops heartbeating: the sweeper bills the call once from its last
/// heartbeat (`worker_lost`), and the worker's own `call.ended` turning up later changes
/// nothing.
pub async fn lost_workers_are_billed_once(app: &TestApp) {
    let (org_id, admin) = app.org_with_admin().await;
    let org = OrgId::parse(&org_id).unwrap();
    let agent = app.create_agent(&admin, "a").await.body["id"].as_str().unwrap().to_owned();
    credit(app, &org, "p1", 100 * RATE).await;
    assert_eq!(admit(app, &org_id, &agent, "call_lost").await["decision"], "admitted");
    let started = json!({"type": "call.started", "call_id": "call_lost", "org_id": org_id, "agent_id": agent,
        "direction": "inbound", "started_at": T0.as_millis()})
    .to_string();
    assert_eq!(process(&app.state, &started).await.unwrap(), Processed::Started);
    // Heartbeats for 150 s, then the worker dies.
    for _ in 0..15 {
        app.clock.advance_millis(10_000);
        assert_eq!(heartbeat(app, &org_id, "call_lost").await.0, StatusCode::OK);
    }
    app.clock.advance_millis(29_000);
    assert_eq!(golos_control::admission::sweep(&app.state).await.unwrap(), 0, "not expired yet");
    // The sweeper is down for a while: reconciliation reports the call nobody billed.
    app.clock.advance_millis(2_000 + 180_000);
    let unswept = golos_control::reconcile::unswept_leases(&app.state).await.unwrap();
    assert_eq!(unswept.iter().map(|l| l.call_id.as_str()).collect::<Vec<_>>(), vec!["call_lost"]);
    assert_eq!(golos_control::admission::sweep(&app.state).await.unwrap(), 1);
    assert!(golos_control::reconcile::unswept_leases(&app.state).await.unwrap().is_empty());
    assert_eq!(golos_control::admission::sweep(&app.state).await.unwrap(), 0, "billed once");
    let call = CallId::parse("call_lost").unwrap();
    let debit = app.state.stores.ledger.get(&org, "call:call_lost").await.unwrap().expect("debited");
    assert_eq!(debit.delta, Kopecks::new(-3 * RATE), "150 s to the last heartbeat: 3 minutes");
    let record = app.state.calls.get(&org, &call).await.unwrap().expect("recorded");
    assert_eq!(record.end_reason, Some(EndReason::WorkerLost));
    assert_eq!(record.duration_secs, Some(150));
    assert_eq!(app.state.stores.leases.active(&org, None).await.unwrap(), 0, "the slot is free");
    let (status, _) = heartbeat(app, &org_id, "call_lost").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a worker that was only cut off learns its call is over");

    // The worker's own end arrives late (it sat in an outbox): nothing moves.
    let late = ended(&org_id, &agent, "call_lost", T0.as_millis(), 170, "caller_hangup");
    assert_eq!(process(&app.state, &late).await.unwrap(), Processed::AlreadyDebited);
    assert_eq!(app.state.stores.ledger.balance(&org).await.unwrap(), Kopecks::new(97 * RATE));
    let kept = app.state.calls.get(&org, &call).await.unwrap().expect("recorded");
    assert_eq!((kept.end_reason, kept.duration_secs), (Some(EndReason::WorkerLost), Some(150)), "never overwritten");
}

/// The real call-events queue, failing every send while `down` is set: a queue outage.
#[derive(Debug)]
struct Outage {
    queue: Arc<dyn Queue>,
    down: AtomicBool,
}

#[async_trait::async_trait]
impl Queue for Outage {
    fn config(&self) -> &QueueConfig {
        self.queue.config()
    }
    async fn send(&self, body: &str, delay: Duration) -> golos_ports::Result<String> {
        if self.down.load(Ordering::SeqCst) {
            return Err(PortError::unavailable("queue outage (test)"));
        }
        self.queue.send(body, delay).await
    }
    async fn receive(&self, max: usize, visibility: Duration) -> golos_ports::Result<Vec<QueueMessage>> {
        self.queue.receive(max, visibility).await
    }
    async fn delete(&self, receipt: &str) -> golos_ports::Result<()> {
        self.queue.delete(receipt).await
    }
    async fn change_visibility(&self, receipt: &str, visibility: Duration) -> golos_ports::Result<()> {
        self.queue.change_visibility(receipt, visibility).await
    }
    async fn dead_letters(&self, max: usize) -> golos_ports::Result<Vec<golos_ports::DeadLetter>> {
        self.queue.dead_letters(max).await
    }
    async fn redrive(&self, max: usize) -> golos_ports::Result<usize> {
        self.queue.redrive(max).await
    }
    async fn dead_letter(&self, body: &str) -> golos_ports::Result<String> {
        self.queue.dead_letter(body).await
    }
    async fn redrive_ids(&self, ids: &[String]) -> golos_ports::Result<usize> {
        self.queue.redrive_ids(ids).await
    }
    async fn depth(&self) -> golos_ports::Result<u64> {
        self.queue.depth().await
    }
}

/// Queue sends failing for a minute at hang-up lose nothing: the end waits in the outbox
/// and the relay queues it once the queue is back; the call is billed once.
pub async fn call_ends_survive_a_queue_outage(app: &TestApp) {
    let (org_id, admin) = app.org_with_admin().await;
    let org = OrgId::parse(&org_id).unwrap();
    let agent = app.create_agent(&admin, "a").await.body["id"].as_str().unwrap().to_owned();
    credit(app, &org, "p1", 100 * RATE).await;
    let outage = Arc::new(Outage { queue: Arc::clone(&app.state.queues.call_events), down: AtomicBool::new(true) });
    let mut state = app.state.clone();
    state.queues.call_events = outage.clone();

    let event: CallEvent =
        serde_json::from_str(&ended(&org_id, &agent, "call_q", T0.as_millis(), 65, "caller_hangup")).unwrap();
    publish(&state, &event).await.expect("durable although the queue is down");
    let waiting = state.stores.outbox.pending(T0.plus_secs(3_600), 100).await.unwrap();
    assert!(waiting.iter().any(|e| e.id == "call.ended:call_q"), "{waiting:?}");
    publish(&state, &event).await.expect("a second publish of the same end");

    // A minute of outage: the relay tries and keeps the entry.
    app.clock.advance_millis(60_000);
    assert!(relay_outbox(&state, OUTBOX_RELAY_AFTER).await.is_err());
    assert!(state
        .stores
        .outbox
        .pending(golos_ports::Clock::now(&app.clock), 100)
        .await
        .unwrap()
        .iter()
        .any(|e| e.id == "call.ended:call_q"));
    outage.down.store(false, Ordering::SeqCst);
    app.clock.advance_millis(OUTBOX_RELAY_AFTER.as_millis() as i64);
    assert_eq!(relay_outbox(&state, OUTBOX_RELAY_AFTER).await.unwrap(), 1);
    assert_eq!(relay_outbox(&state, OUTBOX_RELAY_AFTER).await.unwrap(), 0, "relayed once");

    let batch = app.state.queues.call_events.receive(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(batch.len(), 1, "one message for the one end");
    assert!(golos_control::call_events::process_batch(&app.state, &batch).await.is_empty());
    assert_eq!(app.state.stores.ledger.balance(&org).await.unwrap(), Kopecks::new(98 * RATE));
}
