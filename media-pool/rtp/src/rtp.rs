//! RTP fixed header (RFC 3550 §5.1): parsed without copying the payload, written into a
//! caller's buffer so a sender reuses one allocation per call.

/// The fixed header is 12 bytes; CSRCs and an extension follow it.
pub const FIXED_HEADER_LEN: usize = 12;
/// Four bits of CSRC count.
pub const MAX_CSRCS: usize = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("{0} bytes is shorter than the 12-byte RTP header")]
    TooShort(usize),
    #[error("RTP version {0}, only version 2 is spoken")]
    UnsupportedVersion(u8),
    #[error("the CSRC list runs past the end of the packet")]
    TruncatedCsrcs,
    #[error("the header extension runs past the end of the packet")]
    TruncatedExtension,
    #[error("padding of {padding} bytes does not fit the {available} bytes after the header")]
    BadPadding { padding: usize, available: usize },
    #[error("{0} CSRCs, at most 15 fit the header")]
    TooManyCsrcs(usize),
    #[error("a header extension of {0} bytes is not a whole number of 32-bit words")]
    UnalignedExtension(usize),
}

/// A header extension (RFC 3550 §5.3.1): kept so a relay could forward it, never interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpExtension<'a> {
    pub profile: u16,
    pub data: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub csrcs: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub header: RtpHeader,
    pub extension: Option<RtpExtension<'a>>,
    /// The payload with any padding already removed.
    pub payload: &'a [u8],
}

impl<'a> RtpPacket<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, RtpError> {
        if bytes.len() < FIXED_HEADER_LEN {
            return Err(RtpError::TooShort(bytes.len()));
        }
        let version = bytes[0] >> 6;
        if version != 2 {
            return Err(RtpError::UnsupportedVersion(version));
        }
        let has_padding = bytes[0] & 0x20 != 0;
        let has_extension = bytes[0] & 0x10 != 0;
        let csrc_count = usize::from(bytes[0] & 0x0F);
        let mut offset = FIXED_HEADER_LEN;
        let csrc_end = offset + 4 * csrc_count;
        let csrc_bytes = bytes.get(offset..csrc_end).ok_or(RtpError::TruncatedCsrcs)?;
        let csrcs = csrc_bytes.chunks_exact(4).map(read_u32).collect();
        offset = csrc_end;
        let extension = if has_extension {
            let head = bytes.get(offset..offset + 4).ok_or(RtpError::TruncatedExtension)?;
            let profile = u16::from_be_bytes([head[0], head[1]]);
            let words = usize::from(u16::from_be_bytes([head[2], head[3]]));
            let data = bytes.get(offset + 4..offset + 4 + 4 * words).ok_or(RtpError::TruncatedExtension)?;
            offset += 4 + 4 * words;
            Some(RtpExtension { profile, data })
        } else {
            None
        };
        let mut end = bytes.len();
        if has_padding {
            // The last byte counts the padding, itself included, so zero is malformed.
            let padding = usize::from(bytes[end - 1]);
            let available = end - offset;
            if padding == 0 || padding > available {
                return Err(RtpError::BadPadding { padding, available });
            }
            end -= padding;
        }
        let header = RtpHeader {
            marker: bytes[1] & 0x80 != 0,
            payload_type: bytes[1] & 0x7F,
            sequence: u16::from_be_bytes([bytes[2], bytes[3]]),
            timestamp: read_u32(&bytes[4..8]),
            ssrc: read_u32(&bytes[8..12]),
            csrcs,
        };
        Ok(Self { header, extension, payload: &bytes[offset..end] })
    }

    /// Appends the packet to `out` (without padding: we never need to pad, nothing we send is
    /// encrypted in blocks).
    pub fn write(&self, out: &mut Vec<u8>) -> Result<(), RtpError> {
        self.header.write(self.extension, out)?;
        out.extend_from_slice(self.payload);
        Ok(())
    }

    pub fn to_vec(&self) -> Result<Vec<u8>, RtpError> {
        let mut out = Vec::with_capacity(FIXED_HEADER_LEN + self.payload.len());
        self.write(&mut out)?;
        Ok(out)
    }
}

impl RtpHeader {
    /// Appends the header (and `extension`) to `out`; the payload follows it.
    pub fn write(&self, extension: Option<RtpExtension<'_>>, out: &mut Vec<u8>) -> Result<(), RtpError> {
        if self.csrcs.len() > MAX_CSRCS {
            return Err(RtpError::TooManyCsrcs(self.csrcs.len()));
        }
        if let Some(extension) = extension {
            if !extension.data.len().is_multiple_of(4) || extension.data.len() / 4 > usize::from(u16::MAX) {
                return Err(RtpError::UnalignedExtension(extension.data.len()));
            }
        }
        let extension_bit = if extension.is_some() { 0x10 } else { 0 };
        out.push(0x80 | extension_bit | self.csrcs.len() as u8);
        out.push(u8::from(self.marker) << 7 | (self.payload_type & 0x7F));
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        for csrc in &self.csrcs {
            out.extend_from_slice(&csrc.to_be_bytes());
        }
        if let Some(extension) = extension {
            out.extend_from_slice(&extension.profile.to_be_bytes());
            out.extend_from_slice(&((extension.data.len() / 4) as u16).to_be_bytes());
            out.extend_from_slice(extension.data);
        }
        Ok(())
    }
}

