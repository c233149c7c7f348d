//! An adaptive jitter buffer for 20 ms G.711 frames at 8 kHz. The transport pushes packets
//! as they arrive. A loudspeaker's 20 ms pacer pops one frame per tick and always gets 20 ms
//! of audio: the frame that is due, a concealment of a lost one, or silence. A consumer that
//! is not a loudspeaker (speech recognition) takes frames as soon as they are in order with
//! `pop_arrived`, and calls `pop` only to get past a gap.
//!
//! Playout follows sequence numbers (our SDP answer asks for `ptime:20`), so timestamp jumps
//! of silence suppression cost nothing and timestamps matter only to the jitter estimate.
//! The delay grows when the buffer runs dry (the pacer conceals while it waits) and shrinks
//! when more than the target is queued (a queued frame is dropped), within min..=max of
//! the config; the target follows the RFC 3550 jitter estimate.

use crate::rtp::RtpPacket;
use crate::stats::InterarrivalJitter;
use crate::{FRAME_DURATION, FRAME_SAMPLES, G711};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Packets held at most, so a hostile peer cannot grow the buffer; also how far ahead
    /// of playout a packet may be before it counts as a jump.
    pub max_packets: usize,
    /// Lost frames replaced by the last one, fading, before silence.
    pub concealment_frames: u32,
}

impl Default for JitterConfig {
    fn default() -> Self {
        Self {
            min_delay: FRAME_DURATION,
            max_delay: Duration::from_millis(200),
            max_packets: 50,
            concealment_frames: 3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// Decoded from the packet that was due.
    Received,
    /// The last received frame again, attenuated, in place of a missing one.
    Concealed,
    /// Nothing to play: before the stream, after long loss, while buffering.
    Silence,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: FrameKind,
    pub samples: [i16; FRAME_SAMPLES],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    Queued,
    /// Queued after dropping everything of the previous SSRC.
    QueuedForNewSource,
    /// Queued after a confirmed jump of the sequence (the sender restarted it).
    QueuedAfterJump,
    Duplicate,
    /// Its frame was already played or concealed.
    Late,
    /// Too far ahead of playout; a second packet in sequence after it confirms a jump.
    TooFarAhead,
    /// Not G.711 (telephone-events and comfort noise are routed elsewhere by the caller).
    UnsupportedPayloadType(u8),
}

/// What happened to the packets and frames, for the call's quality metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JitterCounters {
    pub received_frames: u64,
    pub concealed_frames: u64,
    pub silent_frames: u64,
    pub late_packets: u64,
    pub duplicate_packets: u64,
    /// Queued frames dropped to bring the delay back to its target.
    pub dropped_for_delay: u64,
}

#[derive(Debug, Clone)]
struct Held {
    codec: G711,
    payload: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct JitterBuffer {
    config: JitterConfig,
    ssrc: Option<u32>,
    /// By extended sequence number; keys stay within `max_packets` of `next`.
    held: BTreeMap<u64, Held>,
    /// The extended sequence of the frame due at the next pop.
    next: Option<u64>,
    last_played: Option<u64>,
    playing: bool,
    /// When the first packet of the current buffering phase arrived.
    buffering_since: Option<Instant>,
    jump_candidate: Option<u16>,
    jitter: InterarrivalJitter,
    last_frame: [i16; FRAME_SAMPLES],
    concealed_in_a_row: u32,
    counters: JitterCounters,
}

/// Extended sequence numbers start mid-range so unwrapping backwards never underflows.
const FIRST_EXTENDED: u64 = 1 << 32;
/// Queued frames beyond the target before one is dropped, so the delay does not hunt.
const HYSTERESIS_FRAMES: u64 = 2;
/// Playout targets this many times the interarrival jitter (a mean deviation) above one
/// frame: enough for nearly all arrivals of a roughly normal spread.
const JITTER_MULTIPLIER: u32 = 3;

impl JitterBuffer {
    pub fn new(config: JitterConfig) -> Self {
        let config = JitterConfig {
            max_packets: config.max_packets.max(1),
            max_delay: config.max_delay.max(config.min_delay),
            ..config
        };
        Self {
            config,
            ssrc: None,
            held: BTreeMap::new(),
            next: None,
            last_played: None,
            playing: false,
            buffering_since: None,
            jump_candidate: None,
            jitter: InterarrivalJitter::default(),
            last_frame: [0; FRAME_SAMPLES],
            concealed_in_a_row: 0,
            counters: JitterCounters::default(),
        }
    }

