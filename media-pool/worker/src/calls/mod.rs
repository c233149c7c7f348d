//! Live calls: the worker's WebSocket endpoints joined to admission, the shards, the
//! agent's provider chains and the call-events queue.
//!
//! A call, from `start` to `call.ended`:
//! 1. the token is checked (`golos_control::call_tokens`) and the agent loaded ([`session`]);
//! 2. the call registers in the [`CallRegistry`] (refused while draining) and asks admission
//!    for a lease; over a concurrency limit the caller hears "please hold" and waits in line
//!    ([`admission`]);
//! 3. the agent's chains are built with its secrets from the `Secrets` port, `call.started`
//!    is queued, and the call's engine starts on a shard with a [`sink::WorkerSink`] ([`start`]);
//! 4. caller audio goes transport → shard (VAD) → STT task; provider events come back to the
//!    shard through the call's handle; the engine's audio and events go to the transport
//!    ([`stt`], [`sink`]);
//! 5. after each turn the conversation is snapshotted (`CALL#c / CTX`, 5 minutes, sealed
//!    under the org and the call), so a client that reconnects with `call_id` resumes it
//!    ([`resume`]);
//! 6. every heartbeat re-checks the org's money and minutes; when they run out the agent says a
//!    goodbye and the call ends `balance_exhausted` / `minutes_exhausted` ([`admission`]);
//! 7. when the engine ends, `call.ended` (sealed transcript, per-turn metrics, quality) is
//!    written to the outbox and queued for billing, then the lease released and the
//!    registration dropped ([`finish`]).

mod admission;
mod finish;
mod hold_prompt;
mod resume;
mod rtp_media;
mod session;
pub mod sink;
pub mod sip;
mod start;
mod stt;
mod trunk_probes;
mod webhooks;

use admission::Admit;
pub use resume::RESUME_WINDOW;

use crate::lifecycle::EndReason;
use crate::Worker;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Extension;
use axum::Router;
use golos_control::admission::Admissions;
use golos_control::ControlState;
use golos_domain::events::TranscriptTurn;
use golos_domain::CallDirection;
use golos_domain::CallId;
use golos_providers::BuildContext;
use golos_shard::{CallHandle, ShardPool};
use golos_transports::limits::{ConnectionLimiter, ConnectionPermit};
use golos_transports::ws::{self, Dialect, Edge, SessionOutput};
use session::WorkerSession;
use sink::PIPELINE_RATE;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// The browser page (`GET /talk`).
const TALK_PAGE: &str = include_str!("../../assets/talk.html");

/// Audio and events queued towards one caller's transport: 10 s of audio at 20 ms frames.
const OUTPUT_QUEUE: usize = 500;
/// Caller frames queued towards the STT: 2 s.
const STT_QUEUE: usize = 100;
/// A socket's read buffer. Client messages are 20–100 ms of audio (at most 9.6 KB at
/// 48 kHz) or small JSON; larger messages still arrive, in several reads. The library's
/// default (128 KiB) is zero-filled before every read, which was 27 % of the worker's CPU
/// under load and most of its memory per call (docs/performance.md).
const WS_READ_BUFFER: usize = 8 * 1024;

/// Call sockets one worker holds by default, open or still before `start`: above what one
/// worker serves well (300–500 calls over WebSockets, docs/performance.md) and below what
/// would exhaust its memory (~200 KiB a call) or a default file-descriptor limit's worth.
pub const DEFAULT_MAX_CONNECTIONS: usize = 2_000;
/// Call sockets one client address may hold on `/ws/calls` by default: a browser or an SDK
/// holds one per call, so 20 is a busy office behind one NAT, not one peer holding the
/// worker's sockets.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 20;
/// The same on `/ws/twilio`: a telephony provider streams every call of every customer from a
/// few media servers, so its cap per address is higher.
pub const DEFAULT_MAX_TWILIO_CONNECTIONS_PER_IP: usize = 200;
/// What a refused upgrade is told to wait before trying again: a place frees when a call
/// ends or a socket that never started times out (5 s).
const CONNECTIONS_RETRY_AFTER_SECS: u64 = 5;

/// Knobs of the live-call path.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// How often a held caller asks again for a slot (also what keeps its place in line).
    pub hold_poll: Duration,
    /// How long a caller is held before the call ends with `hold_timeout`.
    pub hold_max: Duration,
    /// Lease heartbeat period; a third of the lease TTL leaves two chances before it lapses.
    pub heartbeat_every: Duration,
    /// Folder of pre-recorded clips for the `prerecorded` TTS tier.
    pub clips_dir: Option<std::path::PathBuf>,
    /// Call sockets on both endpoints together (`0`: no cap).
    pub max_connections: usize,
    /// Call sockets one client address may hold on `/ws/calls` (`0`: no cap).
    pub max_connections_per_ip: usize,
    /// Call sockets one client address may hold on `/ws/twilio` (`0`: no cap).
    pub max_twilio_connections_per_ip: usize,
    /// The region AWS-hosted provider tiers call (Settings' `aws.region`); `None` keeps the
    /// providers' default.
    pub aws_region: Option<String>,
}

