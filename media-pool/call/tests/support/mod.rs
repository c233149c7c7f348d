//! A virtual-clock harness: the engine plus simulated providers with the WORKLOAD's fixed
//! latencies (LLM TTFT 200 ms then a token every 20 ms; TTS first audio after 100 ms, then a
//! 20 ms frame every 20 ms, 200 ms of audio per word). Time only moves when the harness jumps
//! to the next event or engine deadline, so every timing is exact.

#![allow(dead_code)]

use golos_call::{CallConfig, CallEngine, Command, Frame, Input, Output, RequestId};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use golos_call::workload::WORKLOAD_TOKENS;

#[derive(Debug, Clone)]
pub enum Ev {
    SpeechStarted {
        at_ms: u64,
    },
    SpeechStopped {
        at_ms: u64,
    },
    Interim(String),
    Final(String, f32),
    Token(RequestId, String),
    ToolCall(RequestId, String, String, String),
    LlmEnd(RequestId),
    LlmError(RequestId),
    Audio(RequestId),
    TtsEnd(RequestId),
    TtsError(RequestId),
    Dtmf(char),
    ToolResult(String, Result<String, String>),
    Hangup,
    SayPrompt(String),
    /// One frame of the clip asked for with `PlayClip` (the harness does not answer it itself).
    ClipAudio,
    ClipEnd,
    /// The line's answer to `Output::Transfer`.
    TransferResult(Result<(), String>),
    SttUnavailable {
        dtmf_menu: bool,
    },
}

/// What the simulated LLM answers to the next request.
#[derive(Debug, Clone)]
pub enum Reply {
    Tokens {
        ttft_ms: u64,
        tokens: Vec<String>,
    },
    /// Tool calls `(id, name, arguments)` after `after_ms`, then the end of the response.
    ToolCalls {
        after_ms: u64,
        calls: Vec<(String, String, String)>,
    },
    Error {
        after_ms: u64,
    },
    /// Never answers (the test feeds tokens itself).
    Silent,
}

impl Reply {
    pub fn workload() -> Self {
        Self::Tokens { ttft_ms: 200, tokens: WORKLOAD_TOKENS.iter().map(|t| (*t).to_owned()).collect() }
    }

    pub fn text(ttft_ms: u64, tokens: &[&str]) -> Self {
        Self::Tokens { ttft_ms, tokens: tokens.iter().map(|t| (*t).to_owned()).collect() }
    }

    pub fn tool(id: &str, name: &str, arguments: &str) -> Self {
        Self::ToolCalls { after_ms: 200, calls: vec![(id.to_owned(), name.to_owned(), arguments.to_owned())] }
    }
}

pub struct Sim {
    pub engine: CallEngine,
    pub t0: Instant,
    pub now: Duration,
    events: BTreeMap<(Duration, u64), Ev>,
    seq: u64,
    /// Every output with the virtual time it was emitted at.
    pub log: Vec<(Duration, Output)>,
    pub replies: VecDeque<Reply>,
    pub tts_ttfb: Duration,
    pub tts_fails: bool,
    /// `None`: tools never answer.
    pub tool_latency: Option<Duration>,
    cancelled: HashSet<RequestId>,
    frame: Frame,
    /// Every call into the engine, in order: an input (`Some`) or a deadline (`None`), so a
    /// benchmark can replay a run against a fresh engine without the harness's cost.
    pub trace: Vec<(Duration, Option<Ev>)>,
}

pub fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

impl Sim {
    pub fn new(config: CallConfig) -> Self {
        let t0 = Instant::now();
        let engine = CallEngine::new(Arc::new(config), t0);
        let mut sim = Self {
            engine,
            t0,
            now: Duration::ZERO,
            events: BTreeMap::new(),
            seq: 0,
            log: Vec::new(),
            replies: VecDeque::new(),
            tts_ttfb: ms(100),
            tts_fails: false,
            tool_latency: None,
            cancelled: HashSet::new(),
            frame: Arc::from(vec![3_000i16; 320]),
            trace: Vec::new(),
        };
        sim.drain();
        sim
    }

    /// A config with no greeting and no filler surprises: the WORKLOAD's setting.
    pub fn workload() -> Self {
        Self::new(CallConfig { greeting: None, ..CallConfig::english() })
    }

