//! `golos-load sip`: the WORKLOAD (`bench/WORKLOAD.md`) against a running `golos serve` over
//! SIP and RTP, as a trunk would bring the calls: the phone number the trunk carries, an INVITE
//! from 127.0.0.1 with a G.711 offer, A-law RTP both ways, BYE at the end. The worker's
//! providers point at `golos-simulator`, as in `golos-load ws`.
//!
//! The signalling is rsipstack's UAC (the stack golos-sip uses as a UAS): one endpoint on one
//! UDP socket for all calls, which does the INVITE client transaction (retransmissions, ACK of
//! the 2xx) and the BYE. The media is this module's: per call a UDP socket of its own, a 20 ms
//! A-law packet per [`SimulatedCaller`] slot on an absolute schedule from the 200 OK (the
//! moment golos's pipeline runs, as `started` is over the WebSocket), and the A-law golos sends
//! back counted as the agent's audio from its first *loud* packet on ([`is_voice`]: what a
//! caller would hear, so a packet of the resampler's leading near-silence does not start the
//! answer). So the turn is timed as the ws mode times it (`caller` module docs): from the send
//! of the 15th silence packet after the utterance to the first voice packet of the answer,
//! minus the simulator's 300 ms.
//!
//! That charges golos's whole phone path to it: the caller's packets through the worker's
//! jitter buffer and its 20 ms playout tick, the 8 → 16 kHz resampler, the STT, LLM and TTS
//! adapters, and the 16 → 8 kHz resampler and A-law encoder on the way out, plus both loopback
//! hops. The audio counts as 16 kHz PCM16 bytes, as the WORKLOAD's 192,000 per turn are: an
//! 8 kHz G.711 byte is one sample, i.e. 4 bytes of PCM16 at twice the rate.

use crate::caller::{SimulatedCaller, TurnResult, LATE, TURN_AUDIO_BYTES};
use crate::load::loadavg;
use crate::measure::{histogram, ms, ms_since, rss_per_call_kib, start_offset, us_of_ms, Sampler};
use golos_rtp::{sdp, RtpHeader, RtpPacket, FRAME_SAMPLES, G711};
use hdrhistogram::Histogram;
use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver, DialogStateSender};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::sip::{Method, StatusCode, StatusCodeKind, Uri};
use rsipstack::transaction::TransactionReceiver;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::TransportLayer;
use rsipstack::EndpointBuilder;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// RTP payload types of the offer: PCMA and RFC 4733 events.
const PCMA: u8 = 8;
const TELEPHONE_EVENT: u8 = 101;
/// 16 kHz PCM16 bytes per 8 kHz G.711 byte (module docs).
const PCM16_BYTES_PER_G711_BYTE: usize = 4;
/// A voice packet holds more than this many samples louder than [`LOUD`].
const LOUD_SAMPLES: usize = 10;
const LOUD: u16 = 1000;
/// An INVITE not answered by then counts as a failed call.
const INVITE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct SipLoadConfig {
    /// golos's SIP address (`GOLOS_SIP_LISTEN`).
    pub sip: SocketAddr,
    /// The user part of the Request-URI: the number as the trunk dials it.
    pub number: String,
    pub calls: usize,
    /// Turns per call (5).
    pub turns: u32,
    /// Calls start evenly over this (10 s).
    pub spread: Duration,
    /// Calls not done by t0 + cap are abandoned; their missing turns are lost (115 s).
    pub cap: Duration,
    pub worker_pid: Option<u32>,
    pub sim_pid: Option<u32>,
    /// Print each call's signalling outcome and each turn's first audio to stderr.
    pub trace: bool,
}