    /// Drops the stream (keeping the counters), as on a new SSRC.
    pub fn reset(&mut self) {
        let counters = self.counters;
        *self = Self::new(self.config);
        self.counters = counters;
    }

    pub fn push(&mut self, packet: &RtpPacket<'_>, arrival: Instant) -> PushOutcome {
        let Some(codec) = G711::from_payload_type(packet.header.payload_type) else {
            return PushOutcome::UnsupportedPayloadType(packet.header.payload_type);
        };
        let mut outcome = PushOutcome::Queued;
        if self.ssrc.is_some_and(|ssrc| ssrc != packet.header.ssrc) {
            self.reset();
            outcome = PushOutcome::QueuedForNewSource;
        }
        self.ssrc = Some(packet.header.ssrc);
        let sequence = packet.header.sequence;
        let extended = match self.next {
            None => FIRST_EXTENDED + u64::from(sequence),
            Some(next) => next.wrapping_add_signed(i64::from(sequence.wrapping_sub(next as u16) as i16)),
        };
        let window = self.config.max_packets as u64;
        match self.next {
            Some(next) if extended >= next + window => {
                if self.jump_candidate != Some(sequence) {
                    self.jump_candidate = Some(sequence.wrapping_add(1));
                    return PushOutcome::TooFarAhead;
                }
                self.held.clear();
                self.last_played = None;
                self.restart_at(extended, arrival);
                outcome = PushOutcome::QueuedAfterJump;
            }
            _ => {}
        }
        self.jitter.update(packet.header.timestamp, arrival);
        if self.last_played.is_some_and(|played| extended <= played) {
            self.counters.late_packets += 1;
            return PushOutcome::Late;
        }
        match self.next {
            None => self.restart_at(extended, arrival),
            Some(_) if !self.playing && self.held.is_empty() => self.restart_at(extended, arrival),
            Some(next) if extended < next => {
                if self.playing || next - extended >= window {
                    self.counters.late_packets += 1;
                    return PushOutcome::Late;
                }
                // Still buffering: an earlier packet arrived after a later one.
                self.next = Some(extended);
                self.held.retain(|&key, _| key < extended + window);
            }
            Some(_) => {}
        }
        if self.held.contains_key(&extended) {
            self.counters.duplicate_packets += 1;
            return PushOutcome::Duplicate;
        }
        let payload = packet.payload[..packet.payload.len().min(FRAME_SAMPLES)].to_vec();
        self.held.insert(extended, Held { codec, payload });
        self.jump_candidate = None;
        outcome
    }

    fn restart_at(&mut self, extended: u64, arrival: Instant) {
        self.next = Some(extended);
        self.playing = false;
        self.buffering_since = Some(arrival);
    }

    /// The next 20 ms to play at `now`.
    pub fn pop(&mut self, now: Instant) -> Frame {
        let Some(next) = self.next else { return self.silence() };
        if !self.playing {
            let due = self.buffering_since.is_some_and(|since| now >= since + self.target_delay());
            if self.held.is_empty() || !due {
                return self.silence();
            }
            self.playing = true;
        }
        let next = self.shrink_to_target(next);
        if let Some(held) = self.held.remove(&next) {
            return self.play(next, &held);
        }
        if self.held.is_empty() {
            // Dry: after the concealment runs out, buffer again from the next arrival.
            if self.concealed_in_a_row >= self.config.concealment_frames {
                self.playing = false;
                self.buffering_since = None;
                return self.silence();
            }
        } else if self.queued_frames() >= self.target_frames() {
            // As much as the target is queued behind the missing frame: it is lost.
            self.next = Some(next + 1);
            self.last_played = Some(next);
        }
        // Otherwise wait for the missing frame while concealing, which is how the delay
        // grows toward a target that rose with the jitter.
        self.conceal()
    }

