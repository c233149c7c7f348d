//! The worker's lifecycle: which calls are live here (`CallRegistry`), `/ready`, and the
//! SIGTERM drain (DESIGN.md §4 "Worker lifecycle").
//!
//! A call registers before it is answered and holds a `CallRegistration` for as long as it
//! lives; dropping it deregisters the call (a drop guard, so a call task that panics or returns
//! early cannot leave a ghost behind and stall a drain). The registry can ask a call to end
//! with a reason; the call does the ending itself (goodbye, `call.ended` event, lease
//! release), then drops its registration. The request reaches the call two ways, whichever
//! its driver needs: an `EndSignal` a call task awaits in its `select!` (or a driver peeks
//! without awaiting), and an optional `Ender` callback for calls that have no task of their
//! own — a shard driving many calls as state machines gets the end as an input on its inbound
//! channel instead of a per-call wake-up.

use golos_control::call_events::emit;
use golos_control::{ApiError, ControlState};
use golos_domain::events::{WebhookEvent, WebhookEventType};
use golos_domain::{AgentId, CallId, OrgId};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::watch;

pub use golos_domain::EndReason;

/// Who a live call belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveCall {
    pub org_id: OrgId,
    pub agent_id: AgentId,
    pub call_id: CallId,
}

/// Why a call could not register.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// The worker is draining: the transport answers 503 (HTTP) or SIP 503 so the caller's
    /// side retries on another worker.
    #[error("this worker is draining and takes no new calls")]
    Draining,
    #[error("call {0} is already live on this worker")]
    Duplicate(CallId),
}

/// Called once when the registry asks a call to end (never under the registry's lock, so it
/// may touch the registry). Must not block: send a message, don't do the ending here.
pub type Ender = Arc<dyn Fn(EndReason) + Send + Sync>;

struct Entry {
    call: LiveCall,
    end: watch::Sender<Option<EndReason>>,
    ender: Option<Ender>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry").field("call", &self.call).field("end", &self.end).finish_non_exhaustive()
    }
}

