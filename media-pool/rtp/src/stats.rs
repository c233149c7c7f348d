//! Receive statistics of one RTP source (RFC 3550 §6.4.1 and appendices A.1, A.3, A.8) and a
//! MOS estimate from them (ITU-T G.107 E-model, simplified for G.711). These are what the
//! call's quality metrics report and what our receiver reports tell the trunk.

use crate::rtcp::{NtpTime, ReportBlock, SenderReport};
use crate::rtp::RtpHeader;
use crate::CLOCK_RATE;
use std::time::{Duration, Instant};

/// A jump this far ahead is a gap (loss), further is a restart to be confirmed (A.1).
const MAX_DROPOUT: u16 = 3000;
/// This far behind the highest sequence is reordering or a duplicate (A.1).
const MAX_MISORDER: u16 = 100;
const SEQUENCE_CYCLE: u64 = 1 << 16;

/// Interarrival jitter (RFC 3550 §6.4.1, code of A.8): the smoothed mean deviation of the
/// transit time, in RTP timestamp units. Timestamps wrap freely; only differences count.
#[derive(Debug, Clone, Default)]
pub struct InterarrivalJitter {
    epoch: Option<Instant>,
    last_transit: Option<u32>,
    /// Jitter scaled by 16, as A.8 keeps it to avoid a division per packet. Wide so that
    /// a hostile peer's random timestamps saturate instead of overflowing.
    scaled: u64,
}

impl InterarrivalJitter {
    pub fn update(&mut self, rtp_timestamp: u32, arrival: Instant) {
        let epoch = *self.epoch.get_or_insert(arrival);
        let elapsed = arrival.saturating_duration_since(epoch);
        // Arrival on the RTP clock; wrapping like the timestamps it is compared with.
        let arrival_units = (elapsed.as_nanos() * u128::from(CLOCK_RATE) / 1_000_000_000) as u32;
        let transit = arrival_units.wrapping_sub(rtp_timestamp);
        if let Some(last) = self.last_transit.replace(transit) {
            let deviation = u64::from((transit.wrapping_sub(last) as i32).unsigned_abs());
            self.scaled = (self.scaled + deviation).saturating_sub((self.scaled + 8) >> 4);
        }
    }

    /// In RTP timestamp units, as the report block carries it.
    pub fn rtp_units(&self) -> u32 {
        u32::try_from(self.scaled >> 4).unwrap_or(u32::MAX)
    }

    pub fn duration(&self) -> Duration {
        Duration::from_nanos((self.scaled >> 4) * 1_000_000_000 / u64::from(CLOCK_RATE))
    }
}

/// What one source's stream looked like so far.
#[derive(Debug, Clone)]
pub struct ReceiveStats {
    ssrc: Option<u32>,
    base_sequence: u16,
    max_sequence: u16,
    /// Wraps of the sequence number, counted in units of 2^16 as A.1 does.
    cycles: u64,
    /// A big jump waits for the next packet to confirm it (A.1's `bad_seq`).
    restart_candidate: Option<u16>,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    jitter: InterarrivalJitter,
    last_sender_report: Option<(u32, Instant)>,
}

impl Default for ReceiveStats {
    fn default() -> Self {
        Self::new()
    }
}

impl ReceiveStats {
    pub fn new() -> Self {
        Self {
            ssrc: None,
            base_sequence: 0,
            max_sequence: 0,
            cycles: 0,
            restart_candidate: None,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            jitter: InterarrivalJitter::default(),
            last_sender_report: None,
        }
    }

    pub fn ssrc(&self) -> Option<u32> {
        self.ssrc
    }

    /// Counts a packet; returns false for one that does not count (a jump awaiting
    /// confirmation). A new SSRC starts the statistics afresh.
    pub fn on_packet(&mut self, header: &RtpHeader, arrival: Instant) -> bool {
        if self.ssrc == Some(header.ssrc) {
            let ahead = header.sequence.wrapping_sub(self.max_sequence);
            if ahead < MAX_DROPOUT {
                if header.sequence < self.max_sequence {
                    self.cycles += SEQUENCE_CYCLE;
                }
                self.max_sequence = header.sequence;
            } else if ahead <= u16::MAX - MAX_MISORDER {
                if self.restart_candidate != Some(header.sequence) {
                    self.restart_candidate = Some(header.sequence.wrapping_add(1));
                    return false;
                }
                // Two in a row after the jump: the sender restarted its sequence.
                let kept_sender_report = self.last_sender_report;
                *self = Self::new();
                self.ssrc = Some(header.ssrc);
                self.last_sender_report = kept_sender_report;
                self.restart(header.sequence);
            }
            // Otherwise a duplicate or a late packet: counted as received, as A.1 does, so
            // duplicates can make the cumulative loss negative.
        } else {
            *self = Self::new();
            self.ssrc = Some(header.ssrc);
            self.restart(header.sequence);
        }
        self.received += 1;
        self.jitter.update(header.timestamp, arrival);
        true
    }

