//! `golos-load ws`: the WORKLOAD (`bench/WORKLOAD.md`) against a running `golos serve`, over
//! the golos WebSocket audio protocol (docs/transports.md), with the worker's providers pointed
//! at a running `golos-simulator`. This is the *realistic* number: sockets, framing, the
//! worker's input and output paths and the real provider adapters are all in it.
//!
//! One tokio task per call plays [`SimulatedCaller`]: `start`, then a 20 ms PCM16 frame per slot on an
//! absolute schedule from `started`, utterances at the §2.1 times; it timestamps the bot's
//! audio and the user's final transcript as they arrive and answers marks at once (it "plays"
//! what it receives without a buffer). The frames are two pre-built `Bytes` (speech, silence),
//! cloned per send, so the generator does little besides the socket writes.
//!
//! The worker's CPU and memory come from `/proc/<pid>` of the `golos` process (`--worker-pid`),
//! sampled every 0.5 s; the simulator's CPU likewise (`--sim-pid`), and this process's own.

use crate::caller::{SimulatedCaller, TurnResult, FRAME_BYTES, LATE, TURN_AUDIO_BYTES};
use crate::load::loadavg;
pub use crate::measure::{
    cpu_percent, parse_stat_cpu, parse_status_kib, proc_cpu, proc_status_kib, rss_per_call_kib, start_offset,
};
use crate::measure::{histogram, ms, ms_since, us_of_ms, Sampler};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// The client socket's read buffer (see `connect`).
const READ_BUFFER_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone)]
pub struct WsConfig {
    /// `ws://HOST:PORT/ws/calls`
    pub url: String,
    pub agent_id: String,
    /// An API key or a call token.
    pub token: String,
    pub calls: usize,
    /// Turns per call (5).
    pub turns: u32,
    /// Calls start evenly over this (10 s).
    pub spread: Duration,
    /// Calls not done by t0 + cap are abandoned; their missing turns are lost (115 s).
    pub cap: Duration,
    pub worker_pid: Option<u32>,
    pub sim_pid: Option<u32>,
    /// Print every server text message (and the first audio of each turn) to stderr, with
    /// the time since `started`.
    pub trace: bool,
}

impl WsConfig {
    pub fn workload(url: String, agent_id: String, token: String, calls: usize) -> Self {
        Self {
            url,
            agent_id,
            token,
            calls,
            turns: 5,
            spread: Duration::from_secs(10),
            cap: Duration::from_secs(115),
            worker_pid: None,
            sim_pid: None,
            trace: false,
        }
    }
}

/// Everything one run reports. Latencies in ms.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WsReport {
    pub calls: usize,
    /// Calls the worker did not start (refused, connection failed).
    pub calls_failed: u64,
    pub turns_expected: u64,
    pub turns_answered: u64,
    pub turns_lost: u64,
    /// Client-observed added latency (`caller` module docs): p50, p95, p99, max.
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The smallest client-observed value (negative would mean a measuring error).
    pub min_ms: f64,
    pub above_50ms: u64,
    /// Late turns (client-observed added latency above 200 ms).
    pub late: u64,
    /// `added_ms` of the server's `turn_metrics` events.
    pub server_turns: u64,
    pub server_p50_ms: f64,
    pub server_p95_ms: f64,
    pub server_p99_ms: f64,
    pub server_max_ms: f64,
    /// Diagnostics from `turn_metrics`, as the worker measured them: LLM request → first token
    /// (200 ms of it the simulator's TTFT), TTS request → first audio (100 ms of it the
    /// simulator's TTFB), the caller's speech end → final transcript (300 ms endpointing);
    /// p50 and p99.
    pub server_ttft_p50_ms: f64,
    pub server_ttft_p99_ms: f64,
    pub server_tts_first_audio_p50_ms: f64,
    pub server_tts_first_audio_p99_ms: f64,
    pub server_end_of_utterance_p50_ms: f64,
    pub server_end_of_utterance_p99_ms: f64,
    /// Diagnostic: user final transcript received → first audio, minus TTFT and TTFB, p99.
    pub final_to_audio_p99_ms: f64,
    /// Turns whose audio was not exactly 192,000 bytes.
    pub odd_turns: u64,
    /// Lateness of this generator's frame sends against their slots.
    pub input_lag_p99_ms: f64,
    pub input_lag_max_ms: f64,
    /// Worker (user + sys) over the steady window, % of one core; NaN without `--worker-pid`.
    pub worker_cpu_percent: f64,
    pub sim_cpu_percent: f64,
    pub client_cpu_percent: f64,
    pub steady_window_s: f64,
    pub baseline_rss_kib: u64,
    pub peak_rss_kib: u64,
    pub rss_per_call_kib: f64,
    pub wall_s: f64,
    pub loadavg_start: f64,
    pub loadavg_end: f64,
    /// Error codes from the server and connection failures, with counts.
    pub errors: BTreeMap<String, u64>,
}

