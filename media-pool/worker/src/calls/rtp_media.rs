//! One phone call's media: a UDP socket of its own carrying G.711 RTP both ways, between the
//! trunk and the call's engine. golos-rtp does the packets, the jitter buffer and the
//! digits; this is the clock and the socket around them.
//!
//! Inbound, each frame leaves the jitter buffer as soon as it is in order (the caller's audio
//! goes to speech recognition, which needs no playout delay), is resampled to the pipeline's
//! rate and handed to the engine; a 20 ms clock fills only a gap of 60 ms or more (a
//! concealment, a lost frame skipped, or silence), so the engine hears time pass. Outbound, the engine
//! paces its audio (one frame per 20 ms), so each frame is resampled, encoded and sent as it
//! arrives. The peer's address is latched from its first packet (symmetric RTP, RFC 4961):
//! behind NAT the address in the SDP is often not where its packets come from.

use super::CallLink;
use golos_audio::Resampler;
use golos_rtp::dtmf::{encode_digit, DigitSending, DtmfReceiver, TimedEventPacket};
use golos_rtp::jitter::{JitterBuffer, JitterConfig};
use golos_rtp::rtcp::{self, NtpTime, ReceiverReport, ReportBlock, RtcpPacket, SenderReport};
use golos_rtp::sdp::Negotiated;
use golos_rtp::stats::{mos, round_trip_time, QualityInputs, ReceiveStats};
use golos_rtp::{RtpHeader, RtpPacket, CLOCK_RATE, FRAME_DURATION, FRAME_SAMPLES, G711};
use golos_shard::OwnedInput;
use golos_transports::ws::SessionOutput;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

/// No RTP from the trunk for this long ends the call by default: the far end is gone without
/// a BYE (a trunk restart, a lost route), and billing must not run on. The operator's
/// `GOLOS_RTP_MEDIA_TIMEOUT_SECS` (`SipEdgeConfig::media_timeout`) replaces it.
pub const DEFAULT_MEDIA_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the call's line quality (loss, jitter, MOS) is written to its record; the record
/// keeps the latest, so a call's last seconds may be missing from it.
const QUALITY_REPORT_EVERY: u32 = 250;

/// How a key press is sent towards the far end: RFC 4733 events, 100 ms per key and 60 ms
/// between keys (ITU-T Q.24 asks at least 40 ms of each).
const KEY_PRESS: Duration = Duration::from_millis(100);
const KEY_GAP: Duration = Duration::from_millis(60);
const KEY_VOLUME: u8 = 10;

/// How long the caller's next frame may be missing (late, lost, or the trunk's silence
/// suppression) before the 20 ms clock conceals it, so the engine hears time pass.
const GAP_BEFORE_CONCEALING: Duration = Duration::from_millis(60);
/// Within a gap, one frame per tick: the last fill counts as this much before it.
const GAP_REFILL_BACKDATE: Duration = Duration::from_millis(40);

/// Hands one 8 kHz frame of the caller's to the engine at the pipeline's rate (before the
/// engine runs, during the hold prompt, it is dropped).
fn deliver(link: &CallLink, up: &mut Resampler, samples: &[i16]) {
    let Some(handle) = link.handle.get() else { return };
    match up.process(samples) {
        // A full shard queue drops the frame; the next one follows.
        Ok(samples) => {
            handle.audio(samples.into());
        }
        Err(error) => tracing::warn!(%error, "could not resample the caller's audio"),
    }
}

/// A datagram larger than any 20 ms G.711 packet with headers; longer ones are cut and fail
/// to parse, which is what they deserve.
const DATAGRAM: usize = 1500;

/// A call's two sockets: RTP on an even port, RTCP on the odd one above it (RFC 3550 §11).
pub(super) struct MediaSockets {
    pub rtp: UdpSocket,
    pub rtcp: UdpSocket,
}

