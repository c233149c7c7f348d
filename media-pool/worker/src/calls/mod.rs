//! Live calls: the worker's WebSocket endpoints joined to admission, the shards, the
//! agent's provider chains and the call-events queue.
//!
//! A call, from `start` to `call.ended`:
//! 1. the token is checked (`golos_control::call_tokens`) and the agent loaded;
//! 2. the call registers in the [`CallRegistry`] (refused while draining) and asks admission
//!    for a lease; over a concurrency limit the caller hears "please hold" and waits in line;
//! 3. the agent's chains are built with its secrets from the `Secrets` port, `call.started`
//!    is queued, and the call's engine starts on a shard with a [`sink::WorkerSink`];
//! 4. caller audio goes transport → shard (VAD) → STT task; provider events come back to the
//!    shard through the call's handle; the engine's audio and events go to the transport;
//! 5. after each turn the conversation is snapshotted (`CALL#c / CTX`, 5 minutes, sealed
//!    under the org and the call), so a client that reconnects with `call_id` resumes it;
//! 6. every heartbeat re-checks the org's money and minutes; when they run out the agent says a
//!    goodbye and the call ends `balance_exhausted` / `minutes_exhausted`;
//! 7. when the engine ends, `call.ended` (sealed transcript, per-turn metrics, quality) is
//!    written to the outbox and queued for billing, then the lease released and the
//!    registration dropped.

pub mod sink;

use crate::lifecycle::{EndReason, LiveCall, RegisterError};
use crate::Worker;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Extension;
use axum::Router;
use golos_call::HangupReason;
use golos_call::{CallConfig, Snapshot};
use golos_control::admission::{self, Admission, AdmissionRequest, RejectReason};
use golos_control::call_tokens::{self, CallAuthError};
use golos_control::calls::snapshot_context;
use golos_control::ControlState;
use golos_domain::agent::AgentConfig;
use golos_domain::billing::SpendingLimit;
use golos_domain::events::{CallEnded, CallEvent, CallStarted, TranscriptTurn};
use golos_domain::{AgentId, CallId, OrgId, Timestamp};
use golos_providers::{build_chains, AgentChains, BuildContext, SttConfig, SttEvent, TtsRequest};
use golos_shard::{CallHandle, OwnedInput, ShardPool};
use golos_transports::golos::{codes, ServerMessage, Speaker};
use golos_transports::limits::{ConnectionLimiter, ConnectionPermit};
use golos_transports::playout::Frame;
use golos_transports::ws::{self, Admitted, CallSession, Dialect, Edge, Refusal, SessionOutput, StartRequest};
use serde::{Deserialize, Serialize};
use sink::{SinkParts, WorkerSink, PIPELINE_RATE};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// The browser page (`GET /talk`).
const TALK_PAGE: &str = include_str!("../../assets/talk.html");

/// How long a conversation can be resumed after its last turn (DESIGN.md §4).
pub const RESUME_WINDOW: Duration = Duration::from_secs(300);
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
        }
    }
}

/// Everything the live calls of this worker share.
#[derive(Clone)]
pub struct LiveCalls {
    state: ControlState,
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
        if let Ok(region) = std::env::var("AWS_REGION") {
            providers.aws_region = region;
        }
        let edge = Edge { counters: Arc::clone(&worker.edge) };
        let connections = ConnectionLimiter::new(config.max_connections, Arc::clone(&worker.edge));
        Self {
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
            Dialect::Golos => ws::run(socket, self.session("web"), PIPELINE_RATE, &self.edge).await,
            Dialect::Twilio => ws::run_twilio(socket, self.session("inbound"), PIPELINE_RATE, &self.edge).await,
        };
        tracing::debug!(?outcome, ?dialect, "call connection closed");
        drop(permit);
    }

    fn session(&self, direction: &'static str) -> WorkerSession {
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
}

