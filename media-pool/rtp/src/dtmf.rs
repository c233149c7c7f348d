//! RFC 4733 telephone-events: DTMF digits carried as RTP packets of their own payload type
//! (`telephone-event/8000`), sharing the voice stream's SSRC, sequence and clock.

use crate::rtp::RtpHeader;
use std::time::Duration;

/// Event code → digit (RFC 4733 §3.2): 0-9, then *, #, then A-D.
const DIGITS: [char; 16] = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'A', 'B', 'C', 'D'];
const PAYLOAD_LEN: usize = 4;
/// Timestamps of recent events remembered to report each digit once.
const REMEMBERED_EVENTS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TelephoneEventError {
    #[error("a telephone-event payload is 4 bytes, got {0}")]
    BadLength(usize),
    #[error("{0:?} is not a DTMF digit")]
    NotADigit(char),
}

/// One telephone-event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    pub event: u8,
    pub end: bool,
    /// Power level in -dBm0, 0 to 63.
    pub volume: u8,
    /// Since the event began, in timestamp units (samples at 8 kHz).
    pub duration: u16,
}

impl TelephoneEvent {
    pub fn parse(payload: &[u8]) -> Result<Self, TelephoneEventError> {
        let &[event, flags, high, low] = payload else {
            return Err(TelephoneEventError::BadLength(payload.len()));
        };
        Ok(Self { event, end: flags & 0x80 != 0, volume: flags & 0x3F, duration: u16::from_be_bytes([high, low]) })
    }

    pub fn to_bytes(self) -> [u8; PAYLOAD_LEN] {
        let [high, low] = self.duration.to_be_bytes();
        [self.event, u8::from(self.end) << 7 | (self.volume & 0x3F), high, low]
    }

    /// The DTMF digit of events 0-15; other events (flash, tones) have none.
    pub fn digit(self) -> Option<char> {
        DIGITS.get(usize::from(self.event)).copied()
    }
}

pub fn event_of_digit(digit: char) -> Result<u8, TelephoneEventError> {
    let upper = digit.to_ascii_uppercase();
    DIGITS.iter().position(|&d| d == upper).map(|p| p as u8).ok_or(TelephoneEventError::NotADigit(digit))
}

/// Turns the packets of received events into digits, each reported once: at the first packet
/// of its event (so a lost end packet does not lose the digit), recognised by its RTP
/// timestamp, which every packet of one event repeats.
#[derive(Debug, Clone, Default)]
pub struct DtmfReceiver {
    recent: [Option<(u32, u32)>; REMEMBERED_EVENTS],
    cursor: usize,
}

impl DtmfReceiver {
    /// The digit a telephone-event packet starts, or None for a repeat, an end retransmission
    /// or a non-DTMF event.
    pub fn receive(&mut self, header: &RtpHeader, payload: &[u8]) -> Result<Option<char>, TelephoneEventError> {
        let event = TelephoneEvent::parse(payload)?;
        let Some(digit) = event.digit() else { return Ok(None) };
        let key = (header.ssrc, header.timestamp);
        if self.recent.contains(&Some(key)) {
            return Ok(None);
        }
        self.recent[self.cursor] = Some(key);
        self.cursor = (self.cursor + 1) % REMEMBERED_EVENTS;
        Ok(Some(digit))
    }
}

/// How a digit is sent: on the voice stream's SSRC and clock, from its next sequence
/// number and the timestamp of the moment the key press begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigitSending {
    pub payload_type: u8,
    pub ssrc: u32,
    pub first_sequence: u16,
    pub timestamp: u32,
    pub duration: Duration,
    pub volume: u8,
}

/// One packet of a digit, with when to send it relative to the start of the key press.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedEventPacket {
    pub send_after: Duration,
    pub header: RtpHeader,
    pub event: TelephoneEvent,
}

/// Update packets go out every 50 ms while the key is held (RFC 4733 §2.5.1.2 suggests
/// 50 ms for DTMF); the end packet is sent three times (§2.5.1.4).
pub const UPDATE_INTERVAL: Duration = Duration::from_millis(50);
const END_REPEATS: u32 = 3;

