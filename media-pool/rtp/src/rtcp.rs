//! The RTCP we need (RFC 3550 §6.4, §6.6): sender and receiver reports with their report
//! blocks, BYE, and an SDES CNAME to make a compound packet valid. Other packet types are
//! skipped, not rejected: trunks send XR and APP we have no use for.

use std::time::Duration;

const HEADER_LEN: usize = 4;
const REPORT_BLOCK_LEN: usize = 24;
const SENDER_INFO_LEN: usize = 20;
/// The 5-bit count field bounds report blocks and BYE sources.
pub const MAX_COUNT: usize = 31;

const PT_SENDER_REPORT: u8 = 200;
const PT_RECEIVER_REPORT: u8 = 201;
const PT_SOURCE_DESCRIPTION: u8 = 202;
const PT_BYE: u8 = 203;
const SDES_CNAME: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    #[error("{0} bytes left, shorter than an RTCP header")]
    TooShort(usize),
    #[error("RTCP version {0}, only version 2 is spoken")]
    UnsupportedVersion(u8),
    #[error("a packet claims {claimed} bytes but {available} remain")]
    Truncated { claimed: usize, available: usize },
    #[error("packet type {packet_type} has a body too short for its {count} entries")]
    BodyTooShort { packet_type: u8, count: usize },
    #[error("padding of {0} bytes does not fit its packet")]
    BadPadding(usize),
    #[error("{0} entries, at most 31 fit the count field")]
    TooMany(usize),
    #[error("a {0}-byte text does not fit the 255 bytes SDES and BYE allow")]
    TextTooLong(usize),
}

/// A 64-bit NTP timestamp: seconds since 1900 in the high word, the fraction in the low.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct NtpTime(pub u64);

/// Seconds between the NTP era (1900) and the Unix epoch (1970).
const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

impl NtpTime {
    /// From time since the Unix epoch, which the caller reads from its clock.
    pub fn from_unix(since_epoch: Duration) -> Self {
        let seconds = since_epoch.as_secs().wrapping_add(NTP_UNIX_OFFSET_SECS);
        let fraction = (u64::from(since_epoch.subsec_nanos()) << 32) / 1_000_000_000;
        Self(seconds << 32 | fraction)
    }

    /// The middle 32 bits, the unit of LSR and DLSR (1/65536 s).
    pub const fn compact(self) -> u32 {
        (self.0 >> 16) as u32
    }
}