    /// The next frame if it has arrived, at once: for a consumer that is not a loudspeaker
    /// (speech recognition wants the caller's audio as soon as it is in order, not on a
    /// playout clock). Reordering is still undone; a missing frame stops it, and `pop` (on
    /// the consumer's clock, once the gap has lasted) conceals or skips it.
    pub fn pop_arrived(&mut self) -> Option<Frame> {
        let next = self.next?;
        let held = self.held.remove(&next)?;
        self.playing = true;
        Some(self.play(next, &held))
    }

    fn play(&mut self, next: u64, held: &Held) -> Frame {
        self.next = Some(next + 1);
        self.last_played = Some(next);
        let mut samples = [0; FRAME_SAMPLES];
        for (sample, &byte) in samples.iter_mut().zip(&held.payload) {
            *sample = held.codec.decode(byte);
        }
        self.last_frame = samples;
        self.concealed_in_a_row = 0;
        self.counters.received_frames += 1;
        Frame { kind: FrameKind::Received, samples }
    }

    /// Skips missing frames, then drops queued ones, while more than the target is queued.
    fn shrink_to_target(&mut self, mut next: u64) -> u64 {
        let target_frames = self.target_frames();
        while let Some((&last, _)) = self.held.last_key_value() {
            if last + 1 - next <= target_frames + HYSTERESIS_FRAMES {
                break;
            }
            if self.held.remove(&next).is_some() {
                self.counters.dropped_for_delay += 1;
                self.last_played = Some(next);
                next += 1;
                // One audible drop per frame played, no more.
                break;
            }
            next += 1;
        }
        self.next = Some(next);
        next
    }

    fn conceal(&mut self) -> Frame {
        self.concealed_in_a_row += 1;
        let limit = self.config.concealment_frames;
        if self.concealed_in_a_row > limit {
            return self.silence();
        }
        // Linear fade: with 3 frames, 3/4, 2/4, 1/4 of the last frame.
        let gain = f32::from((limit + 1 - self.concealed_in_a_row) as u16) / f32::from((limit + 1) as u16);
        let samples = self.last_frame.map(|sample| (f32::from(sample) * gain) as i16);
        self.counters.concealed_frames += 1;
        Frame { kind: FrameKind::Concealed, samples }
    }

    fn silence(&mut self) -> Frame {
        self.counters.silent_frames += 1;
        Frame { kind: FrameKind::Silence, samples: [0; FRAME_SAMPLES] }
    }

    /// The playout delay aimed at: one frame plus three times the jitter, within the config.
    pub fn target_delay(&self) -> Duration {
        (FRAME_DURATION + self.jitter.duration() * JITTER_MULTIPLIER)
            .clamp(self.config.min_delay, self.config.max_delay)
    }

    fn target_frames(&self) -> u64 {
        self.target_delay().as_nanos().div_ceil(FRAME_DURATION.as_nanos()) as u64
    }

    /// Audio queued ahead of playout, gaps included.
    pub fn queued(&self) -> Duration {
        FRAME_DURATION * self.queued_frames() as u32
    }

    fn queued_frames(&self) -> u64 {
        match (self.next, self.held.last_key_value()) {
            (Some(next), Some((&last, _))) => (last + 1).saturating_sub(next),
            _ => 0,
        }
    }

    pub fn held_packets(&self) -> usize {
        self.held.len()
    }

    pub fn jitter(&self) -> Duration {
        self.jitter.duration()
    }

    pub fn counters(&self) -> JitterCounters {
        self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::RtpHeader;
    use proptest::prelude::*;

    const TICK: Duration = FRAME_DURATION;

    /// A PCMA packet whose every byte is `fill`, so the frame it becomes is recognisable.
    fn packet(sequence: u16, timestamp: u32, fill: u8, payload: &mut Vec<u8>) -> RtpPacket<'_> {
        payload.clear();
        payload.resize(FRAME_SAMPLES, fill);
        let header = RtpHeader { payload_type: 8, sequence, timestamp, ssrc: 1, ..RtpHeader::default() };
        RtpPacket { header, extension: None, payload }
    }

    /// Pushes with a constant timestamp: packets pushed at one instant then show no jitter,
    /// so the target stays at the minimum and the order tests see only the order.
    fn push(buffer: &mut JitterBuffer, sequence: u16, fill: u8, at: Instant) -> PushOutcome {
        let mut payload = Vec::new();
        buffer.push(&packet(sequence, 0, fill, &mut payload), at)
    }

