//! What goes into and comes out of the engine.

pub use golos_domain::EndReason;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One 20 ms frame of PCM16 audio. Shared, so handing a frame from TTS to the playout moves a
/// pointer, never the samples.
pub type Frame = Arc<[i16]>;

/// Identifies one LLM, TTS or tool request of this call; unique within the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u32);

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// An input, borrowed where it carries text so the driver can pass provider buffers through
/// without an allocation per token.
#[derive(Debug, Clone)]
pub enum Input<'a> {
    /// The caller began speaking; `at` is the onset (a VAD reports it a few frames later, the
    /// STT's turn-start signal about when it happens).
    SpeechStarted {
        at: Instant,
    },
    /// The caller stopped speaking; `at` is the end of the last speech frame.
    SpeechStopped {
        at: Instant,
    },
    SttInterim {
        text: &'a str,
        confidence: f32,
    },
    SttFinal {
        text: &'a str,
        confidence: f32,
    },
    LlmToken {
        request: RequestId,
        text: &'a str,
    },
    /// One complete tool call of a response (the adapter has joined its argument fragments).
    LlmToolCall {
        request: RequestId,
        call_id: &'a str,
        name: &'a str,
        arguments: &'a str,
    },
    LlmEnd {
        request: RequestId,
    },
    /// The LLM failed for good: the provider chain has no tier left for this turn.
    LlmError {
        request: RequestId,
        error: &'a str,
    },
    TtsAudio {
        request: RequestId,
        frame: Frame,
    },
    TtsEnd {
        request: RequestId,
    },
    /// TTS failed for good: the provider chain has no tier left.
    TtsError {
        request: RequestId,
        error: &'a str,
    },
    /// A key press (RFC 4733 or in-band).
    Dtmf {
        digit: char,
    },
    ToolResult {
        call_id: &'a str,
        result: Result<&'a str, &'a str>,
    },
    /// The caller (or the transport) ended the call.
    Hangup,
    /// The platform ends the call (its org ran out of money or minutes): the agent stops,
    /// says `CallConfig::limit_goodbye`, then hangs up with `reason`.
    EndPolitely {
        reason: EndReason,
    },
    /// Speak a fixed prompt that is not part of the conversation (the worker's hold message):
    /// synthesised and paced like any agent speech, so no other layer plays audio on its own.
    SayPrompt {
        text: &'a str,
    },
    /// Audio of the clip last asked for with [`Output::PlayClip`], to be paced out like speech.
    ClipAudio {
        frame: Frame,
    },
    /// The clip's audio is complete.
    ClipEnd,
    /// No speech recogniser is left for this call (every STT tier failed). With `dtmf_menu`
    /// the caller is asked to answer on the keypad from now on; without, the call ends
    /// politely, since nothing the caller says can be heard.
    SttUnavailable {
        dtmf_menu: bool,
    },
    /// What became of the last [`Output::Transfer`]: `Ok` once the far end took the call (the
    /// engine then ends it as transferred), `Err` with a short reason if it did not.
    TransferResult {
        result: Result<(), &'a str>,
    },
}

