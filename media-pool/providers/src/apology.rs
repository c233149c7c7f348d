//! The last words when every provider of a turn failed: the caller must never hear silence.
//! The apology is spoken by whichever TTS tier still works; when none does, a short two-tone
//! signal generated here stands in, since it cannot fail.

use crate::chain::TtsChain;
use crate::tts::TtsRequest;
use futures::StreamExt;

pub fn apology_text(language: &str) -> &'static str {
    if language.starts_with("ru") {
        "Извините, у нас технические неполадки. Пожалуйста, перезвоните чуть позже."
    } else {
        "Sorry, we are having technical difficulties. Please call again a little later."
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApologySource {
    /// The provider that spoke it.
    Spoken(String),
    Tone,
}

/// The apology as PCM16 at `sample_rate`, and who produced it.
pub async fn apology_audio(tts: &TtsChain, language: &str, sample_rate: u32) -> (Vec<i16>, ApologySource) {
    let request = TtsRequest { text: apology_text(language).to_owned(), language: language.to_owned(), sample_rate };
    if let Ok(mut stream) = tts.synthesize(&request).await {
        let provider = stream.provider.clone();
        let mut samples = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => samples.extend(chunk.samples),
                // What was spoken stays; a cut-off apology still beats silence.
                Err(error) => {
                    tracing::warn!(%error, provider = %provider, "the apology broke off");
                    break;
                }
            }
        }
        if !samples.is_empty() {
            return (samples, ApologySource::Spoken(provider));
        }
    }
    (tone(sample_rate), ApologySource::Tone)
}

/// Two falling tones (660 Hz then 440 Hz, 300 ms each at a moderate level), the familiar
/// "something went wrong" signal of phone networks.
pub fn tone(sample_rate: u32) -> Vec<i16> {
    let rate = f64::from(sample_rate);
    let each = (rate * 0.3) as usize;
    [660.0_f64, 440.0]
        .iter()
        .flat_map(|&freq| {
            (0..each).map(move |i| {
                let t = i as f64 / rate;
                // 10 ms fades keep the edges from clicking.
                let fade = (t / 0.01).min((each - i) as f64 / rate / 0.01).min(1.0);
                (f64::sin(2.0 * std::f64::consts::PI * freq * t) * 8_000.0 * fade) as i16
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::ChainConfig;

    #[tokio::test]
    async fn with_no_voice_at_all_the_tone_still_sounds() {
        let (samples, source) = apology_audio(&TtsChain::new(ChainConfig::default()), "ru-RU", 8_000).await;
        assert_eq!(source, ApologySource::Tone);
        assert_eq!(samples.len(), 4_800);
        assert!(samples.iter().any(|s| s.unsigned_abs() > 7_000));
        assert!(samples[0].unsigned_abs() < 100 && samples[4_799].unsigned_abs() < 100, "no clicks");
    }
}