/// The pre-built frames: a 220 Hz sine of amplitude 3000 (the reference's speech) and silence.
#[derive(Debug, Clone)]
pub struct Frames {
    pub speech: Bytes,
    pub silence: Bytes,
}

impl Frames {
    pub fn new() -> Self {
        let mut speech = Vec::with_capacity(FRAME_BYTES);
        for n in 0..FRAME_BYTES / 2 {
            // 220 Hz at 16 kHz: 320 samples are 4.4 periods, so frames are not phase-continuous;
            // any non-zero PCM is speech to the STT (§2.1).
            let v = (3000.0 * (2.0 * std::f64::consts::PI * 220.0 * n as f64 / 16_000.0).sin()).round() as i16;
            speech.extend_from_slice(&v.to_le_bytes());
        }
        Self { speech: Bytes::from(speech), silence: Bytes::from(vec![0u8; FRAME_BYTES]) }
    }
}

impl Default for Frames {
    fn default() -> Self {
        Self::new()
    }
}

/// What one call brings back.
#[derive(Debug, Default)]
struct CallOutcome {
    started: bool,
    results: Vec<TurnResult>,
    server_added_ms: Vec<f64>,
    /// The server's view of the provider waits and of the STT's end of utterance.
    server_ttft_ms: Vec<f64>,
    server_tts_first_audio_ms: Vec<f64>,
    server_end_of_utterance_ms: Vec<f64>,
    ended_at: Option<Instant>,
    errors: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct ServerEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(default, rename = "final")]
    is_final: Option<bool>,
    #[serde(default)]
    added_ms: Option<f64>,
    #[serde(default)]
    ttft_ms: Option<f64>,
    #[serde(default)]
    tts_first_audio_ms: Option<f64>,
    #[serde(default)]
    end_of_utterance_ms: Option<f64>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    code: Option<String>,
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn start_message(agent_id: &str, token: &str) -> String {
    serde_json::json!({"type": "start", "agent_id": agent_id, "token": token, "sample_rate": 16_000}).to_string()
}

async fn connect(config: &WsConfig) -> Result<Ws, String> {
    // tungstenite zero-fills its whole read buffer (128 KiB by default) before every socket
    // read; with 50 small messages a second per call that memset was most of this process's
    // CPU. The server's messages are at most a few KiB.
    let ws_config = WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(config.url.as_str(), Some(ws_config), true)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    ws.send(Message::text(start_message(&config.agent_id, &config.token))).await.map_err(|e| format!("send: {e}"))?;
    Ok(ws)
}

/// Waits for `started`; anything else first is the refusal.
async fn await_started(ws: &mut Ws) -> Result<(), String> {
    let wait = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(msg) = ws.next().await {
            match msg.map_err(|e| format!("read: {e}"))? {
                Message::Text(text) => {
                    let event: ServerEvent =
                        serde_json::from_str(&text).map_err(|_| "unparsable server message".to_owned())?;
                    match event.kind.as_str() {
                        "started" => return Ok(()),
                        "error" => return Err(event.code.unwrap_or_else(|| "error".into())),
                        "ended" => return Err("ended before started".into()),
                        _ => {}
                    }
                }
                Message::Close(_) => return Err("closed before started".into()),
                _ => {}
            }
        }
        Err("closed before started".into())
    });
    wait.await.unwrap_or_else(|_| Err("no started within 10 s".into()))
}

