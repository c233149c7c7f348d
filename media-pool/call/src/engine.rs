//! The per-call state machine. See docs/pipeline.md for the rules and a timing diagram.

use crate::chunker::Chunker;
use crate::config::{CallConfig, ToolKind};
use crate::types::{
    CallQuality, Clip, Command, ContextMessage, EndReason, Event, Frame, Input, MessageRole, Output, RequestId,
    Snapshot, ToolCall, TransferCause, TurnMetrics,
};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

const FRAME: Duration = Duration::from_millis(20);

/// Most key presses one `send_dtmf` call sends (an extension, a PIN, a menu path).
pub const MAX_DTMF_DIGITS: usize = 32;

/// The keypad digits of a `send_dtmf` request (spaces and dashes between them dropped), or
/// `None` when it holds anything else or too many.
fn dtmf_digits(requested: &str) -> Option<String> {
    let digits: String =
        requested.chars().filter(|c| !matches!(c, ' ' | '-')).map(|c| c.to_ascii_uppercase()).collect();
    let valid = (1..=MAX_DTMF_DIGITS).contains(&digits.len())
        && digits.chars().all(|c| c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D'));
    valid.then_some(digits)
}

/// What a queued piece of agent speech is, which decides whether it belongs to the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SegmentKind {
    /// LLM text (or the greeting): bytes `start..start + text.len()` of context message `message`.
    Speech { message: usize, start: usize },
    /// Filler, repeat/DTMF prompts, goodbyes, apologies: heard, but not part of the context.
    Prompt,
    /// A pre-recorded clip: its audio comes from the driver, not from a TTS request.
    Clip,
}

/// One TTS request and its audio, in playout order.
#[derive(Debug)]
struct Segment {
    kind: SegmentKind,
    text: Arc<str>,
    /// Set when its TTS request is sent; chunks wait in the bounded queue until then.
    request: Option<RequestId>,
    ended: bool,
    received: u32,
    played: u32,
    frames: VecDeque<Frame>,
}

/// What to do once the agent's audio has finished playing.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Finish {
    Hangup(EndReason),
    Transfer(String, TransferCause),
}

/// A transfer handed to the phone line, waiting for [`Input::TransferResult`].
#[derive(Debug)]
struct PendingTransfer {
    /// No outcome by then counts as a failed transfer: the caller is not left in silence.
    deadline: Instant,
}

#[derive(Debug)]
struct RunningTool {
    call_id: String,
    name: String,
    started: Instant,
    deadline: Instant,
}

/// Instants of the current turn, for [`TurnMetrics`].
#[derive(Debug, Default, Clone, Copy)]
struct TurnTimes {
    final_at: Option<Instant>,
    speech_end: Option<Instant>,
    llm_request: Option<Instant>,
    first_token: Option<Instant>,
    first_tts_request: Option<(RequestId, Instant)>,
    first_tts_audio: Option<Instant>,
    first_audio_out: Option<Instant>,
    filler: bool,
    interrupted: bool,
    reported: bool,
}

// Independent flags of one response; folding them into a state enum would not remove any.
#[allow(clippy::struct_excessive_bools)]
/// The agent's side of the current turn: the LLM stream, its chunks, their TTS and audio,
/// and the tool round trips. Reset (buffers kept) at every turn.
#[derive(Debug)]
struct Response {
    active: bool,
    /// Barge-in does not apply (goodbyes, transfers).
    final_words: bool,
    llm: Option<RequestId>,
    llm_paused: bool,
    llm_first_token: bool,
    tools_enabled: bool,
    json_retries: u32,
    /// The context message receiving the current LLM request's text.
    message: Option<usize>,
    chunker: Chunker,
    segments: VecDeque<Segment>,
    filler_at: Option<Instant>,
    tool_calls: Vec<ToolCall>,
    tools_waiting: VecDeque<ToolCall>,
    tools_running: Vec<RunningTool>,
    after: Option<Finish>,
    /// The apology clip's window (TTS failed): it takes audio until then, and the response
    /// lasts at least that long, and longer only while audio that came in time still plays.
    clip_until: Option<Instant>,
}

/// A sans-IO call: feed [`Input`]s with [`CallEngine::handle`] and deadlines with
/// [`CallEngine::handle_timeout`], then drain [`CallEngine::poll_output`]; ask
/// [`CallEngine::poll_timeout`] when to wake it next. It never reads a clock.
#[derive(Debug)]
pub struct CallEngine {
    config: Arc<CallConfig>,
    started: Instant,
    ended: bool,
    next_id: u32,
    turn: u32,
    context: Vec<ContextMessage>,
    out: VecDeque<Output>,
    resp: Response,
    times: TurnTimes,
    /// Spare frame buffers of finished segments, so steady-state audio does not allocate.
    pool: Vec<VecDeque<Frame>>,

    caller_speech_onset: Option<Instant>,
    /// End of the caller's last speech, taken by the next turn for its metrics.
    last_speech_end: Option<Instant>,
    last_activity: Instant,
    low_confidence_streak: u32,
    dtmf: String,
    dtmf_deadline: Option<Instant>,

    /// Playout clock: when the next frame is due.
    next_play_at: Option<Instant>,
    /// A frame is waiting for `next_play_at` (as opposed to the clock being idle).
    play_armed: bool,
    last_frame_at: Option<Instant>,
    /// First frame of the agent's current stretch of speech (for the barge-in grace).
    speaking_since: Option<Instant>,
    barge_in_at: Option<Instant>,
    paused_at: Option<Instant>,
    resume_at: Option<Instant>,
    finish_deadline: Option<Instant>,
    max_duration_fired: bool,
    quality: CallQuality,
    confidence_sum: f32,
    confidence_count: u32,
    /// Slot of the previous frame of the current stretch of speech, for gap counting.
    span_last_slot: Option<Instant>,
    /// While set, the caller is with the transfer and not with the agent.
    transfer: Option<PendingTransfer>,
}

/// A frame buffer for a new chunk, reused from finished ones and sized for the chunk's
/// estimated audio up front, so frames arriving later never grow it (no allocation per frame).
fn frame_buffer(pool: &mut Vec<VecDeque<Frame>>, text: &str, ms_per_char: u32) -> VecDeque<Frame> {
    let estimate = (text.chars().count() as u64 * u64::from(ms_per_char)).div_ceil(20) as usize + 8;
    let mut frames = pool.pop().unwrap_or_default();
    frames.reserve(estimate);
    frames
}