/// Binds RTP on `ip` at the first free even port of `ports` whose odd neighbour (RTCP) is free
/// too, starting at a random one so that concurrent workers on one host (and a restarted one)
/// do not all probe from the bottom. A call takes two ports of the range.
pub(super) async fn bind_rtp(ip: std::net::IpAddr, ports: &RangeInclusive<u16>) -> std::io::Result<MediaSockets> {
    let (first, last) = (*ports.start(), *ports.end());
    let count = u32::from(last - first) + 1;
    let start = u32::try_from(random_u64() % u64::from(count)).unwrap_or(0);
    let mut last_error = None;
    for i in 0..count {
        let port = first + u16::try_from((start + i) % count).unwrap_or(0);
        if port % 2 == 1 || port == last {
            continue;
        }
        let bound = async {
            Ok::<_, std::io::Error>((UdpSocket::bind((ip, port)).await?, UdpSocket::bind((ip, port + 1)).await?))
        };
        match bound.await {
            Ok((rtp, rtcp)) => return Ok(MediaSockets { rtp, rtcp }),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::AddrInUse, "no RTP port pair free")))
}

/// The CNAME of our RTCP reports (RFC 3550 §6.5.1): one per worker process is enough to tie
/// a call's SR to its RTP stream.
const RTCP_CNAME: &str = "golos";

/// Per-process random bits without another dependency: std's hasher keys are random.
pub(super) fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(u64::from(std::process::id()));
    hasher.finish()
}

/// Why the media loop stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum MediaEnd {
    /// The call ended (`SessionOutput::End` or the link): this is its reason.
    Ended(String),
    /// Nothing came from the trunk for the media timeout.
    Timeout,
}

/// One call's RTP session.
pub(super) struct RtpMedia {
    socket: UdpSocket,
    rtcp: UdpSocket,
    /// Where our reports go: the RTP peer's address and port + 1 until the peer's own RTCP
    /// says otherwise.
    rtcp_peer: Option<SocketAddr>,
    /// The last round trip the peer's reports about our stream revealed.
    round_trip: Option<Duration>,
    codec: G711,
    /// The payload types the peer may send voice in (every common G.711).
    voice_types: Vec<u8>,
    telephone_event: Option<u8>,
    /// Where we send: the SDP's address until the peer's first packet says otherwise.
    peer: Option<SocketAddr>,
    latched: bool,
    /// The operator's egress exceptions: a first packet from an address the policy forbids
    /// (a forged source inside our network) is not latched onto.
    egress: golos_egress::EgressAllowlist,
    pipeline_rate: u32,
    /// No RTP for this long ends the call.
    media_timeout: Duration,
    /// True while the trunk holds the call: nothing is sent, and silence is not a timeout.
    on_hold: tokio::sync::watch::Receiver<bool>,
}

impl RtpMedia {
    pub(super) fn new(
        sockets: MediaSockets,
        negotiated: &Negotiated,
        egress: golos_egress::EgressAllowlist,
        pipeline_rate: u32,
        media_timeout: Duration,
    ) -> Self {
        Self {
            socket: sockets.rtp,
            rtcp: sockets.rtcp,
            rtcp_peer: negotiated.remote.map(|r| SocketAddr::new(r.ip(), r.port().wrapping_add(1))),
            round_trip: None,
            codec: negotiated.codec,
            voice_types: negotiated.codecs.iter().map(|c| c.payload_type()).collect(),
            telephone_event: negotiated.telephone_event,
            peer: negotiated.remote,
            latched: false,
            egress,
            pipeline_rate,
            media_timeout,
            on_hold: tokio::sync::watch::channel(false).1,
        }
    }

    /// Follows the trunk's holds (re-INVITEs) from `on_hold`.
    pub(super) fn on_hold_when(mut self, on_hold: tokio::sync::watch::Receiver<bool>) -> Self {
        self.on_hold = on_hold;
        self
    }

