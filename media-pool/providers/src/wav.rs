//! Just enough RIFF/WAVE to read what espeak-ng, Google's LINEAR16 and recorded clips
//! produce: PCM 16-bit, mono or interleaved channels (mixed down), any rate.

use crate::ProviderError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wav {
    pub sample_rate: u32,
    pub samples: Vec<i16>,
}

/// Parses a WAV file. A data chunk whose declared size runs past the end (a stream written
/// before its length was known, as `espeak-ng --stdout` does) takes the bytes that are there.
pub fn parse(bytes: &[u8]) -> Result<Wav, ProviderError> {
    let bad = |what: &str| ProviderError::BadResponse(format!("WAV: {what}"));
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(bad("no RIFF/WAVE header"));
    }
    let mut at = 12;
    let mut format: Option<(u16, u16, u32, u16)> = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
        let body_start = at + 8;
        let body_end = body_start.saturating_add(size).min(bytes.len());
        let body = &bytes[body_start..body_end];
        match id {
            b"fmt " => {
                if body.len() < 16 {
                    return Err(bad("short fmt chunk"));
                }
                let u16_at = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
                let rate = u32::from_le_bytes(body[4..8].try_into().expect("4 bytes"));
                format = Some((u16_at(0), u16_at(2), rate, u16_at(14)));
            }
            b"data" => {
                let (tag, channels, sample_rate, bits) = format.ok_or_else(|| bad("data before fmt"))?;
                // 0xFFFE is WAVE_FORMAT_EXTENSIBLE, which Google uses for some rates.
                if !(tag == 1 || tag == 0xFFFE) || bits != 16 || channels == 0 || sample_rate == 0 {
                    return Err(bad(&format!("unsupported format {tag}, {bits} bits, {channels} channels")));
                }
                let channels = usize::from(channels);
                let samples: Vec<i16> = body
                    .chunks_exact(2 * channels)
                    .map(|frame| {
                        let sum: i32 = frame.chunks_exact(2).map(|s| i32::from(i16::from_le_bytes([s[0], s[1]]))).sum();
                        (sum / channels as i32) as i16
                    })
                    .collect();
                return Ok(Wav { sample_rate, samples });
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        at = body_start.saturating_add(size).saturating_add(size & 1);
    }
    Err(bad("no data chunk"))
}

/// Writes mono PCM16 as a WAV file (for clips and tests).
pub fn encode(sample_rate: u32, samples: &[i16]) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&sample_rate.to_le_bytes());
    out.extend_from_slice(&(sample_rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// Linear-interpolation resampling: enough for speech going to an 8 kHz phone line or a
/// recogniser; a filtered resampler belongs in golos-audio.
pub fn resample(samples: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to || samples.is_empty() {
        return samples.to_vec();
    }
    let out_len = (samples.len() as u64 * u64::from(to) / u64::from(from)) as usize;
    let step = f64::from(from) / f64::from(to);
    (0..out_len)
        .map(|i| {
            let pos = i as f64 * step;
            let index = pos as usize;
            let frac = pos - index as f64;
            let a = f64::from(samples[index.min(samples.len() - 1)]);
            let b = f64::from(samples[(index + 1).min(samples.len() - 1)]);
            (a + (b - a) * frac).round() as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_tolerates_an_unknown_length() {
        let samples: Vec<i16> = (0..100).map(|i| (i * 300 - 15_000) as i16).collect();
        let mut bytes = encode(22_050, &samples);
        assert_eq!(parse(&bytes).unwrap(), Wav { sample_rate: 22_050, samples: samples.clone() });
        bytes[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse(&bytes).unwrap().samples, samples);
    }

    #[test]
    fn refuses_what_is_not_pcm16() {
        assert!(parse(b"ID3 not a wav file").is_err());
        let mut bytes = encode(8_000, &[1, 2]);
        bytes[34] = 8;
        assert!(parse(&bytes).is_err());
    }

    #[test]
    fn resampling_keeps_duration_and_shape() {
        let ramp: Vec<i16> = (0..441).map(|i| i as i16 * 10).collect();
        let down = resample(&ramp, 22_050, 8_000);
        assert_eq!(down.len(), 160);
        assert!(down.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(resample(&ramp, 16_000, 16_000), ramp);
        assert_eq!(resample(&ramp[..80], 8_000, 16_000).len(), 160);
    }
}
