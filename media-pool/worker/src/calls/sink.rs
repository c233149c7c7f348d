//! One live call on a shard: the engine's outputs become provider tasks on the I/O runtime
//! (whose events come back through the call's [`CallHandle`]), audio and events for the
//! caller's transport, and, when the engine ends, the call's `call.ended`.
//!
//! Everything here runs on the shard's thread and must not block: async work is spawned on
//! the runtime, transport writes are `try_send` into a bounded queue.

use super::webhooks::{CallWebhooks, ENDED_DURING_TRANSFER};
use super::{CallLink, CallReport};
use crate::metrics::CallMetrics;
use futures::StreamExt;
use golos_audio::vad::{EnergyVad, Vad};
use golos_call::{Clip, Command, EndReason, Event, Frame, Input, MessageRole, Output, RequestId, TurnMetrics};
use golos_control::tool_signing::{self, OrgSigningKey};
use golos_domain::agent::{AgentConfig, ToolSpec};
use golos_domain::events::TranscriptTurn;
use golos_domain::TranscriptRole;
use golos_egress::net::EgressClient;
use golos_egress::EgressError;
use golos_providers::{AgentChains, LlmEvent, LlmRequest, Message, ToolDefinition, TtsRequest};
use golos_shard::{CallHandle, CallSink, Feed, OwnedInput};
use golos_transports::golos::{AgentState, ServerMessage, Speaker, WireTurnMetrics};
use golos_transports::ws::SessionOutput;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

pub const PIPELINE_RATE: u32 = 16_000;
/// The most a function tool may answer. A tool's answer goes into the LLM's context, where a
/// few kilobytes is already a lot; past this the call gets a tool error, not the memory growth.
pub const MAX_TOOL_RESPONSE_BYTES: usize = 64 * 1024;

/// What a call's sink needs from the worker.
pub(crate) struct SinkParts {
    pub handle: CallHandle,
    pub runtime: tokio::runtime::Handle,
    pub agent: Arc<AgentConfig>,
    pub chains: Arc<AgentChains>,
    pub outputs: mpsc::Sender<SessionOutput>,
    pub stt_audio: mpsc::Sender<Vec<i16>>,
    pub link: Arc<CallLink>,
    pub metrics: Arc<CallMetrics>,
    /// Function tools are called through the egress policy.
    pub http: EgressClient,
    /// The org's key for signing function-tool requests (none if the platform has no
    /// `tool-signing-key`, which the worker warns about).
    pub tool_signer: Option<OrgSigningKey>,
    /// Called once with the call's report when the engine ends.
    pub on_closed: Box<dyn FnOnce(CallReport) + Send>,
    /// Called after each turn with the engine's snapshot.
    pub on_snapshot: Arc<dyn Fn(golos_call::Snapshot) + Send + Sync>,
    /// The call's escalation and transfer webhooks.
    pub webhooks: CallWebhooks,
}

struct LlmTask {
    abort: AbortHandle,
    paused: watch::Sender<bool>,
}

pub(crate) struct WorkerSink {
    parts: SinkParts,
    on_closed: Option<Box<dyn FnOnce(CallReport) + Send>>,
    vad: EnergyVad,
    stream_start: Option<Instant>,
    started: Option<Instant>,
    llm: HashMap<RequestId, LlmTask>,
    tts: HashMap<RequestId, AbortHandle>,
    tools: Vec<AbortHandle>,
    transcript: Vec<TranscriptTurn>,
    turns: Vec<serde_json::Value>,
    quality: Option<serde_json::Value>,
    state: AgentState,
    engine_reason: Option<EndReason>,
    /// Speech recognition was lost and the caller asked for the keypad (the call's quality).
    dtmf_menu: bool,
}

impl WorkerSink {
    pub(crate) fn new(mut parts: SinkParts) -> Self {
        let on_closed = std::mem::replace(&mut parts.on_closed, Box::new(|_| {}));
        Self {
            parts,
            on_closed: Some(on_closed),
            vad: EnergyVad::default(),
            stream_start: None,
            started: None,
            llm: HashMap::new(),
            tts: HashMap::new(),
            tools: Vec::new(),
            transcript: Vec::new(),
            turns: Vec::new(),
            quality: None,
            state: AgentState::Listening,
            engine_reason: None,
            dtmf_menu: false,
        }
    }

    fn send(&self, output: SessionOutput) {
        // A full queue means the transport stopped reading (a dead socket the OS has not
        // reported yet): dropping is right, the hangup follows.
        let _ = self.parts.outputs.try_send(output);
    }