    fn fill_of(frame: &Frame) -> Option<u8> {
        (frame.kind == FrameKind::Received).then(|| (0..=255).find(|&b| G711::Pcma.decode(b) == frame.samples[0]))?
    }

    #[test]
    fn arrived_frames_come_out_at_once_in_order_and_a_gap_is_left_to_pop() {
        let mut buffer = JitterBuffer::new(JitterConfig::default());
        let t0 = Instant::now();
        push(&mut buffer, 10, 1, t0);
        assert_eq!(buffer.pop_arrived().as_ref().and_then(fill_of), Some(1), "no playout delay");
        assert!(buffer.pop_arrived().is_none());
        // 12 before 11: held until 11 arrives, then both in order.
        push(&mut buffer, 12, 3, t0 + TICK);
        assert!(buffer.pop_arrived().is_none());
        push(&mut buffer, 11, 2, t0 + TICK);
        let out: Vec<_> = std::iter::from_fn(|| buffer.pop_arrived()).map(|f| fill_of(&f)).collect();
        assert_eq!(out, [Some(2), Some(3)]);
        // 13 is lost: 14 and 15 wait; the consumer's clock calls `pop`, which gives up on 13
        // (concealing it) once enough is queued, and the rest come out at once.
        push(&mut buffer, 14, 5, t0 + TICK * 3);
        push(&mut buffer, 15, 6, t0 + TICK * 4);
        assert!(buffer.pop_arrived().is_none());
        assert_eq!(buffer.pop(t0 + TICK * 5).kind, FrameKind::Concealed);
        let out: Vec<_> = std::iter::from_fn(|| buffer.pop_arrived()).map(|f| fill_of(&f)).collect();
        assert_eq!(out, [Some(5), Some(6)]);
        assert_eq!(buffer.counters().received_frames, 5);
    }

    #[test]
    fn plays_in_sequence_order_after_the_initial_delay() {
        let start = Instant::now();
        let mut buffer = JitterBuffer::new(JitterConfig::default());
        for (sequence, fill) in [(10, 10), (12, 12), (11, 11)] {
            assert_eq!(push(&mut buffer, sequence, fill, start), PushOutcome::Queued);
        }
        assert_eq!(buffer.pop(start).kind, FrameKind::Silence, "the first frame waits for the min delay");
        let played: Vec<_> = (1..=3).map(|i| fill_of(&buffer.pop(start + TICK * i))).collect();
        assert_eq!(played, vec![Some(10), Some(11), Some(12)]);
    }

    #[test]
    fn decodes_through_golos_audio() {
        let start = Instant::now();
        let mut buffer = JitterBuffer::new(JitterConfig::default());
        let payload: Vec<u8> = (0..160).map(|i| i as u8).collect();
        let header = RtpHeader { payload_type: 0, sequence: 1, ssrc: 1, ..RtpHeader::default() };
        buffer.push(&RtpPacket { header, extension: None, payload: &payload }, start);
        let frame = buffer.pop(start + TICK);
        assert_eq!(frame.samples.to_vec(), golos_audio::g711::mulaw_decode_all(&payload));
    }

    #[test]
    fn duplicates_and_late_packets_are_refused_and_counted() {
        let start = Instant::now();
        let mut buffer = JitterBuffer::new(JitterConfig::default());
        push(&mut buffer, 1, 1, start);
        assert_eq!(push(&mut buffer, 1, 1, start), PushOutcome::Duplicate);
        push(&mut buffer, 2, 2, start);
        assert_eq!(fill_of(&buffer.pop(start + TICK)), Some(1));
        assert_eq!(push(&mut buffer, 1, 1, start + TICK), PushOutcome::Late);
        assert_eq!(buffer.counters().duplicate_packets, 1);
        assert_eq!(buffer.counters().late_packets, 1);
    }