/// One reception report (RFC 3550 §6.4.1) about the source `ssrc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    pub ssrc: u32,
    /// Lost since the previous report, as a fraction of 256.
    pub fraction_lost: u8,
    /// Cumulative lost, a signed 24-bit value on the wire (duplicates can make it negative).
    pub cumulative_lost: i32,
    /// Cycles of sequence wrap in the high 16 bits, the highest sequence in the low.
    pub highest_sequence: u32,
    /// Interarrival jitter in RTP timestamp units.
    pub jitter: u32,
    /// The compact NTP time of the last SR received from `ssrc`, 0 if none.
    pub last_sender_report: u32,
    /// Since that SR, in 1/65536 s; 0 if none.
    pub delay_since_last_sender_report: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SenderReport {
    pub ssrc: u32,
    pub ntp_time: NtpTime,
    pub rtp_timestamp: u32,
    pub packet_count: u32,
    pub octet_count: u32,
    pub reports: Vec<ReportBlock>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReceiverReport {
    pub ssrc: u32,
    pub reports: Vec<ReportBlock>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bye {
    pub sources: Vec<u32>,
    /// Lossily decoded: a peer's reason is for logs, not for logic.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket {
    SenderReport(SenderReport),
    ReceiverReport(ReceiverReport),
    Bye(Bye),
}

/// Parses a compound RTCP packet, keeping SR, RR and BYE in order and skipping the rest.
pub fn parse_compound(mut bytes: &[u8]) -> Result<Vec<RtcpPacket>, RtcpError> {
    let mut packets = Vec::new();
    while !bytes.is_empty() {
        if bytes.len() < HEADER_LEN {
            return Err(RtcpError::TooShort(bytes.len()));
        }
        let version = bytes[0] >> 6;
        if version != 2 {
            return Err(RtcpError::UnsupportedVersion(version));
        }
        let has_padding = bytes[0] & 0x20 != 0;
        let count = usize::from(bytes[0] & 0x1F);
        let packet_type = bytes[1];
        let length = (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])) + 1) * 4;
        let packet = bytes.get(..length).ok_or(RtcpError::Truncated { claimed: length, available: bytes.len() })?;
        bytes = &bytes[length..];
        let mut body = &packet[HEADER_LEN..];
        if has_padding {
            let padding = usize::from(*packet.last().unwrap_or(&0));
            if padding == 0 || padding > body.len() {
                return Err(RtcpError::BadPadding(padding));
            }
            body = &body[..body.len() - padding];
        }
        let too_short = RtcpError::BodyTooShort { packet_type, count };
        match packet_type {
            PT_SENDER_REPORT => {
                let ssrc_and_info = body.get(..4 + SENDER_INFO_LEN).ok_or(too_short)?;
                let reports = report_blocks(&body[4 + SENDER_INFO_LEN..], count).ok_or(too_short)?;
                packets.push(RtcpPacket::SenderReport(SenderReport {
                    ssrc: read_u32(ssrc_and_info, 0),
                    ntp_time: NtpTime(
                        u64::from(read_u32(ssrc_and_info, 4)) << 32 | u64::from(read_u32(ssrc_and_info, 8)),
                    ),
                    rtp_timestamp: read_u32(ssrc_and_info, 12),
                    packet_count: read_u32(ssrc_and_info, 16),
                    octet_count: read_u32(ssrc_and_info, 20),
                    reports,
                }));
            }
            PT_RECEIVER_REPORT => {
                let ssrc = body.get(..4).ok_or(too_short)?;
                let reports = report_blocks(&body[4..], count).ok_or(too_short)?;
                packets.push(RtcpPacket::ReceiverReport(ReceiverReport { ssrc: read_u32(ssrc, 0), reports }));
            }
            PT_BYE => {
                let sources = body.get(..4 * count).ok_or(too_short)?;
                let sources = sources.chunks_exact(4).map(|s| read_u32(s, 0)).collect();
                let rest = &body[4 * count..];
                let reason = rest.split_first().and_then(|(&len, text)| {
                    text.get(..usize::from(len)).map(|t| String::from_utf8_lossy(t).into_owned())
                });
                packets.push(RtcpPacket::Bye(Bye { sources, reason }));
            }
            _ => {}
        }
    }
    Ok(packets)
}

fn report_blocks(body: &[u8], count: usize) -> Option<Vec<ReportBlock>> {
    let blocks = body.get(..count * REPORT_BLOCK_LEN)?;
    Some(
        blocks
            .chunks_exact(REPORT_BLOCK_LEN)
            .map(|b| ReportBlock {
                ssrc: read_u32(b, 0),
                fraction_lost: b[4],
                // Sign-extend the 24-bit field through the top of an i32.
                cumulative_lost: (i32::from_be_bytes([b[5], b[6], b[7], 0])) >> 8,
                highest_sequence: read_u32(b, 8),
                jitter: read_u32(b, 12),
                last_sender_report: read_u32(b, 16),
                delay_since_last_sender_report: read_u32(b, 20),
            })
            .collect(),
    )
}

impl RtcpPacket {
    /// Appends the packet to `out`; several calls build a compound packet.
    pub fn write(&self, out: &mut Vec<u8>) -> Result<(), RtcpError> {
        match self {
            Self::SenderReport(sr) => {
                let start = write_header(out, sr.reports.len(), PT_SENDER_REPORT)?;
                out.extend_from_slice(&sr.ssrc.to_be_bytes());
                out.extend_from_slice(&sr.ntp_time.0.to_be_bytes());
                out.extend_from_slice(&sr.rtp_timestamp.to_be_bytes());
                out.extend_from_slice(&sr.packet_count.to_be_bytes());
                out.extend_from_slice(&sr.octet_count.to_be_bytes());
                sr.reports.iter().for_each(|block| write_block(block, out));
                finish(out, start);
            }
            Self::ReceiverReport(rr) => {
                let start = write_header(out, rr.reports.len(), PT_RECEIVER_REPORT)?;
                out.extend_from_slice(&rr.ssrc.to_be_bytes());
                rr.reports.iter().for_each(|block| write_block(block, out));
                finish(out, start);
            }
            Self::Bye(bye) => {
                let reason = bye.reason.as_deref().map(str::as_bytes);
                if let Some(reason) = reason.filter(|r| r.len() > 255) {
                    return Err(RtcpError::TextTooLong(reason.len()));
                }
                let start = write_header(out, bye.sources.len(), PT_BYE)?;
                bye.sources.iter().for_each(|ssrc| out.extend_from_slice(&ssrc.to_be_bytes()));
                if let Some(reason) = reason {
                    out.push(reason.len() as u8);
                    out.extend_from_slice(reason);
                }
                pad_to_word(out);
                finish(out, start);
            }
        }
        Ok(())
    }
}