    fn set_state(&mut self, state: AgentState) {
        if self.state != state {
            self.state = state;
            self.send(SessionOutput::Event(ServerMessage::State { state }));
        }
    }

    fn since_start(&self, at: Instant) -> u64 {
        self.started.map_or(0, |s| u64::try_from(at.saturating_duration_since(s).as_millis()).unwrap_or(u64::MAX))
    }

    fn command(&mut self, command: Command, now: Instant) {
        match command {
            Command::StartLlm { request, messages, tools_enabled } => {
                self.start_llm(request, messages, tools_enabled, now);
            }
            Command::CancelLlm { request } => {
                if let Some(task) = self.llm.remove(&request) {
                    task.abort.abort();
                }
            }
            Command::PauseLlm { request } => {
                if let Some(task) = self.llm.get(&request) {
                    task.paused.send_replace(true);
                }
            }
            Command::ResumeLlm { request } => {
                if let Some(task) = self.llm.get(&request) {
                    task.paused.send_replace(false);
                }
            }
            Command::StartTts { request, text } => self.start_tts(request, &text),
            Command::CancelTts { request } => {
                if let Some(task) = self.tts.remove(&request) {
                    task.abort();
                }
            }
            Command::CallTool { call_id, name, arguments } => self.call_tool(call_id, name, arguments),
        }
    }

    fn start_llm(
        &mut self,
        request: RequestId,
        messages: Vec<golos_call::ContextMessage>,
        tools_enabled: bool,
        now: Instant,
    ) {
        self.set_state(AgentState::Thinking);
        let mut llm_request = LlmRequest::new(messages.into_iter().map(provider_message).collect());
        if tools_enabled {
            llm_request.tools = self.parts.agent.tools.iter().map(ToolDefinition::from_spec).collect();
        }
        let (paused, mut paused_rx) = watch::channel(false);
        let chains = Arc::clone(&self.parts.chains);
        let handle = self.parts.handle.clone();
        let metrics = Arc::clone(&self.parts.metrics);
        let task = self.parts.runtime.spawn(async move {
            let mut stream = match chains.llm.stream(&llm_request).await {
                Ok(stream) => stream,
                Err(exhausted) => {
                    handle.input(OwnedInput::LlmError { request, error: exhausted.to_string() });
                    return;
                }
            };
            if stream.tier > 0 {
                metrics.incr_llm_fallback();
            }
            let mut first = true;
            loop {
                // Backpressure from the engine: stop reading until it resumes us.
                if paused_rx.wait_for(|p| !*p).await.is_err() {
                    return;
                }
                let Some(event) = stream.next().await else {
                    handle.input(OwnedInput::LlmEnd { request });
                    return;
                };
                if first {
                    metrics.observe_llm_inference(now.elapsed());
                    first = false;
                }
                let input = match event {
                    Ok(LlmEvent::TextDelta(text)) => OwnedInput::LlmToken { request, text },
                    Ok(LlmEvent::ToolCall(call)) => OwnedInput::LlmToolCall {
                        request,
                        call_id: call.id,
                        name: call.name,
                        arguments: call.arguments,
                    },
                    Ok(LlmEvent::End(_)) => {
                        handle.input(OwnedInput::LlmEnd { request });
                        return;
                    }
                    Err(error) => {
                        handle.input(OwnedInput::LlmError { request, error: error.to_string() });
                        return;
                    }
                };
                if !handle.input(input) {
                    return;
                }
            }
        });
        self.llm.insert(request, LlmTask { abort: task.abort_handle(), paused });
    }

    fn start_tts(&mut self, request: RequestId, text: &str) {
        let task = spawn_tts(
            &self.parts.runtime,
            &self.parts.chains,
            &self.parts.handle,
            TtsRequest {
                text: text.to_owned(),
                language: self.parts.agent.language.clone(),
                sample_rate: PIPELINE_RATE,
            },
            request,
            Some(Arc::clone(&self.parts.metrics)),
        );
        self.tts.insert(request, task);
    }

