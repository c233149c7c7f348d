//! The WORKLOAD (`bench/WORKLOAD.md` §2) as a [`CallSink`]: caller, STT, LLM, TTS and output
//! transport of one call, every wait a deadline in the shard's heap.
//!
//! - SimulatedCaller (§2.1): one 20 ms frame per slot, `ready + 20 ms · k`, full duplex; utterance 1 at
//!   the first slot ≥ ready + 1 s, utterance k+1 at the first slot ≥ T_bot_end + 1 s; 75 speech
//!   frames each. Frames go through [`CallSink::caller_audio`]'s code path, the one a transport's
//!   frames take, minus the inbound channel hop.
//! - STT (§2.2): speech = any non-zero sample. First speech frame → `SpeechStarted`; 50th →
//!   interim "what are your"; first silence → deadline +300 ms, then T_final, final "what are your
//!   opening hours", `SpeechStopped`, in that order.
//! - LLM (§2.3): the engine builds the request (its `StartLlm` carries the context, cloned);
//!   token i at request + 200 + 20·(i−1) ms, `LlmEnd` right after token 30.
//! - TTS (§2.4): w words → w·10 frames of 20 ms, frame j at request + 100 + 20·(j−1) ms. Requests
//!   overlap: the engine keeps two synthesising (`tts_pipeline_depth` 2), so the next chunk's
//!   audio is buffered while the current one plays, and there is no gap between sentences.
//! - Output (§2.5): the engine paces `PlayAudio` (20 ms, absolute, restarting when idle); the
//!   sink is the transport's write. T_out1 is the turn's first write, T_bot_end the one that
//!   brings the turn to 192,000 bytes; after the last turn the call hangs up.

use golos_call::{Command, Event, Frame, Input, Output, RequestId};
use golos_shard::{CallSink, Feed};
use hdrhistogram::Histogram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use golos_call::workload::WORKLOAD_TOKENS as TOKENS;

pub const FRAME: Duration = Duration::from_millis(20);
pub const SAMPLES_PER_FRAME: usize = 320;
pub const UTTERANCE_FRAMES: u64 = 75;
pub const INTERIM_AFTER_FRAMES: u32 = 50;
pub const STT_ENDPOINTING: Duration = Duration::from_millis(300);
pub const LLM_TTFT: Duration = Duration::from_millis(200);
pub const TTS_TTFB: Duration = Duration::from_millis(100);
/// 30 words × 200 ms × 16 kHz × 2 bytes.
pub const TURN_BYTES: usize = 192_000;
pub const FIRST_UTTERANCE_AFTER: Duration = Duration::from_secs(1);
pub const NEXT_UTTERANCE_AFTER: Duration = Duration::from_secs(1);
/// A final with no bot audio within this is a lost turn (§3).
pub const LOST_AFTER: Duration = Duration::from_secs(10);
pub const INTERIM: &str = "what are your";
pub const FINAL: &str = "what are your opening hours";

/// One turn's stamps, kept only when [`Recorder::keep_turns`] is set (tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TurnRecord {
    pub call: u64,
    pub turn: u32,
    pub t_final: Instant,
    pub t_out1: Instant,
}

/// What the simulated calls of one shard measured. One per shard behind an uncontended mutex:
/// only that shard's thread locks it until the run is over.
#[derive(Debug)]
pub struct Recorder {
    /// (T_out1 − T_final) − 300 ms, µs, per answered turn.
    pub added_us: Histogram<u64>,
    /// How late each caller frame was pushed against its slot, µs.
    pub input_lag_us: Histogram<u64>,
    /// The engine's own view of the same turns (`TurnMetrics`), µs: final → LLM request and
    /// first token → first TTS request, the diagnostics of §3.
    pub final_to_llm_us: Histogram<u64>,
    pub token_to_tts_us: Histogram<u64>,
    pub added_max: Duration,
    pub turns_answered: u64,
    pub turns_lost: u64,
    pub above_50ms: u64,
    pub above_200ms: u64,
    pub calls_ended: u64,
    pub first_call_end: Option<Instant>,
    pub keep_turns: bool,
    pub turns: Vec<TurnRecord>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            added_us: histogram(),
            input_lag_us: histogram(),
            final_to_llm_us: histogram(),
            token_to_tts_us: histogram(),
            added_max: Duration::ZERO,
            turns_answered: 0,
            turns_lost: 0,
            above_50ms: 0,
            above_200ms: 0,
            calls_ended: 0,
            first_call_end: None,
            keep_turns: false,
            turns: Vec::new(),
        }
    }
}

