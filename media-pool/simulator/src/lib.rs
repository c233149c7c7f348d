//! Local servers speaking the OpenAI, Anthropic, Deepgram, ElevenLabs and Google Cloud TTS wire
//! protocols with scripted replies, injected latency and faults.
//!
//! The protocols are written from the providers' public API references (see README.md), not from
//! golos' own clients, so a client that misreads a protocol fails against the simulator too.
//!
//! ```no_run
//! # async fn demo() -> Result<(), golos_simulator::Error> {
//! use golos_simulator::{Fault, FaultRule, Provider, Scenario, Simulator};
//! let mut scenario = Scenario::default();
//! scenario.openai.faults.push(FaultRule::first(2, Fault::rate_limited(1)));
//! let sim = Simulator::start(scenario).await?;
//! let base = sim.openai_base_url(); // "http://127.0.0.1:PORT/v1"
//! // ... point a client at `base` ...
//! assert_eq!(sim.request_count(Provider::OpenAi), 0);
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

mod anthropic;
mod audio;
mod common;
mod deepgram;
mod elevenlabs;
mod google;
mod log;
mod openai;
mod paced;
pub mod scenario;
mod validate;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::routing::{get, post};
use axum::serve::ListenerExt as _;
use axum::Router;
use tokio::sync::watch;

pub use log::{DeepgramSession, LoggedRequest};
pub use scenario::{
    Fault, FaultRule, LlmLatency, LlmReply, LlmScenario, LogConfig, Pacing, RequestRange, Scenario, SttScenario,
    ToolCallScript, Transcript, TtsScenario, WORKLOAD_TOKENS,
};

/// The one error type of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot read scenario {path}: {source}")]
    ReadScenario { path: String, source: std::io::Error },
    #[error("invalid scenario: {0}")]
    ParseScenario(#[source] serde_json::Error),
    #[error("server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// Which simulated provider a request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    OpenAi,
    Anthropic,
    Deepgram,
    ElevenLabs,
    Google,
}

impl Provider {
    pub const ALL: [Provider; 5] =
        [Provider::OpenAi, Provider::Anthropic, Provider::Deepgram, Provider::ElevenLabs, Provider::Google];

    fn index(self) -> usize {
        self as usize
    }
}

/// State shared by all handlers of one simulator.
#[derive(Debug)]
pub(crate) struct Shared {
    scenario: RwLock<Arc<Scenario>>,
    counters: [AtomicU64; 5],
    pub(crate) log: log::RequestLog,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Distinguishes simulators in ids so logs of several instances do not collide.
    pub(crate) instance: u64,
}

impl Shared {
    pub(crate) fn scenario(&self) -> Arc<Scenario> {
        Arc::clone(&self.scenario.read().expect("scenario lock poisoned"))
    }

    /// Counts the request and returns its 1-based ordinal for this provider.
    pub(crate) fn next_ordinal(&self, provider: Provider) -> u64 {
        self.counters[provider.index()].fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Resolves when the simulator shuts down; handlers that hang or stall wait on this.
    pub(crate) async fn shutdown_signal(&self) {
        let mut rx = self.shutdown.clone();
        // An error means the handle (the sender) is gone, which is a shutdown too.
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

/// Starts simulators.
#[derive(Debug)]
pub struct Simulator;

impl Simulator {
    /// Binds 127.0.0.1 on an ephemeral port and serves every provider on it.
    pub async fn start(scenario: Scenario) -> Result<SimulatorHandle, Error> {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), scenario).await
    }

    pub async fn start_on(addr: SocketAddr, scenario: Scenario) -> Result<SimulatorHandle, Error> {
        static INSTANCES: AtomicU64 = AtomicU64::new(0);
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr, source })?;
        let local = listener.local_addr().map_err(|source| Error::Bind { addr, source })?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            log: log::RequestLog::new(scenario.log),
            scenario: RwLock::new(Arc::new(scenario)),
            counters: Default::default(),
            shutdown: stop_rx.clone(),
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
        });
        let app = router(Arc::clone(&shared));
        // Nagle would hold small SSE events and WebSocket messages until the peer's delayed ACK
        // (up to 40 ms): latency real providers do not add.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let mut serve_stop = stop_rx;
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = serve_stop.wait_for(|stop| *stop).await;
                })
                .await
                .map_err(Error::Serve)
        });
        Ok(SimulatorHandle { addr: local, shared, stop: stop_tx, server: Some(server) })
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1/listen", get(deepgram::listen))
        .route("/v1/text-to-speech/{voice_id}/stream", post(elevenlabs::stream))
        .route("/v1/text-to-speech/{voice_id}", post(elevenlabs::convert))
        .route("/v1/text:synthesize", post(google::synthesize))
        .with_state(shared)
}

/// A running simulator. Dropping it stops the server too; `shutdown` also waits for it.
#[derive(Debug)]
pub struct SimulatorHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    server: Option<tokio::task::JoinHandle<Result<(), Error>>>,
}

impl SimulatorHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: the root every provider is served under.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// OpenAI SDK-style base URL, ending in `/v1` (as `https://api.openai.com/v1`).
    pub fn openai_base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// As `https://api.anthropic.com`; the client appends `/v1/messages`.
    pub fn anthropic_base_url(&self) -> String {
        self.base_url()
    }

    /// As `wss://api.deepgram.com`; the client appends `/v1/listen?...`.
    pub fn deepgram_ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// As `https://api.elevenlabs.io`; the client appends `/v1/text-to-speech/{voice_id}/stream`.
    pub fn elevenlabs_base_url(&self) -> String {
        self.base_url()
    }

    /// As `https://texttospeech.googleapis.com`; the client appends `/v1/text:synthesize`.
    pub fn google_base_url(&self) -> String {
        self.base_url()
    }

    /// Requests a provider received so far (Deepgram: WebSocket connection attempts), faulted or not.
    pub fn request_count(&self, provider: Provider) -> u64 {
        self.shared.counters[provider.index()].load(Ordering::Relaxed)
    }

    /// The logged requests of a provider, oldest first.
    pub fn requests(&self, provider: Provider) -> Vec<LoggedRequest> {
        self.shared.log.requests(provider)
    }

    pub fn last_request(&self, provider: Provider) -> Option<LoggedRequest> {
        self.shared.log.last(provider)
    }

    /// The last request body of a provider parsed as JSON.
    pub fn last_body_json(&self, provider: Provider) -> Option<serde_json::Value> {
        self.last_request(provider).and_then(|r| serde_json::from_slice(&r.body).ok())
    }

    /// Finished Deepgram connections: audio received, control messages, utterances.
    pub fn deepgram_sessions(&self) -> Vec<DeepgramSession> {
        self.shared.log.sessions()
    }

    /// Swaps the script for requests that start from now on (counters and log are kept).
    pub fn set_scenario(&self, scenario: Scenario) {
        *self.shared.scenario.write().expect("scenario lock poisoned") = Arc::new(scenario);
    }

    /// Stops accepting, ends hung and stalled responses, and waits for the server to finish.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(server) = self.server.take() {
            match server.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "simulator server ended with an error"),
                Err(e) => tracing::warn!(error = %e, "simulator server task failed"),
            }
        }
    }
}

impl Drop for SimulatorHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
