//! SDP offer/answer for one audio stream (RFC 3264 over the RFC 4566 subset SIP trunks
//! send): parse an offer, choose G.711 with A-law first plus `telephone-event/8000`, write
//! the answer. Strict about the lines it reads, silent about attributes it does not use,
//! and capped in size, because the bytes come from the network.

use crate::G711;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

/// SDP bodies of trunks are a few hundred bytes; anything this large is not one.
pub const MAX_SDP_LEN: usize = 16 * 1024;
/// Packetisation we ask for and the jitter buffer expects.
pub const PTIME_MS: u32 = 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("an SDP body of {0} bytes is over the {MAX_SDP_LEN}-byte cap")]
    TooLarge(usize),
    #[error("the SDP body is not UTF-8")]
    NotUtf8,
    #[error("an SDP body starts with v=0")]
    MissingVersion,
    #[error("line {line}: {reason}")]
    Malformed { line: usize, reason: &'static str },
}

/// Why no answer can be made; the SIP layer answers 488 Not Acceptable Here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    #[error("the offer has no active RTP/AVP audio stream")]
    NoAudioStream,
    #[error("the offer has neither PCMA nor PCMU")]
    NoCommonCodec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn from_attribute(name: &str) -> Option<Self> {
        match name {
            "sendrecv" => Some(Self::SendRecv),
            "sendonly" => Some(Self::SendOnly),
            "recvonly" => Some(Self::RecvOnly),
            "inactive" => Some(Self::Inactive),
            _ => None,
        }
    }

    pub const fn attribute(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }

    /// The direction that answers this offered one (RFC 3264 §6.1): a `sendonly` offer is
    /// the peer putting us on hold, answered `recvonly`.
    pub const fn answer(self) -> Self {
        match self {
            Self::SendRecv => Self::SendRecv,
            Self::SendOnly => Self::RecvOnly,
            Self::RecvOnly => Self::SendOnly,
            Self::Inactive => Self::Inactive,
        }
    }

    pub const fn we_send(self) -> bool {
        matches!(self, Self::SendRecv | Self::SendOnly)
    }

    pub const fn we_receive(self) -> bool {
        matches!(self, Self::SendRecv | Self::RecvOnly)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub payload_type: u8,
    pub encoding: String,
    pub clock_rate: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    pub media: String,
    pub port: u16,
    pub protocol: String,
    /// Format tokens as offered: payload type numbers for RTP.
    pub formats: Vec<String>,
    pub connection: Option<IpAddr>,
    pub rtpmaps: Vec<RtpMap>,
    pub fmtps: Vec<(u8, String)>,
    pub direction: Option<Direction>,
    pub ptime: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionDescription {
    pub connection: Option<IpAddr>,
    pub direction: Option<Direction>,
    pub media: Vec<MediaDescription>,
}

pub fn parse(bytes: &[u8]) -> Result<SessionDescription, SdpError> {
    if bytes.len() > MAX_SDP_LEN {
        return Err(SdpError::TooLarge(bytes.len()));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| SdpError::NotUtf8)?;
    let mut lines = text.split('\n').map(|line| line.strip_suffix('\r').unwrap_or(line)).enumerate();
    match lines.next() {
        Some((_, "v=0")) => {}
        _ => return Err(SdpError::MissingVersion),
    }
    let mut session = SessionDescription::default();
    for (index, line) in lines {
        let line_number = index + 1;
        let malformed = |reason| SdpError::Malformed { line: line_number, reason };
        if line.is_empty() {
            continue;
        }
        let (kind, value) = match line.as_bytes() {
            [kind, b'=', ..] if kind.is_ascii_lowercase() => (*kind, &line[2..]),
            _ => return Err(malformed("not <type>=<value>")),
        };
        match kind {
            b'm' => session.media.push(parse_media(value).ok_or_else(|| malformed("bad m= line"))?),
            b'c' => {
                let address = parse_connection(value).ok_or_else(|| malformed("bad c= line"))?;
                match session.media.last_mut() {
                    Some(media) => media.connection = Some(address),
                    None => session.connection = Some(address),
                }
            }
            b'a' => {
                let (name, argument) = value.split_once(':').unwrap_or((value, ""));
                if let Some(direction) = Direction::from_attribute(name) {
                    match session.media.last_mut() {
                        Some(media) => media.direction = Some(direction),
                        None => session.direction = Some(direction),
                    }
                    continue;
                }
                let Some(media) = session.media.last_mut() else { continue };
                match name {
                    "rtpmap" => media.rtpmaps.push(parse_rtpmap(argument).ok_or_else(|| malformed("bad rtpmap"))?),
                    "fmtp" => {
                        let (payload_type, parameters) =
                            argument.split_once(' ').ok_or_else(|| malformed("bad fmtp"))?;
                        let payload_type = payload_type.parse().map_err(|_| malformed("bad fmtp payload type"))?;
                        media.fmtps.push((payload_type, parameters.trim().to_owned()));
                    }
                    "ptime" => media.ptime = Some(argument.trim().parse().map_err(|_| malformed("bad ptime"))?),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    Ok(session)
}

fn parse_media(value: &str) -> Option<MediaDescription> {
    let mut fields = value.split(' ');
    let media = fields.next().filter(|m| !m.is_empty())?.to_owned();
    // A port may carry a count of ports (`49170/2`); one stream uses only the first.
    let port = fields.next()?.split('/').next()?.parse().ok()?;
    let protocol = fields.next().filter(|p| !p.is_empty())?.to_owned();
    let formats: Vec<String> = fields.filter(|f| !f.is_empty()).map(str::to_owned).collect();
    if formats.is_empty() {
        return None;
    }
    Some(MediaDescription {
        media,
        port,
        protocol,
        formats,
        connection: None,
        rtpmaps: Vec::new(),
        fmtps: Vec::new(),
        direction: None,
        ptime: None,
    })
}

fn parse_connection(value: &str) -> Option<IpAddr> {
    let mut fields = value.split(' ');
    let (network, family, address) = (fields.next()?, fields.next()?, fields.next()?);
    if network != "IN" || fields.next().is_some() {
        return None;
    }
    // Multicast addresses carry /ttl and /count; the address is before them.
    let address: IpAddr = address.split('/').next()?.parse().ok()?;
    match (family, address) {
        ("IP4", IpAddr::V4(_)) | ("IP6", IpAddr::V6(_)) => Some(address),
        _ => None,
    }
}

fn parse_rtpmap(argument: &str) -> Option<RtpMap> {
    let (payload_type, encoding) = argument.split_once(' ')?;
    let mut parts = encoding.trim().split('/');
    let name = parts.next().filter(|n| !n.is_empty())?;
    let clock_rate = parts.next()?.parse().ok()?;
    Some(RtpMap { payload_type: payload_type.parse().ok()?, encoding: name.to_owned(), clock_rate })
}

/// Who we are in the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerParams {
    /// Where the trunk sends RTP: our media address and port.
    pub address: IpAddr,
    pub port: u16,
    /// The o= line's session id and version (RFC 4566 §5.2); the version goes up with
    /// each new answer in the dialog.
    pub session_id: u64,
    pub session_version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// What we send: the first common G.711 codec, A-law when offered.
    pub codec: G711,
    /// Every common G.711 codec, in the answer's order; the peer may send any of them.
    pub codecs: Vec<G711>,
    /// The peer's payload type for `telephone-event/8000`, when offered.
    pub telephone_event: Option<u8>,
    /// Where to send RTP; None when the offer's address is 0.0.0.0 (RFC 2543 hold).
    pub remote: Option<SocketAddr>,
    /// Our direction, as written in the answer.
    pub direction: Direction,
    /// The offer's requested packetisation (our answer asks for 20 ms regardless).
    pub remote_ptime: Option<u32>,
    /// The answer's SDP body.
    pub sdp: String,
}

/// Chooses the codecs and writes the answer to `offer`. The first active RTP audio stream
/// is ours; every other stream is refused with port 0, as RFC 3264 §6 requires.
pub fn answer(offer: &SessionDescription, ours: &AnswerParams) -> Result<Negotiated, NegotiationError> {
    let chosen = offer
        .media
        .iter()
        .position(|m| m.media == "audio" && m.port != 0 && matches!(m.protocol.as_str(), "RTP/AVP" | "RTP/AVPF"))
        .ok_or(NegotiationError::NoAudioStream)?;
    let audio = &offer.media[chosen];
    let offered: Vec<(u8, Option<&RtpMap>)> = audio
        .formats
        .iter()
        .filter_map(|f| f.parse::<u8>().ok())
        .map(|pt| (pt, audio.rtpmaps.iter().find(|m| m.payload_type == pt)))
        .collect();
    let g711_payload_type = |codec: G711| {
        offered.iter().find_map(|&(pt, map)| match map {
            Some(map) => (map.encoding.eq_ignore_ascii_case(codec.encoding_name())
                && map.clock_rate == crate::CLOCK_RATE)
                .then_some(pt),
            None => (G711::from_payload_type(pt) == Some(codec)).then_some(pt),
        })
    };
    let codecs: Vec<(G711, u8)> =
        [G711::Pcma, G711::Pcmu].into_iter().filter_map(|codec| Some((codec, g711_payload_type(codec)?))).collect();
    let &(codec, _) = codecs.first().ok_or(NegotiationError::NoCommonCodec)?;
    let telephone_event = offered.iter().find_map(|&(pt, map)| {
        map.filter(|m| m.encoding.eq_ignore_ascii_case("telephone-event") && m.clock_rate == crate::CLOCK_RATE)
            .map(|_| pt)
    });
    let direction = audio.direction.or(offer.direction).unwrap_or_default().answer();
    let remote = audio
        .connection
        .or(offer.connection)
        .filter(|address| !address.is_unspecified())
        .map(|address| SocketAddr::new(address, audio.port));

    let family = if ours.address.is_ipv4() { "IP4" } else { "IP6" };
    let mut sdp = String::with_capacity(320);
    // Writing to a String cannot fail.
    let _ = write!(
        sdp,
        "v=0\r\no=golos {} {} IN {family} {address}\r\ns=golos\r\nc=IN {family} {address}\r\nt=0 0\r\n",
        ours.session_id,
        ours.session_version,
        address = ours.address,
    );
    for (index, media) in offer.media.iter().enumerate() {
        if index != chosen {
            let format = media.formats.first().map_or("0", String::as_str);
            let _ = write!(sdp, "m={} 0 {} {format}\r\n", media.media, media.protocol);
            continue;
        }
        let _ = write!(sdp, "m=audio {} {}", ours.port, audio.protocol);
        for &(_, pt) in &codecs {
            let _ = write!(sdp, " {pt}");
        }
        if let Some(pt) = telephone_event {
            let _ = write!(sdp, " {pt}");
        }
        sdp.push_str("\r\n");
        for &(codec, pt) in &codecs {
            let _ = write!(sdp, "a=rtpmap:{pt} {}/8000\r\n", codec.encoding_name());
        }
        if let Some(pt) = telephone_event {
            let _ = write!(sdp, "a=rtpmap:{pt} telephone-event/8000\r\na=fmtp:{pt} 0-15\r\n");
        }
        let _ = write!(sdp, "a=ptime:{PTIME_MS}\r\na={}\r\n", direction.attribute());
    }
    Ok(Negotiated {
        codec,
        codecs: codecs.iter().map(|&(codec, _)| codec).collect(),
        telephone_event,
        remote,
        direction,
        remote_ptime: audio.ptime,
        sdp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    /// The shape of an INVITE body from a Russian trunk: PCMU listed first, A-law offered too.
    const TRUNK_OFFER: &str = "v=0\r\n\
        o=- 3912345678 3912345678 IN IP4 80.75.130.10\r\n\
        s=-\r\n\
        c=IN IP4 80.75.130.10\r\n\
        t=0 0\r\n\
        m=audio 16384 RTP/AVP 0 8 18 101\r\n\
        a=rtpmap:0 PCMU/8000\r\n\
        a=rtpmap:8 PCMA/8000\r\n\
        a=rtpmap:18 G729/8000\r\n\
        a=fmtp:18 annexb=no\r\n\
        a=rtpmap:101 telephone-event/8000\r\n\
        a=fmtp:101 0-16\r\n\
        a=ptime:20\r\n\
        a=sendrecv\r\n";

    fn ours() -> AnswerParams {
        AnswerParams {
            address: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)),
            port: 40_000,
            session_id: 1,
            session_version: 2,
        }
    }

    #[test]
    fn parses_a_trunk_offer() {
        let offer = parse(TRUNK_OFFER.as_bytes()).expect("valid offer");
        assert_eq!(offer.connection, Some(IpAddr::V4(Ipv4Addr::new(80, 75, 130, 10))));
        let audio = &offer.media[0];
        assert_eq!((audio.media.as_str(), audio.port, audio.protocol.as_str()), ("audio", 16_384, "RTP/AVP"));
        assert_eq!(audio.formats, vec!["0", "8", "18", "101"]);
        assert_eq!(
            audio.rtpmaps[3],
            RtpMap { payload_type: 101, encoding: "telephone-event".to_owned(), clock_rate: 8000 }
        );
        assert_eq!(audio.fmtps, vec![(18, "annexb=no".to_owned()), (101, "0-16".to_owned())]);
        assert_eq!((audio.direction, audio.ptime), (Some(Direction::SendRecv), Some(20)));
    }

    #[test]
    fn answers_a_law_first_with_telephone_events() {
        let negotiated = answer(&parse(TRUNK_OFFER.as_bytes()).expect("valid"), &ours()).expect("common codec");
        assert_eq!(negotiated.codec, G711::Pcma);
        assert_eq!(negotiated.codecs, vec![G711::Pcma, G711::Pcmu]);
        assert_eq!(negotiated.telephone_event, Some(101));
        assert_eq!(negotiated.remote, Some("80.75.130.10:16384".parse().expect("address")));
        assert_eq!(
            negotiated.sdp,
            "v=0\r\no=golos 1 2 IN IP4 203.0.113.5\r\ns=golos\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n\
             m=audio 40000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
        );
        // Our answer is itself valid SDP that this parser reads back.
        let reparsed = parse(negotiated.sdp.as_bytes()).expect("valid answer");
        assert_eq!(reparsed.media[0].formats, vec!["8", "0", "101"]);
    }

    #[test]
    fn a_static_payload_type_without_rtpmap_still_counts() {
        let offer = "v=0\nc=IN IP4 10.0.0.1\nm=audio 5004 RTP/AVP 0\n";
        let negotiated = answer(&parse(offer.as_bytes()).expect("valid"), &ours()).expect("PCMU");
        assert_eq!((negotiated.codec, negotiated.telephone_event), (G711::Pcmu, None));
    }

    #[test]
    fn hold_is_answered_with_the_mirror_direction() {
        for (offered, answered) in [
            ("sendonly", Direction::RecvOnly),
            ("recvonly", Direction::SendOnly),
            ("inactive", Direction::Inactive),
            ("sendrecv", Direction::SendRecv),
        ] {
            let offer = TRUNK_OFFER.replace("a=sendrecv", &format!("a={offered}"));
            let negotiated = answer(&parse(offer.as_bytes()).expect("valid"), &ours()).expect("codec");
            assert_eq!(negotiated.direction, answered);
            assert!(negotiated.sdp.ends_with(&format!("a={}\r\n", answered.attribute())));
        }
        let session_level = "v=0\r\nc=IN IP4 0.0.0.0\r\na=sendonly\r\nm=audio 5004 RTP/AVP 8\r\n";
        let negotiated = answer(&parse(session_level.as_bytes()).expect("valid"), &ours()).expect("codec");
        assert_eq!((negotiated.direction, negotiated.remote), (Direction::RecvOnly, None));
    }

    #[test]
    fn nothing_in_common_is_a_488() {
        let g729 = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 5004 RTP/AVP 18 101\r\na=rtpmap:101 telephone-event/8000\r\n";
        assert_eq!(answer(&parse(g729.as_bytes()).expect("valid"), &ours()), Err(NegotiationError::NoCommonCodec));
        let srtp = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 5004 RTP/SAVP 8\r\n";
        assert_eq!(answer(&parse(srtp.as_bytes()).expect("valid"), &ours()), Err(NegotiationError::NoAudioStream));
        let disabled = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 0 RTP/AVP 8\r\n";
        assert_eq!(answer(&parse(disabled.as_bytes()).expect("valid"), &ours()), Err(NegotiationError::NoAudioStream));
    }

    #[test]
    fn other_streams_are_refused_with_port_zero() {
        let offer = format!("{TRUNK_OFFER}m=video 5006 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n");
        let negotiated = answer(&parse(offer.as_bytes()).expect("valid"), &ours()).expect("codec");
        assert!(negotiated.sdp.ends_with("a=sendrecv\r\nm=video 0 RTP/AVP 96\r\n"), "{}", negotiated.sdp);
    }

    #[test]
    fn malformed_and_oversized_bodies_are_refused() {
        assert_eq!(parse(b"o=- 1 1 IN IP4 1.2.3.4\r\n"), Err(SdpError::MissingVersion));
        assert_eq!(parse(&[b'v', b'=', b'0', b'\n', 0xFF]), Err(SdpError::NotUtf8));
        assert_eq!(parse(&vec![b'a'; MAX_SDP_LEN + 1]), Err(SdpError::TooLarge(MAX_SDP_LEN + 1)));
        assert_eq!(parse(b"v=0\nc=IN IP4 not-an-ip\n"), Err(SdpError::Malformed { line: 2, reason: "bad c= line" }));
        assert_eq!(parse(b"v=0\nm=audio x RTP/AVP 0\n"), Err(SdpError::Malformed { line: 2, reason: "bad m= line" }));
        assert_eq!(parse(b"v=0\ngarbage\n"), Err(SdpError::Malformed { line: 2, reason: "not <type>=<value>" }));
        assert!(parse(b"v=0\nc=IN IP6 10.0.0.1\n").is_err(), "an IPv4 address is not IP6");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(offer) = parse(&bytes) {
                let _ = answer(&offer, &ours());
            }
        }

        #[test]
        fn sdp_shaped_garbage_never_panics(
            lines in proptest::collection::vec(("[vocmat]", "[ -~]{0,40}"), 0..20),
            attributes in proptest::collection::vec(
                ("(rtpmap|fmtp|ptime|sendonly|recvonly|inactive)", "[0-9A-Za-z /:-]{0,20}"), 0..10),
        ) {
            let mut body = String::from("v=0\r\nm=audio 4000 RTP/AVP 0 8 101\r\n");
            for (kind, value) in lines {
                let _ = write!(body, "{kind}={value}\r\n");
            }
            for (name, value) in attributes {
                let _ = write!(body, "a={name}:{value}\r\n");
            }
            if let Ok(offer) = parse(body.as_bytes()) {
                if let Ok(negotiated) = answer(&offer, &ours()) {
                    prop_assert!(parse(negotiated.sdp.as_bytes()).is_ok());
                }
            }
        }
    }
}
