//! The media worker as a library: the `golos` binary's `serve` mounts it next to the control
//! plane, and the live-call code plugs into it — a call registers in the `CallRegistry` before
//! it is answered and records into `CallMetrics` as it goes.

pub mod calls;
pub mod demo;
pub mod lifecycle;
pub mod metrics;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use golos_control::{ControlMetrics, ControlState};
use golos_shard::ShardCounters;
use golos_transports::limits::EdgeCounters;
use lifecycle::CallRegistry;
use metrics::CallMetrics;
use std::sync::Arc;

/// What the worker's own routes and its calls share.
#[derive(Debug, Clone)]
pub struct Worker {
    pub registry: Arc<CallRegistry>,
    pub call_metrics: Arc<CallMetrics>,
    /// The control plane's counters (same process in embedded mode), rendered by `/metrics`.
    pub control_metrics: Arc<ControlMetrics>,
    /// The call sockets' limits that bit (rate, playout, size, start, connection caps).
    pub edge: Arc<EdgeCounters>,
    /// The shards' bounded queues (caller audio shed).
    pub shards: Arc<ShardCounters>,
}

impl Worker {
    pub fn new(control_metrics: Arc<ControlMetrics>) -> Self {
        Self {
            registry: CallRegistry::new(),
            call_metrics: Arc::default(),
            control_metrics,
            edge: Arc::default(),
            shards: Arc::default(),
        }
    }

    /// The `/metrics` page now.
    pub fn render_metrics(&self) -> String {
        let gauges = metrics::WorkerGauges {
            concurrent_calls_active: self.registry.len(),
            draining: self.registry.is_draining(),
        };
        metrics::render(&self.control_metrics, &self.call_metrics, &self.edge, &self.shards, gauges)
    }
}

/// `/ready` and `/metrics`. Outside the control plane's middleware on purpose: probes and
/// scrapes are neither API requests to count nor callers to rate-limit.
pub fn router(worker: Worker) -> Router {
    Router::new()
        .route("/ready", get(|State(worker): State<Worker>| async move { lifecycle::ready_response(&worker.registry) }))
        .route(
            "/metrics",
            get(|State(worker): State<Worker>| async move {
                ([(axum::http::header::CONTENT_TYPE, metrics::CONTENT_TYPE)], worker.render_metrics()).into_response()
            }),
        )
        .with_state(worker)
}

/// Everything `golos serve` answers over HTTP: the control plane, the worker's routes and,
/// with `calls`, the live-call endpoints (`/ws/calls`, `/ws/twilio`, `/talk`).
pub fn app(state: ControlState, worker: Worker, calls: Option<calls::LiveCalls>) -> Router {
    let app = golos_control::router(state).merge(router(worker));
    match calls {
        Some(calls) => app.merge(calls.router()),
        None => app,
    }
}
