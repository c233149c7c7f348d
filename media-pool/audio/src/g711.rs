//! ITU-T G.711 companding: μ-law (PCMU, North America/Japan) and A-law (PCMA, Europe and
//! Russia — what MTS Exolve trunks send). One byte per 8 kHz sample.

const MULAW_BIAS: i32 = 0x84;
const MULAW_CLIP: i32 = 32_635;

/// Encodes one linear 16-bit sample as μ-law.
pub fn mulaw_encode(sample: i16) -> u8 {
    let mut pcm = i32::from(sample);
    let sign = if pcm < 0 { 0x80 } else { 0 };
    if pcm < 0 {
        pcm = -pcm;
    }
    pcm = pcm.min(MULAW_CLIP) + MULAW_BIAS;
    let exponent = (7 - (pcm as u32).leading_zeros().saturating_sub(17).min(7)) as i32;
    let mantissa = (pcm >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) | mantissa) as u8
}

/// Decodes one μ-law byte to a linear 16-bit sample.
pub fn mulaw_decode(byte: u8) -> i16 {
    let byte = !byte;
    let sign = byte & 0x80;
    let exponent = i32::from((byte >> 4) & 0x07);
    let mantissa = i32::from(byte & 0x0F);
    let magnitude = (((mantissa << 3) + MULAW_BIAS) << exponent) - MULAW_BIAS;
    (if sign != 0 { -magnitude } else { magnitude }) as i16
}

/// Encodes one linear 16-bit sample as A-law.
pub fn alaw_encode(sample: i16) -> u8 {
    let pcm = i32::from(sample) >> 3; // A-law works on 13-bit magnitudes
    let (sign, magnitude) = if pcm >= 0 { (0x80, pcm) } else { (0x00, -pcm - 1) };
    let magnitude = magnitude.min(0x0FFF);
    let encoded = if magnitude < 32 {
        magnitude >> 1
    } else {
        let exponent = 31 - (magnitude as u32).leading_zeros() as i32 - 4; // 1..=7
        (exponent << 4) | ((magnitude >> exponent) & 0x0F)
    };
    ((sign | encoded) ^ 0x55) as u8
}

/// Decodes one A-law byte to a linear 16-bit sample.
pub fn alaw_decode(byte: u8) -> i16 {
    let byte = i32::from(byte ^ 0x55);
    let exponent = (byte >> 4) & 0x07;
    let mantissa = byte & 0x0F;
    let magnitude = if exponent == 0 { (mantissa << 4) + 8 } else { ((mantissa << 4) + 0x108) << (exponent - 1) };
    (if byte & 0x80 != 0 { magnitude } else { -magnitude }) as i16
}

pub fn mulaw_encode_all(samples: &[i16]) -> Vec<u8> {
    samples.iter().copied().map(mulaw_encode).collect()
}

pub fn mulaw_decode_all(bytes: &[u8]) -> Vec<i16> {
    bytes.iter().copied().map(mulaw_decode).collect()
}

pub fn alaw_encode_all(samples: &[i16]) -> Vec<u8> {
    samples.iter().copied().map(alaw_encode).collect()
}

pub fn alaw_decode_all(bytes: &[u8]) -> Vec<i16> {
    bytes.iter().copied().map(alaw_decode).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn silence_and_reference_codes() {
        assert_eq!(mulaw_encode(0), 0xFF);
        assert_eq!(mulaw_decode(0xFF), 0);
        assert_eq!(mulaw_decode(0x7F), 0);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(mulaw_decode(0x00), -32_124);
        assert_eq!(mulaw_decode(0x80), 32_124);
        assert_eq!(alaw_decode(0xAA), 32_256);
        assert_eq!(alaw_decode(0x2A), -32_256);
    }

    #[test]
    fn every_code_round_trips_through_its_decoded_value() {
        for byte in 0..=255u8 {
            let mu = mulaw_decode(byte);
            // 0x7F and 0xFF both decode to zero; zero encodes as 0xFF.
            if mu != 0 {
                assert_eq!(mulaw_encode(mu), byte, "mu-law {byte:#04x}");
            }
            assert_eq!(alaw_encode(alaw_decode(byte)), byte, "a-law {byte:#04x}");
        }
    }

    proptest! {
        #[test]
        fn quantisation_error_is_bounded(sample in any::<i16>()) {
            // The step size grows with magnitude; the error stays within half a step plus
            // the clipping of the extremes (about 3 % of full scale for both laws).
            let tolerance = |s: i16| (i32::from(s).abs() / 16).max(16) + 1;
            let mu = i32::from(mulaw_decode(mulaw_encode(sample)));
            prop_assert!((mu - i32::from(sample)).abs() <= tolerance(sample).max(i32::from(sample).abs() - 32_124), "mu {} -> {}", sample, mu);
            let a = i32::from(alaw_decode(alaw_encode(sample)));
            prop_assert!((a - i32::from(sample)).abs() <= tolerance(sample).max(i32::from(sample).abs() - 32_256), "a {} -> {}", sample, a);
        }

        #[test]
        fn encoding_preserves_sign_and_order(a in any::<i16>(), b in any::<i16>()) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(mulaw_decode(mulaw_encode(lo)) <= mulaw_decode(mulaw_encode(hi)));
            prop_assert!(alaw_decode(alaw_encode(lo)) <= alaw_decode(alaw_encode(hi)));
        }
    }
}