impl CallEngine {
    /// A call answered at `now`. The greeting, if any, is requested at once.
    pub fn new(config: Arc<CallConfig>, now: Instant) -> Self {
        let mut context = Vec::new();
        if !config.system_prompt.is_empty() {
            context.push(ContextMessage::new(MessageRole::System, config.system_prompt.clone()));
        }
        let resp = Response {
            active: false,
            final_words: false,
            llm: None,
            llm_paused: false,
            llm_first_token: false,
            tools_enabled: !config.tools.is_empty(),
            json_retries: 0,
            message: None,
            chunker: Chunker::new(config.chunk_max_chars),
            segments: VecDeque::new(),
            filler_at: None,
            tool_calls: Vec::new(),
            tools_waiting: VecDeque::new(),
            tools_running: Vec::new(),
            after: None,
            clip_until: None,
        };
        let mut engine = Self {
            config,
            started: now,
            ended: false,
            next_id: 0,
            turn: 0,
            context,
            out: VecDeque::with_capacity(8),
            resp,
            times: TurnTimes::default(),
            pool: Vec::new(),
            caller_speech_onset: None,
            last_speech_end: None,
            last_activity: now,
            low_confidence_streak: 0,
            dtmf: String::new(),
            dtmf_deadline: None,
            next_play_at: None,
            play_armed: false,
            last_frame_at: None,
            speaking_since: None,
            barge_in_at: None,
            paused_at: None,
            resume_at: None,
            finish_deadline: None,
            max_duration_fired: false,
            quality: CallQuality::default(),
            confidence_sum: 0.0,
            confidence_count: 0,
            span_last_slot: None,
            transfer: None,
        };
        if let Some(greeting) = engine.config.greeting.clone() {
            engine.say_to_context(&greeting, now);
        }
        engine
    }

    /// A call whose connection dropped, resumed from its last snapshot at `now`: the
    /// conversation goes on where the last complete turn left it, without a second greeting;
    /// the maximum duration still counts from the original start.
    pub fn from_snapshot(config: Arc<CallConfig>, snapshot: Snapshot, now: Instant) -> Self {
        let greeting_free = Arc::new(CallConfig { greeting: None, ..(*config).clone() });
        let mut engine = Self::new(greeting_free, now);
        engine.config = config;
        engine.context = snapshot.messages;
        engine.turn = snapshot.turns;
        engine.low_confidence_streak = snapshot.low_confidence_streak;
        engine.started = now.checked_sub(snapshot.elapsed).unwrap_or(now);
        engine
    }