    /// A customer function tool: POST the arguments to its URL; the body is the result.
    /// Built-in tools (end_call, transfer…) are the engine's own and never arrive here.
    fn call_tool(&mut self, call_id: String, name: String, arguments: String) {
        let endpoint = self.parts.agent.tools.iter().find_map(|tool| match tool {
            ToolSpec::Function { name: n, url, timeout_ms, .. } if *n == name => {
                Some((url.clone(), Duration::from_millis(u64::from(*timeout_ms))))
            }
            _ => None,
        });
        let handle = self.parts.handle.clone();
        let Some((url, timeout)) = endpoint else {
            handle.input(OwnedInput::ToolResult { call_id, result: Err(format!("no tool named {name}")) });
            return;
        };
        let http = self.parts.http.clone();
        let signer = self.parts.tool_signer.clone();
        let call = self.parts.link.call_id.to_string();
        let task = self.parts.runtime.spawn(async move {
            let arguments: serde_json::Value = serde_json::from_str(&arguments).unwrap_or(serde_json::Value::Null);
            let message_id = format!("{call}_{call_id}");
            let body =
                serde_json::json!({"call_id": call, "tool_call_id": call_id, "name": name, "arguments": arguments});
            let body = serde_json::to_vec(&body).unwrap_or_default();
            let tool = ToolRequest { url: &url, timeout, message_id: &message_id, body, signer: signer.as_ref() };
            let result = call_function_tool(&http, tool).await;
            handle.input(OwnedInput::ToolResult { call_id, result });
        });
        self.tools.push(task.abort_handle());
    }

    /// The clip's audio goes back to the engine, which paces it like speech (and stops it on a
    /// barge-in).
    fn play_apology(&self) {
        let chains = Arc::clone(&self.parts.chains);
        let handle = self.parts.handle.clone();
        let language = self.parts.agent.language.clone();
        self.parts.runtime.spawn(async move {
            let (samples, _) = golos_providers::apology_audio(&chains.tts, &language, PIPELINE_RATE).await;
            let mut framer = Framer::default();
            let frames = framer.push(&samples).into_iter().chain(framer.finish());
            for frame in frames {
                if !handle.input(OwnedInput::ClipAudio { frame }) {
                    return;
                }
            }
            handle.input(OwnedInput::ClipEnd);
        });
    }

    fn event(&mut self, event: Event, call: &Feed<'_>) {
        match event {
            Event::Transcript { role, text, at } => {
                let speaker = match role {
                    MessageRole::User => Speaker::User,
                    MessageRole::Assistant => Speaker::Assistant,
                    MessageRole::System | MessageRole::Tool => return,
                };
                self.transcript.push(TranscriptTurn {
                    role: if speaker == Speaker::User { TranscriptRole::User } else { TranscriptRole::Assistant },
                    text: text.clone(),
                    at_ms: self.since_start(at),
                });
                self.send(SessionOutput::Event(ServerMessage::Transcript { role: speaker, text, is_final: true }));
            }
            Event::Turn(metrics) => self.turn_ended(&metrics, call),
            Event::AgentDone { .. } => {
                self.send(SessionOutput::Mark(format!("turn-{}", self.turns.len() + 1)));
                self.set_state(AgentState::Listening);
            }
            Event::CallEnded { quality, .. } => {
                self.quality = Some(serde_json::json!({
                    "turns": quality.turns,
                    "mean_stt_confidence": quality.mean_stt_confidence,
                    "low_confidence_finals": quality.low_confidence_finals,
                    "interruptions": quality.interruptions,
                    "tools_finished": quality.tools_finished,
                    "tools_succeeded": quality.tools_succeeded,
                    "playout_gaps": quality.playout_gaps,
                    "longest_gap_ms": ms(quality.longest_gap),
                    "stt_lost_dtmf_menu": self.dtmf_menu,
                }));
            }
            Event::DtmfMenu { .. } => {
                tracing::info!(call = %self.parts.link.call_id, "no speech recogniser left: the caller is asked for the keypad");
                self.dtmf_menu = true;
            }
            Event::TransferFailed { error, .. } => {
                tracing::info!(call = %self.parts.link.call_id, %error, "the transfer failed; the call goes on");
                self.parts.webhooks.transfer_ended(Err(&error));
            }
            Event::Escalation { reason, transfer_to } => {
                // The LLM's words may quote the caller: they go to the org's endpoints only.
                tracing::info!(call = %self.parts.link.call_id, transfer = transfer_to.is_some(), "escalated to a person");
                self.parts.webhooks.escalation(&reason, transfer_to.as_deref());
            }
            Event::Interruption { .. }
            | Event::Resumed { .. }
            | Event::LowConfidence { .. }
            | Event::ToolFinished { .. } => {}
        }
    }

    fn turn_ended(&mut self, metrics: &TurnMetrics, call: &Feed<'_>) {
        if let Some(latency) = metrics.heard_silence.or(metrics.first_audio_out) {
            self.parts.metrics.observe_agent_response_latency(latency);
        }
        let wire = WireTurnMetrics {
            turn: metrics.turn,
            end_of_utterance_ms: metrics.end_of_utterance.map(ms),
            ttft_ms: metrics.ttft.map(ms),
            tts_first_audio_ms: metrics.tts_first_audio.map(ms),
            first_audio_out_ms: metrics.first_audio_out.map(ms),
            heard_silence_ms: metrics.heard_silence.map(ms),
            added_ms: metrics.added.map(ms),
            interrupted: metrics.interrupted,
        };
        self.turns.push(serde_json::to_value(&wire).unwrap_or_default());
        self.send(SessionOutput::Event(ServerMessage::TurnMetrics(wire)));
        // What a reconnect resumes from (DESIGN.md §4).
        (self.parts.on_snapshot)(call.engine().snapshot(call.now()));
    }
}