    pub fn at(&mut self, at_ms: u64, ev: Ev) {
        self.schedule(ms(at_ms), ev);
    }

    /// The WORKLOAD caller: speech from `start_ms` for 1.5 s, final transcript 300 ms after it.
    pub fn utterance(&mut self, start_ms: u64, text: &str) -> u64 {
        self.at(start_ms, Ev::SpeechStarted { at_ms: start_ms });
        self.at(start_ms + 1_500, Ev::SpeechStopped { at_ms: start_ms + 1_500 });
        let final_ms = start_ms + 1_800;
        self.at(final_ms, Ev::Final(text.to_owned(), 0.95));
        final_ms
    }

    fn schedule(&mut self, at: Duration, ev: Ev) {
        self.seq += 1;
        self.events.insert((at, self.seq), ev);
    }

    /// Runs events and engine deadlines up to and including `end_ms`.
    pub fn run_until(&mut self, end_ms: u64) {
        let end = ms(end_ms);
        loop {
            let next_event = self.events.first_key_value().map(|(k, _)| k.0);
            let next_timer = self.engine.poll_timeout().map(|t| t - self.t0);
            let timer_first = match (next_timer, next_event) {
                (Some(t), Some(e)) => t <= e,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if timer_first {
                let t = next_timer.expect("some");
                if t > end {
                    break;
                }
                assert!(t >= self.now, "deadline in the past: {t:?} < {:?}", self.now);
                self.now = t;
                self.trace.push((t, None));
                self.engine.handle_timeout(self.t0 + t);
            } else {
                let (key, ev) = self.events.pop_first().expect("some");
                if key.0 > end {
                    self.events.insert(key, ev);
                    break;
                }
                self.now = key.0;
                self.feed(&ev);
            }
            self.drain();
        }
        self.now = self.now.max(end);
    }

    pub fn run(&mut self) {
        self.run_until(3_600_000);
    }

    fn feed(&mut self, ev: &Ev) {
        let now = self.t0 + self.now;
        let request_of = |ev: &Ev| match ev {
            Ev::Token(r, _)
            | Ev::ToolCall(r, ..)
            | Ev::LlmEnd(r)
            | Ev::LlmError(r)
            | Ev::Audio(r)
            | Ev::TtsEnd(r)
            | Ev::TtsError(r) => Some(*r),
            _ => None,
        };
        if request_of(ev).is_some_and(|r| self.cancelled.contains(&r)) {
            return;
        }
        self.trace.push((self.now, Some(ev.clone())));
        let input = input_of(ev, self.t0, &self.frame);
        self.engine.handle(input, now);
    }

    fn drain(&mut self) {
        while let Some(output) = self.engine.poll_output() {
            self.react(&output);
            self.log.push((self.now, output));
        }
    }

    /// The simulated providers answer the engine's commands.
    fn react(&mut self, output: &Output) {
        let now = self.now;
        match output {
            Output::Command(Command::StartLlm { request, .. }) => {
                let reply = self.replies.pop_front().unwrap_or_else(Reply::workload);
                match reply {
                    Reply::Tokens { ttft_ms, tokens } => {
                        let count = tokens.len() as u64;
                        for (i, token) in tokens.into_iter().enumerate() {
                            self.schedule(now + ms(ttft_ms + 20 * i as u64), Ev::Token(*request, token));
                        }
                        self.schedule(now + ms(ttft_ms + 20 * count.saturating_sub(1)), Ev::LlmEnd(*request));
                    }
                    Reply::ToolCalls { after_ms, calls } => {
                        for (id, name, args) in calls {
                            self.schedule(now + ms(after_ms), Ev::ToolCall(*request, id, name, args));
                        }
                        self.schedule(now + ms(after_ms), Ev::LlmEnd(*request));
                    }
                    Reply::Error { after_ms } => self.schedule(now + ms(after_ms), Ev::LlmError(*request)),
                    Reply::Silent => {}
                }
            }
            Output::Command(Command::StartTts { request, text }) => {
                if self.tts_fails {
                    self.schedule(now + self.tts_ttfb, Ev::TtsError(*request));
                    return;
                }
                let frames = text.split_whitespace().count() as u64 * 10;
                for j in 0..frames {
                    self.schedule(now + self.tts_ttfb + ms(20 * j), Ev::Audio(*request));
                }
                self.schedule(now + self.tts_ttfb + ms(20 * frames.saturating_sub(1)), Ev::TtsEnd(*request));
            }
            Output::Command(Command::CancelLlm { request } | Command::CancelTts { request }) => {
                self.cancelled.insert(*request);
            }
            Output::Command(Command::CallTool { call_id, name, .. }) => {
                if let Some(latency) = self.tool_latency {
                    self.schedule(now + latency, Ev::ToolResult(call_id.clone(), Ok(format!("result of {name}"))));
                }
            }
            _ => {}
        }
    }

    // ---- reading the log ----------------------------------------------------------------

    pub fn times_of(&self, predicate: impl Fn(&Output) -> bool) -> Vec<u64> {
        self.log.iter().filter(|(_, o)| predicate(o)).map(|(t, _)| t.as_millis() as u64).collect()
    }

    pub fn first(&self, predicate: impl Fn(&Output) -> bool) -> Option<u64> {
        self.times_of(predicate).first().copied()
    }

    pub fn tts_requests(&self) -> Vec<(u64, String)> {
        self.log
            .iter()
            .filter_map(|(t, o)| match o {
                Output::Command(Command::StartTts { text, .. }) => Some((t.as_millis() as u64, text.to_string())),
                _ => None,
            })
            .collect()
    }

    pub fn llm_requests(&self) -> Vec<(u64, Vec<golos_call::ContextMessage>, bool)> {
        self.log
            .iter()
            .filter_map(|(t, o)| match o {
                Output::Command(Command::StartLlm { messages, tools_enabled, .. }) => {
                    Some((t.as_millis() as u64, messages.clone(), *tools_enabled))
                }
                _ => None,
            })
            .collect()
    }

    pub fn play_times(&self) -> Vec<u64> {
        self.times_of(|o| matches!(o, Output::PlayAudio(_)))
    }
}

/// The engine input of a harness event at virtual time zero `t0`.
pub fn input_of<'a>(ev: &'a Ev, t0: Instant, frame: &Frame) -> Input<'a> {
    match ev {
        Ev::SpeechStarted { at_ms } => Input::SpeechStarted { at: t0 + ms(*at_ms) },
        Ev::SpeechStopped { at_ms } => Input::SpeechStopped { at: t0 + ms(*at_ms) },
        Ev::Interim(text) => Input::SttInterim { text, confidence: 0.9 },
        Ev::Final(text, confidence) => Input::SttFinal { text, confidence: *confidence },
        Ev::Token(request, text) => Input::LlmToken { request: *request, text },
        Ev::ToolCall(request, id, name, args) => {
            Input::LlmToolCall { request: *request, call_id: id, name, arguments: args }
        }
        Ev::LlmEnd(request) => Input::LlmEnd { request: *request },
        Ev::LlmError(request) => Input::LlmError { request: *request, error: "all tiers failed" },
        Ev::Audio(request) => Input::TtsAudio { request: *request, frame: Arc::clone(frame) },
        Ev::TtsEnd(request) => Input::TtsEnd { request: *request },
        Ev::TtsError(request) => Input::TtsError { request: *request, error: "all tiers failed" },
        Ev::Dtmf(digit) => Input::Dtmf { digit: *digit },
        Ev::ToolResult(id, result) => {
            Input::ToolResult { call_id: id, result: result.as_deref().map_err(String::as_str) }
        }
        Ev::Hangup => Input::Hangup,
        Ev::SayPrompt(text) => Input::SayPrompt { text },
        Ev::ClipAudio => Input::ClipAudio { frame: Arc::clone(frame) },
        Ev::ClipEnd => Input::ClipEnd,
        Ev::SttUnavailable { dtmf_menu } => Input::SttUnavailable { dtmf_menu: *dtmf_menu },
        Ev::TransferResult(result) => Input::TransferResult {
            result: match result {
                Ok(()) => Ok(()),
                Err(error) => Err(error.as_str()),
            },
        },
    }
}

pub fn is_play(output: &Output) -> bool {
    matches!(output, Output::PlayAudio(_))
}