fn read_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A PCMA packet as a trunk sends it, captured layout: V=2, M=1, PT=8.
    const CAPTURED: [u8; 16] =
        [0x80, 0x88, 0x12, 0x34, 0x00, 0x00, 0x01, 0x40, 0xDE, 0xAD, 0xBE, 0xEF, 0xD5, 0xD5, 0x55, 0x55];

    #[test]
    fn parses_the_fields_of_a_plain_packet() {
        let packet = RtpPacket::parse(&CAPTURED).expect("valid packet");
        assert!(packet.header.marker);
        assert_eq!(packet.header.payload_type, 8);
        assert_eq!(packet.header.sequence, 0x1234);
        assert_eq!(packet.header.timestamp, 320);
        assert_eq!(packet.header.ssrc, 0xDEAD_BEEF);
        assert!(packet.header.csrcs.is_empty());
        assert_eq!(packet.extension, None);
        assert_eq!(packet.payload, &[0xD5, 0xD5, 0x55, 0x55]);
    }

    #[test]
    fn skips_csrcs_and_the_extension_to_find_the_payload() {
        let mut bytes = vec![0x80 | 0x10 | 2, 0x00, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        bytes.extend_from_slice(&[0, 0, 0, 7, 0, 0, 0, 9]); // two CSRCs
        bytes.extend_from_slice(&[0xBE, 0xDE, 0, 1, 1, 2, 3, 4]); // one-word extension
        bytes.extend_from_slice(&[0xAA; 5]);
        let packet = RtpPacket::parse(&bytes).expect("valid packet");
        assert_eq!(packet.header.csrcs, vec![7, 9]);
        assert_eq!(packet.extension, Some(RtpExtension { profile: 0xBEDE, data: &[1, 2, 3, 4] }));
        assert_eq!(packet.payload, &[0xAA; 5]);
    }

    #[test]
    fn strips_padding_counted_by_the_last_byte() {
        let mut bytes = CAPTURED.to_vec();
        bytes[0] |= 0x20;
        bytes.extend_from_slice(&[0, 0, 3]);
        let packet = RtpPacket::parse(&bytes).expect("valid packet");
        assert_eq!(packet.payload, &CAPTURED[12..]);
    }

    #[test]
    fn rejects_malformed_headers_with_the_reason() {
        assert_eq!(RtpPacket::parse(&CAPTURED[..11]), Err(RtpError::TooShort(11)));
        let mut version_one = CAPTURED;
        version_one[0] = 0x40;
        assert_eq!(RtpPacket::parse(&version_one), Err(RtpError::UnsupportedVersion(1)));
        let mut csrcs_missing = CAPTURED;
        csrcs_missing[0] = 0x82;
        assert_eq!(RtpPacket::parse(&csrcs_missing), Err(RtpError::TruncatedCsrcs));
        let mut extension_too_long = CAPTURED;
        extension_too_long[0] = 0x90;
        extension_too_long[15] = 0x09;
        assert_eq!(RtpPacket::parse(&extension_too_long), Err(RtpError::TruncatedExtension));
        let mut zero_padding = CAPTURED.to_vec();
        zero_padding[0] |= 0x20;
        zero_padding.push(0);
        assert!(matches!(RtpPacket::parse(&zero_padding), Err(RtpError::BadPadding { padding: 0, .. })));
        let mut padding_into_header = CAPTURED;
        padding_into_header[0] |= 0x20;
        padding_into_header[15] = 5;
        assert!(matches!(RtpPacket::parse(&padding_into_header), Err(RtpError::BadPadding { padding: 5, .. })));
    }

    #[test]
    fn refuses_to_write_what_the_header_cannot_say() {
        let header = RtpHeader { csrcs: vec![0; 16], ..RtpHeader::default() };
        assert_eq!(header.write(None, &mut Vec::new()), Err(RtpError::TooManyCsrcs(16)));
        let extension = RtpExtension { profile: 1, data: &[1, 2, 3] };
        assert_eq!(RtpHeader::default().write(Some(extension), &mut Vec::new()), Err(RtpError::UnalignedExtension(3)));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_parse_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(packet) = RtpPacket::parse(&bytes) {
                prop_assert!(packet.payload.len() <= bytes.len() - FIXED_HEADER_LEN);
            }
        }

        #[test]
        fn version_two_garbage_fails_typed_not_by_panicking(mut bytes in proptest::collection::vec(any::<u8>(), 1..128)) {
            // Random first bytes are rarely version 2; force it so the CSRC, extension and
            // padding paths see garbage too.
            bytes[0] = 0x80 | (bytes[0] & 0x3F);
            if let Ok(packet) = RtpPacket::parse(&bytes) {
                prop_assert_eq!(packet.header.csrcs.len(), usize::from(bytes[0] & 0x0F));
            }
        }

        #[test]
        fn written_packets_parse_back_identically(
            marker: bool,
            payload_type in 0u8..128,
            sequence: u16,
            timestamp: u32,
            ssrc: u32,
            csrcs in proptest::collection::vec(any::<u32>(), 0..=MAX_CSRCS),
            extension in proptest::option::of((any::<u16>(), proptest::collection::vec(any::<u8>(), 0..8))),
            payload in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let extension_data = extension.as_ref().map(|(_, data)| {
                let mut data = data.clone();
                data.resize(data.len().div_ceil(4) * 4, 0);
                data
            });
            let packet = RtpPacket {
                header: RtpHeader { marker, payload_type, sequence, timestamp, ssrc, csrcs },
                extension: extension.as_ref().zip(extension_data.as_deref()).map(|((profile, _), data)| RtpExtension { profile: *profile, data }),
                payload: &payload,
            };
            let bytes = packet.to_vec().expect("writable");
            prop_assert_eq!(RtpPacket::parse(&bytes), Ok(packet));
        }
    }
}