    /// Runs until the call ends or the trunk falls silent; the caller's frames go to the
    /// engine once it runs (before that, during the hold prompt, they are dropped).
    pub(super) async fn run(
        mut self,
        link: Arc<CallLink>,
        mut outputs: mpsc::Receiver<SessionOutput>,
        mut digits_out: mpsc::Receiver<String>,
    ) -> MediaEnd {
        let (Ok(mut up), Ok(mut down)) =
            (Resampler::new(CLOCK_RATE, self.pipeline_rate), Resampler::new(self.pipeline_rate, CLOCK_RATE))
        else {
            tracing::error!(rate = self.pipeline_rate, "no resampler between G.711 and the pipeline's rate");
            link.request_end(golos_call::EndReason::Failed);
            return MediaEnd::Ended("failed".into());
        };
        let mut jitter = JitterBuffer::new(JitterConfig::default());
        let mut digits = DtmfReceiver::default();
        let mut stats = ReceiveStats::new();
        let mut keypad = Keypad::default();
        let mut ticks: u32 = 0;
        let mut sender = Sender::new(self.codec);
        let mut tick = tokio::time::interval(FRAME_DURATION);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        let mut heard_any = false;
        // When the engine last got a frame of the caller's.
        let mut last_out = Instant::now();
        let mut buf = vec![0u8; DATAGRAM];
        let mut rtcp_buf = vec![0u8; DATAGRAM];
        let mut pcm_8k = vec![0i16; FRAME_SAMPLES];
        loop {
            tokio::select! {
                received = self.rtcp.recv_from(&mut rtcp_buf) => {
                    let Ok((len, from)) = received else { continue };
                    self.on_rtcp(&rtcp_buf[..len], from, sender.ssrc, &mut stats);
                }
                received = self.socket.recv_from(&mut buf) => {
                    let Ok((len, from)) = received else { continue };
                    if self.latched && Some(from) != self.peer {
                        // Once latched, only the peer's packets are the call's.
                        continue;
                    }
                    if len >= 2 && (200..=204).contains(&buf[1]) {
                        // RTCP multiplexed on the RTP port (RFC 5761).
                        self.on_rtcp(&buf[..len], from, sender.ssrc, &mut stats);
                        continue;
                    }
                    let Ok(packet) = RtpPacket::parse(&buf[..len]) else { continue };
                    let pt = packet.header.payload_type;
                    if self.telephone_event == Some(pt) {
                        if let Ok(Some(digit)) = digits.receive(&packet.header, packet.payload) {
                            if let Some(handle) = link.handle.get() {
                                handle.input(OwnedInput::Dtmf { digit });
                            }
                        }
                    } else if self.voice_types.contains(&pt) {
                        let arrival = std::time::Instant::now();
                        stats.on_packet(&packet.header, arrival);
                        jitter.push(&packet, arrival);
                        // The caller's audio goes to speech recognition, not a loudspeaker:
                        // in order is enough, no playout delay.
                        while let Some(frame) = jitter.pop_arrived() {
                            deliver(&link, &mut up, &frame.samples);
                            last_out = Instant::now();
                        }
                    } else {
                        // Comfort noise, anything else.
                        continue;
                    }
                    if !self.latched {
                        let ip = from.ip().to_canonical();
                        if golos_egress::classify(ip).is_some() && !self.egress.allows_ip(ip) {
                            continue;
                        }
                        self.peer = Some(from);
                        self.latched = true;
                    }
                    last_heard = Instant::now();
                    heard_any = true;
                }
                Some(keys) = digits_out.recv() => {
                    if self.telephone_event.is_some() {
                        keypad.queue(&keys);
                    } else {
                        tracing::info!(call = %link.call_id, "key presses not sent: the trunk did not offer telephone-event");
                    }
                }
                _ = tick.tick() => {
                    ticks = ticks.wrapping_add(1);
                    if ticks.is_multiple_of(QUALITY_REPORT_EVERY) {
                        self.send_rtcp(&sender, &mut stats).await;
                        link.report_line("media", quality_report(&stats, &jitter, self.round_trip));
                    }
                    if !*link.started.borrow() || *self.on_hold.borrow() {
                        // Held in line: trunks often send nothing before the answer, and the
                        // wait may be minutes. The timeout counts from the answer. A trunk's
                        // own hold (re-INVITE) stops its stream too: paused until released.
                        last_heard = Instant::now();
                    }
                    if last_heard.elapsed() >= self.media_timeout {
                        tracing::info!(call = %link.call_id, "no RTP from the trunk for the media timeout; ending the call");
                        link.report_line("media", quality_report(&stats, &jitter, self.round_trip));
                        link.request_end(golos_call::EndReason::Failed);
                        return MediaEnd::Timeout;
                    }
                    if let (Some(pt), Some(peer)) = (self.telephone_event, self.peer) {
                        for packet in keypad.due(Instant::now(), pt, &mut sender) {
                            if let Err(error) = self.socket.send_to(&packet, peer).await {
                                tracing::debug!(%error, "a key press packet could not be sent");
                            }
                        }
                    }
                    // Frames go to the engine as they arrive in order (below); the clock only
                    // fills a gap: once none has come for `GAP_BEFORE_CONCEALING`, one frame per
                    // tick (a concealment, silence, or the frames after a lost one).
                    if !heard_any || last_out.elapsed() < GAP_BEFORE_CONCEALING {
                        continue;
                    }
                    let frame = jitter.pop(std::time::Instant::now());
                    deliver(&link, &mut up, &frame.samples);
                    while let Some(frame) = jitter.pop_arrived() {
                        deliver(&link, &mut up, &frame.samples);
                    }
                    // The next tick fills again unless a packet comes first.
                    last_out = Instant::now().checked_sub(GAP_REFILL_BACKDATE).unwrap_or_else(Instant::now);
                }
                output = outputs.recv() => match output {
                    Some(SessionOutput::Audio(frame)) => {
                        if down.process_into(&frame, &mut pcm_8k).is_ok() {
                            self.send_voice(&mut sender, &pcm_8k).await;
                        }
                    }
                    Some(SessionOutput::Clear) => {
                        // Barge-in: what the engine queued for the caller is not said.
                        while let Ok(next) = outputs.try_recv() {
                            if let SessionOutput::End { reason } = next {
                                return MediaEnd::Ended(reason);
                            }
                        }
                        down.reset();
                        sender.talkspurt();
                    }
                    Some(SessionOutput::End { reason }) => {
                        link.report_line("media", quality_report(&stats, &jitter, self.round_trip));
                        return MediaEnd::Ended(reason);
                    }
                    Some(SessionOutput::Mark(_) | SessionOutput::Event(_)) => {}
                    None => return MediaEnd::Ended("closed".into()),
                },
                () = link.wait_ended() => {
                    link.report_line("media", quality_report(&stats, &jitter, self.round_trip));
                    // `End` did not fit the queue: play out what is queued, paced, then stop.
                    while let Ok(next) = outputs.try_recv() {
                        match next {
                            SessionOutput::Audio(frame) => {
                                if down.process_into(&frame, &mut pcm_8k).is_ok() {
                                    self.send_voice(&mut sender, &pcm_8k).await;
                                }
                                tokio::time::sleep(FRAME_DURATION).await;
                            }
                            SessionOutput::End { reason } => return MediaEnd::Ended(reason),
                            _ => {}
                        }
                    }
                    let reason = link.reason().map_or("ended", |r| r.as_str());
                    return MediaEnd::Ended(reason.to_owned());
                }
            }
        }
    }