impl LiveConfig {
    pub fn for_lease_ttl(lease_ttl: Duration) -> Self {
        Self {
            hold_poll: Duration::from_secs(2),
            hold_max: Duration::from_secs(300),
            // Two chances before the lease lapses, and at least three re-checks of the org's
            // spending a minute (the overdraft bound of docs/billing.md needs one a minute).
            heartbeat_every: (lease_ttl / 3).min(Duration::from_secs(20)),
            clips_dir: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            max_twilio_connections_per_ip: DEFAULT_MAX_TWILIO_CONNECTIONS_PER_IP,
            aws_region: None,
        }
    }
}

/// Everything the live calls of this worker share.
#[derive(Clone)]
pub struct LiveCalls {
    state: ControlState,
    /// Admit, heartbeat, hold position, release: all this worker asks of admission.
    admissions: Admissions,
    worker: Worker,
    pool: Arc<ShardPool>,
    providers: BuildContext,
    /// The platform's tool-signing secret, read once on the first call (`None`: not set).
    tool_signing: Arc<tokio::sync::OnceCell<Option<golos_ports::SecretString>>>,
    config: LiveConfig,
    runtime: tokio::runtime::Handle,
    connections: ConnectionLimiter,
    edge: Edge,
}

impl std::fmt::Debug for LiveCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCalls")
            .field("shards", &self.pool.len())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl LiveCalls {
    /// `shards` engine threads (one per core is right); must be called inside the runtime
    /// that will run the calls' I/O.
    pub fn new(state: ControlState, worker: Worker, shards: usize, config: LiveConfig) -> Self {
        // Providers and function tools connect under the operator's egress exceptions, read
        // with the API's configuration (GOLOS_EGRESS_ALLOW), so what an agent was validated
        // against is what its calls connect under.
        let mut providers = BuildContext::with_egress(HashMap::new(), state.config.egress.clone());
        providers.clips_dir.clone_from(&config.clips_dir);
        if let Some(region) = &config.aws_region {
            providers.aws_region.clone_from(region);
        }
        let edge = Edge { counters: Arc::clone(&worker.edge) };
        let connections = ConnectionLimiter::new(config.max_connections, Arc::clone(&worker.edge));
        Self {
            admissions: Admissions::new(state.clone()),
            state,
            pool: Arc::new(ShardPool::with_audio_queue(shards, golos_shard::AUDIO_QUEUE_FRAMES, &worker.shards)),
            worker,
            providers,
            tool_signing: Arc::default(),
            config,
            runtime: tokio::runtime::Handle::current(),
            connections,
            edge,
        }
    }

    /// `GET /ws/calls` (golos protocol), `GET /ws/twilio` (Twilio Media Streams) and the
    /// browser page `GET /talk`.
    pub fn router(self) -> Router {
        Router::new()
            .route(
                "/ws/calls",
                get(
                    |State(calls): State<LiveCalls>,
                     headers: HeaderMap,
                     peer: Option<Extension<ConnectInfo<SocketAddr>>>,
                     upgrade: WebSocketUpgrade| async move {
                        calls.upgrade(Dialect::Golos, &headers, peer, upgrade)
                    },
                ),
            )
            .route(
                "/ws/twilio",
                get(
                    |State(calls): State<LiveCalls>,
                     headers: HeaderMap,
                     peer: Option<Extension<ConnectInfo<SocketAddr>>>,
                     upgrade: WebSocketUpgrade| async move {
                        calls.upgrade(Dialect::Twilio, &headers, peer, upgrade)
                    },
                ),
            )
            .route("/talk", get(|| async { talk_page() }))
            .with_state(self)
    }

    /// Takes a connection place for the client (or answers 503 before upgrading) and runs
    /// the dialect on the upgraded socket, the place held until the socket's task ends.
    fn upgrade(
        self,
        dialect: Dialect,
        headers: &HeaderMap,
        peer: Option<Extension<ConnectInfo<SocketAddr>>>,
        upgrade: WebSocketUpgrade,
    ) -> Response {
        let peer = peer.map(|Extension(ConnectInfo(addr))| addr);
        let client =
            golos_control::http::middleware::client_ip_of(headers, peer, self.state.config.trust_forwarded_for);
        // An address that does not parse (no peer, or a proxy that wrote something else) is
        // counted under one shared key: capped together rather than not at all.
        let client = client.parse::<IpAddr>().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let per_ip = match dialect {
            Dialect::Golos => self.config.max_connections_per_ip,
            Dialect::Twilio => self.config.max_twilio_connections_per_ip,
        };
        let permit = match self.connections.try_acquire(client, per_ip) {
            Ok(permit) => permit,
            Err(refused) => {
                tracing::info!(code = refused.code(), %client, "call socket refused before the upgrade");
                let error = golos_control::ApiError {
                    retry_after_secs: Some(CONNECTIONS_RETRY_AFTER_SECS),
                    ..golos_control::ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        refused.code(),
                        "this worker holds its maximum of call connections; retry later or on another worker",
                    )
                };
                return error.into_response();
            }
        };
        let upgrade = ws::limit_upgrade(upgrade, dialect).read_buffer_size(WS_READ_BUFFER);
        upgrade.on_upgrade(move |socket| self.serve_socket(socket, dialect, permit))
    }

    async fn serve_socket(self, socket: axum::extract::ws::WebSocket, dialect: Dialect, permit: ConnectionPermit) {
        let outcome = match dialect {
            Dialect::Golos => {
                Box::pin(ws::run(socket, self.session(CallDirection::Web), PIPELINE_RATE, &self.edge)).await
            }
            Dialect::Twilio => {
                Box::pin(ws::run_twilio(socket, self.session(CallDirection::Inbound), PIPELINE_RATE, &self.edge)).await
            }
        };
        tracing::debug!(?outcome, ?dialect, "call connection closed");
        drop(permit);
    }

    fn session(&self, direction: CallDirection) -> WorkerSession {
        WorkerSession { calls: self.clone(), direction, link: None }
    }
}