    fn restart(&mut self, sequence: u16) {
        self.base_sequence = sequence;
        self.max_sequence = sequence;
        self.cycles = 0;
        self.restart_candidate = None;
    }

    /// Remembers a sender report for the LSR/DLSR of our next report block.
    pub fn on_sender_report(&mut self, report: &SenderReport, arrival: Instant) {
        if self.ssrc.is_none_or(|ssrc| ssrc == report.ssrc) {
            self.last_sender_report = Some((report.ntp_time.compact(), arrival));
        }
    }

    /// Cycles in the high 16 bits, highest sequence in the low.
    pub fn extended_highest_sequence(&self) -> u64 {
        self.cycles + u64::from(self.max_sequence)
    }

    pub fn expected(&self) -> u64 {
        if self.ssrc.is_none() {
            return 0;
        }
        self.extended_highest_sequence() - u64::from(self.base_sequence) + 1
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    /// Expected minus received; negative when duplicates outnumber losses.
    pub fn lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    /// Lost over expected for the whole stream, 0 to 1.
    pub fn loss_ratio(&self) -> f64 {
        match self.expected() {
            0 => 0.0,
            expected => (self.lost().max(0) as f64 / expected as f64).min(1.0),
        }
    }

    pub fn jitter(&self) -> Duration {
        self.jitter.duration()
    }

    /// The report block of our next SR/RR about this source (A.3), or None before its first
    /// packet. Starts a new interval for `fraction_lost`.
    pub fn report_block(&mut self, now: Instant) -> Option<ReportBlock> {
        let ssrc = self.ssrc?;
        let expected = self.expected();
        let expected_interval = expected - self.expected_prior;
        let received_interval = self.received - self.received_prior;
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost = (lost_interval << 8).checked_div(expected_interval).map_or(0, |f| f.min(255) as u8);
        let (last_sender_report, delay_since_last_sender_report) = match self.last_sender_report {
            Some((compact, at)) => (compact, to_compact_units(now.saturating_duration_since(at))),
            None => (0, 0),
        };
        Some(ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: self.lost().clamp(-0x80_0000, 0x7F_FFFF) as i32,
            highest_sequence: self.extended_highest_sequence() as u32,
            jitter: self.jitter.rtp_units(),
            last_sender_report,
            delay_since_last_sender_report,
        })
    }
}

fn to_compact_units(duration: Duration) -> u32 {
    u32::try_from(duration.as_nanos() * 65_536 / 1_000_000_000).unwrap_or(u32::MAX)
}

/// The round trip a peer's report block about our stream reveals (RFC 3550 §6.4.1): its
/// arrival time minus the LSR it echoes minus the DLSR it waited. None if it has not seen
/// our SR yet or the numbers do not add up.
pub fn round_trip_time(block: &ReportBlock, arrival: NtpTime) -> Option<Duration> {
    if block.last_sender_report == 0 {
        return None;
    }
    let round_trip =
        arrival.compact().checked_sub(block.last_sender_report)?.checked_sub(block.delay_since_last_sender_report)?;
    Some(Duration::from_nanos(u64::from(round_trip) * 1_000_000_000 / 65_536))
}

/// What the E-model needs to know about a call's audio path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QualityInputs {
    /// Mouth-to-ear one way: half the RTCP round trip plus our playout delay, when known.
    pub one_way_delay: Duration,
    /// Interarrival jitter of what we receive.
    pub jitter: Duration,
    /// Packets lost over packets expected, 0 to 1.
    pub loss: f64,
}

/// R0 − Is with every G.107 parameter at its default (Ro 94.77, Is 1.41, rounded as usual).
const R_DEFAULT: f64 = 93.2;
/// G.113 Appendix I: G.711 has no equipment impairment; with packet-loss concealment
/// (ours repeats and fades) its robustness to random loss is 25.1.
const G711_IE: f64 = 0.0;
const G711_BPL_WITH_PLC: f64 = 25.1;
/// Delay the codec and packetisation add before the network: one 20 ms frame plus G.711's
/// negligible look-ahead.
const PACKETISATION_DELAY_MS: f64 = 20.0;

