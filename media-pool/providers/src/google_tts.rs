//! Google Cloud Text-to-Speech: POST `{base}/v1/text:synthesize` with `x-goog-api-key`,
//! `audioEncoding: LINEAR16`; the answer is one JSON body whose base64 `audioContent` is a WAV
//! file (API reference, "text.synthesize"), so the header is stripped here.

use crate::error::check_status;
use crate::tts::{max_audio_bytes, AudioChunk, AudioStream, TtsProvider, TtsRequest};
use crate::wav;
use crate::ProviderError;
use async_trait::async_trait;
use base64::Engine as _;
use futures::StreamExt;
use golos_egress::net::EgressClient;
use golos_ports::SecretString;
use serde_json::{json, Value};

pub const GOOGLE_TTS_BASE_URL: &str = "https://texttospeech.googleapis.com";

#[derive(Debug, Clone)]
pub struct GoogleTtsConfig {
    pub name: String,
    pub base_url: String,
    pub api_key: SecretString,
    /// A voice name such as `ru-RU-Wavenet-A`; without one Google picks by language.
    pub voice_name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct GoogleTts {
    config: GoogleTtsConfig,
    client: EgressClient,
}

impl GoogleTts {
    pub fn new(config: GoogleTtsConfig, client: EgressClient) -> Self {
        Self { config, client }
    }
}

#[async_trait]
impl TtsProvider for GoogleTts {
    fn name(&self) -> &str {
        &self.config.name
    }

    async fn synthesize(&self, request: &TtsRequest) -> Result<AudioStream, ProviderError> {
        let mut voice = json!({"languageCode": request.language});
        if let Some(name) = &self.config.voice_name {
            voice["name"] = json!(name);
        }
        let body = json!({
            "input": {"text": request.text},
            "voice": voice,
            "audioConfig": {"audioEncoding": "LINEAR16", "sampleRateHertz": request.sample_rate},
        });
        let url = format!("{}/v1/text:synthesize", self.config.base_url.trim_end_matches('/'));
        // The key goes in a header, never in the URL, where errors and proxies would show it.
        let response =
            self.client.post(&url)?.header("x-goog-api-key", self.config.api_key.expose()).json(&body).send().await?;
        // The answer is JSON with the audio in base64 (4 bytes for 3), a WAV header and a few
        // fields: capped at the request's audio budget in that form.
        let limit = max_audio_bytes(request.sample_rate) / 3 * 4 + 64 * 1024;
        let bytes = golos_egress::net::read_capped(check_status(response).await?, limit).await?;
        let answer: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ProviderError::BadResponse(format!("synthesize answer is not JSON: {e}")))?;
        let content = answer
            .get("audioContent")
            .and_then(Value::as_str)
            .ok_or_else(|| ProviderError::BadResponse("no audioContent".into()))?;
        let audio = base64::engine::general_purpose::STANDARD
            .decode(content)
            .map_err(|e| ProviderError::BadResponse(format!("audioContent is not base64: {e}")))?;
        let parsed = wav::parse(&audio)?;
        let samples = wav::resample(&parsed.samples, parsed.sample_rate, request.sample_rate);
        if samples.is_empty() {
            return Err(ProviderError::BadResponse("no audio".into()));
        }
        let chunk = AudioChunk { sample_rate: request.sample_rate, samples };
        Ok(futures::stream::once(async move { Ok(chunk) }).boxed())
    }
}
