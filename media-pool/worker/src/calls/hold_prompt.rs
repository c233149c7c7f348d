//! The "please hold" message of a caller waiting in line. It is spoken by an engine of its own
//! on a shard, so the engine paces it like every other sound a caller hears; the call's real
//! engine starts only once admitted (its duration and timers must not count the wait).

use super::sink::{spawn_tts, PIPELINE_RATE};
use super::CallLink;
use golos_call::{CallConfig, Command, Event, Output, RequestId};
use golos_domain::agent::AgentConfig;
use golos_providers::{AgentChains, TtsRequest};
use golos_shard::{CallHandle, CallSink, Feed, OwnedInput, ShardPool};
use golos_transports::ws::SessionOutput;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

/// The most a stop waits for the prompt's engine to close: one shard step, normally far less.
const STOP_WAIT: Duration = Duration::from_secs(1);

pub(super) fn hold_prompt(language: &str, position: u32) -> String {
    if language.to_ascii_lowercase().starts_with("en") {
        format!("All our lines are busy. Please hold, you are number {position} in line.")
    } else {
        format!("Все операторы заняты. Пожалуйста, оставайтесь на линии, вы {position} в очереди.")
    }
}

/// The prompt being spoken; dropping it stops it.
pub(super) struct HoldPrompt {
    handle: CallHandle,
    closed: watch::Receiver<bool>,
}

impl HoldPrompt {
    /// Starts saying `text` to the caller of `link` in the agent's voice.
    pub(super) fn speak(
        pool: &ShardPool,
        runtime: &tokio::runtime::Handle,
        agent: &AgentConfig,
        chains: AgentChains,
        link: &CallLink,
        text: &str,
    ) -> Self {
        let config = Arc::new(CallConfig { greeting: None, ..CallConfig::from_agent(agent) });
        let (closed_tx, closed) = watch::channel(false);
        let handle = pool.add_call_with(config, None, |handle| {
            Box::new(PromptSink {
                handle,
                runtime: runtime.clone(),
                chains: Arc::new(chains),
                language: agent.language.clone(),
                outputs: link.outputs.clone(),
                tts: HashMap::new(),
                closed: closed_tx,
            }) as Box<dyn CallSink>
        });
        handle.input(OwnedInput::SayPrompt { text: text.to_owned() });
        Self { handle, closed }
    }

    /// Stops the prompt and waits until its engine has closed, so no frame of it can follow
    /// what the caller hears next.
    pub(super) async fn stop(mut self) {
        self.handle.hangup();
        let _ = tokio::time::timeout(STOP_WAIT, self.closed.wait_for(|closed| *closed)).await;
    }
}

impl HoldPrompt {
    /// Waits until the prompt has been said to its end, or the call ended.
    pub(super) async fn played_out(mut self, link: &CallLink) {
        tokio::select! {
            () = link.wait_ended() => {}
            _ = self.closed.wait_for(|closed| *closed) => {}
        }
    }
}

impl Drop for HoldPrompt {
    fn drop(&mut self) {
        self.handle.hangup();
    }
}

/// What a prompt's engine needs: its TTS and the caller's transport. It has no LLM, tools or
/// STT; a prompt whose TTS fails leaves the caller holding in silence (the apology is for a
/// conversation, not for a queue).
struct PromptSink {
    handle: CallHandle,
    runtime: tokio::runtime::Handle,
    chains: Arc<AgentChains>,
    language: String,
    outputs: mpsc::Sender<SessionOutput>,
    tts: HashMap<RequestId, AbortHandle>,
    closed: watch::Sender<bool>,
}

impl CallSink for PromptSink {
    fn output(&mut self, output: Output, _call: &mut Feed<'_>) {
        match output {
            Output::Command(Command::StartTts { request, text }) => {
                let tts_request =
                    TtsRequest { text: text.to_string(), language: self.language.clone(), sample_rate: PIPELINE_RATE };
                let task = spawn_tts(&self.runtime, &self.chains, &self.handle, tts_request, request, None);
                self.tts.insert(request, task);
            }
            Output::Command(Command::CancelTts { request }) => {
                if let Some(task) = self.tts.remove(&request) {
                    task.abort();
                }
            }
            // Paced by the engine: the queue towards the transport holds a frame or two.
            Output::PlayAudio(frame) => {
                let _ = self.outputs.try_send(SessionOutput::Audio(frame));
            }
            Output::FlushPlayout => {
                let _ = self.outputs.try_send(SessionOutput::Clear);
            }
            // Said once: the engine would otherwise wait for the caller and time out on silence.
            Output::Event(Event::AgentDone { .. }) => {
                self.handle.hangup();
            }
            Output::PlayClip(_) => tracing::warn!("the hold prompt could not be synthesised; holding in silence"),
            Output::Command(_)
            | Output::Event(_)
            | Output::Hangup { .. }
            | Output::Transfer { .. }
            | Output::SendDtmf { .. } => {}
        }
    }

    fn closed(&mut self, _now: Instant) {
        for (_, task) in self.tts.drain() {
            task.abort();
        }
        self.closed.send_replace(true);
    }
}