    /// A compound RTCP packet from the peer: its SR's time for our next report's LSR/DLSR, and
    /// the round trip its report blocks about our stream reveal. Only from the RTP peer's
    /// address (its RTCP port is latched from the first one).
    fn on_rtcp(&mut self, bytes: &[u8], from: SocketAddr, our_ssrc: u32, stats: &mut ReceiveStats) {
        if self.peer.is_none_or(|peer| peer.ip() != from.ip()) {
            return;
        }
        self.rtcp_peer = Some(from);
        let Ok(packets) = rtcp::parse_compound(bytes) else { return };
        let now = std::time::Instant::now();
        let arrival =
            NtpTime::from_unix(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default());
        for packet in &packets {
            let blocks = match packet {
                RtcpPacket::SenderReport(report) => {
                    stats.on_sender_report(report, now);
                    &report.reports
                }
                RtcpPacket::ReceiverReport(report) => &report.reports,
                RtcpPacket::Bye(_) => continue,
            };
            for block in blocks.iter().filter(|b| b.ssrc == our_ssrc) {
                if let Some(round_trip) = round_trip_time(block, arrival) {
                    self.round_trip = Some(round_trip);
                }
            }
        }
    }

    /// Our periodic report (RFC 3550 §6.4): an SR once we have sent audio (else an RR), with a
    /// report block about the peer's stream and our CNAME.
    async fn send_rtcp(&self, sender: &Sender, stats: &mut ReceiveStats) {
        let Some(peer) = self.rtcp_peer else { return };
        let block = stats.report_block(std::time::Instant::now());
        let reports: Vec<ReportBlock> = block.into_iter().collect();
        let packet = if sender.packets > 0 {
            let ntp_time = NtpTime::from_unix(
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default(),
            );
            RtcpPacket::SenderReport(SenderReport {
                ssrc: sender.ssrc,
                ntp_time,
                rtp_timestamp: sender.clock_timestamp(),
                packet_count: sender.packets,
                octet_count: sender.octets,
                reports,
            })
        } else {
            RtcpPacket::ReceiverReport(ReceiverReport { ssrc: sender.ssrc, reports })
        };
        let mut out = Vec::with_capacity(128);
        if packet.write(&mut out).is_err() || rtcp::write_source_description(sender.ssrc, RTCP_CNAME, &mut out).is_err()
        {
            return;
        }
        if let Err(error) = self.rtcp.send_to(&out, peer).await {
            tracing::debug!(%error, "an RTCP report could not be sent");
        }
    }

