//! The media side of SIP telephony, sans-IO: bytes and arrival times in, packets, frames,
//! digits and statistics out. No socket, no runtime, no clock — the caller passes `now`, so
//! the worker drives it from its shard and the tests from a virtual clock (like golos-call).

pub mod dtmf;
pub mod jitter;
pub mod rtcp;
pub mod rtp;
pub mod sdp;
pub mod stats;

pub use rtp::{RtpError, RtpExtension, RtpHeader, RtpPacket};

/// RTP clock rate of G.711 and of `telephone-event/8000`.
pub const CLOCK_RATE: u32 = 8_000;
/// Samples in one 20 ms G.711 frame at 8 kHz (also its payload length in bytes).
pub const FRAME_SAMPLES: usize = golos_audio::samples_per_frame(CLOCK_RATE);
/// One frame of playout.
pub const FRAME_DURATION: std::time::Duration = std::time::Duration::from_millis(20);

/// The two G.711 laws, by the static RTP payload types RFC 3551 fixed for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum G711 {
    /// μ-law, payload type 0.
    Pcmu,
    /// A-law, payload type 8 — what Russian carriers send first.
    Pcma,
}

impl G711 {
    pub const fn payload_type(self) -> u8 {
        match self {
            Self::Pcmu => 0,
            Self::Pcma => 8,
        }
    }

    pub const fn from_payload_type(payload_type: u8) -> Option<Self> {
        match payload_type {
            0 => Some(Self::Pcmu),
            8 => Some(Self::Pcma),
            _ => None,
        }
    }

    /// The SDP encoding name (`a=rtpmap:8 PCMA/8000`).
    pub const fn encoding_name(self) -> &'static str {
        match self {
            Self::Pcmu => "PCMU",
            Self::Pcma => "PCMA",
        }
    }

    pub fn decode(self, byte: u8) -> i16 {
        match self {
            Self::Pcmu => golos_audio::g711::mulaw_decode(byte),
            Self::Pcma => golos_audio::g711::alaw_decode(byte),
        }
    }

    pub fn encode(self, sample: i16) -> u8 {
        match self {
            Self::Pcmu => golos_audio::g711::mulaw_encode(sample),
            Self::Pcma => golos_audio::g711::alaw_encode(sample),
        }
    }
}