/// The packets a sender emits for `digit`: start/update packets every 50 ms with a growing
/// duration, then the end packet three times, 50 ms apart, all with one timestamp; the
/// marker is set on the first only. A press longer than the 16-bit duration field (8.19 s)
/// is cut there: no one holds a key that long, so no segmented long events are sent.
pub fn encode_digit(digit: char, sending: DigitSending) -> Result<Vec<TimedEventPacket>, TelephoneEventError> {
    let event = event_of_digit(digit)?;
    let total =
        u16::try_from(sending.duration.as_millis() * u128::from(crate::CLOCK_RATE) / 1_000).unwrap_or(u16::MAX).max(1);
    let interval_units = (UPDATE_INTERVAL.as_millis() as u32 * crate::CLOCK_RATE / 1_000) as u16;
    let updates = u32::from(total.div_ceil(interval_units));
    let mut packets = Vec::with_capacity((updates + END_REPEATS) as usize);
    let mut sequence = sending.first_sequence;
    for index in 0..updates + END_REPEATS {
        let is_end = index >= updates;
        let elapsed = u32::from(interval_units) * (index + 1);
        let duration = if is_end { total } else { u16::try_from(elapsed).unwrap_or(u16::MAX).min(total) };
        let send_after = UPDATE_INTERVAL * index;
        packets.push(TimedEventPacket {
            send_after,
            header: RtpHeader {
                marker: index == 0,
                payload_type: sending.payload_type,
                sequence,
                timestamp: sending.timestamp,
                ssrc: sending.ssrc,
                csrcs: Vec::new(),
            },
            event: TelephoneEvent { event, end: is_end, volume: sending.volume.min(63), duration },
        });
        sequence = sequence.wrapping_add(1);
    }
    Ok(packets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sending(duration_ms: u64) -> DigitSending {
        DigitSending {
            payload_type: 101,
            ssrc: 5,
            first_sequence: 65_534,
            timestamp: 8_000,
            duration: Duration::from_millis(duration_ms),
            volume: 10,
        }
    }

    #[test]
    fn decodes_events_into_digits() {
        let digits: String =
            (0..16).filter_map(|event| TelephoneEvent { event, end: false, volume: 0, duration: 0 }.digit()).collect();
        assert_eq!(digits, "0123456789*#ABCD");
        assert_eq!(TelephoneEvent { event: 16, end: false, volume: 0, duration: 0 }.digit(), None);
        let parsed = TelephoneEvent::parse(&[11, 0x8A, 0x03, 0x20]).expect("4 bytes");
        assert_eq!(parsed, TelephoneEvent { event: 11, end: true, volume: 10, duration: 800 });
        assert_eq!(TelephoneEvent::parse(&[1, 2, 3]), Err(TelephoneEventError::BadLength(3)));
    }

    #[test]
    fn a_sent_digit_is_received_exactly_once() {
        let mut receiver = DtmfReceiver::default();
        let mut digits = Vec::new();
        for digit in ['5', '#', '5'] {
            let mut s = sending(120);
            s.timestamp = 8_000 + digits.len() as u32 * 2_000;
            for packet in encode_digit(digit, s).expect("a digit") {
                let payload = packet.event.to_bytes();
                digits.extend(receiver.receive(&packet.header, &payload).expect("valid"));
            }
        }
        assert_eq!(digits, vec!['5', '#', '5']);
    }

    #[test]
    fn a_digit_whose_start_packets_were_lost_is_reported_from_its_end() {
        let mut receiver = DtmfReceiver::default();
        let packets = encode_digit('9', sending(100)).expect("a digit");
        let ends: Vec<_> = packets.iter().filter(|p| p.event.end).collect();
        let digits: Vec<char> =
            ends.iter().filter_map(|p| receiver.receive(&p.header, &p.event.to_bytes()).expect("valid")).collect();
        assert_eq!(digits, vec!['9']);
    }

    #[test]
    fn encodes_updates_every_50_ms_then_three_ends() {
        let packets = encode_digit('7', sending(120)).expect("a digit");
        let summary: Vec<(u128, bool, bool, u16, u16)> = packets
            .iter()
            .map(|p| (p.send_after.as_millis(), p.header.marker, p.event.end, p.event.duration, p.header.sequence))
            .collect();
        assert_eq!(
            summary,
            vec![
                (0, true, false, 400, 65_534),
                (50, false, false, 800, 65_535),
                (100, false, false, 960, 0),
                (150, false, true, 960, 1),
                (200, false, true, 960, 2),
                (250, false, true, 960, 3),
            ]
        );
        assert!(packets
            .iter()
            .all(|p| p.header.timestamp == 8_000 && p.event.event == 7 && p.header.payload_type == 101));
        assert_eq!(encode_digit('x', sending(100)), Err(TelephoneEventError::NotADigit('x')));
    }

    proptest! {
        #[test]
        fn arbitrary_payloads_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..16), timestamp: u32) {
            let mut receiver = DtmfReceiver::default();
            let header = RtpHeader { timestamp, ..RtpHeader::default() };
            let _ = receiver.receive(&header, &payload);
        }

        #[test]
        fn every_digit_round_trips_once(digit in proptest::sample::select(DIGITS.to_vec()), duration_ms in 0u64..10_000) {
            let packets = encode_digit(digit, sending(duration_ms)).expect("a digit");
            prop_assert_eq!(packets.iter().filter(|p| p.event.end).count(), 3);
            prop_assert_eq!(packets.iter().filter(|p| p.header.marker).count(), 1);
            let mut receiver = DtmfReceiver::default();
            let received: Vec<char> = packets
                .iter()
                .filter_map(|p| receiver.receive(&p.header, &p.event.to_bytes()).expect("valid"))
                .collect();
            prop_assert_eq!(received, vec![digit]);
        }
    }
}