    /// The conversation as of the last complete turn, for reconnects. Take it on
    /// `Event::AgentDone`; mid-turn it leaves out the turn in progress.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let mut messages = self.context.clone();
        if self.resp.active {
            // The answer in progress is not a complete turn yet: keep up to the caller's words.
            if let Some(last_user) = messages.iter().rposition(|m| m.role == MessageRole::User) {
                messages.truncate(last_user + 1);
            }
        }
        Snapshot {
            messages,
            turns: self.turn,
            elapsed: now.saturating_duration_since(self.started),
            low_confidence_streak: self.low_confidence_streak,
        }
    }

    /// The conversation so far, as the next LLM request would see it.
    pub fn context(&self) -> &[ContextMessage] {
        &self.context
    }

    pub const fn is_ended(&self) -> bool {
        self.ended
    }

    /// Next output, in order; call until `None` after every `handle*`.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`CallEngine::handle_timeout`] must be called next (`None`: only inputs can
    /// change anything).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.ended {
            return None;
        }
        let playout = self.head_has_frame().then_some(self.next_play_at).flatten();
        let tool = self.resp.tools_running.iter().map(|t| t.deadline).min();
        [
            playout,
            tool,
            self.barge_in_at,
            self.resume_at,
            self.resp.filler_at,
            self.dtmf_deadline,
            self.resp.clip_until,
            self.finish_deadline,
            self.silence_deadline(),
            self.transfer.as_ref().map(|t| t.deadline),
            (!self.max_duration_fired).then_some(self.started + self.config.max_call_duration),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs every rule whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ended {
            return;
        }
        if self.transfer.as_ref().is_some_and(|t| now >= t.deadline) {
            self.on_transfer_result(Err("the transfer got no final answer in time"), now);
        }
        if self.transfer.is_some() {
            // Nothing of the conversation runs while the line is being transferred; only the
            // call's own time limit still holds.
            if !self.max_duration_fired && now >= self.started + self.config.max_call_duration {
                self.max_duration_fired = true;
                self.transfer = None;
                self.hang_up(EndReason::MaxDuration, now);
            }
            return;
        }
        if !self.max_duration_fired && now >= self.started + self.config.max_call_duration {
            self.max_duration_fired = true;
            let config = Arc::clone(&self.config);
            self.end_politely(&config.max_duration_goodbye, EndReason::MaxDuration, now);
        }
        if self.finish_deadline.is_some_and(|t| now >= t) {
            // The goodbye took too long (or its TTS hangs): finish regardless.
            self.finish_deadline = None;
            let finish = self.resp.after.take().unwrap_or(Finish::Hangup(EndReason::Failed));
            self.finish(finish, now);
            return;
        }
        if self.barge_in_at.is_some_and(|t| now >= t) {
            let at = self.barge_in_at.take().expect("checked");
            self.pause_for_barge_in(at);
        }
        if self.resume_at.is_some_and(|t| now >= t) {
            self.resume_at = None;
            self.resume(now);
        }
        if self.resp.filler_at.is_some_and(|t| now >= t) {
            self.resp.filler_at = None;
            self.speak_filler(now);
        }
        if self.resp.tools_running.iter().any(|t| now >= t.deadline) {
            self.expire_tools(now);
        }
        if self.dtmf_deadline.is_some_and(|t| now >= t) {
            self.dtmf_deadline = None;
            self.commit_dtmf(now);
        }
        if self.resp.clip_until.is_some_and(|t| now >= t) {
            self.resp.clip_until = None;
            // The clip's window is over: audio that never came is not waited for.
            self.end_clip(now);
            self.check_done(now);
        }
        if self.silence_deadline().is_some_and(|t| now >= t) {
            let config = Arc::clone(&self.config);
            self.end_politely(&config.silence_goodbye, EndReason::SilenceTimeout, now);
        }
        self.pump_playout(now);
        self.check_done(now);
    }

    /// Feeds one input that happened at `now`. Deadlines due by `now` run first.
    pub fn handle(&mut self, input: Input<'_>, now: Instant) {
        if self.ended {
            return;
        }
        self.handle_timeout(now);
        if self.ended {
            return;
        }
        match input {
            Input::TransferResult { result } => self.on_transfer_result(result, now),
            Input::SttUnavailable { dtmf_menu } => self.on_stt_unavailable(dtmf_menu, now),
            Input::Hangup => {
                self.cancel_providers();
                self.ended = true;
                self.emit_call_ended(now);
            }
            // The caller is with the transfer (ringback, the target's voice), not the agent.
            _ if self.transfer.is_some() => {}
            Input::SpeechStarted { at } => self.on_speech_started(at, now),
            Input::SpeechStopped { at } => self.on_speech_stopped(at, now),
            Input::SttInterim { text, .. } => {
                self.last_activity = now;
                if self.paused_at.is_some() && !text.trim().is_empty() && !self.config.is_backchannel(text) {
                    self.commit_interruption(now);
                }
            }
            Input::SttFinal { text, confidence } => self.on_final(text, confidence, now),
            Input::LlmToken { request, text } => self.on_token(request, text, now),
            Input::LlmToolCall { request, call_id, name, arguments } => {
                self.on_tool_call(request, call_id, name, arguments, now);
            }
            Input::LlmEnd { request } => self.on_llm_end(request, now),
            Input::LlmError { request, .. } => self.on_llm_error(request, now),
            Input::TtsAudio { request, frame } => self.on_tts_audio(request, frame, now),
            Input::TtsEnd { request } => {
                if let Some(segment) = self.segment_mut(request) {
                    segment.ended = true;
                    self.pump_tts(now);
                    self.pump_playout(now);
                    self.check_done(now);
                }
            }
            Input::TtsError { request, .. } => {
                if self.segment_mut(request).is_some() {
                    self.on_tts_failure(now);
                }
            }
            Input::Dtmf { digit } => self.on_dtmf(digit, now),
            Input::ToolResult { call_id, result } => self.on_tool_result(call_id, result, now),
            Input::EndPolitely { reason } => {
                let goodbye = self.config.limit_goodbye.clone();
                self.end_politely(&goodbye, reason, now);
            }
            // After the last words nothing more is said.
            Input::SayPrompt { text } if !self.resp.final_words => self.say_prompt(text, now),
            Input::SayPrompt { .. } => {}
            Input::ClipAudio { frame } => {
                if let Some(clip) = self.clip_mut() {
                    clip.received += 1;
                    clip.frames.push_back(frame);
                    self.pump_playout(now);
                }
            }
            Input::ClipEnd => self.end_clip(now),
        }
    }

    // ---- caller side -------------------------------------------------------------------

    fn on_speech_started(&mut self, at: Instant, now: Instant) {
        self.caller_speech_onset = Some(at);
        self.last_activity = now;
        if self.resp.active && !self.resp.final_words && self.paused_at.is_none() {
            let by_speech = at + self.config.barge_in_min_speech;
            let by_grace = self.speaking_since.map(|s| s + self.config.barge_in_grace);
            let fire = by_grace.map_or(by_speech, |g| g.max(by_speech));
            if fire <= now {
                self.pause_for_barge_in(now);
            } else {
                self.barge_in_at = Some(fire);
            }
        }
        if self.paused_at.is_some() {
            self.resume_at = None;
        }
    }

    fn on_speech_stopped(&mut self, at: Instant, now: Instant) {
        self.caller_speech_onset = None;
        self.barge_in_at = None;
        self.last_speech_end = Some(at);
        self.last_activity = now;
        if self.paused_at.is_some() {
            self.resume_at = Some(now + self.config.false_interruption_timeout);
        }
    }

    fn on_final(&mut self, text: &str, confidence: f32, now: Instant) {
        let text = text.trim();
        self.last_activity = now;
        if !text.is_empty() {
            self.confidence_sum += confidence;
            self.confidence_count += 1;
        }
        let backchannel = self.config.is_backchannel(text);
        if self.paused_at.is_some() {
            if text.is_empty() || backchannel {
                self.transcript(MessageRole::User, text, now);
                self.resume(now);
                return;
            }
            if confidence < self.config.min_confidence {
                // The caller did say something; the repeat prompt must not wait for the rest
                // of the paused answer.
                self.commit_interruption(now);
            }
        } else if self.resp.active {
            // Speech over the agent that did not pause it (inside the grace window, or too
            // short): a backchannel or an uncertain transcript is not a turn.
            if text.is_empty() || backchannel || confidence < self.config.min_confidence || self.resp.final_words {
                if !text.is_empty() {
                    self.transcript(MessageRole::User, text, now);
                }
                return;
            }
        }
        if text.is_empty() {
            return;
        }
        if confidence < self.config.min_confidence {
            self.on_low_confidence(text, confidence, now);
            return;
        }
        self.user_turn(text, now);
    }

    fn on_low_confidence(&mut self, text: &str, confidence: f32, now: Instant) {
        self.low_confidence_streak += 1;
        self.quality.low_confidence_finals += 1;
        let attempt = self.low_confidence_streak;
        self.emit(Output::Event(Event::LowConfidence { text: text.to_owned(), confidence, attempt }));
        let prompt = if attempt >= self.config.low_confidence_attempts_before_dtmf {
            self.low_confidence_streak = 0;
            self.config.dtmf_prompt.clone()
        } else {
            self.config.repeat_prompt.clone()
        };
        self.say_prompt(&prompt, now);
    }

    fn on_stt_unavailable(&mut self, dtmf_menu: bool, now: Instant) {
        if self.resp.final_words || self.transfer.is_some() {
            return;
        }
        if !dtmf_menu {
            let apology = self.config.apology.clone();
            self.end_politely(&apology, EndReason::Failed, now);
            return;
        }
        self.emit(Output::Event(Event::DtmfMenu { at: now }));
        // The keypad is all that is left: the agent stops (if it was speaking) and asks.
        if self.resp.active {
            self.cut_off(now, false);
        }
        let prompt = self.config.dtmf_prompt.clone();
        self.last_activity = now;
        self.say_prompt(&prompt, now);
    }

    fn on_dtmf(&mut self, digit: char, now: Instant) {
        self.last_activity = now;
        if self.resp.active && !self.resp.final_words {
            self.commit_interruption(now);
        }
        if digit == '#' {
            self.dtmf_deadline = None;
            self.commit_dtmf(now);
        } else {
            self.dtmf.push(digit);
            self.dtmf_deadline = Some(now + self.config.dtmf_inter_digit_timeout);
        }
    }

    fn commit_dtmf(&mut self, now: Instant) {
        if self.dtmf.is_empty() {
            return;
        }
        let text = format!("[DTMF] {}", self.dtmf);
        self.dtmf.clear();
        self.user_turn(&text, now);
    }

    /// The caller's turn is complete: answer it. No timer stands between the final transcript
    /// and the LLM request.
    fn user_turn(&mut self, text: &str, now: Instant) {
        if self.resp.final_words {
            // The call is ending: heard, but not answered.
            self.transcript(MessageRole::User, text, now);
            return;
        }
        if self.resp.active {
            // Whatever the agent was saying is over: cancel it and cut the context properly.
            self.commit_interruption(now);
        }
        self.low_confidence_streak = 0;
        self.transcript(MessageRole::User, text, now);
        match self.context.last_mut() {
            // The previous answer was cut before a word was heard: one user message, not two.
            Some(last) if last.role == MessageRole::User => {
                last.content.push(' ');
                last.content.push_str(text);
            }
            _ => self.context.push(ContextMessage::new(MessageRole::User, text)),
        }
        self.turn += 1;
        self.times = TurnTimes { final_at: Some(now), speech_end: self.last_speech_end.take(), ..TurnTimes::default() };
        self.reset_response();
        self.resp.active = true;
        self.resp.tools_enabled = !self.config.tools.is_empty();
        self.start_llm(now);
    }

    // ---- LLM ---------------------------------------------------------------------------

    fn start_llm(&mut self, now: Instant) {
        let request = self.new_id();
        self.resp.llm = Some(request);
        self.resp.llm_paused = false;
        self.resp.llm_first_token = false;
        self.resp.message = None;
        self.resp.chunker.reset();
        self.resp.tool_calls.clear();
        if self.times.llm_request.is_none() {
            self.times.llm_request = Some(now);
        }
        if self.config.filler.is_some() && self.resp.segments.is_empty() {
            self.resp.filler_at = Some(now + self.config.filler_after);
        }
        let messages = self.context.clone();
        let tools_enabled = self.resp.tools_enabled;
        self.emit(Output::Command(Command::StartLlm { request, messages, tools_enabled }));
    }

    fn on_token(&mut self, request: RequestId, text: &str, now: Instant) {
        if self.resp.llm != Some(request) {
            return;
        }
        if !self.resp.llm_first_token {
            self.resp.llm_first_token = true;
            self.resp.filler_at = None;
            if self.times.first_token.is_none() {
                self.times.first_token = Some(now);
            }
        }
        let message = self.assistant_message();
        self.context[message].content.push_str(text);
        let Response { chunker, segments, .. } = &mut self.resp;
        let pool = &mut self.pool;
        let ms_per_char = self.config.ms_per_char_estimate;
        chunker.push(text, |chunk| {
            segments.push_back(Segment {
                kind: SegmentKind::Speech { message, start: chunk.start },
                text: Arc::from(chunk.text),
                request: None,
                ended: false,
                received: 0,
                played: 0,
                frames: frame_buffer(pool, chunk.text, ms_per_char),
            });
        });
        self.pump_tts(now);
    }

    /// Index of the assistant message of the current LLM request, created on first use.
    fn assistant_message(&mut self) -> usize {
        if let Some(index) = self.resp.message {
            return index;
        }
        self.context.push(ContextMessage::new(MessageRole::Assistant, String::new()));
        let index = self.context.len() - 1;
        self.resp.message = Some(index);
        index
    }

    fn on_tool_call(&mut self, request: RequestId, call_id: &str, name: &str, arguments: &str, now: Instant) {
        if self.resp.llm != Some(request) {
            return;
        }
        self.resp.filler_at = None;
        let arguments = if arguments.trim().is_empty() { "{}" } else { arguments };
        let valid = serde_json::from_str::<serde_json::Value>(arguments).is_ok_and(|v| v.is_object());
        if !valid {
            // Invalid tool-call JSON: ask again (twice), then go on without tools. Text this
            // response already produced stays: it is being spoken.
            self.emit(Output::Command(Command::CancelLlm { request }));
            self.resp.llm = None;
            self.resp.json_retries += 1;
            if self.resp.json_retries > self.config.invalid_tool_json_retries {
                self.resp.tools_enabled = false;
            }
            if let Some(index) = self.resp.message {
                let message = &mut self.context[index];
                message.tool_calls.clear();
                if message.content.is_empty() {
                    self.context.remove(index);
                    self.resp.message = None;
                }
            }
            self.flush_chunker(now);
            self.start_llm(now);
            return;
        }
        let call = ToolCall { id: call_id.to_owned(), name: name.to_owned(), arguments: arguments.to_owned() };
        let message = self.assistant_message();
        self.context[message].tool_calls.push(call.clone());
        self.resp.tool_calls.push(call);
    }

    fn on_llm_end(&mut self, request: RequestId, now: Instant) {
        if self.resp.llm != Some(request) {
            return;
        }
        self.resp.llm = None;
        self.resp.filler_at = None;
        self.flush_chunker(now);
        if self.resp.tool_calls.is_empty() {
            self.check_done(now);
        } else {
            self.run_tools(now);
        }
    }

    fn flush_chunker(&mut self, now: Instant) {
        let Some(message) = self.resp.message else { return };
        let Response { chunker, segments, .. } = &mut self.resp;
        let pool = &mut self.pool;
        let ms_per_char = self.config.ms_per_char_estimate;
        chunker.finish(|chunk| {
            segments.push_back(Segment {
                kind: SegmentKind::Speech { message, start: chunk.start },
                text: Arc::from(chunk.text),
                request: None,
                ended: false,
                received: 0,
                played: 0,
                frames: frame_buffer(pool, chunk.text, ms_per_char),
            });
        });
        self.pump_tts(now);
    }

    fn on_llm_error(&mut self, request: RequestId, now: Instant) {
        if self.resp.llm != Some(request) {
            return;
        }
        self.resp.llm = None;
        self.resp.filler_at = None;
        self.close_open_tools("not run: the response failed");
        self.flush_chunker(now);
        let apology = self.config.apology.clone();
        self.say_prompt(&apology, now);
    }

    fn speak_filler(&mut self, now: Instant) {
        if self.resp.llm_first_token || !self.resp.segments.is_empty() {
            return;
        }
        if let Some(filler) = self.config.filler.clone() {
            self.times.filler = true;
            self.say_prompt(&filler, now);
        }
    }

    // ---- tools -------------------------------------------------------------------------

    fn run_tools(&mut self, now: Instant) {
        let calls = std::mem::take(&mut self.resp.tool_calls);
        let mut restart = false;
        for call in calls {
            let Some(tool) = self.config.tool(&call.name).cloned() else {
                self.tool_message(&call.id, &format!("error: unknown tool {}", call.name));
                restart = true;
                continue;
            };
            let args: serde_json::Value = serde_json::from_str(&call.arguments).unwrap_or_default();
            let arg = |key: &str| args.get(key).and_then(serde_json::Value::as_str).map(str::to_owned);
            match tool.kind {
                ToolKind::Function { .. } => self.resp.tools_waiting.push_back(call),
                ToolKind::EndCall => {
                    self.tool_message(&call.id, "ok");
                    self.close_open_tools("not run: the call is ending");
                    let goodbye = self.config.goodbye.clone();
                    self.say_final(&goodbye, Finish::Hangup(EndReason::AgentHangup), now);
                    return;
                }
                ToolKind::TransferCall { destination } => {
                    // Only where the business pointed the tool: a destination in the LLM's
                    // arguments (which a caller can talk it into) is not dialled.
                    let target = destination.or_else(|| self.config.escalation_target.clone());
                    if let Some(target) = target {
                        self.tool_message(&call.id, "ok");
                        self.close_open_tools("not run: the call is being transferred");
                        let message = self.config.transfer_message.clone();
                        self.say_final(&message, Finish::Transfer(target, TransferCause::TransferCall), now);
                        return;
                    }
                    self.tool_message(&call.id, "error: no transfer destination");
                    restart = true;
                }
                ToolKind::SendDtmf => {
                    let requested = arg("digits").unwrap_or_default();
                    match dtmf_digits(&requested) {
                        Some(digits) => {
                            self.emit(Output::SendDtmf { digits });
                            self.tool_message(&call.id, "sent");
                        }
                        None => self.tool_message(
                            &call.id,
                            &format!("error: digits must be 1-{MAX_DTMF_DIGITS} of 0-9, *, #, A-D"),
                        ),
                    }
                    restart = true;
                }
                ToolKind::EscalateToHuman => {
                    let reason = arg("reason").unwrap_or_default();
                    let transfer_to = self.config.escalation_target.clone();
                    self.emit(Output::Event(Event::Escalation { reason, transfer_to: transfer_to.clone() }));
                    if let Some(target) = transfer_to {
                        self.tool_message(&call.id, "ok");
                        self.close_open_tools("not run: the call is being transferred");
                        let message = self.config.escalation_message.clone();
                        self.say_final(&message, Finish::Transfer(target, TransferCause::EscalateToHuman), now);
                        return;
                    }
                    self.tool_message(&call.id, "escalation recorded; a person will follow up after the call");
                    restart = true;
                }
            }
        }
        self.start_waiting_tools(now);
        if restart && self.resp.tools_running.is_empty() && self.resp.tools_waiting.is_empty() {
            self.start_llm(now);
        }
    }

    fn start_waiting_tools(&mut self, now: Instant) {
        while self.resp.tools_running.len() < self.config.max_parallel_tools {
            let Some(call) = self.resp.tools_waiting.pop_front() else { break };
            let timeout = match self.config.tool(&call.name).map(|t| &t.kind) {
                Some(ToolKind::Function { timeout }) => *timeout,
                _ => Duration::from_secs(5),
            };
            self.resp.tools_running.push(RunningTool {
                call_id: call.id.clone(),
                name: call.name.clone(),
                started: now,
                deadline: now + timeout,
            });
            self.emit(Output::Command(Command::CallTool {
                call_id: call.id,
                name: call.name,
                arguments: call.arguments,
            }));
        }
    }

    fn on_tool_result(&mut self, call_id: &str, result: Result<&str, &str>, now: Instant) {
        let Some(index) = self.resp.tools_running.iter().position(|t| t.call_id == call_id) else {
            return; // timed out already, or the turn was interrupted
        };
        let tool = self.resp.tools_running.swap_remove(index);
        let content = match result {
            Ok(value) => value.to_owned(),
            Err(error) => format!("error: {error}"),
        };
        self.tool_message(&tool.call_id, &content);
        self.quality.tools_finished += 1;
        self.quality.tools_succeeded += u32::from(result.is_ok());
        self.emit(Output::Event(Event::ToolFinished {
            name: tool.name,
            ok: result.is_ok(),
            elapsed: now - tool.started,
        }));
        self.after_tool(now);
    }

    fn expire_tools(&mut self, now: Instant) {
        let mut index = 0;
        while index < self.resp.tools_running.len() {
            if now >= self.resp.tools_running[index].deadline {
                let tool = self.resp.tools_running.swap_remove(index);
                let elapsed = now - tool.started;
                self.tool_message(&tool.call_id, &format!("error: timed out after {} ms", elapsed.as_millis()));
                self.quality.tools_finished += 1;
                self.emit(Output::Event(Event::ToolFinished { name: tool.name, ok: false, elapsed }));
            } else {
                index += 1;
            }
        }
        self.after_tool(now);
    }

    fn after_tool(&mut self, now: Instant) {
        self.start_waiting_tools(now);
        if self.resp.tools_running.is_empty() && self.resp.tools_waiting.is_empty() && self.resp.llm.is_none() {
            self.start_llm(now);
        }
    }

    /// Every tool call in the context gets a result, even one that never ran: provider APIs
    /// reject a context with an unanswered tool call.
    fn close_open_tools(&mut self, reason: &str) {
        let content = format!("error: {reason}");
        let open: Vec<String> = self
            .resp
            .tool_calls
            .drain(..)
            .chain(self.resp.tools_waiting.drain(..))
            .map(|call| call.id)
            .chain(self.resp.tools_running.drain(..).map(|tool| tool.call_id))
            .collect();
        for call_id in open {
            self.tool_message(&call_id, &content);
        }
    }

    fn tool_message(&mut self, call_id: &str, content: &str) {
        let mut message = ContextMessage::new(MessageRole::Tool, content);
        message.tool_call_id = Some(call_id.to_owned());
        self.context.push(message);
    }

    // ---- TTS and playout ---------------------------------------------------------------

    /// Starts TTS for queued chunks, in order, while fewer than `tts_pipeline_depth` are
    /// synthesising; pauses or resumes the LLM stream on the queue bound.
    fn pump_tts(&mut self, now: Instant) {
        let mut in_flight = self.resp.segments.iter().filter(|s| s.request.is_some() && !s.ended).count();
        let mut queued = 0;
        for index in 0..self.resp.segments.len() {
            let segment = &self.resp.segments[index];
            if segment.request.is_some() || segment.kind == SegmentKind::Clip {
                continue;
            }
            if in_flight >= self.config.tts_pipeline_depth {
                queued += 1;
                continue;
            }
            let request = self.new_id();
            let segment = &mut self.resp.segments[index];
            segment.request = Some(request);
            in_flight += 1;
            let text = Arc::clone(&segment.text);
            if self.times.first_tts_request.is_none() && self.times.final_at.is_some() {
                self.times.first_tts_request = Some((request, now));
            }
            self.out.push_back(Output::Command(Command::StartTts { request, text }));
        }
        if let Some(request) = self.resp.llm {
            if !self.resp.llm_paused && queued >= self.config.tts_queue_limit {
                self.resp.llm_paused = true;
                self.emit(Output::Command(Command::PauseLlm { request }));
            } else if self.resp.llm_paused && queued < self.config.tts_queue_limit {
                self.resp.llm_paused = false;
                self.emit(Output::Command(Command::ResumeLlm { request }));
            }
        }
    }

    fn segment_mut(&mut self, request: RequestId) -> Option<&mut Segment> {
        self.resp.segments.iter_mut().find(|s| s.request == Some(request))
    }

    /// The clip still taking audio, if the response has one.
    fn clip_mut(&mut self) -> Option<&mut Segment> {
        self.resp.segments.iter_mut().find(|s| s.kind == SegmentKind::Clip && !s.ended)
    }

    /// The clip takes no more audio: what it has plays out, then the response can end.
    fn end_clip(&mut self, now: Instant) {
        if let Some(clip) = self.clip_mut() {
            clip.ended = true;
            self.pump_playout(now);
            self.check_done(now);
        }
    }

    fn on_tts_audio(&mut self, request: RequestId, frame: Frame, now: Instant) {
        let Some(segment) = self.segment_mut(request) else {
            return; // cancelled
        };
        segment.received += 1;
        segment.frames.push_back(frame);
        if self.times.first_tts_audio.is_none() && self.times.first_tts_request.is_some_and(|(r, _)| r == request) {
            self.times.first_tts_audio = Some(now);
        }
        self.pump_playout(now);
        self.check_done(now);
    }

    fn head_has_frame(&self) -> bool {
        self.paused_at.is_none() && self.resp.segments.front().is_some_and(|s| !s.frames.is_empty())
    }

    /// Emits every frame due by `now` on the playout clock: one per 20 ms on an absolute
    /// schedule; a clock that found nothing to play restarts at the next frame's arrival.
    fn pump_playout(&mut self, now: Instant) {
        loop {
            if self.paused_at.is_some() {
                return;
            }
            let Some(head) = self.resp.segments.front_mut() else { return };
            if head.frames.is_empty() {
                if head.ended {
                    let done = self.resp.segments.pop_front().expect("head exists");
                    self.recycle(done);
                    continue;
                }
                self.play_armed = false;
                return;
            }
            let slot = match self.next_play_at {
                Some(t) if t > now => {
                    self.play_armed = true;
                    return;
                }
                // A wake-up late by less than a frame keeps the schedule (no drift); later than
                // that, or an idle clock, restarts it now rather than bursting to catch up.
                Some(t) if self.play_armed && now - t < FRAME => t,
                _ => now,
            };
            let frame = head.frames.pop_front().expect("not empty");
            head.played += 1;
            self.next_play_at = Some(slot + FRAME);
            self.play_armed = true;
            self.last_frame_at = Some(slot);
            if let Some(previous) = self.span_last_slot {
                let gap = slot.saturating_duration_since(previous + FRAME);
                if !gap.is_zero() {
                    self.quality.playout_gaps += 1;
                    self.quality.longest_gap = self.quality.longest_gap.max(gap);
                }
            }
            self.span_last_slot = Some(slot);
            if self.speaking_since.is_none() {
                self.speaking_since = Some(slot);
            }
            if self.times.first_audio_out.is_none() && self.times.final_at.is_some() {
                self.times.first_audio_out = Some(slot);
            }
            self.out.push_back(Output::PlayAudio(frame));
        }
    }

    fn recycle(&mut self, segment: Segment) {
        let mut frames = segment.frames;
        frames.clear();
        if self.pool.len() < 16 {
            self.pool.push(frames);
        }
    }

    fn on_tts_failure(&mut self, now: Instant) {
        // TTS has no tier left: an apology clip instead of silence, and this response ends.
        self.cancel_providers();
        self.close_open_tools("cancelled: the response failed");
        // The caller hears the clip, not the answer: the context keeps only what was played.
        self.cut_context();
        self.clear_segments();
        self.resp.message = None;
        self.resp.filler_at = None;
        self.emit(Output::FlushPlayout);
        self.emit(Output::PlayClip(Clip::Apology));
        self.push_segment(SegmentKind::Clip, "");
        self.resp.active = true;
        self.resp.clip_until = Some(now + self.config.apology_clip_duration);
    }

    // ---- speaking without the LLM ------------------------------------------------------

    /// Speaks `text` as the assistant (it enters the context): the greeting.
    fn say_to_context(&mut self, text: &str, now: Instant) {
        self.context.push(ContextMessage::new(MessageRole::Assistant, text));
        // LLM answers reach the transcript as they are spoken; the greeting is known whole.
        self.transcript(MessageRole::Assistant, text, now);
        let message = self.context.len() - 1;
        self.push_segment(SegmentKind::Speech { message, start: 0 }, text);
        self.resp.active = true;
        self.pump_tts(now);
    }

    /// Speaks a prompt that is not part of the conversation (filler, repeat, apology).
    fn say_prompt(&mut self, text: &str, now: Instant) {
        self.push_segment(SegmentKind::Prompt, text);
        self.resp.active = true;
        self.pump_tts(now);
    }

    /// Speaks the last words, then hangs up or transfers once they have played.
    fn say_final(&mut self, text: &str, finish: Finish, now: Instant) {
        self.resp.final_words = true;
        self.resp.after = Some(finish);
        self.barge_in_at = None;
        self.finish_deadline = Some(now + self.config.goodbye_max);
        if self.paused_at.take().is_some() {
            // Last words are said regardless of a pending barge-in.
            self.resume_at = None;
            self.emit(Output::Event(Event::Resumed { at: now }));
        }
        self.say_prompt(text, now);
    }

    fn push_segment(&mut self, kind: SegmentKind, text: &str) {
        let frames = frame_buffer(&mut self.pool, text, self.config.ms_per_char_estimate);
        self.resp.segments.push_back(Segment {
            kind,
            text: Arc::from(text),
            request: None,
            ended: false,
            received: 0,
            played: 0,
            frames,
        });
    }

    fn end_politely(&mut self, goodbye: &str, reason: EndReason, now: Instant) {
        if self.resp.final_words {
            return;
        }
        if self.resp.active {
            self.cut_off(now, false);
        }
        self.say_final(goodbye, Finish::Hangup(reason), now);
    }

    // ---- barge-in ----------------------------------------------------------------------

    /// 100 ms of caller speech over the agent: stop the audio now (within this frame), and
    /// keep the streams until the words show whether it was a backchannel.
    fn pause_for_barge_in(&mut self, at: Instant) {
        if !self.resp.active || self.resp.final_words || self.paused_at.is_some() {
            return;
        }
        if !self.config.barge_in_waits_for_words {
            self.commit_interruption(at);
            return;
        }
        self.paused_at = Some(at);
        self.barge_in_at = None;
        self.emit(Output::FlushPlayout);
        self.emit(Output::Event(Event::Interruption { at, committed: false }));
    }

    fn resume(&mut self, now: Instant) {
        if self.paused_at.take().is_none() {
            return;
        }
        self.resume_at = None;
        self.play_armed = false;
        self.span_last_slot = None;
        self.emit(Output::Event(Event::Resumed { at: now }));
        self.pump_playout(now);
        self.check_done(now);
    }

    /// The caller has taken the turn: cancel the LLM and TTS, drop unplayed audio, and cut
    /// the assistant's words in the context to what the caller heard.
    fn commit_interruption(&mut self, now: Instant) {
        if !self.resp.active {
            return;
        }
        self.cut_off(now, true);
    }

    fn cut_off(&mut self, now: Instant, by_caller: bool) {
        let was_paused = self.paused_at.take().is_some();
        self.cancel_providers();
        if !was_paused && self.speaking_since.is_some() {
            self.emit(Output::FlushPlayout);
        }
        self.close_open_tools("cancelled: the caller interrupted");
        self.cut_context();
        if by_caller {
            self.times.interrupted = true;
            self.quality.interruptions += 1;
            self.emit(Output::Event(Event::Interruption { at: now, committed: true }));
        }
        self.report_turn();
        self.reset_response();
        self.speaking_since = None;
        self.span_last_slot = None;
        self.barge_in_at = None;
        self.resume_at = None;
    }

    fn cancel_providers(&mut self) {
        if let Some(request) = self.resp.llm.take() {
            self.emit(Output::Command(Command::CancelLlm { request }));
        }
        for index in 0..self.resp.segments.len() {
            let segment = &self.resp.segments[index];
            if let (Some(request), false) = (segment.request, segment.ended) {
                self.out.push_back(Output::Command(Command::CancelTts { request }));
            }
        }
    }

    /// Truncates the context at the first word the caller did not hear.
    fn cut_context(&mut self) {
        let cut = self.resp.segments.iter().find_map(|s| match s.kind {
            SegmentKind::Speech { message, start } => Some((message, start + self.heard_prefix(s))),
            SegmentKind::Prompt | SegmentKind::Clip => None,
        });
        // No chunk left: everything chunked was heard; text still in the chunker was not.
        let cut = cut.or_else(|| {
            self.resp.message.map(|m| (m, self.context[m].content.len() - self.resp.chunker.pending().len()))
        });
        let Some((message, at)) = cut else { return };
        let content = &mut self.context[message].content;
        content.truncate(at);
        content.truncate(content.trim_end().len());
        let heard = content.clone();
        // Later assistant messages of this turn were not heard at all.
        let mut index = message + 1;
        while index < self.context.len() {
            let m = &mut self.context[index];
            if m.role == MessageRole::Assistant {
                m.content.clear();
                if m.tool_calls.is_empty() {
                    self.context.remove(index);
                    continue;
                }
            }
            index += 1;
        }
        if self.context[message].content.is_empty() && self.context[message].tool_calls.is_empty() {
            self.context.remove(message);
        }
        if !heard.is_empty() {
            self.emit(Output::Event(Event::Transcript {
                role: MessageRole::Assistant,
                text: heard,
                at: self.last_frame_at.unwrap_or(self.started),
            }));
        }
    }

    /// Bytes of the segment's text the caller heard, ending at a word boundary: its share of
    /// the played frames. While its TTS still streams, the total is estimated from the text.
    fn heard_prefix(&self, segment: &Segment) -> usize {
        let text = &*segment.text;
        if segment.played == 0 {
            return 0;
        }
        let total = if segment.ended {
            segment.received
        } else {
            let estimate = (text.chars().count() as u64 * u64::from(self.config.ms_per_char_estimate) / 20) as u32;
            segment.received.max(estimate)
        };
        if segment.played >= total {
            return text.len();
        }
        let mut at = (text.len() as u64 * u64::from(segment.played) / u64::from(total.max(1))) as usize;
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        if text[at..].starts_with(char::is_whitespace) {
            return at;
        }
        text[..at].rfind(char::is_whitespace).unwrap_or(0)
    }

    // ---- turn end ----------------------------------------------------------------------

    fn check_done(&mut self, now: Instant) {
        let r = &self.resp;
        let done = r.active
            && r.llm.is_none()
            && r.segments.is_empty()
            && r.tools_running.is_empty()
            && r.tools_waiting.is_empty()
            && r.tool_calls.is_empty()
            && r.clip_until.is_none()
            && self.paused_at.is_none();
        if !done {
            return;
        }
        // The agent's audio ended when its last frame was written (the WORKLOAD's T_bot_end).
        let at = self.last_frame_at.unwrap_or(now);
        if let Some(message) = self.resp.message {
            if self.context[message].content.is_empty() && self.context[message].tool_calls.is_empty() {
                self.context.remove(message);
            } else {
                let text = self.context[message].content.clone();
                self.emit(Output::Event(Event::Transcript { role: MessageRole::Assistant, text, at }));
            }
        }
        self.report_turn();
        let after = self.resp.after.take();
        self.reset_response();
        self.span_last_slot = None;
        // An idle call keeps no audio buffers (thousands of calls wait for their callers); the
        // pool's own slots stay, so recycling during the next turn does not allocate.
        self.pool.clear();
        self.speaking_since = None;
        self.last_activity = now;
        self.emit(Output::Event(Event::AgentDone { at }));
        if let Some(finish) = after {
            self.finish(finish, now);
        }
    }

    fn finish(&mut self, finish: Finish, now: Instant) {
        self.cancel_providers();
        match finish {
            Finish::Hangup(reason) => self.hang_up(reason, now),
            Finish::Transfer(target, cause) => {
                self.emit(Output::Transfer { target, cause });
                self.transfer = Some(PendingTransfer { deadline: now + self.config.transfer_timeout });
            }
        }
    }

    fn hang_up(&mut self, reason: EndReason, now: Instant) {
        self.emit(Output::Hangup { reason });
        self.ended = true;
        self.emit_call_ended(now);
    }

    /// The line's answer to [`Output::Transfer`]: the call ends as transferred, or the agent
    /// tells the caller it did not work and the conversation goes on.
    fn on_transfer_result(&mut self, result: Result<(), &str>, now: Instant) {
        if self.transfer.take().is_none() {
            return;
        }
        match result {
            Ok(()) => self.hang_up(EndReason::Transfer, now),
            Err(error) => {
                let message = self.config.transfer_failed_message.clone();
                // The next response must know the caller is still here and what they heard.
                self.context.push(ContextMessage::new(
                    MessageRole::System,
                    format!(
                        "The transfer did not go through ({error}). The caller is still on the line and was told: \"{message}\". Continue helping them."
                    ),
                ));
                self.emit(Output::Event(Event::TransferFailed { error: error.to_owned(), at: now }));
                self.last_activity = now;
                self.say_prompt(&message, now);
            }
        }
    }

    fn reset_response(&mut self) {
        self.clear_segments();
        let r = &mut self.resp;
        r.active = false;
        r.final_words = false;
        r.llm = None;
        r.llm_paused = false;
        r.llm_first_token = false;
        r.json_retries = 0;
        r.message = None;
        r.chunker.reset();
        r.filler_at = None;
        r.tool_calls.clear();
        r.tools_waiting.clear();
        r.tools_running.clear();
        r.after = None;
        r.clip_until = None;
        self.paused_at = None;
        self.finish_deadline = None;
    }

    fn clear_segments(&mut self) {
        while let Some(segment) = self.resp.segments.pop_front() {
            self.recycle(segment);
        }
        self.play_armed = false;
    }

    fn silence_deadline(&self) -> Option<Instant> {
        let waiting = !self.resp.active
            && self.caller_speech_onset.is_none()
            && self.dtmf_deadline.is_none()
            && self.transfer.is_none();
        waiting.then(|| self.last_activity + self.config.silence_timeout)
    }

    fn report_turn(&mut self) {
        let t = self.times;
        let Some(final_at) = t.final_at else { return };
        if t.reported {
            return;
        }
        self.times.reported = true;
        let since = |a: Option<Instant>, b: Option<Instant>| Some(a?.saturating_duration_since(b?));
        let ttft = since(t.first_token, t.llm_request);
        let tts_first_audio = since(t.first_tts_audio, t.first_tts_request.map(|(_, at)| at));
        let first_audio_out = since(t.first_audio_out, Some(final_at));
        let added = match (first_audio_out, ttft, tts_first_audio, t.filler) {
            (Some(out), Some(ttft), Some(tts), false) => Some(out.saturating_sub(ttft).saturating_sub(tts)),
            _ => None,
        };
        let metrics = TurnMetrics {
            turn: self.turn,
            end_of_utterance: since(Some(final_at), t.speech_end),
            final_to_llm_request: since(t.llm_request, Some(final_at)),
            ttft,
            token_to_tts_request: since(t.first_tts_request.map(|(_, at)| at), t.first_token),
            tts_first_audio,
            first_audio_out,
            heard_silence: since(t.first_audio_out, t.speech_end),
            added,
            interrupted: t.interrupted,
            filler: t.filler,
        };
        self.emit(Output::Event(Event::Turn(Box::new(metrics))));
    }

    fn transcript(&mut self, role: MessageRole, text: &str, at: Instant) {
        self.emit(Output::Event(Event::Transcript { role, text: text.to_owned(), at }));
    }

    fn emit_call_ended(&mut self, now: Instant) {
        let mut quality = self.quality;
        quality.turns = self.turn;
        quality.mean_stt_confidence =
            (self.confidence_count > 0).then(|| self.confidence_sum / self.confidence_count as f32);
        self.emit(Output::Event(Event::CallEnded { at: now, quality }));
    }

    fn new_id(&mut self) -> RequestId {
        self.next_id += 1;
        RequestId(self.next_id)
    }

    fn emit(&mut self, output: Output) {
        self.out.push_back(output);
    }
}