    async fn send_voice(&self, sender: &mut Sender, pcm_8k: &[i16]) {
        let Some(peer) = self.peer else { return };
        // On hold the trunk asked for no media from us (RFC 3264 `recvonly`/`inactive`). The
        // sequence stays unbroken and the timestamp follows the clock, so the stream resumes
        // as a new talkspurt, not as loss.
        if *self.on_hold.borrow() {
            return;
        }
        let packet = sender.packet(pcm_8k);
        if let Err(error) = self.socket.send_to(&packet, peer).await {
            tracing::debug!(%error, "an RTP packet could not be sent");
        }
    }
}

/// The line's quality as the call record shows it: what was lost and late on the way to us,
/// and the E-model's MOS for it (one-way delay unknown without RTCP round trips: taken as
/// the jitter buffer's delay alone).
fn quality_report(stats: &ReceiveStats, jitter: &JitterBuffer, round_trip: Option<Duration>) -> serde_json::Value {
    let counters = jitter.counters();
    let loss = stats.loss_ratio().clamp(0.0, 1.0);
    let one_way_delay = jitter.target_delay() + round_trip.map_or(Duration::ZERO, |rtt| rtt / 2);
    let inputs = QualityInputs { one_way_delay, jitter: stats.jitter(), loss };
    serde_json::json!({
        "packets_received": stats.received(),
        "packets_lost": stats.lost().max(0),
        "loss_ratio": (loss * 10_000.0).round() / 10_000.0,
        "jitter_ms": (stats.jitter().as_secs_f64() * 10_000.0).round() / 10.0,
        "concealed_frames": counters.concealed_frames,
        "late_packets": counters.late_packets,
        "round_trip_ms": round_trip.map(|rtt| (rtt.as_secs_f64() * 10_000.0).round() / 10.0),
        "mos": (mos(inputs) * 100.0).round() / 100.0,
    })
}

/// Key presses waiting to go out as RFC 4733 events, one digit at a time.
#[derive(Default)]
struct Keypad {
    queued: VecDeque<char>,
    /// The digit being sent: its packets (sequence numbers given at sending) and when its
    /// press began.
    sending: Option<(VecDeque<TimedEventPacket>, Instant)>,
    next_key_at: Option<Instant>,
}

impl Keypad {
    /// Most keys waiting at once; more are dropped (the engine sends at most 32 per call of
    /// its tool).
    const MAX_QUEUED: usize = 64;

    fn queue(&mut self, keys: &str) {
        for key in keys.chars() {
            if self.queued.len() < Self::MAX_QUEUED {
                self.queued.push_back(key);
            }
        }
    }

    /// The packets due by `now`, encoded on the voice stream's SSRC and sequence.
    fn due(&mut self, now: Instant, payload_type: u8, sender: &mut Sender) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        if self.sending.is_none() && self.next_key_at.is_none_or(|at| now >= at) {
            while let Some(key) = self.queued.pop_front() {
                let sending = DigitSending {
                    payload_type,
                    ssrc: sender.ssrc,
                    first_sequence: 0,
                    timestamp: sender.clock_timestamp(),
                    duration: KEY_PRESS,
                    volume: KEY_VOLUME,
                };
                if let Ok(packets) = encode_digit(key, sending) {
                    self.sending = Some((packets.into(), now));
                    break;
                }
            }
        }
        let Some((packets, started)) = &mut self.sending else { return out };
        while packets.front().is_some_and(|p| now >= *started + p.send_after) {
            let Some(mut packet) = packets.pop_front() else { break };
            packet.header.sequence = sender.next_sequence();
            let payload = packet.event.to_bytes();
            let rtp = RtpPacket { header: packet.header, extension: None, payload: &payload };
            out.extend(rtp.to_vec().ok());
        }
        if packets.is_empty() {
            self.sending = None;
            self.next_key_at = Some(now + KEY_GAP);
            // The voice after the key press starts a new talkspurt.
            sender.talkspurt();
        }
        out
    }
}

