//! The crate's one error type. Every variant has a stable `code` so a transport can answer a
//! client with `error {code, message}` and SDKs can branch on the code, never on the text.

use golos_audio::AudioError;

/// Errors at golos-transports' boundary.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// A control message whose `type` (golos) or `event` (Twilio) is not one we know.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// Not JSON, a missing or mistyped field, an unknown field, or a value out of range.
    #[error("invalid message: {0}")]
    InvalidMessage(String),
    #[error("message of {len} bytes exceeds the limit of {max}")]
    MessageTooLarge { len: usize, max: usize },
    /// A binary audio frame that is empty, not a whole number of PCM16 samples, or longer
    /// than 100 ms at the stream's rate.
    #[error("invalid audio frame of {len} bytes: {reason}")]
    InvalidAudioFrame { len: usize, reason: &'static str },
    #[error("unsupported sample rate {0} Hz (supported: 8000, 16000, 24000, 48000)")]
    UnsupportedSampleRate(u32),
    /// A Twilio-style stream whose media format is not μ-law 8 kHz mono.
    #[error("unsupported media format: {0}")]
    UnsupportedMediaFormat(String),
    /// A Twilio `media` payload that is not valid base64.
    #[error("invalid media payload: {0}")]
    InvalidPayload(String),
    #[error("invalid DTMF digit {0:?} (expected one of 0-9 * # A-D)")]
    InvalidDtmf(String),
    /// A message that is valid on its own but not at this point of the call (audio before
    /// `start`, a second `start`).
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    #[error(transparent)]
    Audio(#[from] AudioError),
}

impl TransportError {
    /// The stable machine-readable code sent to clients in `error {code, message}`.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::UnknownType(_) => "unknown_type",
            Self::InvalidMessage(_) => "invalid_message",
            Self::MessageTooLarge { .. } => "message_too_large",
            Self::InvalidAudioFrame { .. } => "invalid_audio_frame",
            Self::UnsupportedSampleRate(_) => "unsupported_sample_rate",
            Self::UnsupportedMediaFormat(_) => "unsupported_media_format",
            Self::InvalidPayload(_) => "invalid_payload",
            Self::InvalidDtmf(_) => "invalid_dtmf",
            Self::Protocol(_) => "protocol_violation",
            Self::Audio(_) => "audio_error",
        }
    }
}