impl Recorder {
    pub fn shared() -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(Self::default()))
    }

    pub fn merge(&mut self, other: &Self) {
        self.added_us.add(&other.added_us).expect("same bounds");
        self.input_lag_us.add(&other.input_lag_us).expect("same bounds");
        self.final_to_llm_us.add(&other.final_to_llm_us).expect("same bounds");
        self.token_to_tts_us.add(&other.token_to_tts_us).expect("same bounds");
        self.added_max = self.added_max.max(other.added_max);
        self.turns_answered += other.turns_answered;
        self.turns_lost += other.turns_lost;
        self.above_50ms += other.above_50ms;
        self.above_200ms += other.above_200ms;
        self.calls_ended += other.calls_ended;
        self.first_call_end = match (self.first_call_end, other.first_call_end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.turns.extend_from_slice(&other.turns);
    }
}

fn us(duration: Duration) -> u64 {
    (duration.as_micros() as u64).max(1)
}

/// What every simulated call shares: the frames (one allocation each, handed on as `Arc`s)
/// and where to record.
#[derive(Debug)]
pub struct SimShared {
    pub turns: u32,
    pub recorder: Arc<Mutex<Recorder>>,
    speech: Frame,
    silence: Frame,
    tts: Frame,
}

impl SimShared {
    /// `turns` per call (5 in the WORKLOAD, 1 for the warm-up call).
    pub fn new(turns: u32, recorder: Arc<Mutex<Recorder>>) -> Arc<Self> {
        let tone: Vec<i16> = (0..SAMPLES_PER_FRAME)
            .map(|i| (3_000.0 * (2.0 * std::f64::consts::PI * 220.0 * i as f64 / 16_000.0).sin()) as i16)
            .collect();
        Arc::new(Self {
            turns,
            recorder,
            speech: Arc::from(tone.clone()),
            silence: Arc::from(vec![0i16; SAMPLES_PER_FRAME]),
            tts: Arc::from(tone),
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct TtsStream {
    request: RequestId,
    at: Instant,
    frames: u32,
    sent: u32,
}

impl TtsStream {
    fn due(&self) -> Instant {
        self.at + TTS_TTFB + FRAME * self.sent
    }
}

#[derive(Debug, Clone, Copy)]
struct LlmStream {
    request: RequestId,
    at: Instant,
    sent: u32,
    paused: bool,
}

impl LlmStream {
    fn due(&self) -> Option<Instant> {
        (!self.paused).then(|| self.at + LLM_TTFT + FRAME * self.sent)
    }
}

/// One simulated WORKLOAD call. Created with the shared frames; its pipeline is ready when the
/// shard adds it (the first output or deadline poll tells it the time).
#[derive(Debug)]
pub struct SimCall {
    shared: Arc<SimShared>,
    call: u64,
    /// Slot 0 of the caller's schedule; set on the first step.
    ready: Option<Instant>,
    next_frame: u64,
    /// First frame of the current utterance; `None` while the caller waits for the bot.
    utterance_at: Option<u64>,
    in_speech: bool,
    speech_frames: u32,
    speech_end: Option<Instant>,
    final_at: Option<Instant>,
    llm: Option<LlmStream>,
    tts: Vec<TtsStream>,
    t_final: Option<Instant>,
    out1: bool,
    bytes: usize,
    turns_done: u32,
    answered: u32,
    hung_up: bool,
}

impl SimCall {
    pub fn new(shared: Arc<SimShared>, call: u64) -> Self {
        Self {
            shared,
            call,
            ready: None,
            next_frame: 0,
            utterance_at: None,
            in_speech: false,
            speech_frames: 0,
            speech_end: None,
            final_at: None,
            llm: None,
            tts: Vec::with_capacity(2),
            t_final: None,
            out1: false,
            bytes: 0,
            turns_done: 0,
            answered: 0,
            hung_up: false,
        }
    }

    fn slot(&self, k: u64) -> Option<Instant> {
        self.ready.map(|ready| ready + FRAME * k as u32)
    }

    /// First slot at or after `at`.
    fn slot_at_or_after(&self, at: Instant) -> u64 {
        let ready = self.ready.expect("ready");
        let since = at.saturating_duration_since(ready).as_nanos();
        since.div_ceil(FRAME.as_nanos()) as u64
    }

    /// The STT's view of one caller frame: the path a transport's frame takes.
    fn stt(&mut self, frame: &Frame, call: &mut Feed<'_>) {
        let now = call.now();
        if frame.iter().any(|&s| s != 0) {
            if !self.in_speech {
                self.in_speech = true;
                self.speech_frames = 0;
                call.input(Input::SpeechStarted { at: now });
            }
            self.speech_frames += 1;
            if self.speech_frames == INTERIM_AFTER_FRAMES {
                call.input(Input::SttInterim { text: INTERIM, confidence: 0.95 });
            }
        } else if self.in_speech {
            self.in_speech = false;
            self.speech_end = Some(now);
            self.final_at = Some(now + STT_ENDPOINTING);
        }
    }

    fn caller_frame(&mut self, call: &mut Feed<'_>) {
        let due = self.slot(self.next_frame).expect("ready");
        let k = self.next_frame;
        self.next_frame += 1;
        let lag = call.now().saturating_duration_since(due);
        self.shared.recorder.lock().expect("recorder").input_lag_us.saturating_record(us(lag));
        let speech = self.utterance_at.is_some_and(|start| (start..start + UTTERANCE_FRAMES).contains(&k));
        let frame = if speech { Arc::clone(&self.shared.speech) } else { Arc::clone(&self.shared.silence) };
        self.stt(&frame, call);
    }

    fn stt_final(&mut self, call: &mut Feed<'_>) {
        self.final_at = None;
        self.utterance_at = None;
        self.t_final = Some(call.now());
        self.out1 = false;
        self.bytes = 0;
        call.input(Input::SttFinal { text: FINAL, confidence: 0.95 });
        let at = self.speech_end.take().unwrap_or(call.now());
        call.input(Input::SpeechStopped { at });
    }

    fn llm_token(&mut self, call: &mut Feed<'_>) {
        let Some(llm) = self.llm.as_mut() else { return };
        let request = llm.request;
        let text = TOKENS[llm.sent as usize];
        llm.sent += 1;
        let end = llm.sent as usize == TOKENS.len();
        if end {
            self.llm = None;
        }
        call.input(Input::LlmToken { request, text });
        if end {
            call.input(Input::LlmEnd { request });
        }
    }

    fn tts_frame(&mut self, index: usize, call: &mut Feed<'_>) {
        let stream = &mut self.tts[index];
        stream.sent += 1;
        let request = stream.request;
        let end = stream.sent == stream.frames;
        if end {
            self.tts.swap_remove(index);
        }
        call.input(Input::TtsAudio { request, frame: Arc::clone(&self.shared.tts) });
        if end {
            call.input(Input::TtsEnd { request });
        }
    }

    /// The transport's write of one 20 ms packet.
    fn write(&mut self, frame: &Frame, call: &mut Feed<'_>) {
        let now = call.now();
        let Some(t_final) = self.t_final else { return };
        if !self.out1 {
            self.out1 = true;
            let since_final = now.saturating_duration_since(t_final);
            let mut recorder = self.shared.recorder.lock().expect("recorder");
            if since_final <= LOST_AFTER {
                let added = since_final.saturating_sub(LLM_TTFT + TTS_TTFB);
                self.answered += 1;
                recorder.turns_answered += 1;
                recorder.added_us.saturating_record(added.as_micros() as u64);
                recorder.added_max = recorder.added_max.max(added);
                recorder.above_50ms += u64::from(added > Duration::from_millis(50));
                recorder.above_200ms += u64::from(added > Duration::from_millis(200));
            }
            if recorder.keep_turns {
                let turn = self.turns_done + 1;
                recorder.turns.push(TurnRecord { call: self.call, turn, t_final, t_out1: now });
            }
        }
        self.bytes += frame.len() * 2;
        if self.bytes >= TURN_BYTES {
            // T_bot_end.
            self.t_final = None;
            self.bytes = 0;
            self.turns_done += 1;
            if self.turns_done >= self.shared.turns {
                self.hung_up = true;
                self.shared.recorder.lock().expect("recorder").first_call_end.get_or_insert(now);
                call.input(Input::Hangup);
            } else {
                self.utterance_at = Some(self.slot_at_or_after(now + NEXT_UTTERANCE_AFTER));
            }
        }
    }
}

impl CallSink for SimCall {
    fn started(&mut self, now: Instant) {
        self.ready = Some(now);
        self.utterance_at = Some(self.slot_at_or_after(now + FIRST_UTTERANCE_AFTER));
    }

    fn output(&mut self, output: Output, call: &mut Feed<'_>) {
        match output {
            Output::PlayAudio(frame) => self.write(&frame, call),
            Output::Command(Command::StartLlm { request, messages, .. }) => {
                // The request is built (the context, cloned by the engine) and not sent.
                drop(messages);
                self.llm = Some(LlmStream { request, at: call.now(), sent: 0, paused: false });
            }
            Output::Command(Command::PauseLlm { request }) => {
                if let Some(llm) = self.llm.as_mut().filter(|l| l.request == request) {
                    llm.paused = true;
                }
            }
            Output::Command(Command::ResumeLlm { request }) => {
                if let Some(llm) = self.llm.as_mut().filter(|l| l.request == request) {
                    llm.paused = false;
                }
            }
            Output::Command(Command::CancelLlm { request }) if self.llm.is_some_and(|l| l.request == request) => {
                self.llm = None;
            }
            Output::Command(Command::StartTts { request, text }) => {
                let words = text.split_whitespace().count() as u32;
                self.tts.push(TtsStream { request, at: call.now(), frames: words * 10, sent: 0 });
            }
            Output::Command(Command::CancelTts { request }) => self.tts.retain(|s| s.request != request),
            Output::Event(Event::Turn(metrics)) => {
                let mut recorder = self.shared.recorder.lock().expect("recorder");
                if let Some(d) = metrics.final_to_llm_request {
                    recorder.final_to_llm_us.saturating_record(us(d));
                }
                if let Some(d) = metrics.token_to_tts_request {
                    recorder.token_to_tts_us.saturating_record(us(d));
                }
            }
            _ => {}
        }
    }

    fn caller_audio(&mut self, frame: Frame, call: &mut Feed<'_>) {
        self.stt(&frame, call);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.hung_up {
            return None;
        }
        let ready = self.ready?;
        let caller = ready + FRAME * self.next_frame as u32;
        let tts = self.tts.iter().map(TtsStream::due).min();
        [Some(caller), self.final_at, self.llm.and_then(|l| l.due()), tts].into_iter().flatten().min()
    }

    fn handle_timeout(&mut self, call: &mut Feed<'_>) {
        let now = call.now();
        loop {
            if self.hung_up {
                return;
            }
            let caller = self.slot(self.next_frame).expect("ready");
            let tts = self.tts.iter().enumerate().min_by_key(|(_, s)| s.due()).map(|(i, s)| (s.due(), i));
            let llm = self.llm.and_then(|l| l.due());
            let mut next = caller;
            let mut which = 0;
            for (candidate, kind) in [(self.final_at, 1), (llm, 2), (tts.map(|t| t.0), 3)] {
                if let Some(at) = candidate {
                    if at < next {
                        next = at;
                        which = kind;
                    }
                }
            }
            if next > now {
                return;
            }
            match which {
                0 => self.caller_frame(call),
                1 => self.stt_final(call),
                2 => self.llm_token(call),
                _ => self.tts_frame(tts.expect("tts due").1, call),
            }
        }
    }

    fn closed(&mut self, now: Instant) {
        let _ = now;
        let mut recorder = self.shared.recorder.lock().expect("recorder");
        recorder.calls_ended += 1;
        recorder.turns_lost += u64::from(self.shared.turns.saturating_sub(self.answered));
    }
}