impl CallLink {
    fn new(call_id: CallId, outputs: mpsc::Sender<SessionOutput>) -> Self {
        Self { call_id, reason: Mutex::new(None), handle: OnceLock::new(), outputs, ended: watch::Sender::new(false) }
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

/// A snapshot as stored: whose call it was, so only the same org and agent can resume it.
#[derive(Debug, Serialize, Deserialize)]
struct StoredContext {
    org_id: OrgId,
    agent_id: AgentId,
    snapshot: Snapshot,
}

/// One connection's side of a call.
struct WorkerSession {
    calls: LiveCalls,
    direction: &'static str,
    link: Option<Arc<CallLink>>,
}

fn refusal(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal { code, message: message.into() }
}

/// A store or queue failed: the peer learns that it may retry, the log learns what failed
/// (store text never goes to a peer).
fn unavailable(error: &dyn std::fmt::Display) -> Refusal {
    tracing::warn!(%error, "a call could not be set up; the platform is unavailable");
    refusal(codes::UNAVAILABLE, "the platform is unavailable; try again shortly")
}

fn auth_refusal(error: &CallAuthError) -> Refusal {
    if let CallAuthError::Unavailable(_) = error {
        return unavailable(error);
    }
    let code = match error {
        CallAuthError::Unauthorized | CallAuthError::OrgDisabled => codes::UNAUTHORIZED,
        CallAuthError::AgentNotFound => codes::AGENT_NOT_FOUND,
        CallAuthError::Unavailable(_) => codes::UNAVAILABLE,
    };
    refusal(code, error.to_string())
}

fn reject_refusal(reason: RejectReason) -> Refusal {
    let (code, message) = match reason {
        RejectReason::NoBalance => ("no_balance", "the organisation's balance is used up; top it up to take calls"),
        RejectReason::MinutesExhausted => ("minutes_exhausted", "the plan's minutes for this month are used up"),
        RejectReason::AgentDisabled => ("agent_disabled", "this agent is disabled"),
        RejectReason::OrgDisabled => (codes::UNAUTHORIZED, "this organisation is disabled"),
        RejectReason::UnknownOrg => (codes::UNAUTHORIZED, "no such organisation"),
        RejectReason::UnknownAgent => (codes::AGENT_NOT_FOUND, "no such agent"),
        RejectReason::HoldQueueFull => {
            ("hold_queue_full", "all lines are busy and the queue is full; call again later")
        }
    };
    refusal(code, message)
}

/// Everything needed to start the engine once admitted.
struct Pending {
    org_id: OrgId,
    agent_id: AgentId,
    agent: Arc<AgentConfig>,
    resume: Option<(CallId, Snapshot)>,
    /// The client's `start.metadata` (or a Twilio stream's parameters), kept with the call.
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
    registration: crate::lifecycle::CallRegistration,
}

impl CallSession for WorkerSession {
    async fn on_start(&mut self, start: StartRequest) -> Result<Admitted, Refusal> {
        let calls = self.calls.clone();
        let state = &calls.state;
        let (org, agent) =
            call_tokens::authorize_call(state, &start.token, &start.agent_id).await.map_err(|e| auth_refusal(&e))?;
        let resume = match &start.call_id {
            Some(previous) => Some(load_resume(state, previous, &org.id, &agent.id).await?),
            None => None,
        };
        let call_id =
            CallId::with_suffix(&state.ids.new_suffix()).map_err(|e| refusal(codes::INTERNAL, e.to_string()))?;
        let (outputs_tx, outputs) = mpsc::channel(OUTPUT_QUEUE);
        let link = Arc::new(CallLink::new(call_id.clone(), outputs_tx));
        let ender_link = Arc::clone(&link);
        let registration = calls
            .worker
            .registry
            .register_with(
                LiveCall { org_id: org.id.clone(), agent_id: agent.id.clone(), call_id: call_id.clone() },
                Some(Arc::new(move |reason| ender_link.request_end(reason))),
            )
            .map_err(|e| match e {
                RegisterError::Draining => refusal(codes::UNAVAILABLE, "this worker is draining; connect again"),
                other => refusal(codes::INTERNAL, other.to_string()),
            })?;
        let request = AdmissionRequest {
            org_id: org.id.clone(),
            agent_id: agent.id.clone(),
            call_id: call_id.clone(),
            // The agent's priority: numbers carry no settings of their own, so a call to a
            // number is held with the priority of the agent it routes to.
            priority: agent.config.priority,
        };
        let first = admission::admit(state, &request).await.map_err(|e| unavailable(&e))?;
        let pending = Pending {
            org_id: org.id.clone(),
            agent_id: agent.id.clone(),
            agent: Arc::new(agent.config),
            resume,
            metadata: start.metadata,
            registration,
        };
        match first {
            Admission::Rejected { reason } => return Err(reject_refusal(reason)),
            Admission::Admitted { .. } => {
                let link_for_task = Arc::clone(&link);
                let direction = self.direction;
                // Built and started off the connection's task so `started` goes out at once.
                tokio::spawn(Box::pin(calls.begin(pending, link_for_task, direction)));
            }
            Admission::Wait { position, .. } => {
                let link_for_task = Arc::clone(&link);
                let direction = self.direction;
                tokio::spawn(Box::pin(calls.hold(request, pending, link_for_task, direction, position)));
            }
        }
        self.link = Some(Arc::clone(&link));
        Ok(Admitted { call_id: call_id.to_string(), outputs })
    }

    fn on_audio(&mut self, frame: Frame) {
        if let Some(handle) = self.link.as_ref().and_then(|l| l.handle.get()) {
            handle.audio(frame);
        }
    }

    fn on_mark(&mut self, _name: String) {}

    fn on_dtmf(&mut self, digit: char) {
        if let Some(handle) = self.link.as_ref().and_then(|l| l.handle.get()) {
            handle.input(OwnedInput::Dtmf { digit });
        }
    }

    fn on_hangup(&mut self) {
        if let Some(link) = &self.link {
            link.request_end(EndReason::CallerHangup);
        }
    }
}

async fn load_resume(
    state: &ControlState,
    previous: &str,
    org: &OrgId,
    agent: &AgentId,
) -> Result<(CallId, Snapshot), Refusal> {
    let not_found =
        || refusal(codes::CALL_NOT_FOUND, "no call to resume with this id (unknown, or over 5 minutes ago)");
    let previous = CallId::parse(previous).map_err(|_| not_found())?;
    let bytes = state
        .stores
        .contexts
        .get(&previous, state.clock.now())
        .await
        .map_err(|e| unavailable(&e))?
        .ok_or_else(not_found)?;
    // Sealed under the caller's org and the call: another org's snapshot does not open.
    let envelope = golos_ports::Envelope::from_bytes(&bytes).map_err(|_| not_found())?;
    let plain = match state.crypto.decrypt(&envelope, &snapshot_context(org, &previous)).await {
        Ok(plain) => plain,
        Err(golos_ports::PortError::Corrupt { .. }) => return Err(not_found()),
        Err(error) => return Err(unavailable(&error)),
    };
    let stored: StoredContext = serde_json::from_slice(&plain).map_err(|_| not_found())?;
    if &stored.org_id != org || &stored.agent_id != agent {
        return Err(not_found());
    }
    Ok((previous, stored.snapshot))
}

impl LiveCalls {
    /// Holds the caller with a spoken prompt, asking for a slot every `hold_poll`, until
    /// admitted, refused, hung up or held for `hold_max`.
    async fn hold(
        self,
        request: AdmissionRequest,
        pending: Pending,
        link: Arc<CallLink>,
        direction: &'static str,
        position: u32,
    ) {
        let prompt = hold_prompt(&pending.agent.language, position);
        self.play_prompt(&pending, &link, prompt).await;
        let give_up = tokio::time::Instant::now() + self.config.hold_max;
        loop {
            tokio::select! {
                () = link.wait_ended() => {
                    admission::leave_line(&self.state, &request.org_id, &request.call_id).await;
                    return;
                }
                () = tokio::time::sleep(self.config.hold_poll) => {}
            }
            if tokio::time::Instant::now() >= give_up {
                admission::leave_line(&self.state, &request.org_id, &request.call_id).await;
                let _ = link.outputs.try_send(SessionOutput::End { reason: "hold_timeout".into() });
                return;
            }
            match admission::admit(&self.state, &request).await {
                Ok(Admission::Admitted { .. }) => {
                    // A clear first: the rest of the hold prompt must not run into the greeting.
                    let _ = link.outputs.send(SessionOutput::Clear).await;
                    return self.begin(pending, link, direction).await;
                }
                Ok(Admission::Wait { .. }) => {}
                Ok(Admission::Rejected { reason }) => {
                    let refused = reject_refusal(reason);
                    let _ =
                        link.outputs.try_send(SessionOutput::Event(golos_transports::golos::ServerMessage::Error {
                            code: refused.code.to_owned(),
                            message: refused.message,
                        }));
                    let _ = link.outputs.try_send(SessionOutput::End { reason: "rejected".into() });
                    return;
                }
                Err(error) => tracing::warn!(%error, "admission failed while holding a caller; asking again"),
            }
        }
    }

    async fn play_prompt(&self, pending: &Pending, link: &CallLink, text: String) {
        let chains = self.chains_for(&pending.org_id, &pending.agent).await;
        let request = TtsRequest { text, language: pending.agent.language.clone(), sample_rate: PIPELINE_RATE };
        let Ok(mut stream) = chains.tts.synthesize(&request).await else {
            tracing::warn!("the hold prompt could not be synthesised; holding in silence");
            return;
        };
        let mut framer = sink::Framer::default();
        while let Some(Ok(chunk)) = futures::StreamExt::next(&mut stream).await {
            for frame in framer.push(&chunk.samples) {
                if link.outputs.send(SessionOutput::Audio(frame)).await.is_err() {
                    return;
                }
            }
        }
        if let Some(frame) = framer.finish() {
            let _ = link.outputs.send(SessionOutput::Audio(frame)).await;
        }
    }

    /// The org's key for signing its function-tool requests (docs/api.md, "Function tools").
    async fn tool_signer(&self, org: &OrgId) -> Option<golos_control::tool_signing::OrgSigningKey> {
        let platform = self
            .tool_signing
            .get_or_init(|| async {
                match self.state.secrets.get(golos_control::tool_signing::TOOL_SIGNING_SECRET).await {
                    Ok(secret) => Some(secret),
                    Err(error) => {
                        tracing::warn!(%error, "no tool-signing-key secret: function-tool requests go unsigned");
                        None
                    }
                }
            })
            .await;
        platform.as_ref().map(|secret| golos_control::tool_signing::OrgSigningKey::derive(secret, org))
    }

    /// The agent's chains with its org's credentials and, for tiers at a provider's default
    /// endpoint without one, the platform's keys. Agent settings never name a platform
    /// secret: credentials come only from the org's own store.
    async fn chains_for(&self, org: &OrgId, agent: &AgentConfig) -> AgentChains {
        let mut ctx = self.providers.clone();
        ctx.credentials = golos_control::credentials::resolve(&self.state, org, &agent.credential_names()).await;
        for provider in golos_providers::platform_keys_needed(agent) {
            match self.state.secrets.get(&golos_providers::platform_key_secret(provider)).await {
                Ok(value) => {
                    ctx.platform_keys.insert(provider, value);
                }
                // No platform key: the tier is left out and reported by `build_chains`.
                Err(golos_ports::PortError::NotFound { .. }) => {}
                Err(error) => tracing::warn!(provider, %error, "a platform provider key could not be read"),
            }
        }
        build_chains(agent, &ctx).await
    }

    /// Starts an admitted call: chains, `call.started`, the engine on a shard, STT and
    /// heartbeat tasks. The call ends through its link.
    async fn begin(self, pending: Pending, link: Arc<CallLink>, direction: &'static str) {
        if link.reason().is_some() {
            // Hung up while we were admitting: free the slot we just took.
            let _ = admission::release(&self.state, &pending.org_id, &link.call_id).await;
            return;
        }
        let chains = Arc::new(self.chains_for(&pending.org_id, &pending.agent).await);
        let tool_signer = self.tool_signer(&pending.org_id).await;
        let started_at = self.state.clock.now();
        let started = CallStarted {
            call_id: link.call_id.clone(),
            org_id: pending.org_id.clone(),
            agent_id: pending.agent_id.clone(),
            direction: direction.to_owned(),
            from: None,
            to: None,
            started_at,
        };
        // In the background: the caller must not wait on the store, and the start is not what
        // bills the call (its end is; a late start never reopens an ended record).
        let state = self.state.clone();
        tokio::spawn(async move {
            if let Err(error) = golos_control::call_events::publish(&state, &CallEvent::Started(started)).await {
                tracing::error!(%error, "call.started could not be serialised");
            }
        });

        let (stt_audio, stt_frames) = mpsc::channel(STT_QUEUE);
        let config = Arc::new(CallConfig::from_agent(&pending.agent));
        let Pending { org_id, agent_id, agent, resume, metadata, registration } = pending;
        let resumed_from = resume.as_ref().map(|(previous, _)| previous.to_string());
        if let Some((previous, _)) = &resume {
            // One snapshot resumes one call: a second reconnect with the same id must not fork it.
            if let Err(error) = self.state.stores.contexts.delete(previous).await {
                tracing::warn!(%error, "could not delete a resumed call's snapshot");
            }
        }
        let finisher = Finisher {
            calls: self.clone(),
            org_id: org_id.clone(),
            agent_id: agent_id.clone(),
            direction,
            started_at,
            resumed_from,
            metadata,
            registration,
            link: Arc::clone(&link),
        };
        let on_closed: Box<dyn FnOnce(CallReport) + Send> = Box::new(move |report| {
            let runtime = finisher.calls.runtime.clone();
            runtime.spawn(finisher.finish(report));
        });
        let on_snapshot = self.snapshot_writer(&link.call_id, &org_id, &agent_id);
        let parts = |handle: CallHandle| SinkParts {
            handle,
            runtime: self.runtime.clone(),
            agent: Arc::clone(&agent),
            chains: Arc::clone(&chains),
            outputs: link.outputs.clone(),
            stt_audio,
            link: Arc::clone(&link),
            metrics: Arc::clone(&self.worker.call_metrics),
            http: self.providers.http.clone(),
            tool_signer,
            on_closed,
            on_snapshot,
        };
        let handle = self.pool.add_call_with(config, resume.map(|(_, s)| s), |handle| {
            Box::new(WorkerSink::new(parts(handle))) as Box<dyn golos_shard::CallSink>
        });
        let _ = link.handle.set(handle.clone());
        // A hangup that raced the start found no handle to tell.
        if link.reason().is_some() {
            handle.hangup();
        }
        tokio::spawn(run_stt(Arc::clone(&chains), Arc::clone(&agent), stt_frames, handle, link.outputs.clone()));
        tokio::spawn(self.heartbeat(org_id, Arc::clone(&link)));
    }

    fn snapshot_writer(&self, call: &CallId, org: &OrgId, agent: &AgentId) -> Arc<dyn Fn(Snapshot) + Send + Sync> {
        let state = self.state.clone();
        let runtime = self.runtime.clone();
        let (call, org, agent) = (call.clone(), org.clone(), agent.clone());
        Arc::new(move |snapshot: Snapshot| {
            let state = state.clone();
            let call = call.clone();
            let stored_org = org.clone();
            let stored = StoredContext { org_id: org.clone(), agent_id: agent.clone(), snapshot };
            let bytes = match serde_json::to_vec(&stored) {
                Ok(bytes) => bytes,
                Err(error) => return tracing::warn!(%error, "could not serialise the call's snapshot"),
            };
            runtime.spawn(async move {
                // The conversation is personal data: stored only as an envelope.
                let sealed = match state.crypto.encrypt(&bytes, &snapshot_context(&stored_org, &call)).await {
                    Ok(envelope) => envelope.to_bytes(),
                    Err(error) => return tracing::warn!(%error, "could not seal the call's snapshot; a reconnect cannot resume it"),
                };
                let window = i64::try_from(RESUME_WINDOW.as_millis()).unwrap_or(i64::MAX);
                let expires_at = Timestamp::from_millis(state.clock.now().as_millis().saturating_add(window));
                if let Err(error) = state.stores.contexts.put(&call, &sealed, expires_at).await {
                    tracing::warn!(%error, "could not store the call's snapshot; a reconnect cannot resume it");
                }
            });
        })
    }

    /// Keeps the call's lease and ends the call when the control plane says so: its org ran
    /// out of money or minutes (the agent says a goodbye first), or its lease is gone (the
    /// sweeper billed it as lost after heartbeats failed for a whole TTL).
    async fn heartbeat(self, org: OrgId, link: Arc<CallLink>) {
        let mut every = tokio::time::interval(self.config.heartbeat_every);
        every.tick().await;
        loop {
            tokio::select! {
                () = link.wait_ended() => return,
                _ = every.tick() => {}
            }
            let end = match admission::heartbeat(&self.state, &org, &link.call_id).await {
                Ok(beat) => match beat.end {
                    Some(SpendingLimit::Balance) => HangupReason::BalanceExhausted,
                    Some(SpendingLimit::MonthlyMinutes) => HangupReason::MinutesExhausted,
                    None => continue,
                },
                Err(golos_control::ControlError::Port(golos_ports::PortError::NotFound { .. })) => {
                    HangupReason::LeaseLost
                }
                Err(error) => {
                    tracing::warn!(%error, call = %link.call_id, "lease heartbeat failed");
                    continue;
                }
            };
            tracing::info!(call = %link.call_id, reason = ?end, "ending the call at the control plane's request");
            if let Some(handle) = link.handle.get() {
                handle.input(OwnedInput::EndPolitely { reason: end });
            }
            // The engine hangs up after its goodbye (at most `goodbye_max`); if it does not,
            // the call is ended regardless.
            tokio::select! {
                () = link.wait_ended() => {}
                () = tokio::time::sleep(POLITE_END_BACKSTOP) => link.request_end(sink::end_reason(end)),
            }
            return;
        }
    }
}

/// How long a call asked to end politely may take over its goodbye before it is cut.
const POLITE_END_BACKSTOP: Duration = Duration::from_secs(15);

/// Ends a call's bookkeeping once its engine has ended.
struct Finisher {
    calls: LiveCalls,
    org_id: OrgId,
    agent_id: AgentId,
    direction: &'static str,
    started_at: Timestamp,
    resumed_from: Option<String>,
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
    registration: crate::lifecycle::CallRegistration,
    link: Arc<CallLink>,
}

impl Finisher {
    async fn finish(self, report: CallReport) {
        let Self { calls, org_id, agent_id, direction, started_at, resumed_from, metadata, registration, link } = self;
        // The transport closes after the audio it holds: the goodbye is heard.
        link.request_end(report.reason);
        let duration_ms = i64::try_from(report.duration.as_millis()).unwrap_or(i64::MAX);
        let ended = CallEnded {
            call_id: link.call_id.clone(),
            org_id: org_id.clone(),
            agent_id,
            direction: direction.to_owned(),
            from: None,
            to: None,
            started_at,
            ended_at: Timestamp::from_millis(started_at.as_millis().saturating_add(duration_ms)),
            duration_secs: report.duration.as_secs() + u64::from(report.duration.subsec_nanos() > 0),
            end_reason: report.reason.as_str().to_owned(),
            transcript: None,
            metrics: serde_json::json!({
                "turns": report.turns,
                "quality": report.quality,
                "resumed_from": resumed_from,
                "metadata": metadata,
            }),
        };
        let mut ended = ended;
        seal_transcript(&calls.state, &mut ended, &report.transcript).await;
        // Durable before anything is released: from here the call is billed even if this
        // worker dies, and until here its lease (which the sweeper would bill) is still held.
        if let Err(error) = golos_control::call_events::publish(&calls.state, &CallEvent::Ended(ended)).await {
            tracing::error!(alert = "call_event_lost", %error, "call.ended could not be serialised");
        }
        if let Err(error) = admission::release(&calls.state, &org_id, &link.call_id).await {
            // The sweeper frees it when the lease lapses.
            tracing::warn!(%error, "could not release the call's lease");
        }
        calls.worker.call_metrics.call_ended(report.duration, report.reason);
        // Last: a drain that sees the registry empty has every call.ended in the outbox.
        drop(registration);
    }
}

/// Seals the call's transcript into its `call.ended` before it is queued or stored anywhere
/// (inline, or as a transcript blob when the event would not fit a queue message). A crypto
/// or store failure is retried; after that the call is still reported (billing comes
/// first) without its transcript: a transcript is never queued in plaintext.
async fn seal_transcript(state: &ControlState, ended: &mut CallEnded, turns: &[TranscriptTurn]) {
    for attempt in 0..3u32 {
        match golos_control::transcripts::seal_into(state, ended, turns).await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(%error, attempt, "could not seal the call's transcript; retrying");
                tokio::time::sleep(Duration::from_millis(200) * 2u32.pow(attempt)).await;
            }
        }
    }
    ended.transcript = None;
    tracing::error!(alert = "transcript_lost", call = %ended.call_id, "the call's transcript could not be sealed; reported without it");
}