    #[test]
    fn a_lost_frame_is_concealed_once_the_next_is_queued() {
        let start = Instant::now();
        let mut buffer = JitterBuffer::new(JitterConfig::default());
        push(&mut buffer, 1, 1, start);
        push(&mut buffer, 2, 2, start);
        assert_eq!(fill_of(&buffer.pop(start + TICK)), Some(1));
        push(&mut buffer, 4, 4, start + TICK);
        assert_eq!(fill_of(&buffer.pop(start + TICK * 2)), Some(2));
        assert_eq!(buffer.pop(start + TICK * 3).kind, FrameKind::Concealed);
        assert_eq!(fill_of(&buffer.pop(start + TICK * 4)), Some(4));
        assert_eq!(push(&mut buffer, 3, 3, start + TICK * 4), PushOutcome::Late);
    }

    #[test]
    fn concealment_repeats_the_last_frame_fading_then_falls_silent() {
        let start = Instant::now();
        let config = JitterConfig { concealment_frames: 3, ..JitterConfig::default() };
        let mut buffer = JitterBuffer::new(config);
        push(&mut buffer, 1, 0xAA, start);
        let first = buffer.pop(start + TICK);
        assert_eq!(first.kind, FrameKind::Received);
        let frames: Vec<Frame> = (2..=6).map(|i| buffer.pop(start + TICK * i)).collect();
        let kinds: Vec<FrameKind> = frames.iter().map(|f| f.kind).collect();
        use FrameKind::{Concealed, Silence};
        assert_eq!(kinds, vec![Concealed, Concealed, Concealed, Silence, Silence]);
        let original = i32::from(first.samples[0]);
        let faded: Vec<i32> = frames[..3].iter().map(|f| i32::from(f.samples[0])).collect();
        assert_eq!(faded, vec![original * 3 / 4, original / 2, original / 4]);
        assert_eq!(buffer.counters().concealed_frames, 3);
    }

    #[test]
    fn sequence_numbers_wrap_at_65535() {
        let start = Instant::now();
        let mut buffer = JitterBuffer::new(JitterConfig::default());
        for (sequence, fill) in [(65_534, 1), (0, 3)] {
            assert_eq!(push(&mut buffer, sequence, fill, start), PushOutcome::Queued);
        }
        let mut played = vec![fill_of(&buffer.pop(start + TICK))];
        for (sequence, fill) in [(65_535, 2), (1, 4)] {
            assert_eq!(push(&mut buffer, sequence, fill, start + TICK), PushOutcome::Queued);
        }
        played.extend((2..=4).map(|i| fill_of(&buffer.pop(start + TICK * i))));
        assert_eq!(played, vec![Some(1), Some(2), Some(3), Some(4)]);
    }

    #[test]
    fn a_new_ssrc_resets_the_stream() {
        let start = Instant::now();
        let mut buffer = JitterBuffer::new(JitterConfig::default());
        push(&mut buffer, 100, 1, start);
        push(&mut buffer, 101, 2, start);
        let mut payload = Vec::new();
        let mut other = packet(7, 0, 9, &mut payload);
        other.header.ssrc = 2;
        assert_eq!(buffer.push(&other, start), PushOutcome::QueuedForNewSource);
        assert_eq!(buffer.held_packets(), 1);
        assert_eq!(fill_of(&buffer.pop(start + TICK)), Some(9));
    }

    #[test]
    fn a_sequence_jump_is_followed_once_the_next_packet_confirms_it() {
        let start = Instant::now();
        let mut buffer = JitterBuffer::new(JitterConfig::default());
        push(&mut buffer, 1, 1, start);
        assert_eq!(push(&mut buffer, 30_000, 2, start), PushOutcome::TooFarAhead);
        assert_eq!(push(&mut buffer, 30_001, 3, start), PushOutcome::QueuedAfterJump);
        assert_eq!(fill_of(&buffer.pop(start + TICK)), Some(3));
    }

    #[test]
    fn after_the_concealment_runs_dry_the_next_talk_spurt_is_buffered_again() {
        let start = Instant::now();
        let mut buffer = JitterBuffer::new(JitterConfig::default());
        push(&mut buffer, 1, 1, start);
        assert_eq!(buffer.pop(start + TICK).kind, FrameKind::Received);
        for i in 2..=10 {
            buffer.pop(start + TICK * i);
        }
        let resumed = start + TICK * 10;
        let mut payload = Vec::new();
        buffer.push(&packet(40, 10 * 160, 40, &mut payload), resumed);
        assert_eq!(buffer.pop(resumed).kind, FrameKind::Silence);
        assert_eq!(fill_of(&buffer.pop(resumed + TICK)), Some(40));
    }

