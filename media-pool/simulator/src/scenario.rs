//! What the simulator says and how it misbehaves. Everything is serde so the binary reads a JSON
//! file and tests build the same thing in code; every field has a default taken from
//! `shared/bench/WORKLOAD.md`, so `Scenario::default()` is the benchmark workload.

use serde::{Deserialize, Serialize};

/// The whole script: one section per provider plus request-log settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    pub openai: LlmScenario,
    pub anthropic: LlmScenario,
    pub deepgram: SttScenario,
    pub elevenlabs: TtsScenario,
    pub google: TtsScenario,
    pub log: LogConfig,
}

impl Scenario {
    pub fn from_json(text: &str) -> Result<Self, crate::Error> {
        serde_json::from_str(text).map_err(crate::Error::ParseScenario)
    }

    pub fn from_file(path: &std::path::Path) -> Result<Self, crate::Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| crate::Error::ReadScenario { path: path.display().to_string(), source })?;
        Self::from_json(&text)
    }
}

/// Scripted chat completions (OpenAI-compatible or Anthropic Messages).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmScenario {
    /// When set, the request must carry exactly this key; otherwise any non-empty key passes.
    pub api_key: Option<String>,
    /// Request n (1-based, per provider) gets `replies[(n - 1) % len]`; empty means the workload reply.
    pub replies: Vec<LlmReply>,
    pub latency: LlmLatency,
    pub faults: Vec<FaultRule>,
}

impl Default for LlmScenario {
    fn default() -> Self {
        Self { api_key: None, replies: vec![LlmReply::workload()], latency: LlmLatency::default(), faults: Vec::new() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmLatency {
    /// From the request to the first text token (or first tool-call fragment).
    pub ttft_ms: u64,
    /// Between consecutive tokens / argument fragments, paced from `t0 + ttft`.
    pub token_interval_ms: u64,
}

impl Default for LlmLatency {
    fn default() -> Self {
        Self { ttft_ms: 200, token_interval_ms: 20 }
    }
}

/// One assistant turn: text tokens streamed in order, then tool calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmReply {
    pub tokens: Vec<String>,
    pub tool_calls: Vec<ToolCallScript>,
    /// Use this reply when the request's last message contains this text (in any of its string
    /// fields, so a tool result matches too). Replies with `when` are tried first, in order;
    /// the others are cycled through for requests no `when` matches. Lets concurrent
    /// conversations get answers by content rather than by arrival order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
}

/// The 30 tokens of WORKLOAD.md §2.3, with their leading spaces.
pub const WORKLOAD_TOKENS: [&str; 30] = [
    "Sure.",
    " We're",
    " open",
    " from",
    " nine",
    " to",
    " six,",
    " Monday",
    " through",
    " Friday.",
    " On",
    " Saturdays",
    " we",
    " open",
    " at",
    " ten",
    " and",
    " close",
    " at",
    " four.",
    " We're",
    " closed",
    " on",
    " Sundays.",
    " Anything",
    " else",
    " I",
    " can",
    " help",
    " with?",
];

impl LlmReply {
    pub fn workload() -> Self {
        Self::text(WORKLOAD_TOKENS)
    }

    pub fn text<I, S>(tokens: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self { tokens: tokens.into_iter().map(Into::into).collect(), tool_calls: Vec::new(), when: None }
    }

    /// Picks this reply for requests whose last message contains `text`.
    pub fn when(mut self, text: impl Into<String>) -> Self {
        self.when = Some(text.into());
        self
    }

    pub fn with_tool_call(mut self, call: ToolCallScript) -> Self {
        self.tool_calls.push(call);
        self
    }
}

/// A tool call whose `arguments` (raw text, so tests can script invalid JSON on purpose) are sent
/// in `fragments` pieces, the way models stream them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCallScript {
    /// Defaults to a deterministic `call_…` / `toolu_…` id derived from the request.
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    pub arguments: String,
    #[serde(default = "default_fragments")]
    pub fragments: usize,
}

fn default_fragments() -> usize {
    3
}

impl ToolCallScript {
    pub fn new(name: impl Into<String>, arguments: impl Into<String>) -> Self {
        Self { id: None, name: name.into(), arguments: arguments.into(), fragments: default_fragments() }
    }