/// Our outbound stream's SSRC, sequence and timestamp.
struct Sender {
    codec: G711,
    ssrc: u32,
    sequence: u16,
    /// The timestamp of the next packet when sent without a pause.
    timestamp: u32,
    /// The wall clock of the stream's timestamp zero, so a pause in the agent's speech
    /// advances the timestamp as RFC 3550 asks (the receiver's jitter estimate reads it).
    epoch: Instant,
    base: u32,
    marker: bool,
    /// Sent so far, for our sender reports (RFC 3550 §6.4.1: payload octets only).
    packets: u32,
    octets: u32,
}

impl Sender {
    fn new(codec: G711) -> Self {
        let random = random_u64();
        let base = (random >> 32) as u32;
        Self {
            codec,
            ssrc: random as u32,
            sequence: (random >> 16) as u16,
            timestamp: base,
            epoch: Instant::now(),
            base,
            marker: true,
            packets: 0,
            octets: 0,
        }
    }

    /// The next packet starts a talkspurt (marker bit, RFC 3551 §4.1).
    fn talkspurt(&mut self) {
        self.marker = true;
    }

    /// The stream's timestamp for this moment by the wall clock.
    fn clock_timestamp(&self) -> u32 {
        let elapsed = u32::try_from(self.epoch.elapsed().as_millis() * u128::from(CLOCK_RATE / 1000)).unwrap_or(0);
        self.base.wrapping_add(elapsed)
    }

    fn next_sequence(&mut self) -> u16 {
        let sequence = self.sequence;
        self.sequence = self.sequence.wrapping_add(1);
        sequence
    }

    fn packet(&mut self, pcm_8k: &[i16]) -> Vec<u8> {
        let by_clock = self.clock_timestamp();
        // After a pause the clock is ahead of the last packet: a new talkspurt.
        let ahead = by_clock.wrapping_sub(self.timestamp);
        if ahead < u32::MAX / 2 && ahead > 2 * FRAME_SAMPLES as u32 {
            self.timestamp = by_clock;
            self.marker = true;
        }
        let payload: Vec<u8> = pcm_8k.iter().map(|&s| self.codec.encode(s)).collect();
        let header = RtpHeader {
            marker: self.marker,
            payload_type: self.codec.payload_type(),
            sequence: self.sequence,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
            csrcs: Vec::new(),
        };
        self.marker = false;
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(pcm_8k.len() as u32);
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload.len() as u32);
        let packet = RtpPacket { header, extension: None, payload: &payload };
        packet.to_vec().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_follow_on_in_sequence_and_timestamp() {
        let mut sender = Sender::new(G711::Pcma);
        let first = sender.packet(&[0; FRAME_SAMPLES]);
        let second = sender.packet(&[0; FRAME_SAMPLES]);
        let (a, b) = (RtpPacket::parse(&first).unwrap(), RtpPacket::parse(&second).unwrap());
        assert!(a.header.marker && !b.header.marker);
        assert_eq!(a.header.payload_type, 8);
        assert_eq!(b.header.sequence, a.header.sequence.wrapping_add(1));
        assert_eq!(b.header.timestamp, a.header.timestamp.wrapping_add(FRAME_SAMPLES as u32));
        assert_eq!(a.header.ssrc, b.header.ssrc);
        assert_eq!(a.payload.len(), FRAME_SAMPLES);
    }

    #[tokio::test]
    async fn an_rtp_port_is_found_in_the_range() {
        let sockets = bind_rtp([127, 0, 0, 1].into(), &(40_000..=40_099)).await.unwrap();
        let port = sockets.rtp.local_addr().unwrap().port();
        assert!((40_000..=40_099).contains(&port) && port % 2 == 0, "{port}");
        assert_eq!(sockets.rtcp.local_addr().unwrap().port(), port + 1);
    }
}
