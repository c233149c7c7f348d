//! ElevenLabs streaming TTS: POST `{base}/v1/text-to-speech/{voice_id}/stream?output_format=pcm_{rate}`
//! with `xi-api-key` and `{"text", "model_id"}`; the body is raw little-endian PCM16 as it is
//! synthesized (API reference, "Stream speech").

use crate::error::check_status;
use crate::tts::{max_audio_bytes, AudioChunk, AudioStream, Pcm16Decoder, TtsProvider, TtsRequest};
use crate::wav::resample;
use crate::ProviderError;
use async_trait::async_trait;
use futures::StreamExt;
use golos_egress::net::EgressClient;
use golos_ports::SecretString;
use serde_json::json;

pub const ELEVENLABS_BASE_URL: &str = "https://api.elevenlabs.io";
pub const ELEVENLABS_DEFAULT_MODEL: &str = "eleven_multilingual_v2";
/// The PCM rates ElevenLabs can send; another requested rate is resampled from 16 kHz.
const PCM_RATES: [u32; 6] = [8_000, 16_000, 22_050, 24_000, 44_100, 48_000];

#[derive(Debug, Clone)]
pub struct ElevenLabsConfig {
    pub name: String,
    pub base_url: String,
    pub api_key: SecretString,
    pub voice_id: String,
    pub model_id: String,
}

#[derive(Debug, Clone)]
pub struct ElevenLabsTts {
    config: ElevenLabsConfig,
    client: EgressClient,
}

impl ElevenLabsTts {
    pub fn new(config: ElevenLabsConfig, client: EgressClient) -> Self {
        Self { config, client }
    }
}

#[async_trait]
impl TtsProvider for ElevenLabsTts {
    fn name(&self) -> &str {
        &self.config.name
    }

    async fn synthesize(&self, request: &TtsRequest) -> Result<AudioStream, ProviderError> {
        let wanted = request.sample_rate;
        let source_rate = if PCM_RATES.contains(&wanted) { wanted } else { 16_000 };
        let url = format!(
            "{}/v1/text-to-speech/{}/stream",
            self.config.base_url.trim_end_matches('/'),
            urlencode_path(&self.config.voice_id)
        );
        let response = self
            .client
            .post(&url)?
            .query(&[("output_format", format!("pcm_{source_rate}"))])
            .header("xi-api-key", self.config.api_key.expose())
            .json(&json!({"text": request.text, "model_id": self.config.model_id}))
            .send()
            .await?;
        let response = check_status(response).await?;
        let mut decoder = Pcm16Decoder::default();
        // A voice that never stops (or a server that streams forever) ends as an error once
        // it has sent more audio than any one sentence needs.
        let audio = golos_egress::net::capped_stream(response, max_audio_bytes(source_rate));
        let body = audio.map(Some).chain(futures::stream::once(async { None }));
        let stream = body
            .map(move |piece| match piece {
                Some(Ok(bytes)) => {
                    let samples = decoder.push(&bytes);
                    Some(Ok(AudioChunk { sample_rate: wanted, samples: resample(&samples, source_rate, wanted) }))
                }
                Some(Err(e)) => Some(Err(ProviderError::from(e))),
                None if decoder.has_partial_sample() => {
                    Some(Err(ProviderError::BadResponse("the audio ended inside a sample".into())))
                }
                None => None,
            })
            .filter_map(|item| {
                futures::future::ready(item.filter(|r| r.as_ref().map_or(true, |c| !c.samples.is_empty())))
            })
            .scan(false, |failed, item| {
                // Nothing after an error: the caller has what played and the reason.
                if *failed {
                    return futures::future::ready(None);
                }
                *failed = item.is_err();
                futures::future::ready(Some(item))
            });
        Ok(stream.boxed())
    }
}

/// Voice ids are alphanumeric; anything else is escaped rather than trusted into the path.
pub(crate) fn urlencode_path(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
