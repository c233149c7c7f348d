//! The STT leg of a call: caller frames in, transcripts to the engine (and live captions to
//! the caller).

use super::sink::PIPELINE_RATE;
use golos_domain::agent::AgentConfig;
use golos_providers::{AgentChains, SttConfig, SttEvent};
use golos_shard::{CallHandle, OwnedInput};
use golos_transports::golos::{ServerMessage, Speaker};
use golos_transports::ws::SessionOutput;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The STT leg: caller frames in, transcripts to the engine.
pub(super) async fn run_stt(
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
            // No recogniser: the engine asks for the keypad (DESIGN.md §4 DTMF tier) or ends.
            tracing::warn!(error = %exhausted, dtmf_menu = chains.dtmf_menu, "no speech recogniser for this call");
            handle.input(OwnedInput::SttUnavailable { dtmf_menu: chains.dtmf_menu });
            while frames.recv().await.is_some() {}
            return;
        }
    };
    loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Some(frame) => {
                    if session.send(frame).await.is_err() {
                        tracing::warn!(dtmf_menu = chains.dtmf_menu, "the speech recogniser stopped taking audio");
                        handle.input(OwnedInput::SttUnavailable { dtmf_menu: chains.dtmf_menu });
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
                    tracing::warn!(%error, dtmf_menu = chains.dtmf_menu, "the speech recogniser failed");
                    handle.input(OwnedInput::SttUnavailable { dtmf_menu: chains.dtmf_menu });
                    while frames.recv().await.is_some() {}
                    return;
                }
                None => return,
            }
        }
    }
}