impl SipLoadConfig {
    pub fn workload(sip: SocketAddr, number: String, calls: usize) -> Self {
        Self {
            sip,
            number,
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
pub struct SipReport {
    pub calls: usize,
    /// Calls golos did not answer 200 (refused, timed out).
    pub calls_failed: u64,
    pub turns_expected: u64,
    pub turns_answered: u64,
    pub turns_lost: u64,
    /// Client-observed added latency (`caller` module docs): p50, p95, p99, max, min.
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub min_ms: f64,
    pub above_50ms: u64,
    /// Added latency above 200 ms.
    pub late: u64,
    /// Turns whose audio was not exactly 192,000 bytes (as 16 kHz PCM16).
    pub odd_turns: u64,
    /// INVITE sent → 200 OK, p50 and p99 (admission, routing, the pipeline's start).
    pub setup_p50_ms: f64,
    pub setup_p99_ms: f64,
    /// Lateness of this generator's packet sends against their slots.
    pub input_lag_p99_ms: f64,
    pub input_lag_max_ms: f64,
    /// (user + sys) over the steady window, % of one core; NaN without the pid.
    pub worker_cpu_percent: f64,
    /// The worker's CPU per second of call: ms of CPU per call-second.
    pub worker_cpu_ms_per_call_s: f64,
    pub sim_cpu_percent: f64,
    pub client_cpu_percent: f64,
    pub steady_window_s: f64,
    pub baseline_rss_kib: u64,
    pub peak_rss_kib: u64,
    pub rss_per_call_kib: f64,
    pub wall_s: f64,
    pub loadavg_start: f64,
    pub loadavg_end: f64,
    /// Failures by kind ("INVITE 503", "bye: …"), with counts.
    pub errors: BTreeMap<String, u64>,
}

/// The sweep table's header.
pub const SIP_TABLE_HEADER: &str = "| N | p50 ms | p95 ms | p99 ms | max ms | lost | late | calls failed | setup p99 ms | input lag p99 ms | worker CPU % | worker CPU ms per call-s | simulator CPU % | load generator CPU % | KiB/call | load avg |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|";

impl SipReport {
    pub fn table_row(&self) -> String {
        format!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {:.1} | {:.2} | {:.1} | {:.2} | {:.1} | {:.1} | {:.1} | {:.2}→{:.2} |",
            self.calls,
            self.p50_ms,
            self.p95_ms,
            self.p99_ms,
            self.max_ms,
            self.turns_lost,
            self.late,
            self.calls_failed,
            self.setup_p99_ms,
            self.input_lag_p99_ms,
            self.worker_cpu_percent,
            self.worker_cpu_ms_per_call_s,
            self.sim_cpu_percent,
            self.client_cpu_percent,
            self.rss_per_call_kib,
            self.loadavg_start,
            self.loadavg_end,
        )
    }

    /// Holds the target: client-observed p99 within `max_p99_ms`, nothing lost, every call up.
    pub fn holds(&self, max_p99_ms: f64) -> bool {
        self.turns_lost == 0 && self.calls_failed == 0 && self.p99_ms <= max_p99_ms
    }
}

/// ms of CPU per second of call: `cpu_percent` % of one core is `10 · cpu_percent` ms of CPU
/// per second, shared by `calls` concurrent calls.
pub fn cpu_ms_per_call_second(cpu_percent: f64, calls: usize) -> f64 {
    10.0 * cpu_percent / calls.max(1) as f64
}

/// The SIP side of the trunk: one rsipstack endpoint on 127.0.0.1 for every call.
pub struct Uac {
    dialogs: Arc<DialogLayer>,
    states: DialogStateSender,
    local: SocketAddr,
    cancel: CancellationToken,
    next_call: AtomicU32,
}

impl std::fmt::Debug for Uac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uac").field("local", &self.local).finish_non_exhaustive()
    }
}