/// The E-model's transmission rating R (0 to 100), G.107 simplified for G.711 with random
/// loss:
///
/// R = 93.2 − Id − Ie,eff, where
/// - the delay impairment uses the effective delay d = one-way delay + 2 × jitter (the
///   playout buffer a receiver needs to hide the jitter) + 20 ms packetisation, in ms:
///   Id = 0.024·d + 0.11·(d − 177.3)·H(d − 177.3), H the unit step (Cole & Rosenbluth's
///   fit of G.107's Idd curve);
/// - the loss impairment, for loss percentage Ppl, burst ratio 1 (random loss):
///   Ie,eff = Ie + (95 − Ie) · Ppl / (Ppl + Bpl), with Ie = 0 and Bpl = 25.1 for G.711 with
///   concealment (G.113 Appendix I);
/// - the advantage factor A is 0 (a wired-line expectation).
pub fn r_factor(inputs: QualityInputs) -> f64 {
    let delay_ms = inputs.one_way_delay.as_secs_f64() * 1_000.0
        + 2.0 * inputs.jitter.as_secs_f64() * 1_000.0
        + PACKETISATION_DELAY_MS;
    let delay_impairment = 0.024 * delay_ms + if delay_ms > 177.3 { 0.11 * (delay_ms - 177.3) } else { 0.0 };
    let loss_percent = if inputs.loss.is_finite() { inputs.loss.clamp(0.0, 1.0) * 100.0 } else { 100.0 };
    let loss_impairment = G711_IE + (95.0 - G711_IE) * loss_percent / (loss_percent + G711_BPL_WITH_PLC);
    (R_DEFAULT - delay_impairment - loss_impairment).clamp(0.0, 100.0)
}