impl Input<'_> {
    /// A golos-audio VAD event, whose times count from the start of the caller's stream.
    pub fn from_vad(event: golos_audio::vad::VadEvent, stream_start: Instant) -> Self {
        match event {
            golos_audio::vad::VadEvent::SpeechStart { at_ms } => {
                Input::SpeechStarted { at: stream_start + Duration::from_millis(at_ms) }
            }
            golos_audio::vad::VadEvent::SpeechEnd { at_ms } => {
                Input::SpeechStopped { at: stream_start + Duration::from_millis(at_ms) }
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Command(Command),
    /// Send this frame to the caller now. The engine paces playout itself (one frame per
    /// 20 ms, absolute schedule, reset when idle), so what it has emitted is what was played.
    /// The engine and not the transport is the pacer because its rules depend on the playout
    /// clock: barge-in cuts the context to the frames played, the turn metrics and gap counts
    /// are taken at frame slots, and the barge-in grace counts from the first frame. Every
    /// sound a caller hears (speech, prompts, clips) therefore goes through it.
    PlayAudio(Frame),
    /// Drop whatever the transport still holds for the caller.
    FlushPlayout,
    /// Fetch a pre-recorded clip (TTS itself failed) and hand its audio back with
    /// [`Input::ClipAudio`] and [`Input::ClipEnd`]; the engine paces it.
    PlayClip(Clip),
    Event(Event),
    Hangup {
        reason: EndReason,
    },
    /// Hand the caller to `target` (the phone line's transfer), then answer with
    /// [`Input::TransferResult`]. Until then the engine says and hears nothing.
    Transfer {
        target: String,
        /// Which tool asked for it (what a `call.transfer` webhook reports).
        cause: TransferCause,
    },
    SendDtmf {
        digits: String,
    },
}

/// Why the engine hands the caller over: the agent's `transfer_call` tool, or
/// `escalate_to_human` with a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferCause {
    TransferCall,
    EscalateToHuman,
}

impl TransferCause {
    /// The tool's name, as webhooks report it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::TransferCall => "transfer_call",
            Self::EscalateToHuman => "escalate_to_human",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    StartLlm {
        request: RequestId,
        messages: Vec<ContextMessage>,
        tools_enabled: bool,
    },
    CancelLlm {
        request: RequestId,
    },
    /// The LLM→TTS queue is full: stop reading this stream (backpressure, nothing is dropped)
    /// until `ResumeLlm`.
    PauseLlm {
        request: RequestId,
    },
    ResumeLlm {
        request: RequestId,
    },
    StartTts {
        request: RequestId,
        text: Arc<str>,
    },
    CancelTts {
        request: RequestId,
    },
    CallTool {
        call_id: String,
        name: String,
        arguments: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clip {
    Apology,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageRole {
    System,
    User,
    Assistant,
    Tool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// One message of the conversation context, provider-neutral.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextMessage {
    pub role: MessageRole,
    pub content: String,
    /// Assistant messages: the tools it called.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Tool messages: which call this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

/// What survives a dropped connection: taken after each turn (DESIGN.md §4, reconnect), stored
/// by the worker (`CALL#c / CTX`, 5 min TTL), and given to [`crate::CallEngine::from_snapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub messages: Vec<ContextMessage>,
    pub turns: u32,
    /// Call time so far, so the maximum duration still counts from the original start.
    pub elapsed: Duration,
    pub low_confidence_streak: u32,
}

impl ContextMessage {
    pub fn new(role: MessageRole, content: impl Into<String>) -> Self {
        Self { role, content: content.into(), tool_calls: Vec::new(), tool_call_id: None }
    }
}

/// Timings of one turn, each relative to the turn's final transcript (`None`: did not
/// happen). `added` is what the engine itself added to the silence the caller heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TurnMetrics {
    pub turn: u32,
    /// The caller's last speech → final transcript (the STT's end-of-utterance delay).
    pub end_of_utterance: Option<Duration>,
    pub final_to_llm_request: Option<Duration>,
    /// LLM request → first token.
    pub ttft: Option<Duration>,
    /// First token → first TTS request.
    pub token_to_tts_request: Option<Duration>,
    /// First TTS request → its first audio.
    pub tts_first_audio: Option<Duration>,
    /// Final transcript → first audio frame out.
    pub first_audio_out: Option<Duration>,
    /// The caller's last speech → our first audio frame: the silence the caller heard (needs
    /// a speech-stopped input for the turn).
    pub heard_silence: Option<Duration>,
    /// `first_audio_out` minus the providers' waits (TTFT and TTS first audio).
    pub added: Option<Duration>,
    pub interrupted: bool,
    pub filler: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Sent when the turn ends: its audio finished, or the caller cut it off
    /// (`interrupted`). Boxed: the largest payload, once per turn, would otherwise size every
    /// output.
    Turn(Box<TurnMetrics>),
    Transcript {
        role: MessageRole,
        text: String,
        at: Instant,
    },
    /// Caller speech paused the agent (`committed: false`) or cut it off (`true`).
    Interruption {
        at: Instant,
        committed: bool,
    },
    /// A paused agent resumed: the caller's speech was a backchannel or no words.
    Resumed {
        at: Instant,
    },
    /// The LLM called `escalate_to_human` with `reason` (its own words). `transfer_to`: the
    /// agent's escalation destination when the call is now being transferred there, `None`
    /// when a person is to follow up after the call.
    Escalation {
        reason: String,
        transfer_to: Option<String>,
    },
    /// Speech recognition is gone: the caller was asked to use the keypad.
    DtmfMenu {
        at: Instant,
    },
    /// A transfer did not go through; the agent told the caller and goes on.
    TransferFailed {
        error: String,
        at: Instant,
    },
    /// A turn whose transcript was too uncertain to answer; queue it for manual review.
    LowConfidence {
        text: String,
        confidence: f32,
        attempt: u32,
    },
    ToolFinished {
        name: String,
        ok: bool,
        elapsed: Duration,
    },
    /// The agent's audio of a response ended (all of it played).
    AgentDone {
        at: Instant,
    },
    CallEnded {
        at: Instant,
        quality: CallQuality,
    },
}

/// Call-level quality (DESIGN.md §4 metrics), sent with [`Event::CallEnded`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CallQuality {
    pub turns: u32,
    /// Mean confidence of the caller's final transcripts; `None` without any.
    pub mean_stt_confidence: Option<f32>,
    pub low_confidence_finals: u32,
    /// Committed interruptions (the caller took the turn).
    pub interruptions: u32,
    /// Customer tools that finished, in time or not, and those that succeeded.
    pub tools_finished: u32,
    pub tools_succeeded: u32,
    /// Silences inside the agent's speech: a frame that was not there when its slot came
    /// (slow TTS, a filler running out before the answer). Pauses for barge-in do not count.
    pub playout_gaps: u32,
    pub longest_gap: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;
    use golos_audio::vad::{EnergyVad, Vad, VadEvent};

    #[test]
    fn vad_events_become_speech_inputs_at_their_onset_times() {
        let stream_start = Instant::now();
        let mut vad = EnergyVad::default();
        let tone = |amplitude: f64| -> Vec<i16> {
            (0..160).map(|i| (amplitude * (f64::from(i) * 0.235).sin()) as i16).collect()
        };
        let frames = std::iter::repeat_n(tone(30.0), 25)
            .chain(std::iter::repeat_n(tone(8_000.0), 40))
            .chain(std::iter::repeat_n(tone(30.0), 30));
        let inputs: Vec<Input<'_>> =
            frames.filter_map(|f| vad.process(&f)).map(|e: VadEvent| Input::from_vad(e, stream_start)).collect();
        assert_eq!(inputs.len(), 2);
        assert!(matches!(inputs[0], Input::SpeechStarted { at } if at == stream_start + Duration::from_millis(500)));
        assert!(matches!(inputs[1], Input::SpeechStopped { at } if at == stream_start + Duration::from_millis(1_300)));
    }
}
