//! The SIGTERM drain in-process, on tokio's paused clock: fake call tasks register in the
//! worker's `CallRegistry` the way the live-call code does, and the drain runs over the
//! embedded backend while `/ready` and `/metrics` are asked through the router.
//!
//! The two queues are in-memory recorders here, not the SQLite queue: SQLite writes complete
//! on the store's writer thread, and while the runtime waits for that thread the paused clock
//! would jump ahead to the next timer (the drain deadline), which makes timing untestable.
//! The real queues are covered by their contract suites and by `tests/tests/lifecycle.rs`.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use golos::lifecycle::{drain, CallRegistration, DrainConfig, DrainReport, EndReason, LiveCall};
use golos::Worker;
use golos_control::ControlState;
use golos_control::EventQueues;
use golos_domain::{AgentId, CallId, OrgId};
use golos_ports::{DeadLetter, Queue, QueueConfig, QueueMessage};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tower::ServiceExt;

/// Records what is sent; nothing in these tests receives.
#[derive(Debug, Default)]
struct RecordingQueue(Mutex<Vec<serde_json::Value>>);

impl RecordingQueue {
    /// Everything sent, ordered by event id (webhooks) or call id (call events).
    fn sent(&self) -> Vec<serde_json::Value> {
        let mut all = self.0.lock().unwrap().clone();
        all.sort_by_key(|v| v["id"].as_str().or(v["call_id"].as_str()).unwrap_or_default().to_owned());
        all
    }
}

#[async_trait::async_trait]
impl Queue for RecordingQueue {
    fn config(&self) -> &QueueConfig {
        unimplemented!("not used by the drain")
    }
    async fn send(&self, body: &str, _delay: Duration) -> golos_ports::Result<String> {
        let mut sent = self.0.lock().unwrap();
        sent.push(serde_json::from_str(body).unwrap());
        Ok(sent.len().to_string())
    }
    async fn receive(&self, _max: usize, _visibility: Duration) -> golos_ports::Result<Vec<QueueMessage>> {
        Ok(Vec::new())
    }
    async fn delete(&self, _receipt: &str) -> golos_ports::Result<()> {
        Ok(())
    }
    async fn change_visibility(&self, _receipt: &str, _visibility: Duration) -> golos_ports::Result<()> {
        Ok(())
    }
    async fn dead_letters(&self, _max: usize) -> golos_ports::Result<Vec<DeadLetter>> {
        Ok(Vec::new())
    }
    async fn redrive(&self, _max: usize) -> golos_ports::Result<usize> {
        Ok(0)
    }
    async fn dead_letter(&self, _body: &str) -> golos_ports::Result<String> {
        unimplemented!("not used by the drain")
    }
    async fn redrive_ids(&self, _ids: &[String]) -> golos_ports::Result<usize> {
        Ok(0)
    }
    async fn depth(&self) -> golos_ports::Result<u64> {
        Ok(self.0.lock().unwrap().len() as u64)
    }
}

struct Fixture {
    state: ControlState,
    worker: Worker,
    webhooks: Arc<RecordingQueue>,
    call_events: Arc<RecordingQueue>,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let backend = golos_bootstrap::Backend::Local { data_dir: dir.path().to_path_buf() };
    let mut state = golos_bootstrap::control_state(&backend, golos_control::ControlConfig::default()).await.unwrap();
    let (webhooks, call_events) = (Arc::new(RecordingQueue::default()), Arc::new(RecordingQueue::default()));
    state.queues = EventQueues { call_events: call_events.clone(), webhooks: webhooks.clone() };
    let worker = Worker::new(Arc::clone(&state.metrics));
    Fixture { state, worker, webhooks, call_events, _dir: dir }
}

fn live_call(org: &str, n: u32) -> LiveCall {
    LiveCall {
        org_id: OrgId::parse(org).unwrap(),
        agent_id: AgentId::parse("agt_cafe").unwrap(),
        call_id: CallId::parse(format!("call_{org}_{n}")).unwrap(),
    }
}

/// What a fake call saw: why it ended and when (since the test began).
type Ended = (EndReason, Duration);

/// A call task shaped like the real one will be: it runs until the caller hangs up (after
/// `hangs_up_after`, or never) or the registry asks it to end; then it queues its
/// `call.ended`, records its metrics, and drops its handle last.
fn spawn_call(
    worker: &Worker,
    state: &ControlState,
    call: LiveCall,
    t0: Instant,
    hangs_up_after: Option<Duration>,
) -> tokio::task::JoinHandle<Ended> {
    let mut handle: CallRegistration = worker.registry.register(call.clone()).expect("registers");
    let metrics = Arc::clone(&worker.call_metrics);
    let queue = state.queues.call_events.clone();
    tokio::spawn(async move {
        let hangup = async {
            match hangs_up_after {
                Some(after) => tokio::time::sleep(after).await,
                None => std::future::pending().await,
            }
        };
        let reason = tokio::select! {
            () = hangup => EndReason::CallerHangup,
            reason = handle.end_requested() => reason,
        };
        let elapsed = t0.elapsed();
        let event = serde_json::json!({"type": "call.ended", "call_id": call.call_id, "org_id": call.org_id,
            "agent_id": call.agent_id, "direction": "web", "started_at": 0, "ended_at": elapsed.as_millis() as i64,
            "duration_secs": elapsed.as_secs(), "end_reason": reason.as_str()});
        queue.send(&event.to_string(), Duration::ZERO).await.expect("queue call.ended");
        metrics.call_ended(elapsed, reason);
        drop(handle);
        (reason, elapsed)
    })
}