/// The STT leg: caller frames in, transcripts to the engine.
async fn run_stt(
    chains: Arc<AgentChains>,
    agent: Arc<AgentConfig>,
    mut frames: mpsc::Receiver<Vec<i16>>,
    handle: CallHandle,
    outputs: mpsc::Sender<SessionOutput>,
) {
    let mut config = SttConfig::new(agent.language.clone(), PIPELINE_RATE);
    config.phrases = agent.faq.iter().flat_map(|entry| entry.questions.iter().cloned()).collect();
    let mut session = match chains.stt.open(&config).await {
        Ok((session, _attempts)) => session,
        Err(exhausted) => {
            // No recogniser: the engine can still take key presses (DESIGN.md §4 DTMF tier).
            tracing::warn!(error = %exhausted, "no speech recogniser for this call");
            while frames.recv().await.is_some() {}
            return;
        }
    };
    loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Some(frame) => {
                    if session.send(frame).await.is_err() {
                        tracing::warn!("the speech recogniser stopped taking audio");
                        while frames.recv().await.is_some() {}
                        return;
                    }
                }
                None => session.finish(),
            },
            event = session.next() => match event {
                Some(Ok(SttEvent::Transcript(t))) => {
                    if !t.is_final && !t.text.trim().is_empty() {
                        // Live captions for the client; the engine's final transcript replaces it.
                        let _ = outputs.try_send(SessionOutput::Event(ServerMessage::Transcript {
                            role: Speaker::User,
                            text: t.text.clone(),
                            is_final: false,
                        }));
                    }
                    let input = if t.is_final {
                        OwnedInput::SttFinal { text: t.text, confidence: t.confidence }
                    } else {
                        OwnedInput::SttInterim { text: t.text, confidence: t.confidence }
                    };
                    if !handle.input(input) {
                        return;
                    }
                }
                // Speech onsets come from the worker's own VAD, which sees every frame.
                Some(Ok(SttEvent::SpeechStarted | SttEvent::UtteranceEnd)) => {}
                Some(Err(error)) => {
                    tracing::warn!(%error, "the speech recogniser failed");
                    while frames.recv().await.is_some() {}
                    return;
                }
                None => return,
            }
        }
    }
}

fn hold_prompt(language: &str, position: u32) -> String {
    if language.to_ascii_lowercase().starts_with("en") {
        format!("All our lines are busy. Please hold, you are number {position} in line.")
    } else {
        format!("Все операторы заняты. Пожалуйста, оставайтесь на линии, вы {position} в очереди.")
    }
}
