//! Synthetic audio for the TTS simulators and G.711 decoding for the STT simulator.
//!
//! A 250 Hz tone has exactly five periods in 20 ms at any sample rate, so one second of it per
//! format is built once, leaked, and streamed as `Bytes::from_static` slices: no allocation per
//! chunk however many streams run.

use std::f64::consts::PI;
use std::sync::OnceLock;

use bytes::Bytes;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Linear16,
    Mulaw,
    Alaw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Format {
    pub encoding: Encoding,
    pub sample_rate: u32,
}

impl Format {
    pub(crate) fn bytes_per_sample(self) -> usize {
        match self.encoding {
            Encoding::Linear16 => 2,
            Encoding::Mulaw | Encoding::Alaw => 1,
        }
    }

    /// Bytes of `ms` milliseconds of audio.
    pub(crate) fn bytes_for_ms(self, ms: u64) -> usize {
        (u64::from(self.sample_rate) * ms / 1000) as usize * self.bytes_per_sample()
    }
}

const TONE_HZ: f64 = 250.0;
const TONE_AMPLITUDE: f64 = 3000.0;
const RATES: [u32; 6] = [8000, 16_000, 22_050, 24_000, 44_100, 48_000];

/// One second of tone in `format` (250 whole periods, so any slice that starts at 0 and lasts a
/// multiple of 20 ms joins seamlessly to the next), or `None` for a sample rate the simulator does
/// not produce.
pub(crate) fn tone_second(format: Format) -> Option<&'static [u8]> {
    static CACHE: [[OnceLock<&'static [u8]>; 6]; 3] = [const { [const { OnceLock::new() }; 6] }; 3];
    let rate = RATES.iter().position(|r| *r == format.sample_rate)?;
    let enc = match format.encoding {
        Encoding::Linear16 => 0,
        Encoding::Mulaw => 1,
        Encoding::Alaw => 2,
    };
    Some(CACHE[enc][rate].get_or_init(|| Box::leak(build_tone(format, 1000).into_boxed_slice())))
}

fn build_tone(format: Format, ms: u64) -> Vec<u8> {
    let samples = u64::from(format.sample_rate) * ms / 1000;
    let mut out = Vec::with_capacity(samples as usize * format.bytes_per_sample());
    for n in 0..samples {
        let s = (TONE_AMPLITUDE * (2.0 * PI * TONE_HZ * n as f64 / f64::from(format.sample_rate)).sin()) as i16;
        match format.encoding {
            Encoding::Linear16 => out.extend_from_slice(&s.to_le_bytes()),
            Encoding::Mulaw => out.push(linear_to_mulaw(s)),
            Encoding::Alaw => out.push(linear_to_alaw(s)),
        }
    }
    out
}

/// `duration_ms` of tone as one buffer (for one-shot responses).
pub(crate) fn tone(format: Format, duration_ms: u64) -> Option<Vec<u8>> {
    let second = tone_second(format)?;
    let mut out = Vec::with_capacity(format.bytes_for_ms(duration_ms));
    for _ in 0..duration_ms / 1000 {
        out.extend_from_slice(second);
    }
    out.extend_from_slice(&second[..format.bytes_for_ms(duration_ms % 1000)]);
    Some(out)
}

pub(crate) fn static_bytes(chunk: &'static [u8]) -> Bytes {
    Bytes::from_static(chunk)
}

/// A canonical 44-byte RIFF/WAVE header (PCM, μ-law or A-law, mono).
pub(crate) fn wav_header(format: Format, data_len: usize) -> [u8; 44] {
    let (tag, bits): (u16, u16) = match format.encoding {
        Encoding::Linear16 => (1, 16),
        Encoding::Alaw => (6, 8),
        Encoding::Mulaw => (7, 8),
    };
    let block_align = bits / 8;
    let byte_rate = format.sample_rate * u32::from(block_align);
    let data_len = data_len as u32;
    let mut h = [0u8; 44];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(36 + data_len).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&tag.to_le_bytes());
    h[22..24].copy_from_slice(&1u16.to_le_bytes());
    h[24..28].copy_from_slice(&format.sample_rate.to_le_bytes());
    h[28..32].copy_from_slice(&byte_rate.to_le_bytes());
    h[32..34].copy_from_slice(&block_align.to_le_bytes());
    h[34..36].copy_from_slice(&bits.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_len.to_le_bytes());
    h
}