async fn get(worker: &Worker, path: &str) -> (StatusCode, Option<String>, String) {
    let response =
        golos::router(worker.clone()).oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, content_type, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test(start_paused = true)]
async fn calls_that_end_by_themselves_end_the_drain_early() {
    let Fixture { state, worker, webhooks, _dir, .. } = fixture().await;
    let t0 = Instant::now();
    let call = spawn_call(&worker, &state, live_call("org_a", 1), t0, Some(Duration::from_secs(30)));

    let report = drain(&worker.registry, &state, "wrk_test", &DrainConfig::default()).await;

    assert_eq!(t0.elapsed(), Duration::from_secs(30), "the drain ends when the last call does");
    assert_eq!(report, DrainReport { calls_at_start: 1, orgs_notified: 1, forced: 0, abandoned: 0 });
    assert_eq!(call.await.unwrap(), (EndReason::CallerHangup, Duration::from_secs(30)));
    let webhooks = webhooks.sent();
    assert_eq!(webhooks.len(), 1);
    assert_eq!(webhooks[0]["id"], "evt_call_shutdown_initiated_wrk_test_org_a");
    assert_eq!(webhooks[0]["type"], "call.shutdown_initiated");
    assert_eq!(webhooks[0]["data"]["call_ids"], serde_json::json!(["call_org_a_1"]));
    assert_eq!(webhooks[0]["data"]["grace_period_secs"], 600);
}

#[tokio::test(start_paused = true)]
async fn calls_still_live_at_the_drain_time_are_forced_and_flush_their_events() {
    let Fixture { state, worker, webhooks, call_events, _dir } = fixture().await;
    let t0 = Instant::now();
    let early = spawn_call(&worker, &state, live_call("org_a", 1), t0, Some(Duration::from_secs(100)));
    let stuck_a = spawn_call(&worker, &state, live_call("org_a", 2), t0, None);
    let stuck_b = spawn_call(&worker, &state, live_call("org_b", 1), t0, None);

    let (status, _, body) = get(&worker, "/ready").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, r#"{"status":"ready"}"#));

    let draining = {
        let (state, registry) = (state.clone(), Arc::clone(&worker.registry));
        tokio::spawn(async move { drain(&registry, &state, "wrk_test", &DrainConfig::default()).await })
    };
    while !worker.registry.is_draining() {
        tokio::task::yield_now().await;
    }
    let (status, content_type, body) = get(&worker, "/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["code"], "draining");
    assert_eq!(
        worker.registry.register(live_call("org_c", 1)).unwrap_err(),
        golos::lifecycle::RegisterError::Draining,
        "no new calls while draining"
    );

    let report = draining.await.unwrap();
    let drain_time = Duration::from_secs(600);
    assert_eq!(report, DrainReport { calls_at_start: 3, orgs_notified: 2, forced: 2, abandoned: 0 });
    assert_eq!(early.await.unwrap(), (EndReason::CallerHangup, Duration::from_secs(100)));
    assert_eq!(stuck_a.await.unwrap(), (EndReason::ForcedShutdown, drain_time), "forced at exactly the drain time");
    assert_eq!(stuck_b.await.unwrap(), (EndReason::ForcedShutdown, drain_time));
    assert_eq!(t0.elapsed(), drain_time, "the forced calls finished within the grace without waiting it out");
    assert!(worker.registry.is_empty());

    let webhooks = webhooks.sent();
    let ids: Vec<_> = webhooks.iter().map(|w| w["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["evt_call_shutdown_initiated_wrk_test_org_a", "evt_call_shutdown_initiated_wrk_test_org_b"]);
    assert_eq!(webhooks[0]["data"]["call_ids"], serde_json::json!(["call_org_a_1", "call_org_a_2"]));
    let ended = call_events.sent();
    let reasons: Vec<_> =
        ended.iter().map(|e| (e["call_id"].as_str().unwrap(), e["end_reason"].as_str().unwrap())).collect();
    assert_eq!(
        reasons,
        [("call_org_a_1", "caller_hangup"), ("call_org_a_2", "forced_shutdown"), ("call_org_b_1", "forced_shutdown")]
    );

    let (status, content_type, metrics) = get(&worker, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type.as_deref(), Some(golos::metrics::CONTENT_TYPE));
    for line in [
        "calls_total{reason=\"forced_shutdown\"} 2",
        "calls_total{reason=\"caller_hangup\"} 1",
        "concurrent_calls_active 0",
        "golos_worker_draining 1",
        "call_duration_seconds_count 3",
        "golos_webhook_events_emitted_total 2",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line:?} missing from\n{metrics}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_that_ignores_the_forced_end_is_abandoned_after_the_grace() {
    let Fixture { state, worker, _dir, .. } = fixture().await;
    // Registered but never listening: a wedged call task.
    let _wedged = worker.registry.register(live_call("org_a", 1)).unwrap();
    let t0 = Instant::now();
    let config = DrainConfig { drain_for: Duration::from_secs(5), ..DrainConfig::default() };

    let report = drain(&worker.registry, &state, "wrk_test", &config).await;

    assert_eq!(report, DrainReport { calls_at_start: 1, orgs_notified: 1, forced: 1, abandoned: 1 });
    assert_eq!(t0.elapsed(), config.drain_for + config.flush_grace, "gives up, does not hang");
}
