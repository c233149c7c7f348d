//! The media worker as a library: the `golos` binary's `serve` mounts it next to the control
//! plane, and the live-call code plugs into it — a call registers in the `CallRegistry` before
//! it is answered and records into `CallMetrics` as it goes.

pub mod calls;
pub mod demo;
pub mod lifecycle;
pub mod metrics;
pub mod scale_in;
pub mod trunk_health;

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
    /// The SIP trunks' circuit breakers: fed by the SIP edge's health checks, asked by its
    /// INVITE path, shown on `/metrics`.
    pub trunk_health: Arc<trunk_health::TrunkHealth>,
    /// ECS task scale-in protection as last confirmed (scale_in.rs), shown on `/metrics`.
    pub scale_in: Arc<scale_in::ProtectionStatus>,
}

impl Worker {
    pub fn new(control_metrics: Arc<ControlMetrics>) -> Self {
        Self {
            registry: CallRegistry::new(),
            call_metrics: Arc::default(),
            control_metrics,
            edge: Arc::default(),
            shards: Arc::default(),
            trunk_health: Arc::default(),
            scale_in: Arc::default(),
        }
    }

    /// The `/metrics` page now.
    pub fn render_metrics(&self) -> String {
        let gauges = metrics::WorkerGauges {
            concurrent_calls_active: self.registry.len(),
            draining: self.registry.is_draining(),
        };
        let mut page = metrics::render(&self.control_metrics, &self.call_metrics, &self.edge, &self.shards, gauges);
        self.trunk_health.render(&mut page, std::time::Instant::now());
        self.scale_in.render(&mut page);
        page
    }
}

/// Where the operator's routes (`/ready`, `/metrics`) are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpsRoutes {
    /// On a listener of their own (`GOLOS_OPS_LISTEN`), open to whoever reaches it: the
    /// operator's network. The public listener does not serve them at all.
    OwnListener,
    /// On the public listener: `/ready` open (a load balancer's probe sends no key, and it
    /// says only ready or draining), `/metrics` only with the operator key.
    PublicWithOperatorKey,
}

/// `/ready` and `/metrics`, open. Outside the control plane's middleware on purpose: probes
/// and scrapes are neither API requests to count nor callers to rate-limit.
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

/// `/ready` open and `/metrics` behind the operator key (`Authorization: Bearer <key>`, as
/// Prometheus sends it, or `X-API-Key`), for a worker without an operator listener.
fn public_ops_router(worker: Worker, state: &ControlState) -> Router {
    let state = state.clone();
    Router::new()
        .route("/ready", get(|State(worker): State<Worker>| async move { lifecycle::ready_response(&worker.registry) }))
        .route(
            "/metrics",
            get(move |State(worker): State<Worker>, headers: axum::http::HeaderMap| async move {
                if !is_operator(&state, &headers) {
                    return golos_control::ApiError::unauthorized(
                        "/metrics needs the operator key (Authorization: Bearer …), or scrape the operator listener",
                    )
                    .into_response();
                }
                ([(axum::http::header::CONTENT_TYPE, metrics::CONTENT_TYPE)], worker.render_metrics()).into_response()
            }),
        )
        .with_state(worker)
}

fn is_operator(state: &ControlState, headers: &axum::http::HeaderMap) -> bool {
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
    match (presented, state.operator_key_hash.as_deref()) {
        (Some(token), Some(hash)) => golos_control::keys::verify(&state.pepper, token.trim(), hash),
        _ => false,
    }
}

/// Everything `golos serve` answers over HTTP on its public listener: the control plane, the
/// operator's routes unless they have their own listener, and, with `calls`, the live-call
/// endpoints (`/ws/calls`, `/ws/twilio`, `/talk`).
pub fn app(state: ControlState, worker: Worker, calls: Option<calls::LiveCalls>, ops: OpsRoutes) -> Router {
    let ops_router = (ops == OpsRoutes::PublicWithOperatorKey).then(|| public_ops_router(worker, &state));
    let mut app = golos_control::router(state);
    if let Some(ops_router) = ops_router {
        app = app.merge(ops_router);
    }
    match calls {
        Some(calls) => app.merge(calls.router()),
        None => app,
    }
}