fn talk_page() -> Response {
    let mut response = Html(TALK_PAGE).into_response();
    // The page talks only to its own origin; nothing else may frame or script it.
    response.headers_mut().insert(
        axum::http::header::CONTENT_SECURITY_POLICY,
        axum::http::HeaderValue::from_static(
            "default-src 'self'; script-src 'self' 'unsafe-inline' blob:; style-src 'self' 'unsafe-inline'; connect-src 'self'; worker-src blob:; frame-ancestors 'none'",
        ),
    );
    response
}

/// What one call's tasks share: how to end it, once.
pub(crate) struct CallLink {
    pub call_id: CallId,
    reason: Mutex<Option<EndReason>>,
    handle: OnceLock<CallHandle>,
    outputs: mpsc::Sender<SessionOutput>,
    ended: watch::Sender<bool>,
    /// Set once the engine runs: a held phone call is answered then.
    started: watch::Sender<bool>,
    /// Set by a phone transport: where transfers and key presses go. Web calls have none.
    line: OnceLock<PhoneLine>,
    /// What the phone line measured and did (RTP quality, transfers), for the call record.
    line_report: Mutex<serde_json::Map<String, serde_json::Value>>,
}

/// What only a phone line does with the engine's outputs.
#[derive(Debug, Clone)]
pub(crate) struct PhoneLine {
    /// Transfer targets (`Output::Transfer`), answered with `Input::TransferResult`.
    pub transfers: mpsc::Sender<String>,
    /// Digits to key towards the far end (`Output::SendDtmf`).
    pub digits: mpsc::Sender<String>,
}

impl CallLink {
    fn new(call_id: CallId, outputs: mpsc::Sender<SessionOutput>) -> Self {
        Self {
            call_id,
            reason: Mutex::new(None),
            handle: OnceLock::new(),
            outputs,
            ended: watch::Sender::new(false),
            started: watch::Sender::new(false),
            line: OnceLock::new(),
            line_report: Mutex::default(),
        }
    }

    pub(crate) fn set_line(&self, line: PhoneLine) {
        let _ = self.line.set(line);
    }

    pub(crate) fn line(&self) -> Option<&PhoneLine> {
        self.line.get()
    }

    /// Records `value` under `key` in the phone line's report (the latest value wins).
    pub(crate) fn report_line(&self, key: &str, value: serde_json::Value) {
        self.line_report.lock().unwrap_or_else(PoisonError::into_inner).insert(key.to_owned(), value);
    }

    /// The phone line's report so far, if the call has a line.
    pub(crate) fn line_report(&self) -> Option<serde_json::Value> {
        let report = self.line_report.lock().unwrap_or_else(PoisonError::into_inner);
        (!report.is_empty()).then(|| serde_json::Value::Object(report.clone()))
    }

    /// Ends the call for `reason` (the first reason asked wins): the engine hangs up, the
    /// transport plays out what it has and closes.
    pub(crate) fn request_end(&self, reason: EndReason) {
        {
            let mut current = self.reason.lock().unwrap_or_else(PoisonError::into_inner);
            if current.is_some() {
                return;
            }
            *current = Some(reason);
        }
        if let Some(handle) = self.handle.get() {
            handle.hangup();
        }
        let _ = self.outputs.try_send(SessionOutput::End { reason: reason.as_str().to_owned() });
        self.ended.send_replace(true);
    }

    pub(crate) fn reason(&self) -> Option<EndReason> {
        *self.reason.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until the engine runs; never returns for a call that ends before it does.
    async fn wait_started(&self) {
        let mut started = self.started.subscribe();
        if started.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    async fn wait_ended(&self) {
        let mut ended = self.ended.subscribe();
        let _ = ended.wait_for(|e| *e).await;
    }
}

/// What the sink hands back when the engine ends.
#[derive(Debug)]
pub(crate) struct CallReport {
    pub reason: EndReason,
    pub duration: Duration,
    pub transcript: Vec<TranscriptTurn>,
    pub turns: Vec<serde_json::Value>,
    pub quality: Option<serde_json::Value>,
}