/// Synthesises one TTS request of the engine on the runtime, its audio back to the engine as
/// 20 ms frames (the engine paces them out). `metrics`: where the provider's latency counts.
pub(super) fn spawn_tts(
    runtime: &tokio::runtime::Handle,
    chains: &Arc<AgentChains>,
    handle: &CallHandle,
    tts_request: TtsRequest,
    request: RequestId,
    metrics: Option<Arc<CallMetrics>>,
) -> AbortHandle {
    let chains = Arc::clone(chains);
    let handle = handle.clone();
    let task = runtime.spawn(async move {
        let asked = Instant::now();
        let mut stream = match chains.tts.synthesize(&tts_request).await {
            Ok(stream) => stream,
            Err(exhausted) => {
                handle.input(OwnedInput::TtsError { request, error: exhausted.to_string() });
                return;
            }
        };
        let mut framer = Framer::default();
        let mut first = true;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => {
                    if first {
                        if let Some(metrics) = &metrics {
                            metrics.observe_tts_latency(asked.elapsed());
                        }
                        first = false;
                    }
                    for frame in framer.push(&chunk.samples) {
                        if !handle.input(OwnedInput::TtsAudio { request, frame }) {
                            return;
                        }
                    }
                }
                Err(error) => {
                    handle.input(OwnedInput::TtsError { request, error: error.to_string() });
                    return;
                }
            }
        }
        if let Some(frame) = framer.finish() {
            handle.input(OwnedInput::TtsAudio { request, frame });
        }
        handle.input(OwnedInput::TtsEnd { request });
    });
    task.abort_handle()
}

/// One function-tool request: where, how long it may take, and its signed body.
struct ToolRequest<'a> {
    url: &'a str,
    timeout: Duration,
    /// `webhook-id`: unique per tool call.
    message_id: &'a str,
    body: Vec<u8>,
    signer: Option<&'a OrgSigningKey>,
}