/// One call, from its start time to `ended` (or the cap).
async fn run_call(
    config: Arc<WsConfig>,
    frames: Frames,
    turns: u32,
    start_at: Instant,
    cap_at: Instant,
    input_lag: Arc<Mutex<Histogram<u64>>>,
) -> CallOutcome {
    let mut out = CallOutcome::default();
    tokio::time::sleep_until(start_at.into()).await;
    let mut ws = match connect(&config).await {
        Ok(ws) => ws,
        Err(e) => {
            out.errors.push(e);
            return out;
        }
    };
    if let Err(e) = await_started(&mut ws).await {
        out.errors.push(e);
        return out;
    }
    out.started = true;
    let ready = Instant::now();
    let mut caller = SimulatedCaller::new(ready, turns);
    let mut slot = 0u64;
    let mut hangup_at: Option<Instant> = None;
    loop {
        let next = hangup_at.map_or_else(|| caller.slot_time(slot), |h| h + Duration::from_secs(5));
        tokio::select! {
            biased;
            msg = ws.next() => {
                let now = Instant::now();
                match msg {
                    Some(Ok(Message::Binary(audio))) => {
                        if config.trace && caller.awaiting_audio() {
                            eprintln!("{:10.3} ms  first audio ({} bytes)", ms_since(ready, now), audio.len());
                        }
                        caller.on_audio(audio.len(), now);
                    }
                    Some(Ok(Message::Text(text))) => {
                        if config.trace {
                            eprintln!("{:10.3} ms  {}", ms_since(ready, now), text.as_str());
                        }
                        let Ok(event) = serde_json::from_str::<ServerEvent>(&text) else {
                            out.errors.push("unparsable server message".into());
                            continue;
                        };
                        match event.kind.as_str() {
                            "transcript" if event.role.as_deref() == Some("user") && event.is_final == Some(true) => {
                                caller.on_final(now);
                            }
                            "turn_metrics" => {
                                out.server_added_ms.extend(event.added_ms);
                                out.server_ttft_ms.extend(event.ttft_ms);
                                out.server_tts_first_audio_ms.extend(event.tts_first_audio_ms);
                                out.server_end_of_utterance_ms.extend(event.end_of_utterance_ms);
                            }
                            "mark" => {
                                let name = event.name.unwrap_or_default();
                                let ack = serde_json::json!({"type": "mark", "name": name}).to_string();
                                if let Err(e) = ws.send(Message::text(ack)).await {
                                    out.errors.push(format!("send: {e}"));
                                    break;
                                }
                            }
                            "error" => out.errors.push(event.code.unwrap_or_else(|| "error".into())),
                            "ended" => break,
                            _ => {}
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        out.errors.push(format!("read: {e}"));
                        break;
                    }
                }
            }
            () = tokio::time::sleep_until(next.into()) => {
                let now = Instant::now();
                if hangup_at.is_some() || now >= cap_at {
                    break; // no `ended` within 5 s of the hangup, or the run's cap
                }
                caller.poll(now);
                if caller.done() {
                    hangup_at = Some(now);
                    if let Err(e) = ws.send(Message::text(r#"{"type":"hangup"}"#)).await {
                        out.errors.push(format!("send: {e}"));
                        break;
                    }
                    continue;
                }
                let lag = now.saturating_duration_since(caller.slot_time(slot));
                input_lag.lock().expect("input lag").saturating_record(lag.as_micros() as u64);
                let frame = if caller.frame(slot, now) { frames.speech.clone() } else { frames.silence.clone() };
                if config.trace {
                    let p = caller.probe();
                    if p.last_speech_at == Some(now) {
                        eprintln!("{:10.3} ms  last speech frame sent (slot {slot})", ms_since(ready, now));
                    } else if p.endpoint_at == Some(now) {
                        eprintln!("{:10.3} ms  300 ms of silence sent (slot {slot})", ms_since(ready, now));
                    }
                }
                slot += 1;
                if let Err(e) = ws.send(Message::Binary(frame)).await {
                    out.errors.push(format!("send: {e}"));
                    break;
                }
            }
        }
    }
    out.ended_at = Some(Instant::now());
    let _ = ws.close(None).await;
    out.results = caller.results().to_vec();
    out
}

/// The WORKLOAD's throw-away 1-turn call (§4). Returns the errors if it did not answer.
pub async fn warm_up(config: &WsConfig) -> Result<(), String> {
    let config = Arc::new(config.clone());
    let now = Instant::now();
    let lag = Arc::new(Mutex::new(histogram()));
    let out = run_call(config, Frames::new(), 1, now, now + Duration::from_secs(60), lag).await;
    match out.results.first() {
        Some(TurnResult { added_ms: Some(_), .. }) => Ok(()),
        _ if out.errors.is_empty() => Err("the warm-up call got no answer".into()),
        _ => Err(out.errors.join("; ")),
    }
}

/// The worker's VmRSS now (the idle baseline, after the warm-up).
pub fn worker_rss_kib(config: &WsConfig) -> u64 {
    crate::measure::rss_kib(config.worker_pid)
}

/// Runs the WORKLOAD at `config.calls` calls and measures it. `baseline_rss_kib` is the
/// worker's idle VmRSS (after the warm-up).
pub async fn run_ws(config: &WsConfig, baseline_rss_kib: u64) -> WsReport {
    let loadavg_start = loadavg();
    let config = Arc::new(config.clone());
    let frames = Frames::new();
    let input_lag = Arc::new(Mutex::new(histogram()));
    let sampler = Sampler::start(config.worker_pid, config.sim_pid);

    let n = config.calls.max(1);
    let t0 = Instant::now() + Duration::from_millis(50);
    let cap_at = t0 + config.cap;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            tokio::spawn(run_call(
                Arc::clone(&config),
                frames.clone(),
                config.turns,
                t0 + start_offset(config.spread, i, n),
                cap_at,
                Arc::clone(&input_lag),
            ))
        })
        .collect();
    let mut outcomes = Vec::with_capacity(n);
    for task in tasks {
        outcomes.push(
            task.await.unwrap_or_else(|e| CallOutcome { errors: vec![format!("task: {e}")], ..CallOutcome::default() }),
        );
    }
    let end = Instant::now();

    let mut added = histogram();
    let mut min_ms = f64::INFINITY;
    let mut final_to_audio = histogram();
    let mut server = histogram();
    let (mut ttft, mut tts_first, mut eou) = (histogram(), histogram(), histogram());
    let (mut answered, mut above_50ms, mut late, mut odd, mut failed, mut server_turns) = (0, 0, 0, 0, 0, 0);
    let mut server_max = 0f64;
    let mut errors = BTreeMap::new();
    let mut first_end: Option<Instant> = None;
    for out in &outcomes {
        failed += u64::from(!out.started);
        for e in &out.errors {
            *errors.entry(e.clone()).or_insert(0) += 1;
        }
        if let (true, Some(e)) = (out.started, out.ended_at) {
            first_end = Some(first_end.map_or(e, |f| f.min(e)));
        }
        for r in &out.results {
            if let Some(a) = r.added_ms {
                answered += 1;
                added.saturating_record(us_of_ms(a));
                min_ms = min_ms.min(a);
                above_50ms += u64::from(a > 50.0);
                late += u64::from(a > LATE.as_secs_f64() * 1e3);
                odd += u64::from(r.audio_bytes != TURN_AUDIO_BYTES);
            }
            if let Some(f) = r.final_to_audio_ms {
                final_to_audio.saturating_record(us_of_ms(f));
            }
        }
        for (h, values) in [
            (&mut ttft, &out.server_ttft_ms),
            (&mut tts_first, &out.server_tts_first_audio_ms),
            (&mut eou, &out.server_end_of_utterance_ms),
        ] {
            for &v in values {
                h.saturating_record(us_of_ms(v));
            }
        }
        for &s in &out.server_added_ms {
            server_turns += 1;
            server.saturating_record(us_of_ms(s));
            server_max = server_max.max(s);
        }
    }
    let turns_expected = n as u64 * u64::from(config.turns);

    // Steady window: all calls up, from the last call's start + 1 s to the first call's end.
    let window_start = t0 + start_offset(config.spread, n - 1, n) + Duration::from_secs(1);
    let window_end = first_end.unwrap_or(end).min(end);
    let usage = sampler.finish(window_start, window_end, t0, end);
    let lag = input_lag.lock().expect("input lag");
    WsReport {
        calls: n,
        calls_failed: failed,
        turns_expected,
        turns_answered: answered,
        turns_lost: turns_expected.saturating_sub(answered),
        p50_ms: ms(added.value_at_quantile(0.50)),
        p95_ms: ms(added.value_at_quantile(0.95)),
        p99_ms: ms(added.value_at_quantile(0.99)),
        max_ms: ms(added.max()),
        min_ms: if min_ms.is_finite() { min_ms } else { f64::NAN },
        above_50ms,
        late,
        server_turns,
        server_p50_ms: ms(server.value_at_quantile(0.50)),
        server_p95_ms: ms(server.value_at_quantile(0.95)),
        server_p99_ms: ms(server.value_at_quantile(0.99)),
        server_max_ms: server_max,
        server_ttft_p50_ms: ms(ttft.value_at_quantile(0.50)),
        server_ttft_p99_ms: ms(ttft.value_at_quantile(0.99)),
        server_tts_first_audio_p50_ms: ms(tts_first.value_at_quantile(0.50)),
        server_tts_first_audio_p99_ms: ms(tts_first.value_at_quantile(0.99)),
        server_end_of_utterance_p50_ms: ms(eou.value_at_quantile(0.50)),
        server_end_of_utterance_p99_ms: ms(eou.value_at_quantile(0.99)),
        final_to_audio_p99_ms: ms(final_to_audio.value_at_quantile(0.99)),
        odd_turns: odd,
        input_lag_p99_ms: ms(lag.value_at_quantile(0.99)),
        input_lag_max_ms: ms(lag.max()),
        worker_cpu_percent: usage.worker_cpu_percent,
        sim_cpu_percent: usage.sim_cpu_percent,
        client_cpu_percent: usage.client_cpu_percent,
        steady_window_s: usage.window_s,
        baseline_rss_kib,
        peak_rss_kib: usage.peak_rss_kib,
        rss_per_call_kib: rss_per_call_kib(usage.peak_rss_kib, baseline_rss_kib, n),
        wall_s: end.saturating_duration_since(t0).as_secs_f64(),
        loadavg_start,
        loadavg_end: loadavg(),
        errors,
    }
}