    pub fn fragments(mut self, n: usize) -> Self {
        self.fragments = n;
        self
    }
}

/// Deepgram live transcription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SttScenario {
    pub api_key: Option<String>,
    /// Utterance k of a connection (0-based) gets `transcripts[k % len]`.
    pub transcripts: Vec<Transcript>,
    /// Speech heard before the interim result (WORKLOAD §2.2: 1 s).
    pub interim_after_ms: u64,
    /// Endpointing used when the client does not pass `endpointing` (Deepgram's default is 10 ms).
    pub default_endpointing_ms: u64,
    /// Silence that finalizes an utterance when the client passed `endpointing=false`
    /// (then `speech_final` stays false).
    pub no_endpointing_final_ms: u64,
    /// A 10 ms frame whose peak |sample| exceeds this is speech; all-zero frames never are.
    pub energy_threshold: u16,
    /// Wall-clock processing delay added before each message is sent.
    pub result_delay_ms: u64,
    /// Deepgram closes a connection that sent neither audio nor KeepAlive for this long.
    pub idle_timeout_ms: u64,
    /// When set, silence with no utterance in progress is finalized every this many ms with an
    /// empty transcript, as Deepgram does; clients must not take those for a turn. Off by default
    /// so the workload stays minimal.
    pub silence_finals_ms: Option<u64>,
    pub faults: Vec<FaultRule>,
}

impl Default for SttScenario {
    fn default() -> Self {
        Self {
            api_key: None,
            transcripts: vec![Transcript::workload()],
            interim_after_ms: 1000,
            default_endpointing_ms: 10,
            no_endpointing_final_ms: 300,
            energy_threshold: 64,
            result_delay_ms: 0,
            idle_timeout_ms: 10_000,
            silence_finals_ms: None,
            faults: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transcript {
    pub text: String,
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    /// The interim transcript; defaults to the first half (rounded up) of the words.
    #[serde(default)]
    pub interim: Option<String>,
}

fn default_confidence() -> f64 {
    0.98
}

impl Transcript {
    pub fn new(text: impl Into<String>, confidence: f64) -> Self {
        Self { text: text.into(), confidence, interim: None }
    }

    /// WORKLOAD §2.2: interim "what are your", final "what are your opening hours".
    pub fn workload() -> Self {
        Self::new("what are your opening hours", default_confidence())
    }

    pub(crate) fn interim_text(&self) -> String {
        if let Some(interim) = &self.interim {
            return interim.clone();
        }
        let words: Vec<&str> = self.text.split_whitespace().collect();
        words[..words.len().div_ceil(2)].join(" ")
    }
}

/// Streaming TTS (ElevenLabs) or one-shot TTS (Google).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TtsScenario {
    pub api_key: Option<String>,
    /// Audio produced per word of input (WORKLOAD §2.4: 200 ms).
    pub ms_per_word: u64,
    /// From the request to the first audio byte (Google: to the whole response).
    pub ttfb_ms: u64,
    /// Audio per streamed chunk.
    pub chunk_ms: u64,
    pub pacing: Pacing,
    pub faults: Vec<FaultRule>,
}

impl Default for TtsScenario {
    fn default() -> Self {
        Self {
            api_key: None,
            ms_per_word: 200,
            ttfb_ms: 100,
            chunk_ms: 20,
            pacing: Pacing::Realtime,
            faults: Vec::new(),
        }
    }
}

/// When chunk k (0-based) of a stream is sent: `t0 + ttfb + k * interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pacing {
    /// interval = `chunk_ms`: audio arrives as fast as it plays.
    Realtime,
    /// interval = 0: everything right after the TTFB (load tests that measure the framework only).
    AsFastAsPossible,
    IntervalMs(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Keep at most this many requests (oldest dropped); counters are never dropped.
    pub max_entries: usize,
    /// Keep request bodies (off for long load tests).
    pub bodies: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { max_entries: 10_000, bodies: true }
    }
}

/// A fault applied to the requests it matches; the first matching rule of a provider wins.
/// An empty matcher matches every request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// 1-based ordinals of the provider's requests (Deepgram: connections), inclusive.
    #[serde(default)]
    pub requests: Option<RequestRange>,
    /// Exact model name (OpenAI/Anthropic `model`, Deepgram `model` query) or voice
    /// (ElevenLabs voice_id, Google `voice.name`), so a client config can pick a behaviour.
    #[serde(default)]
    pub model: Option<String>,
    pub fault: Fault,
}

impl FaultRule {
    /// The first `n` requests get `fault`, the rest behave.
    pub fn first(n: u64, fault: Fault) -> Self {
        Self { requests: Some(RequestRange { from: 1, to: Some(n) }), model: None, fault }
    }

    /// Requests `from..=to` (1-based) get `fault`.
    pub fn requests(from: u64, to: Option<u64>, fault: Fault) -> Self {
        Self { requests: Some(RequestRange { from, to }), model: None, fault }
    }

    pub fn model(model: impl Into<String>, fault: Fault) -> Self {
        Self { requests: None, model: Some(model.into()), fault }
    }