// G.711 after ITU-T G.711 (the classic Sun reference formulation).

const MULAW_BIAS: i32 = 0x84;
const MULAW_CLIP: i32 = 32_635;

pub(crate) fn linear_to_mulaw(sample: i16) -> u8 {
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(MULAW_CLIP) + MULAW_BIAS;
    let top = (s >> 7) as u32 & 0xFF;
    let exponent = if top == 0 { 0 } else { top.ilog2() as i32 };
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !((sign | (exponent << 4) | mantissa) as u8)
}

pub(crate) fn mulaw_to_linear(byte: u8) -> i16 {
    let u = !byte;
    let sign = u & 0x80;
    let exponent = i32::from((u >> 4) & 0x07);
    let mantissa = i32::from(u & 0x0F);
    let magnitude = (((mantissa << 3) + MULAW_BIAS) << exponent) - MULAW_BIAS;
    if sign == 0 {
        magnitude as i16
    } else {
        (-magnitude) as i16
    }
}

pub(crate) fn linear_to_alaw(sample: i16) -> u8 {
    let s = i32::from(sample) >> 3;
    let (mask, mag) = if s >= 0 { (0xD5, s) } else { (0x55, -s - 1) };
    let mag = mag.min(0xFFF);
    let seg = if mag < 0x20 { 0 } else { 32 - (mag as u32).leading_zeros() as i32 - 5 };
    let aval = if seg == 0 { mag >> 1 } else { (seg << 4) | ((mag >> seg) & 0x0F) };
    (aval as u8) ^ mask
}

pub(crate) fn alaw_to_linear(byte: u8) -> i16 {
    let a = i32::from(byte ^ 0x55);
    let seg = (a & 0x70) >> 4;
    let mut t = (a & 0x0F) << 4;
    t = match seg {
        0 => t + 8,
        1 => t + 0x108,
        _ => (t + 0x108) << (seg - 1),
    };
    if a & 0x80 != 0 {
        t as i16
    } else {
        (-t) as i16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g711_round_trips_within_quantisation_error() {
        for s in (-32_000i16..32_000).step_by(97) {
            let m = mulaw_to_linear(linear_to_mulaw(s));
            let a = alaw_to_linear(linear_to_alaw(s));
            let tolerance = (i32::from(s).abs() / 16).max(16);
            assert!((i32::from(m) - i32::from(s)).abs() <= tolerance, "mu-law {s} -> {m}");
            assert!((i32::from(a) - i32::from(s)).abs() <= tolerance, "A-law {s} -> {a}");
        }
        assert_eq!(mulaw_to_linear(0xFF), 0);
        assert_eq!(linear_to_mulaw(0), 0xFF);
        assert!(alaw_to_linear(linear_to_alaw(0)).abs() <= 8);
    }

    #[test]
    fn tone_is_seamless_every_20ms() {
        let f = Format { encoding: Encoding::Linear16, sample_rate: 16_000 };
        let second = tone_second(f).unwrap();
        assert_eq!(second.len(), 32_000);
        assert_eq!(&second[..2], &[0, 0]);
        assert_eq!(&second[640..642], &[0, 0], "20 ms in, the phase is back at 0");
        let ulaw = Format { encoding: Encoding::Mulaw, sample_rate: 8000 };
        assert_eq!(tone_second(ulaw).unwrap().len(), 8000);
        assert_eq!(tone(f, 2210).unwrap().len(), 70_720);
        assert!(tone_second(Format { encoding: Encoding::Linear16, sample_rate: 11_025 }).is_none());
    }
}