/// Appends an SDES packet with one chunk carrying a CNAME, which RFC 3550 §6.1 requires in
/// every compound packet.
pub fn write_source_description(ssrc: u32, cname: &str, out: &mut Vec<u8>) -> Result<(), RtcpError> {
    if cname.len() > 255 {
        return Err(RtcpError::TextTooLong(cname.len()));
    }
    let start = write_header(out, 1, PT_SOURCE_DESCRIPTION)?;
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.push(SDES_CNAME);
    out.push(cname.len() as u8);
    out.extend_from_slice(cname.as_bytes());
    // The item list ends with a null octet, then the chunk pads to a word.
    out.push(0);
    pad_to_word(out);
    finish(out, start);
    Ok(())
}

fn write_header(out: &mut Vec<u8>, count: usize, packet_type: u8) -> Result<usize, RtcpError> {
    if count > MAX_COUNT {
        return Err(RtcpError::TooMany(count));
    }
    let start = out.len();
    out.extend_from_slice(&[0x80 | count as u8, packet_type, 0, 0]);
    Ok(start)
}

fn write_block(block: &ReportBlock, out: &mut Vec<u8>) {
    out.extend_from_slice(&block.ssrc.to_be_bytes());
    out.push(block.fraction_lost);
    let lost = block.cumulative_lost.clamp(-0x80_0000, 0x7F_FFFF).to_be_bytes();
    out.extend_from_slice(&lost[1..]);
    out.extend_from_slice(&block.highest_sequence.to_be_bytes());
    out.extend_from_slice(&block.jitter.to_be_bytes());
    out.extend_from_slice(&block.last_sender_report.to_be_bytes());
    out.extend_from_slice(&block.delay_since_last_sender_report.to_be_bytes());
}

