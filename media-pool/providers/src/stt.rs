//! The STT port: a session that takes audio frames and gives transcripts and speech events.
//!
//! A session is a pair of channels served by the adapter's own task, so the media worker
//! can push frames and read events from different places without locking.

use crate::ProviderError;
use async_trait::async_trait;
use std::fmt;
use tokio::sync::mpsc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SttConfig {
    /// BCP 47, e.g. `ru-RU`.
    pub language: String,
    /// Of the PCM16 frames the caller pushes.
    pub sample_rate: u32,
    pub interim_results: bool,
    /// Silence that ends an utterance (Deepgram's `endpointing`).
    pub endpointing_ms: u32,
    /// Phrases a grammar-based recogniser may hear (a FAQ agent's questions); cloud STT
    /// ignores them.
    pub phrases: Vec<String>,
}

impl SttConfig {
    pub fn new(language: impl Into<String>, sample_rate: u32) -> Self {
        Self { language: language.into(), sample_rate, interim_results: true, endpointing_ms: 300, phrases: Vec::new() }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    pub text: String,
    /// 0..=1. The grammar-based tier has no score and reports 1.0 for a grammar match.
    pub confidence: f32,
    /// This text of the audio will not change any more.
    pub is_final: bool,
    /// The recogniser saw the end of an utterance (Deepgram's `speech_final`).
    pub speech_final: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SttEvent {
    Transcript(Transcript),
    SpeechStarted,
    /// The end of an utterance detected by a gap between words (Deepgram's `UtteranceEnd`).
    UtteranceEnd,
}

/// The caller's end of a session. Dropping it, or [`SttSession::finish`], closes the stream
/// politely: the adapter flushes what it heard and the events end.
#[derive(Debug)]
pub struct SttSession {
    provider: String,
    audio: Option<mpsc::Sender<Vec<i16>>>,
    events: mpsc::Receiver<Result<SttEvent, ProviderError>>,
}

/// The adapter's end of a session.
#[derive(Debug)]
pub struct SttBackend {
    pub audio: mpsc::Receiver<Vec<i16>>,
    pub events: mpsc::Sender<Result<SttEvent, ProviderError>>,
}

/// Frames queued towards the provider; at 20 ms a frame this is 2 s of audio.
const AUDIO_QUEUE: usize = 100;
const EVENT_QUEUE: usize = 64;

impl SttSession {
    pub fn channel(provider: impl Into<String>) -> (Self, SttBackend) {
        let (audio_tx, audio_rx) = mpsc::channel(AUDIO_QUEUE);
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        (
            Self { provider: provider.into(), audio: Some(audio_tx), events: events_rx },
            SttBackend { audio: audio_rx, events: events_tx },
        )
    }

    /// The name of the provider serving this session.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// Sends one frame of PCM16 at the session's sample rate.
    pub async fn send(&self, frame: Vec<i16>) -> Result<(), ProviderError> {
        let audio = self.audio.as_ref().ok_or_else(|| ProviderError::BadResponse("the session is finished".into()))?;
        audio.send(frame).await.map_err(|_| ProviderError::Connection(format!("{} session closed", self.provider)))
    }

    /// No more audio: the provider flushes its last transcripts and the events end.
    pub fn finish(&mut self) {
        self.audio = None;
    }

    /// The next event; `None` once the session has ended.
    pub async fn next(&mut self) -> Option<Result<SttEvent, ProviderError>> {
        self.events.recv().await
    }
}

#[async_trait]
pub trait SttProvider: Send + Sync + fmt::Debug {
    fn name(&self) -> &str;

    /// Opens a session; connection and handshake errors come back here.
    async fn open(&self, config: &SttConfig) -> Result<SttSession, ProviderError>;
}
