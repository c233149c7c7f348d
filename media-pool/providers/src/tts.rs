//! The TTS port: text in, PCM16 audio at the requested sample rate out.

use crate::ProviderError;
use async_trait::async_trait;
use futures::stream::BoxStream;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TtsRequest {
    pub text: String,
    /// BCP 47, e.g. `ru-RU`; adapters without a configured voice pick one by it.
    pub language: String,
    pub sample_rate: u32,
}

/// Mono signed 16-bit samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioChunk {
    pub sample_rate: u32,
    pub samples: Vec<i16>,
}

pub type AudioStream = BoxStream<'static, Result<AudioChunk, ProviderError>>;

/// The most audio one request may bring back. Requests are sentence chunks (DESIGN.md §4:
/// a sentence, or about 40 characters), a greeting (at most 1,000 characters, about a
/// minute spoken) or a prompt, so two minutes is far beyond any honest answer; a provider
/// that sends more is failing, and the caller must not hold it in memory.
pub const MAX_AUDIO_SECS_PER_REQUEST: usize = 120;

/// [`MAX_AUDIO_SECS_PER_REQUEST`] of PCM16 mono at `sample_rate`, in bytes (3.84 MB at 16 kHz).
pub fn max_audio_bytes(sample_rate: u32) -> usize {
    MAX_AUDIO_SECS_PER_REQUEST * sample_rate as usize * 2
}

#[async_trait]
pub trait TtsProvider: Send + Sync + fmt::Debug {
    fn name(&self) -> &str;

    /// Starts synthesis. Every chunk of the stream is at `request.sample_rate`.
    async fn synthesize(&self, request: &TtsRequest) -> Result<AudioStream, ProviderError>;
}

/// Turns little-endian PCM16 bytes that arrive in arbitrary pieces into samples, keeping an
/// odd trailing byte for the next piece.
#[derive(Debug, Default)]
pub(crate) struct Pcm16Decoder {
    carry: Option<u8>,
}

impl Pcm16Decoder {
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<i16> {
        let mut samples = Vec::with_capacity(bytes.len() / 2 + 1);
        let mut rest = bytes;
        if let Some(low) = self.carry.take() {
            if let Some((&high, tail)) = rest.split_first() {
                samples.push(i16::from_le_bytes([low, high]));
                rest = tail;
            } else {
                self.carry = Some(low);
                return samples;
            }
        }
        let mut pairs = rest.chunks_exact(2);
        samples.extend(pairs.by_ref().map(|p| i16::from_le_bytes([p[0], p[1]])));
        self.carry = pairs.remainder().first().copied();
        samples
    }

    pub(crate) fn has_partial_sample(&self) -> bool {
        self.carry.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_split_across_pieces_are_joined() {
        let bytes: Vec<u8> = [1i16, -2, 300, -32768].iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut decoder = Pcm16Decoder::default();
        let mut out = decoder.push(&bytes[..3]);
        out.extend(decoder.push(&bytes[3..3]));
        out.extend(decoder.push(&bytes[3..]));
        assert_eq!(out, vec![1, -2, 300, -32768]);
        assert!(!decoder.has_partial_sample());
    }
}