/// POSTs a function tool's arguments and reads its answer, capped and timed out. The error is
/// what the LLM reads as the tool's result, so it starts with a stable code.
async fn call_function_tool(http: &EgressClient, tool: ToolRequest<'_>) -> Result<String, String> {
    let ToolRequest { url, timeout, message_id, body, signer } = tool;
    let refused = |error: &EgressError| format!("destination_forbidden: {error}");
    let mut request = http
        .post(url)
        .map_err(|e| refused(&e))?
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    if let Some(signer) = signer {
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        request = request
            .header(tool_signing::ID_HEADER, message_id)
            .header(tool_signing::TIMESTAMP_HEADER, timestamp)
            .header(tool_signing::SIGNATURE_HEADER, signer.sign(message_id, timestamp, &body));
    }
    let response = match request.body(body).send().await {
        Ok(response) => response,
        Err(error) => {
            return Err(match golos_egress::net::egress_error_of(&error) {
                Some(policy) if policy.is_refusal() => refused(policy),
                _ if error.is_timeout() => format!("tool_timed_out: no answer within {} ms", timeout.as_millis()),
                _ => format!("tool_unreachable: {}", error.without_url()),
            });
        }
    };
    let status = response.status();
    if !status.is_success() {
        return Err(format!("tool_http_error: the tool answered HTTP {}", status.as_u16()));
    }
    // The request's timeout covers reading the body too: a slow trickle ends like silence.
    match golos_egress::net::read_capped(response, MAX_TOOL_RESPONSE_BYTES).await {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(EgressError::TooLarge { limit }) => {
            Err(format!("tool_response_too_large: the tool's answer is over {limit} bytes"))
        }
        Err(EgressError::Timeout(_)) => Err(format!("tool_timed_out: no answer within {} ms", timeout.as_millis())),
        Err(error) => Err(format!("tool_unreachable: {error}")),
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

fn provider_message(message: golos_call::ContextMessage) -> Message {
    match message.role {
        MessageRole::System => Message::System(message.content),
        MessageRole::User => Message::User(message.content),
        MessageRole::Assistant => Message::Assistant {
            text: message.content,
            tool_calls: message
                .tool_calls
                .into_iter()
                .map(|c| golos_providers::ToolCall { id: c.id, name: c.name, arguments: c.arguments })
                .collect(),
        },
        MessageRole::Tool => {
            Message::ToolResult { call_id: message.tool_call_id.unwrap_or_default(), content: message.content }
        }
    }
}

impl CallSink for WorkerSink {
    fn started(&mut self, now: Instant) {
        self.started = Some(now);
    }

    fn output(&mut self, output: Output, call: &mut Feed<'_>) {
        match output {
            Output::Command(command) => self.command(command, call.now()),
            Output::PlayAudio(frame) => {
                self.set_state(AgentState::Speaking);
                self.send(SessionOutput::Audio(frame));
            }
            Output::FlushPlayout => self.send(SessionOutput::Clear),
            Output::PlayClip(Clip::Apology) => self.play_apology(),
            Output::Event(event) => self.event(event, call),
            Output::Hangup { reason } => {
                // A transfer's success ends the call as transferred; any other end while one
                // is pending (the call's time limit) means it did not happen.
                let outcome = if reason == EndReason::Transfer { Ok(()) } else { Err(ENDED_DURING_TRANSFER) };
                self.parts.webhooks.transfer_ended(outcome);
                self.engine_reason.get_or_insert(reason);
                self.parts.link.request_end(reason);
            }
            Output::Transfer { target, cause } => {
                self.parts.webhooks.transfer_requested(&target, cause);
                if let Some(line) = self.parts.link.line() {
                    if line.transfers.try_send(target).is_err() {
                        call.input(Input::TransferResult { result: Err("the phone line is not available") });
                    }
                } else {
                    // A web call has no line to hand over; it ends as a transfer, so the
                    // customer's systems can follow up with the caller.
                    tracing::info!(call = %self.parts.link.call_id, "transfer requested on a web call");
                    call.input(Input::TransferResult { result: Ok(()) });
                }
            }
            Output::SendDtmf { digits } => {
                if let Some(line) = self.parts.link.line() {
                    if line.digits.try_send(digits).is_err() {
                        tracing::info!(call = %self.parts.link.call_id, "key presses dropped: the line is busy sending others");
                    }
                } else {
                    // Key presses towards the far end exist only on phone lines.
                    tracing::debug!(call = %self.parts.link.call_id, "send_dtmf on a web call");
                }
            }
        }
    }

    fn caller_audio(&mut self, frame: Frame, call: &mut Feed<'_>) {
        let now = call.now();
        let stream_start = *self.stream_start.get_or_insert(now);
        if let Some(event) = self.vad.process(&frame) {
            call.input(Input::from_vad(event, stream_start));
        }
        // The STT task is slower than real time only if the recogniser is: then frames are
        // dropped rather than queued without bound.
        let _ = self.parts.stt_audio.try_send(frame.to_vec());
    }

    fn closed(&mut self, now: Instant) {
        for (_, task) in self.llm.drain() {
            task.abort.abort();
        }
        for (_, task) in self.tts.drain() {
            task.abort();
        }
        for task in self.tools.drain(..) {
            task.abort();
        }
        if self.parts.webhooks.transfer_pending() {
            // Hung up while the line was transferring: the line's own report says whether the
            // far end took the call before the hangup reached the engine.
            let completed = self.parts.link.line_report().is_some_and(|r| r["transfer"]["outcome"] == "completed");
            self.parts.webhooks.transfer_ended(if completed { Ok(()) } else { Err(ENDED_DURING_TRANSFER) });
        }
        let reason = self.parts.link.reason().or(self.engine_reason).unwrap_or(EndReason::CallerHangup);
        let duration = self.started.map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
        let report = CallReport {
            reason,
            duration,
            transcript: std::mem::take(&mut self.transcript),
            turns: std::mem::take(&mut self.turns),
            quality: self.quality.take(),
        };
        if let Some(on_closed) = self.on_closed.take() {
            on_closed(report);
        }
    }
}

/// Provider audio of any chunk size as the pipeline's 20 ms frames (golos-audio's framer).
pub(crate) struct Framer(golos_audio::frame::Framer);

impl Default for Framer {
    fn default() -> Self {
        Self(golos_audio::frame::Framer::new(PIPELINE_RATE))
    }
}

impl Framer {
    pub(crate) fn push(&mut self, samples: &[i16]) -> Vec<Frame> {
        self.0.push(samples).into_iter().map(Frame::from).collect()
    }

    /// The last partial frame, padded with silence.
    pub(crate) fn finish(&mut self) -> Option<Frame> {
        self.0.flush().map(Frame::from)
    }
}