impl Uac {
    /// Binds the signalling socket on 127.0.0.1 (a trunk's `source_networks` must hold it)
    /// and starts the stack. Needs a tokio runtime.
    pub async fn bind() -> anyhow::Result<Self> {
        let cancel = CancellationToken::new();
        let transport = TransportLayer::new(cancel.child_token());
        let udp =
            UdpConnection::create_connection(SocketAddr::from(([127, 0, 0, 1], 0)), None, Some(cancel.child_token()))
                .await?;
        let local = udp.get_addr().get_socketaddr()?;
        transport.add_transport(udp.into());
        let endpoint = EndpointBuilder::new()
            .with_user_agent("golos-load")
            .with_transport_layer(transport)
            .with_cancel_token(cancel.clone())
            .build();
        let incoming = endpoint.incoming_transactions()?;
        let dialogs = Arc::new(DialogLayer::new(endpoint.inner.clone()));
        let (states, state_rx) = dialogs.new_dialog_state_channel();
        tokio::spawn(async move { endpoint.serve().await });
        tokio::spawn(serve_requests(Arc::clone(&dialogs), incoming));
        tokio::spawn(forget_ended(Arc::clone(&dialogs), state_rx));
        Ok(Self { dialogs, states, local, cancel, next_call: AtomicU32::new(1) })
    }
}