    /// Plays a stream whose packet i arrives at i·20 ms + `lateness(i)`, popping every 20 ms;
    /// returns the buffer and the fills played.
    fn play(count: u16, lateness: impl Fn(u16) -> Duration, config: JitterConfig) -> (JitterBuffer, Vec<u8>) {
        let start = Instant::now();
        let mut arrivals: Vec<(Instant, u16)> =
            (0..count).map(|i| (start + TICK * u32::from(i) + lateness(i), i)).collect();
        arrivals.sort();
        let mut buffer = JitterBuffer::new(config);
        let mut played = Vec::new();
        let mut arrivals = arrivals.into_iter().peekable();
        for tick in 0..u32::from(count) + 40 {
            let now = start + TICK * tick + Duration::from_millis(1);
            while let Some((_, sequence)) = arrivals.next_if(|(at, _)| *at <= now) {
                let mut payload = Vec::new();
                buffer.push(&packet(sequence, u32::from(sequence) * 160, sequence as u8, &mut payload), now);
            }
            played.extend(fill_of(&buffer.pop(now)));
        }
        (buffer, played)
    }

    #[test]
    fn a_steady_stream_keeps_the_minimum_delay_and_loses_nothing() {
        let (buffer, played) = play(200, |_| Duration::ZERO, JitterConfig::default());
        assert_eq!(buffer.target_delay(), FRAME_DURATION);
        assert_eq!(played, (0..200u16).map(|i| i as u8).collect::<Vec<_>>());
    }

    #[test]
    fn jittery_arrivals_grow_the_delay_and_stay_within_the_maximum() {
        let (buffer, played) =
            play(200, |i| Duration::from_millis(if i % 3 == 0 { 50 } else { 0 }), JitterConfig::default());
        assert!(buffer.target_delay() >= Duration::from_millis(80), "{:?}", buffer.target_delay());
        assert!(played.len() >= 190, "{} of 200 played", played.len());
        let wild = play(100, |i| Duration::from_millis(u64::from(i % 2) * 900), JitterConfig::default()).0;
        assert_eq!(wild.target_delay(), Duration::from_millis(200));
    }

    proptest! {
        #[test]
        fn hostile_packets_never_panic_nor_exceed_the_cap(
            events in proptest::collection::vec((any::<u16>(), any::<u32>(), 0u8..3, 0u64..100_000, any::<bool>()), 1..400),
        ) {
            let start = Instant::now();
            let config = JitterConfig { max_packets: 16, ..JitterConfig::default() };
            let mut buffer = JitterBuffer::new(config);
            let mut payload = vec![0u8; 400];
            for (sequence, timestamp, ssrc, at_us, pop) in events {
                let now = start + Duration::from_micros(at_us);
                if pop {
                    buffer.pop(now);
                } else {
                    let header = RtpHeader { payload_type: 8, sequence, timestamp, ssrc: u32::from(ssrc), ..RtpHeader::default() };
                    payload.truncate(usize::from(sequence % 400));
                    buffer.push(&RtpPacket { header, extension: None, payload: &payload }, now);
                }
                prop_assert!(buffer.held_packets() <= 16);
                prop_assert!(buffer.queued() <= FRAME_DURATION * 16);
            }
        }

        #[test]
        fn reordered_late_and_lost_packets_still_play_in_order_at_most_once(
            lateness_ms in proptest::collection::vec(0u64..120, 200),
            lost in proptest::collection::btree_set(0u16..200, 0..20),
        ) {
            let (_, played) = play(
                200,
                |i| if lost.contains(&i) { Duration::from_secs(3600) } else { Duration::from_millis(lateness_ms[usize::from(i)]) },
                JitterConfig::default(),
            );
            prop_assert!(played.windows(2).all(|w| w[0] < w[1]), "{:?}", played);
            prop_assert!(played.iter().all(|fill| !lost.contains(&u16::from(*fill))));
        }
    }
}