fn pad_to_word(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// Fills in the length field: the packet's size in 32-bit words minus one.
fn finish(out: &mut [u8], start: usize) {
    let words = ((out.len() - start) / 4 - 1) as u16;
    out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn block() -> ReportBlock {
        ReportBlock {
            ssrc: 0x1122_3344,
            fraction_lost: 26,
            cumulative_lost: 1234,
            highest_sequence: 0x0001_0005,
            jitter: 37,
            last_sender_report: 0xAABB_CCDD,
            delay_since_last_sender_report: 65_536,
        }
    }

    #[test]
    fn a_compound_of_sr_sdes_and_bye_parses_back_without_the_sdes() {
        let sr = SenderReport {
            ssrc: 7,
            ntp_time: NtpTime(0x0102_0304_0506_0708),
            rtp_timestamp: 160,
            packet_count: 50,
            octet_count: 8000,
            reports: vec![block()],
        };
        let bye = Bye { sources: vec![7], reason: Some("hangup".to_owned()) };
        let mut bytes = Vec::new();
        RtcpPacket::SenderReport(sr.clone()).write(&mut bytes).expect("writable");
        write_source_description(7, "golos@worker-1", &mut bytes).expect("writable");
        RtcpPacket::Bye(bye.clone()).write(&mut bytes).expect("writable");
        assert_eq!(bytes.len() % 4, 0);
        let parsed = parse_compound(&bytes).expect("valid compound");
        assert_eq!(parsed, vec![RtcpPacket::SenderReport(sr), RtcpPacket::Bye(bye)]);
    }

    #[test]
    fn a_receiver_report_keeps_a_negative_cumulative_loss() {
        let rr = ReceiverReport { ssrc: 9, reports: vec![ReportBlock { cumulative_lost: -3, ..block() }] };
        let mut bytes = Vec::new();
        RtcpPacket::ReceiverReport(rr.clone()).write(&mut bytes).expect("writable");
        assert_eq!(bytes.len(), 4 + 4 + 24);
        assert_eq!(&bytes[..4], &[0x81, 201, 0, 7]);
        assert_eq!(parse_compound(&bytes), Ok(vec![RtcpPacket::ReceiverReport(rr)]));
    }

    #[test]
    fn cumulative_loss_saturates_at_the_24_bit_field() {
        let rr = ReceiverReport { ssrc: 9, reports: vec![ReportBlock { cumulative_lost: 50_000_000, ..block() }] };
        let mut bytes = Vec::new();
        RtcpPacket::ReceiverReport(rr).write(&mut bytes).expect("writable");
        let Ok(parsed) = parse_compound(&bytes) else { panic!("valid") };
        let RtcpPacket::ReceiverReport(rr) = &parsed[0] else { panic!("an RR") };
        assert_eq!(rr.reports[0].cumulative_lost, 0x7F_FFFF);
    }

    #[test]
    fn malformed_compounds_fail_with_the_reason() {
        assert_eq!(parse_compound(&[0x80, 201]), Err(RtcpError::TooShort(2)));
        assert_eq!(parse_compound(&[0x40, 201, 0, 1, 0, 0, 0, 0]), Err(RtcpError::UnsupportedVersion(1)));
        assert_eq!(
            parse_compound(&[0x80, 201, 0, 5, 0, 0, 0, 0]),
            Err(RtcpError::Truncated { claimed: 24, available: 8 })
        );
        assert_eq!(
            parse_compound(&[0x81, 201, 0, 1, 0, 0, 0, 0]),
            Err(RtcpError::BodyTooShort { packet_type: 201, count: 1 })
        );
        assert_eq!(parse_compound(&[0xA0, 201, 0, 1, 0, 0, 0, 0]), Err(RtcpError::BadPadding(0)));
    }

    #[test]
    fn unknown_packet_types_are_skipped() {
        let mut bytes = vec![0x80, 207, 0, 1, 0, 0, 0, 1]; // XR
        RtcpPacket::ReceiverReport(ReceiverReport { ssrc: 1, reports: vec![] }).write(&mut bytes).expect("writable");
        assert_eq!(
            parse_compound(&bytes),
            Ok(vec![RtcpPacket::ReceiverReport(ReceiverReport { ssrc: 1, reports: vec![] })])
        );
    }

    #[test]
    fn ntp_time_of_the_unix_epoch_and_its_compact_form() {
        let ntp = NtpTime::from_unix(Duration::from_millis(1_500));
        assert_eq!(ntp.0 >> 32, NTP_UNIX_OFFSET_SECS + 1);
        assert_eq!(ntp.0 & 0xFFFF_FFFF, 1 << 31);
        assert_eq!(ntp.compact(), ((NTP_UNIX_OFFSET_SECS + 1) as u32) << 16 | 0x8000);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_parse_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_compound(&bytes);
        }

        #[test]
        fn version_two_garbage_fails_typed_not_by_panicking(
            mut bytes in proptest::collection::vec(any::<u8>(), 4..256),
            packet_type in 199u8..=204,
        ) {
            bytes[0] = 0x80 | (bytes[0] & 0x3F);
            bytes[1] = packet_type;
            bytes[2] = 0;
            let _ = parse_compound(&bytes);
        }

        #[test]
        fn written_reports_parse_back(
            ssrc: u32,
            ntp: u64,
            blocks in proptest::collection::vec(
                (any::<u32>(), any::<u8>(), -0x80_0000i32..=0x7F_FFFF, any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>()),
                0..=MAX_COUNT,
            ),
        ) {
            let reports: Vec<ReportBlock> = blocks
                .into_iter()
                .map(|(ssrc, fraction_lost, cumulative_lost, highest_sequence, jitter, last_sender_report, delay_since_last_sender_report)| ReportBlock {
                    ssrc, fraction_lost, cumulative_lost, highest_sequence, jitter, last_sender_report, delay_since_last_sender_report,
                })
                .collect();
            let packets = vec![
                RtcpPacket::SenderReport(SenderReport { ssrc, ntp_time: NtpTime(ntp), reports: reports.clone(), ..SenderReport::default() }),
                RtcpPacket::ReceiverReport(ReceiverReport { ssrc, reports }),
            ];
            let mut bytes = Vec::new();
            for packet in &packets {
                packet.write(&mut bytes).expect("writable");
            }
            prop_assert_eq!(parse_compound(&bytes), Ok(packets));
        }
    }
}