/// The mean opinion score (1 to 4.5) G.107 Annex B maps R to:
/// MOS = 1 + 0.035·R + 7·10⁻⁶·R·(R − 60)·(100 − R), held at 1 where the cubic dips below
/// it (R < 6.5).
pub fn mos(inputs: QualityInputs) -> f64 {
    let r = r_factor(inputs);
    if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        (1.0 + 0.035 * r + 7.0e-6 * r * (r - 60.0) * (100.0 - r)).max(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(sequence: u16, timestamp: u32) -> RtpHeader {
        RtpHeader { payload_type: 8, sequence, timestamp, ssrc: 42, ..RtpHeader::default() }
    }

    #[test]
    fn counts_loss_across_the_sequence_wrap() {
        let start = Instant::now();
        let mut stats = ReceiveStats::new();
        let mut sequence = 65_530u16;
        for i in 0..20u32 {
            if i != 7 && i != 8 {
                stats.on_packet(&header(sequence, i * 160), start + Duration::from_millis(u64::from(i) * 20));
            }
            sequence = sequence.wrapping_add(1);
        }
        assert_eq!(stats.expected(), 20);
        assert_eq!(stats.received(), 18);
        assert_eq!(stats.lost(), 2);
        assert_eq!(stats.extended_highest_sequence(), (1 << 16) + 13);
        let block = stats.report_block(start).expect("a source");
        assert_eq!(block.fraction_lost, (2 * 256 / 20) as u8);
        assert_eq!(block.cumulative_lost, 2);
        assert_eq!(block.highest_sequence, 0x0001_000D);
        // The next interval saw nothing new: nothing lost in it.
        assert_eq!(stats.report_block(start).expect("a source").fraction_lost, 0);
    }

    #[test]
    fn a_jump_counts_only_once_confirmed_by_the_next_packet() {
        let start = Instant::now();
        let mut stats = ReceiveStats::new();
        assert!(stats.on_packet(&header(100, 0), start));
        assert!(!stats.on_packet(&header(40_000, 160), start));
        assert_eq!(stats.expected(), 1);
        assert!(stats.on_packet(&header(40_001, 320), start));
        assert_eq!((stats.expected(), stats.received(), stats.lost()), (1, 1, 0));
    }

    #[test]
    fn a_new_ssrc_starts_afresh() {
        let start = Instant::now();
        let mut stats = ReceiveStats::new();
        stats.on_packet(&header(1, 0), start);
        stats.on_packet(&header(5, 0), start);
        stats.on_packet(&RtpHeader { ssrc: 43, ..header(900, 0) }, start);
        assert_eq!((stats.ssrc(), stats.expected(), stats.lost()), (Some(43), 1, 0));
    }

    #[test]
    fn steady_arrivals_have_no_jitter_even_across_the_timestamp_wrap() {
        let start = Instant::now();
        let mut jitter = InterarrivalJitter::default();
        for i in 0..100u32 {
            jitter.update((u32::MAX - 800).wrapping_add(i * 160), start + Duration::from_millis(u64::from(i) * 20));
        }
        assert_eq!(jitter.rtp_units(), 0);
    }

    #[test]
    fn alternating_lateness_converges_to_its_deviation() {
        // Every other packet 10 ms (80 units) late: |D| = 80 each time, so J → 80.
        let start = Instant::now();
        let mut jitter = InterarrivalJitter::default();
        for i in 0..500u32 {
            let late = if i % 2 == 1 { 10 } else { 0 };
            jitter.update(i * 160, start + Duration::from_millis(u64::from(i) * 20 + late));
        }
        assert!((78..=80).contains(&jitter.rtp_units()), "{}", jitter.rtp_units());
        assert!((jitter.duration().as_secs_f64() * 1_000.0 - 10.0).abs() < 0.3);
    }

    #[test]
    fn the_report_block_echoes_the_last_sender_report_and_the_delay_since() {
        let start = Instant::now();
        let mut stats = ReceiveStats::new();
        stats.on_packet(&header(1, 0), start);
        let report = SenderReport { ssrc: 42, ntp_time: NtpTime(0x1234_5678_9ABC_DEF0), ..SenderReport::default() };
        stats.on_sender_report(&report, start);
        let block = stats.report_block(start + Duration::from_millis(500)).expect("a source");
        assert_eq!(block.last_sender_report, 0x5678_9ABC);
        assert_eq!(block.delay_since_last_sender_report, 32_768);
    }

    #[test]
    fn round_trip_subtracts_what_the_peer_waited() {
        let block = ReportBlock {
            last_sender_report: 0x0001_0000,
            delay_since_last_sender_report: 0x8000,
            ..ReportBlock::default()
        };
        // Arrived 1 s after our SR left, the peer held it 0.5 s: 0.5 s round trip.
        let arrival = NtpTime(0x0002_0000 << 16);
        assert_eq!(round_trip_time(&block, arrival), Some(Duration::from_millis(500)));
        assert_eq!(round_trip_time(&ReportBlock::default(), arrival), None);
    }

    #[test]
    fn mos_of_reference_conditions() {
        let clean = QualityInputs { one_way_delay: Duration::ZERO, jitter: Duration::ZERO, loss: 0.0 };
        // R = 93.2 − 0.48: a clean G.711 call is "toll quality", about 4.4.
        assert!((mos(clean) - 4.39).abs() < 0.02, "{}", mos(clean));
        let lossy = QualityInputs { loss: 0.05, ..clean };
        // 5 % random loss: Ie,eff = 95 · 5 / 30.1 ≈ 15.8, R ≈ 76.9, MOS ≈ 3.9.
        assert!((mos(lossy) - 3.9).abs() < 0.05, "{}", mos(lossy));
        let satellite = QualityInputs { one_way_delay: Duration::from_millis(400), ..clean };
        assert!(mos(satellite) < 3.7, "{}", mos(satellite));
        let dead = QualityInputs { loss: 1.0, one_way_delay: Duration::from_secs(2), ..clean };
        assert!((mos(dead) - 1.0).abs() < f64::EPSILON);
    }

    proptest! {
        #[test]
        fn hostile_streams_never_panic_and_keep_the_counters_sane(
            packets in proptest::collection::vec((any::<u16>(), any::<u32>(), 0u64..10_000_000, any::<bool>()), 1..300),
        ) {
            let start = Instant::now();
            let mut stats = ReceiveStats::new();
            for (sequence, timestamp, at_us, other_ssrc) in packets {
                let mut h = header(sequence, timestamp);
                h.ssrc = if other_ssrc { 7 } else { 42 };
                stats.on_packet(&h, start + Duration::from_micros(at_us));
                let ratio = stats.loss_ratio();
                prop_assert!((0.0..=1.0).contains(&ratio));
                prop_assert!(stats.report_block(start).is_some());
            }
        }

        #[test]
        fn mos_stays_between_one_and_four_and_a_half_and_falls_with_loss(
            delay_ms in 0u64..5_000, jitter_ms in 0u64..1_000, loss in 0.0f64..=1.0, more in 0.0f64..=1.0,
        ) {
            let inputs = QualityInputs { one_way_delay: Duration::from_millis(delay_ms), jitter: Duration::from_millis(jitter_ms), loss };
            let score = mos(inputs);
            prop_assert!((1.0..=4.5).contains(&score));
            let worse = QualityInputs { loss: (loss + more).min(1.0), ..inputs };
            prop_assert!(mos(worse) <= score + 1e-9);
        }
    }
}