    pub fn always(fault: Fault) -> Self {
        Self { requests: None, model: None, fault }
    }

    pub(crate) fn matches(&self, ordinal: u64, model: Option<&str>) -> bool {
        let in_range = self.requests.is_none_or(|r| ordinal >= r.from && r.to.is_none_or(|to| ordinal <= to));
        let model_ok = self.model.as_deref().is_none_or(|m| model == Some(m));
        in_range && model_ok
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestRange {
    #[serde(default = "one")]
    pub from: u64,
    #[serde(default)]
    pub to: Option<u64>,
}

fn one() -> u64 {
    1
}

/// What goes wrong. "Events" are SSE events (LLMs), audio chunks (ElevenLabs), WebSocket messages
/// (Deepgram) or the one JSON body (non-streaming responses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Answer at once with this HTTP status and the provider's documented error body
    /// (429 → rate limit, 500, 503, Anthropic 529 → overloaded_error, …).
    Status {
        status: u16,
        /// `Retry-After` header, in seconds.
        #[serde(default)]
        retry_after_s: Option<u64>,
    },
    /// Accept the connection and the request, then send nothing at all (not even headers).
    Hang,
    /// Send the headers and `events` events, then drop the connection without finishing the body.
    ResetAfter { events: usize },
    /// Send the headers and `events` events, then keep the connection open and send nothing.
    StallAfter { events: usize },
    /// Replace event number `event` (0-based) with truncated, unparsable JSON; the rest follow.
    Malformed { event: usize },
    /// After `events` events, send the provider's in-stream error (Anthropic `event: error` with
    /// overloaded_error, OpenAI a `data: {"error":…}` event, Deepgram close 1011) and end.
    StreamError { events: usize },
    /// Override the first-token / first-byte latency.
    Slow { first_ms: u64 },
}

impl Fault {
    pub fn status(status: u16) -> Self {
        Self::Status { status, retry_after_s: None }
    }

    pub fn rate_limited(retry_after_s: u64) -> Self {
        Self::Status { status: 429, retry_after_s: Some(retry_after_s) }
    }
}

pub(crate) fn pick_fault<'a>(rules: &'a [FaultRule], ordinal: u64, model: Option<&str>) -> Option<&'a Fault> {
    rules.iter().find(|r| r.matches(ordinal, model)).map(|r| &r.fault)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_example_parses_and_defaults_are_the_workload() {
        let readme = include_str!("../README.md");
        let start = readme.find("```json\n").expect("README has a JSON example") + "```json\n".len();
        let end = start + readme[start..].find("```").unwrap();
        let scenario = Scenario::from_json(&readme[start..end]).unwrap();
        assert_eq!(scenario.openai.faults[0], FaultRule::first(2, Fault::rate_limited(1)));
        assert_eq!(scenario.openai.faults[1].fault, Fault::Hang);
        assert_eq!(scenario.openai.replies[1].when.as_deref(), Some("\"status\":\"confirmed\""));
        assert_eq!(scenario.openai.replies[2].tool_calls[0].fragments, 3);
        assert_eq!(scenario.elevenlabs.pacing, Pacing::Realtime);

        let defaults = Scenario::from_json("{}").unwrap();
        assert_eq!(defaults, Scenario::default());
        assert_eq!(defaults.openai.replies[0].tokens.concat().split_whitespace().count(), 30);
        assert_eq!(defaults.deepgram.transcripts[0].interim_text(), "what are your");
        let round_trip = serde_json::to_string(&defaults).unwrap();
        assert_eq!(Scenario::from_json(&round_trip).unwrap(), defaults);
        assert!(Scenario::from_json(r#"{"openai": {"ttft_ms": 1}}"#).is_err(), "unknown fields are rejected");
        let pacing: Pacing = serde_json::from_str(r#"{"interval_ms": 5}"#).unwrap();
        assert_eq!(pacing, Pacing::IntervalMs(5));
    }

    #[test]
    fn shipped_scenarios_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            Scenario::from_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            seen += 1;
        }
        assert!(seen >= 2);
    }

    #[test]
    fn first_matching_rule_wins() {
        let rules = vec![
            FaultRule::model("m-slow", Fault::Slow { first_ms: 5 }),
            FaultRule::first(2, Fault::status(500)),
            FaultRule::requests(4, None, Fault::Hang),
        ];
        assert_eq!(pick_fault(&rules, 1, Some("m-slow")), Some(&Fault::Slow { first_ms: 5 }));
        assert_eq!(pick_fault(&rules, 2, Some("other")), Some(&Fault::status(500)));
        assert_eq!(pick_fault(&rules, 3, None), None);
        assert_eq!(pick_fault(&rules, 9, None), Some(&Fault::Hang));
    }
}