impl Drop for Uac {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Requests from golos: in-dialog ones (a BYE if golos ends a call) go to their dialog;
/// anything else is not ours.
async fn serve_requests(dialogs: Arc<DialogLayer>, mut incoming: TransactionReceiver) {
    while let Some(mut tx) = incoming.recv().await {
        match dialogs.match_dialog(&tx) {
            Some(mut dialog) => {
                tokio::spawn(async move { dialog.handle(&mut tx).await });
            }
            None if tx.original.method == Method::Ack => {}
            None => {
                tokio::spawn(async move { tx.reply(StatusCode::CallTransactionDoesNotExist).await });
            }
        }
    }
}

/// Drops terminated dialogs from the layer (its docs ask the UAC to).
async fn forget_ended(dialogs: Arc<DialogLayer>, mut states: DialogStateReceiver) {
    while let Some(state) = states.recv().await {
        if let DialogState::Terminated(id, _) = state {
            dialogs.remove_dialog(&id);
        }
    }
}

/// The SDP offer: PCMA and telephone-event, media to `port` on 127.0.0.1.
pub fn sdp_offer(port: u16, session_id: u32) -> String {
    format!(
        "v=0\r\no=golos-load {session_id} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP {PCMA} {TELEPHONE_EVENT}\r\na=rtpmap:{PCMA} PCMA/8000\r\n\
         a=rtpmap:{TELEPHONE_EVENT} telephone-event/8000\r\na=fmtp:{TELEPHONE_EVENT} 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

/// Where the answer wants our RTP: its audio stream's connection (or the session's) and port.
pub fn answer_media(body: &[u8]) -> Result<SocketAddr, String> {
    let answer = sdp::parse(body).map_err(|e| format!("answer SDP: {e}"))?;
    let audio = answer.media.iter().find(|m| m.media == "audio").ok_or("answer SDP: no audio")?;
    let ip = audio.connection.or(answer.connection).ok_or("answer SDP: no connection address")?;
    if audio.port == 0 {
        return Err("answer SDP: audio refused (port 0)".into());
    }
    Ok(SocketAddr::new(ip, audio.port))
}

/// The two A-law payloads a caller sends: a 220 Hz sine of amplitude 3000 (the WORKLOAD's
/// speech, here at 8 kHz) and silence.
#[derive(Debug, Clone)]
pub struct Payloads {
    pub speech: [u8; FRAME_SAMPLES],
    pub silence: [u8; FRAME_SAMPLES],
}

impl Payloads {
    pub fn new() -> Self {
        let mut speech = [0u8; FRAME_SAMPLES];
        for (n, byte) in speech.iter_mut().enumerate() {
            let v = (3000.0 * (2.0 * std::f64::consts::PI * 220.0 * n as f64 / 8_000.0).sin()).round() as i16;
            *byte = G711::Pcma.encode(v);
        }
        Self { speech, silence: [G711::Pcma.encode(0); FRAME_SAMPLES] }
    }
}

impl Default for Payloads {
    fn default() -> Self {
        Self::new()
    }
}

/// An A-law payload carries voice, not silence or the faint edge of a resampled frame (the
/// simulator's voice is a tone of amplitude 3000; A-law silence decodes to ±8).
pub fn is_voice(alaw: &[u8]) -> bool {
    alaw.iter().filter(|&&b| G711::Pcma.decode(b).unsigned_abs() > LOUD).count() > LOUD_SAMPLES
}

/// This caller's outgoing RTP stream.
struct Stream {
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    buf: Vec<u8>,
}

impl Stream {
    fn new(ssrc: u32) -> Self {
        Self { ssrc, sequence: 1, timestamp: 0, buf: Vec::with_capacity(12 + FRAME_SAMPLES) }
    }

    /// The packet of the next 20 ms.
    fn packet(&mut self, payload: &[u8]) -> &[u8] {
        let header = RtpHeader {
            marker: self.sequence == 1,
            payload_type: PCMA,
            sequence: self.sequence,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
            csrcs: Vec::new(),
        };
        self.buf.clear();
        let packet = RtpPacket { header, extension: None, payload };
        packet.write(&mut self.buf).expect("an RTP header without CSRCs fits");
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(FRAME_SAMPLES as u32);
        &self.buf
    }
}

/// What one call brings back.
#[derive(Debug, Default)]
struct CallOutcome {
    started: bool,
    setup: Option<Duration>,
    results: Vec<TurnResult>,
    ended_at: Option<Instant>,
    errors: Vec<String>,
}

/// One call, from its start time to the BYE (or the cap).
async fn run_call(
    uac: Arc<Uac>,
    config: Arc<SipLoadConfig>,
    payloads: Arc<Payloads>,
    turns: u32,
    start_at: Instant,
    cap_at: Instant,
    input_lag: Arc<Mutex<Histogram<u64>>>,
) -> CallOutcome {
    let mut out = CallOutcome::default();
    tokio::time::sleep_until(start_at.into()).await;
    let socket = match UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await {
        Ok(socket) => socket,
        Err(e) => {
            out.errors.push(format!("rtp bind: {e}"));
            return out;
        }
    };
    let port = socket.local_addr().map_or(0, |a| a.port());
    let id = uac.next_call.fetch_add(1, Ordering::Relaxed);
    let uri = |s: String| Uri::try_from(s.as_str()).map_err(|e| format!("uri: {e}"));
    let (caller, callee, contact) = match (
        uri(format!("sip:golos-load-{id}@{}", uac.local)),
        uri(format!("sip:{}@{}", config.number, config.sip)),
        uri(format!("sip:golos-load@{}", uac.local)),
    ) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            out.errors.push(e);
            return out;
        }
    };
    let option = InviteOption {
        caller,
        callee,
        contact,
        content_type: Some("application/sdp".into()),
        offer: Some(sdp_offer(port, id).into_bytes()),
        ..InviteOption::default()
    };
    let invited = Instant::now();
    let (dialog, response) =
        match tokio::time::timeout(INVITE_TIMEOUT, uac.dialogs.do_invite(option, uac.states.clone())).await {
            Ok(Ok(answered)) => answered,
            Ok(Err(e)) => {
                out.errors.push(format!("invite: {e}"));
                return out;
            }
            Err(_) => {
                out.errors.push("INVITE unanswered".into());
                return out;
            }
        };
    let media = match response {
        Some(r) if r.status_code.kind() == StatusCodeKind::Successful => answer_media(&r.body),
        Some(r) => Err(format!("INVITE {}", r.status_code.code())),
        None => Err("INVITE: no final response".into()),
    };
    let media = match media {
        Ok(media) => media,
        Err(e) => {
            out.errors.push(e);
            return out;
        }
    };
    let ready = Instant::now();
    out.started = true;
    out.setup = Some(ready - invited);
    if config.trace {
        eprintln!("call {id}: 200 OK after {:.1} ms, golos media {media}", ms_since(invited, ready));
    }

    let mut caller = SimulatedCaller::new(ready, turns);
    let mut stream = Stream::new(0x6C6F_0000 ^ id);
    let mut slot = 0u64;
    let mut buf = [0u8; 1500];
    loop {
        tokio::select! {
            biased;
            received = socket.recv_from(&mut buf) => {
                let now = Instant::now();
                let Ok((len, _)) = received else { continue };
                let Ok(packet) = RtpPacket::parse(&buf[..len]) else { continue };
                if packet.header.payload_type != PCMA {
                    continue; // key presses, comfort noise: not the agent's voice
                }
                if caller.awaiting_audio() && !is_voice(packet.payload) {
                    continue; // not yet audible: the turn's audio is then short (an odd turn)
                }
                if config.trace && caller.awaiting_audio() {
                    eprintln!("call {id}: {:10.3} ms  first audio", ms_since(ready, now));
                }
                caller.on_audio(packet.payload.len() * PCM16_BYTES_PER_G711_BYTE, now);
            }
            () = tokio::time::sleep_until(caller.slot_time(slot).into()) => {
                let now = Instant::now();
                if now >= cap_at {
                    out.errors.push("not done by the run's cap".into());
                    break;
                }
                caller.poll(now);
                if caller.done() {
                    break;
                }
                let lag = now.saturating_duration_since(caller.slot_time(slot));
                input_lag.lock().expect("input lag").saturating_record(lag.as_micros() as u64);
                let payload = if caller.frame(slot, now) { &payloads.speech } else { &payloads.silence };
                slot += 1;
                if let Err(e) = socket.send_to(stream.packet(payload), media).await {
                    out.errors.push(format!("rtp send: {e}"));
                    break;
                }
            }
        }
    }
    out.ended_at = Some(Instant::now());
    match tokio::time::timeout(Duration::from_secs(5), dialog.bye()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => out.errors.push(format!("bye: {e}")),
        Err(_) => out.errors.push("BYE unanswered".into()),
    }
    uac.dialogs.remove_dialog(&dialog.id());
    out.results = caller.results().to_vec();
    out
}

/// The WORKLOAD's throw-away 1-turn call (§4). Returns the errors if it did not answer.
pub async fn warm_up(uac: &Arc<Uac>, config: &SipLoadConfig) -> Result<(), String> {
    let now = Instant::now();
    let lag = Arc::new(Mutex::new(histogram()));
    let out = run_call(
        Arc::clone(uac),
        Arc::new(config.clone()),
        Arc::new(Payloads::new()),
        1,
        now,
        now + Duration::from_secs(60),
        lag,
    )
    .await;
    match out.results.first() {
        Some(TurnResult { added_ms: Some(_), .. }) => Ok(()),
        _ if out.errors.is_empty() => Err("the warm-up call got no answer".into()),
        _ => Err(out.errors.join("; ")),
    }
}

/// The worker's VmRSS now (the idle baseline, after the warm-up).
pub fn worker_rss_kib(config: &SipLoadConfig) -> u64 {
    crate::measure::rss_kib(config.worker_pid)
}

/// Runs the WORKLOAD at `config.calls` SIP calls and measures it. `baseline_rss_kib` is the
/// worker's idle VmRSS (after the warm-up).
pub async fn run_sip(uac: &Arc<Uac>, config: &SipLoadConfig, baseline_rss_kib: u64) -> SipReport {
    let loadavg_start = loadavg();
    let config = Arc::new(config.clone());
    let payloads = Arc::new(Payloads::new());
    let input_lag = Arc::new(Mutex::new(histogram()));
    let sampler = Sampler::start(config.worker_pid, config.sim_pid);

    let n = config.calls.max(1);
    let t0 = Instant::now() + Duration::from_millis(50);
    let cap_at = t0 + config.cap;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            tokio::spawn(run_call(
                Arc::clone(uac),
                Arc::clone(&config),
                Arc::clone(&payloads),
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

    let (mut added, mut setup) = (histogram(), histogram());
    let mut min_ms = f64::INFINITY;
    let (mut answered, mut above_50ms, mut late, mut odd, mut failed) = (0, 0, 0, 0, 0);
    let mut errors = BTreeMap::new();
    let mut first_end: Option<Instant> = None;
    for out in &outcomes {
        failed += u64::from(!out.started);
        for e in &out.errors {
            *errors.entry(e.clone()).or_insert(0) += 1;
        }
        if let Some(s) = out.setup {
            setup.saturating_record(s.as_micros() as u64);
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
        }
    }
    let turns_expected = n as u64 * u64::from(config.turns);
    // Steady window: all calls up, from the last call's start + 1 s to the first call's end.
    let window_start = t0 + start_offset(config.spread, n - 1, n) + Duration::from_secs(1);
    let window_end = first_end.unwrap_or(end).min(end);
    let usage = sampler.finish(window_start, window_end, t0, end);
    let lag = input_lag.lock().expect("input lag");
    SipReport {
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
        odd_turns: odd,
        setup_p50_ms: ms(setup.value_at_quantile(0.50)),
        setup_p99_ms: ms(setup.value_at_quantile(0.99)),
        input_lag_p99_ms: ms(lag.value_at_quantile(0.99)),
        input_lag_max_ms: ms(lag.max()),
        worker_cpu_percent: usage.worker_cpu_percent,
        worker_cpu_ms_per_call_s: cpu_ms_per_call_second(usage.worker_cpu_percent, n),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offer_is_pcma_and_telephone_event_and_golos_can_answer_it() {
        let offer = sdp_offer(40_002, 7);
        let parsed = sdp::parse(offer.as_bytes()).unwrap();
        let ours =
            sdp::AnswerParams { address: [127, 0, 0, 1].into(), port: 30_000, session_id: 1, session_version: 1 };
        let negotiated = sdp::answer(&parsed, &ours).unwrap();
        assert_eq!(negotiated.codec, G711::Pcma);
        assert_eq!(negotiated.telephone_event, Some(TELEPHONE_EVENT));
        assert_eq!(negotiated.remote, Some("127.0.0.1:40002".parse().unwrap()));
        // And the answer tells us where golos listens.
        assert_eq!(answer_media(negotiated.sdp.as_bytes()), Ok("127.0.0.1:30000".parse().unwrap()));
    }

    #[test]
    fn an_answer_without_media_is_an_error() {
        assert!(answer_media(b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n").is_err());
        assert!(answer_media(b"garbage").is_err());
    }

    #[test]
    fn packets_follow_on_and_carry_speech_or_silence() {
        let payloads = Payloads::new();
        let mut stream = Stream::new(42);
        let first = stream.packet(&payloads.speech).to_vec();
        let second = stream.packet(&payloads.silence).to_vec();
        let (a, b) = (RtpPacket::parse(&first).unwrap(), RtpPacket::parse(&second).unwrap());
        assert!(a.header.marker && !b.header.marker);
        assert_eq!((a.header.payload_type, a.header.ssrc), (PCMA, 42));
        assert_eq!(b.header.sequence, a.header.sequence.wrapping_add(1));
        assert_eq!(b.header.timestamp, a.header.timestamp.wrapping_add(FRAME_SAMPLES as u32));
        let peak = |p: &[u8]| p.iter().map(|&x| G711::Pcma.decode(x).unsigned_abs()).max().unwrap();
        // Speech is far above the simulated STT's threshold (64); A-law silence decodes to ±8.
        assert!(peak(a.payload) > 2_900, "{}", peak(a.payload));
        assert!(peak(b.payload) < 64, "{}", peak(b.payload));
    }

    #[test]
    fn voice_is_loud_a_law() {
        let payloads = Payloads::new();
        assert!(is_voice(&payloads.speech));
        assert!(!is_voice(&payloads.silence));
        // A frame whose tone starts only in its last 8 samples is not heard yet.
        let mut edge = payloads.silence;
        edge[FRAME_SAMPLES - 8..].copy_from_slice(&payloads.speech[..8]);
        assert!(!is_voice(&edge));
    }

    #[test]
    fn a_turn_of_g711_counts_as_the_workloads_192000_bytes() {
        assert_eq!(300 * FRAME_SAMPLES * PCM16_BYTES_PER_G711_BYTE, TURN_AUDIO_BYTES as usize);
    }

    #[test]
    fn cpu_per_call_second() {
        // 40 % of one core for 200 calls: 400 ms of CPU a second, 2 ms per call-second.
        assert!((cpu_ms_per_call_second(40.0, 200) - 2.0).abs() < 1e-9);
    }
}