impl Entry {
    /// Records the reason unless one was asked before; returns the ender to call if this is
    /// the first request.
    fn request_end(&self, reason: EndReason) -> Option<Ender> {
        let first = self.end.send_if_modified(|current| current.is_none() && current.replace(reason).is_none());
        if first {
            self.ender.clone()
        } else {
            None
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    draining: bool,
    calls: HashMap<CallId, Entry>,
}

/// The live calls on this worker. Share it as an `Arc`.
#[derive(Debug)]
pub struct CallRegistry {
    inner: Mutex<Inner>,
    /// The number of live calls, published so a drain can wait for 0 without polling.
    live: watch::Sender<usize>,
}

impl Default for CallRegistry {
    fn default() -> Self {
        Self { inner: Mutex::default(), live: watch::Sender::new(0) }
    }
}

impl CallRegistry {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    // Nothing panics while holding the lock, but if something did, the map is still
    // consistent (every operation is a single insert/remove), so keep going.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a call before it is answered. Refused while draining and for a call id that
    /// is already live. The call lives until the returned registration is dropped.
    pub fn register(self: &Arc<Self>, call: LiveCall) -> Result<CallRegistration, RegisterError> {
        self.register_with(call, None)
    }

    /// `register`, with a callback that carries an end request to the call's driver.
    pub fn register_with(
        self: &Arc<Self>,
        call: LiveCall,
        ender: Option<Ender>,
    ) -> Result<CallRegistration, RegisterError> {
        let mut inner = self.lock();
        if inner.draining {
            return Err(RegisterError::Draining);
        }
        if inner.calls.contains_key(&call.call_id) {
            return Err(RegisterError::Duplicate(call.call_id));
        }
        let (end, end_rx) = watch::channel(None);
        let call_id = call.call_id.clone();
        inner.calls.insert(call_id.clone(), Entry { call, end, ender });
        self.live.send_replace(inner.calls.len());
        drop(inner);
        Ok(CallRegistration { registry: Arc::clone(self), call_id, end: EndSignal(end_rx) })
    }

    fn deregister(&self, call_id: &CallId) {
        let mut inner = self.lock();
        if inner.calls.remove(call_id).is_some() {
            self.live.send_replace(inner.calls.len());
        }
    }

    /// Asks one call to end. Returns whether it was live. Asking twice keeps the first reason.
    pub fn end(&self, call_id: &CallId, reason: EndReason) -> bool {
        let inner = self.lock();
        let Some(entry) = inner.calls.get(call_id) else { return false };
        let ender = entry.request_end(reason);
        drop(inner);
        if let Some(ender) = ender {
            ender(reason);
        }
        true
    }

    /// Asks every live call to end; returns how many were asked.
    pub fn end_all(&self, reason: EndReason) -> usize {
        let inner = self.lock();
        let enders: Vec<Ender> = inner.calls.values().filter_map(|entry| entry.request_end(reason)).collect();
        let asked = inner.calls.len();
        drop(inner);
        for ender in enders {
            ender(reason);
        }
        asked
    }

    /// Stops taking calls and returns the calls live at that moment (sorted by org, then
    /// call id). Idempotent.
    pub fn start_draining(&self) -> Vec<LiveCall> {
        let mut inner = self.lock();
        inner.draining = true;
        let mut calls: Vec<LiveCall> = inner.calls.values().map(|e| e.call.clone()).collect();
        drop(inner);
        calls.sort_by(|a, b| (&a.org_id, &a.call_id).cmp(&(&b.org_id, &b.call_id)));
        calls
    }

    pub fn is_draining(&self) -> bool {
        self.lock().draining
    }

    pub fn len(&self) -> usize {
        *self.live.borrow()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of live calls, as it changes (ECS task scale-in protection follows it).
    pub fn subscribe_live(&self) -> watch::Receiver<usize> {
        self.live.subscribe()
    }

    /// The live calls now.
    pub fn snapshot(&self) -> Vec<LiveCall> {
        self.lock().calls.values().map(|e| e.call.clone()).collect()
    }

    /// Resolves once no call is live.
    pub async fn wait_empty(&self) {
        let mut live = self.live.subscribe();
        // The sender lives in `self`, so this cannot fail while we borrow it.
        let _ = live.wait_for(|n| *n == 0).await;
    }
}

/// A live call's registration. Dropping it deregisters the call: do that after the call's
/// `call.ended` event is queued, so a drain that sees the registry empty has every event.
#[derive(Debug)]
pub struct CallRegistration {
    registry: Arc<CallRegistry>,
    call_id: CallId,
    end: EndSignal,
}

impl CallRegistration {
    pub fn call_id(&self) -> &CallId {
        &self.call_id
    }

    /// Resolves when the registry asks this call to end (drain, operator), with the reason.
    /// Put it in the call task's `select!`.
    pub async fn end_requested(&mut self) -> EndReason {
        self.end.requested().await
    }

    /// A cloneable view of the end request, for the call's other tasks or for a driver that
    /// checks it without awaiting (`EndSignal::reason`).
    pub fn end_signal(&self) -> EndSignal {
        self.end.clone()
    }
}

impl Drop for CallRegistration {
    fn drop(&mut self) {
        self.registry.deregister(&self.call_id);
    }
}

/// Whether, and why, the registry asked a call to end.
#[derive(Debug, Clone)]
pub struct EndSignal(watch::Receiver<Option<EndReason>>);

impl EndSignal {
    /// The reason, if an end was requested; never blocks (for a driver that polls its calls).
    pub fn reason(&self) -> Option<EndReason> {
        *self.0.borrow()
    }

    /// Resolves with the reason once an end is requested.
    pub async fn requested(&mut self) -> EndReason {
        // Copied out at once: the borrow must not be held across the await below.
        let requested = self.0.wait_for(Option::is_some).await.map(|reason| *reason);
        match requested {
            Ok(Some(reason)) => reason,
            // The sender went away: the call was deregistered, so nobody will ask any more.
            Ok(None) | Err(_) => std::future::pending().await,
        }
    }
}

/// `/ready`: 200 while taking calls, 503 `draining` once SIGTERM arrived, so the load balancer
/// stops sending new calls while the live ones finish.
pub fn ready_response(registry: &CallRegistry) -> axum::response::Response {
    use axum::response::IntoResponse;
    if registry.is_draining() {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            format!("this worker is shutting down; {} call(s) still live", registry.len()),
        )
        .into_response()
    } else {
        axum::Json(json!({"status": "ready"})).into_response()
    }
}

/// How a drain goes.
#[derive(Debug, Clone)]
pub struct DrainConfig {
    /// How long live calls may go on after SIGTERM (`GOLOS_DRAIN_SECS`, default 10 minutes).
    pub drain_for: Duration,
    /// After the forced end, how long calls get to queue their `call.ended` and deregister.
    pub flush_grace: Duration,
    /// How often the remaining calls are logged while waiting.
    pub progress_every: Duration,
}

impl Default for DrainConfig {
    fn default() -> Self {
        Self {
            drain_for: Duration::from_secs(600),
            flush_grace: Duration::from_secs(10),
            progress_every: Duration::from_secs(60),
        }
    }
}

/// What a drain did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DrainReport {
    /// Calls live when the drain began.
    pub calls_at_start: usize,
    /// `call.shutdown_initiated` events queued (one per org with live calls).
    pub orgs_notified: usize,
    /// Calls still live at the drain time, ended with `forced_shutdown`.
    pub forced: usize,
    /// Calls that had not deregistered when the flush grace ran out (their events may be lost).
    pub abandoned: usize,
}

/// Drains the worker: stop taking calls (`/ready` answers 503), queue one
/// `call.shutdown_initiated` per org with live calls, wait until the calls end by themselves
/// or `drain_for` passes, then end the rest with `forced_shutdown` and give them
/// `flush_grace` to queue their events. Does not stop anything else; the caller does.
pub async fn drain(
    registry: &CallRegistry,
    state: &ControlState,
    worker_id: &str,
    config: &DrainConfig,
) -> DrainReport {
    let started = tokio::time::Instant::now();
    let deadline = started + config.drain_for;
    let live = registry.start_draining();
    let mut report = DrainReport { calls_at_start: live.len(), ..DrainReport::default() };
    tracing::warn!(calls = live.len(), drain_secs = config.drain_for.as_secs(), "draining: taking no new calls");

    let mut by_org: BTreeMap<&OrgId, Vec<&LiveCall>> = BTreeMap::new();
    for call in &live {
        by_org.entry(&call.org_id).or_default().push(call);
    }
    let now = state.clock.now();
    let drain_ms = i64::try_from(config.drain_for.as_millis()).unwrap_or(i64::MAX);
    for (org, calls) in by_org {
        let agent_ids: std::collections::BTreeSet<String> = calls.iter().map(|c| c.agent_id.to_string()).collect();
        let data = golos_control::webhook_payloads::data(&golos_control::webhook_payloads::ShutdownInitiatedData {
            worker_id: worker_id.to_owned(),
            call_ids: calls.iter().map(|c| c.call_id.to_string()).collect(),
            agent_ids: agent_ids.into_iter().collect(),
            grace_period_secs: config.drain_for.as_secs(),
            drain_deadline: now.plus_millis(drain_ms).to_string(),
        });
        // One drain per worker process, so worker + org names the fact: a re-emission keeps the id.
        let subject = format!("{worker_id}_{org}");
        let event = WebhookEvent::new(WebhookEventType::ShutdownInitiated, &subject, org.clone(), now, data);
        match emit(state, event).await {
            Ok(()) => report.orgs_notified += 1,
            // Telling customers is best effort; the drain itself must go on.
            Err(err) => tracing::error!(org = %org, error = %err, "could not queue call.shutdown_initiated"),
        }
    }

    loop {
        let until = deadline.min(tokio::time::Instant::now() + config.progress_every);
        if tokio::time::timeout_at(until, registry.wait_empty()).await.is_ok() {
            tracing::info!(waited_ms = started.elapsed().as_millis(), "every call ended by itself");
            return report;
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        tracing::info!(calls = registry.len(), "draining: waiting for live calls");
    }

    report.forced = registry.end_all(EndReason::ForcedShutdown);
    tracing::warn!(calls = report.forced, "drain time is up: ending the remaining calls (forced_shutdown)");
    if tokio::time::timeout(config.flush_grace, registry.wait_empty()).await.is_err() {
        report.abandoned = registry.len();
        tracing::error!(calls = report.abandoned, "calls did not finish after forced_shutdown; exiting anyway");
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(org: &str, n: u32) -> LiveCall {
        LiveCall {
            org_id: OrgId::parse(org).unwrap(),
            agent_id: AgentId::parse("agt_1").unwrap(),
            call_id: CallId::parse(format!("call_{org}_{n}")).unwrap(),
        }
    }

    #[tokio::test]
    async fn registry_tracks_live_calls_and_refuses_while_draining() {
        let registry = CallRegistry::new();
        let a = registry.register(call("org_a", 1)).unwrap();
        let b = registry.register(call("org_b", 1)).unwrap();
        assert_eq!(registry.len(), 2);
        assert_eq!(
            registry.register(call("org_a", 1)).unwrap_err(),
            RegisterError::Duplicate(a.call_id().clone()),
            "one call id, one registration"
        );
        drop(a);
        assert_eq!(registry.len(), 1, "dropping the handle deregisters");
        assert_eq!(registry.start_draining(), vec![call("org_b", 1)]);
        assert!(registry.is_draining());
        assert_eq!(registry.register(call("org_c", 1)).unwrap_err(), RegisterError::Draining);
        drop(b);
        assert!(registry.is_empty());
        registry.wait_empty().await;
    }

    #[tokio::test]
    async fn an_end_request_reaches_the_call_with_its_first_reason() {
        let registry = CallRegistry::new();
        let mut handle = registry.register(call("org_a", 1)).unwrap();
        let signal = handle.end_signal();
        assert_eq!(signal.reason(), None);
        assert!(registry.end(handle.call_id(), EndReason::Transfer));
        assert_eq!(registry.end_all(EndReason::ForcedShutdown), 1);
        assert_eq!(handle.end_requested().await, EndReason::Transfer);
        assert_eq!(signal.reason(), Some(EndReason::Transfer));
        let id = handle.call_id().clone();
        drop(handle);
        assert!(!registry.end(&id, EndReason::Failed), "no longer live");
    }

    #[test]
    fn an_ender_is_called_once_outside_the_lock() {
        let registry = CallRegistry::new();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let ender: Ender = {
            let (asked, registry) = (Arc::clone(&asked), Arc::clone(&registry));
            // Touching the registry from the callback must not deadlock.
            Arc::new(move |reason| asked.lock().unwrap().push((reason, registry.len())))
        };
        let registration = registry.register_with(call("org_a", 1), Some(ender)).unwrap();
        assert_eq!(registry.end_all(EndReason::ForcedShutdown), 1);
        assert_eq!(registry.end_all(EndReason::Failed), 1);
        assert!(registry.end(registration.call_id(), EndReason::Transfer));
        assert_eq!(*asked.lock().unwrap(), [(EndReason::ForcedShutdown, 1)]);
        assert_eq!(registration.end_signal().reason(), Some(EndReason::ForcedShutdown));
    }
}