/// The sweep table's header.
pub const WS_TABLE_HEADER: &str = "| N | p50 ms | p95 ms | p99 ms | max ms | server added p50 / p99 ms | worker-measured TTFT / TTS first audio p99 ms | lost | late | input lag p99 ms | worker CPU % | simulator CPU % | load generator CPU % | KiB/call | load avg |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|";

impl WsReport {
    pub fn table_row(&self) -> String {
        format!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} / {:.2} | {:.1} / {:.1} | {} | {} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2}→{:.2} |",
            self.calls,
            self.p50_ms,
            self.p95_ms,
            self.p99_ms,
            self.max_ms,
            self.server_p50_ms,
            self.server_p99_ms,
            self.server_ttft_p99_ms,
            self.server_tts_first_audio_p99_ms,
            self.turns_lost,
            self.late,
            self.input_lag_p99_ms,
            self.worker_cpu_percent,
            self.sim_cpu_percent,
            self.client_cpu_percent,
            self.rss_per_call_kib,
            self.loadavg_start,
            self.loadavg_end,
        )
    }

    /// Holds the target: client-observed p99 within `max_p99_ms` and nothing lost.
    pub fn holds(&self, max_p99_ms: f64) -> bool {
        self.turns_lost == 0 && self.p99_ms <= max_p99_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_speech_and_silence_to_the_stt() {
        let f = Frames::new();
        assert_eq!((f.speech.len(), f.silence.len()), (FRAME_BYTES, FRAME_BYTES));
        assert!(f.silence.iter().all(|&b| b == 0));
        let peak = f.speech.chunks(2).map(|s| i16::from_le_bytes([s[0], s[1]]).unsigned_abs()).max();
        assert_eq!(peak, Some(3000));
    }

    #[test]
    fn start_message_matches_the_protocol() {
        let v: serde_json::Value = serde_json::from_str(&start_message("ag_1", "gk_x")).unwrap();
        assert_eq!(v, serde_json::json!({"type":"start","agent_id":"ag_1","token":"gk_x","sample_rate":16000}));
    }

    #[test]
    fn server_events_parse_with_unknown_fields() {
        let e: ServerEvent = serde_json::from_str(
            r#"{"type":"turn_metrics","turn":1,"ttft_ms":212.0,"added_ms":4.1,"interrupted":false}"#,
        )
        .unwrap();
        assert_eq!((e.kind.as_str(), e.added_ms), ("turn_metrics", Some(4.1)));
        let t: ServerEvent = serde_json::from_str(
            r#"{"type":"transcript","role":"user","text":"what are your opening hours","final":true}"#,
        )
        .unwrap();
        assert_eq!((t.role.as_deref(), t.is_final), (Some("user"), Some(true)));
    }
}
