//! AWS Polly through aws-sdk-polly: SynthesizeSpeech with `OutputFormat::Pcm`, which is raw
//! signed 16-bit little-endian mono at 8 or 16 kHz; other rates are resampled from 16 kHz.

use crate::tts::{max_audio_bytes, AudioChunk, AudioStream, Pcm16Decoder, TtsProvider, TtsRequest};
use crate::wav::resample;
use crate::ProviderError;
use async_trait::async_trait;
use aws_sdk_polly::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_polly::types::{OutputFormat, VoiceId};
use futures::StreamExt;

#[derive(Debug, Clone)]
pub struct PollyConfig {
    pub name: String,
    pub region: String,
    /// A test server (moto) or a VPC endpoint; with one, static test credentials are used,
    /// as golos-aws does, and otherwise the default AWS credential chain.
    pub endpoint_url: Option<String>,
    /// Polly voice, e.g. `Tatyana` (ru-RU) or `Joanna` (en-US); by language when absent.
    pub voice_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PollyTts {
    name: String,
    client: aws_sdk_polly::Client,
    voice_id: Option<String>,
}

impl PollyTts {
    pub fn new(name: impl Into<String>, client: aws_sdk_polly::Client, voice_id: Option<String>) -> Self {
        Self { name: name.into(), client, voice_id }
    }

    pub async fn connect(config: PollyConfig) -> Self {
        let mut loader =
            aws_config::defaults(aws_config::BehaviorVersion::latest()).region(aws_config::Region::new(config.region));
        if let Some(endpoint) = &config.endpoint_url {
            loader = loader.endpoint_url(endpoint).credentials_provider(aws_credential_types::Credentials::new(
                "test",
                "test",
                None,
                None,
                "golos-static",
            ));
        }
        let sdk = loader.load().await;
        Self::new(config.name, aws_sdk_polly::Client::new(&sdk), config.voice_id)
    }

    fn voice(&self, language: &str) -> VoiceId {
        let name = self.voice_id.clone().unwrap_or_else(|| {
            match language.split('-').next().unwrap_or_default() {
                "ru" => "Tatyana",
                "de" => "Marlene",
                "fr" => "Celine",
                "es" => "Conchita",
                _ => "Joanna",
            }
            .to_owned()
        });
        VoiceId::from(name.as_str())
    }
}

fn classify<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    err: &SdkError<E, R>,
) -> ProviderError {
    match err {
        SdkError::TimeoutError(_) => ProviderError::Timeout("Polly did not answer in time".into()),
        SdkError::DispatchFailure(_) => ProviderError::Connection(crate::error::error_chain(err)),
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            let message = service.err().message().unwrap_or_default().to_owned();
            match code {
                "ThrottlingException" | "TooManyRequestsException" => ProviderError::RateLimited { retry_after: None },
                "ServiceFailureException" | "InternalFailure" | "ServiceUnavailable" => {
                    ProviderError::Server { status: 500, message }
                }
                "UnrecognizedClientException" | "InvalidSignatureException" | "AccessDeniedException" => {
                    ProviderError::Auth { status: 403 }
                }
                _ => ProviderError::BadResponse(format!("{code}: {message}")),
            }
        }
        _ => ProviderError::BadResponse(crate::error::error_chain(err)),
    }
}

#[async_trait]
impl TtsProvider for PollyTts {
    fn name(&self) -> &str {
        &self.name
    }

    async fn synthesize(&self, request: &TtsRequest) -> Result<AudioStream, ProviderError> {
        let wanted = request.sample_rate;
        let source_rate = if wanted == 8_000 { 8_000 } else { 16_000 };
        let output = self
            .client
            .synthesize_speech()
            .output_format(OutputFormat::Pcm)
            .sample_rate(source_rate.to_string())
            .voice_id(self.voice(&request.language))
            .text(&request.text)
            .send()
            .await
            .map_err(|e| classify(&e))?;
        let body = output.audio_stream;
        let limit = max_audio_bytes(source_rate);
        let stream = futures::stream::unfold(
            (body, Pcm16Decoder::default(), 0usize, false),
            move |(mut body, mut decoder, mut seen, done)| async move {
                if done {
                    return None;
                }
                loop {
                    match body.next().await {
                        Some(Ok(bytes)) => {
                            seen = seen.saturating_add(bytes.len());
                            if seen > limit {
                                let error = ProviderError::BadResponse(format!("more than {limit} bytes of audio"));
                                return Some((Err(error), (body, decoder, seen, true)));
                            }
                            let samples = decoder.push(&bytes);
                            if samples.is_empty() {
                                continue;
                            }
                            let chunk =
                                AudioChunk { sample_rate: wanted, samples: resample(&samples, source_rate, wanted) };
                            return Some((Ok(chunk), (body, decoder, seen, false)));
                        }
                        Some(Err(e)) => {
                            let error = ProviderError::Connection(crate::error::error_chain(&e));
                            return Some((Err(error), (body, decoder, seen, true)));
                        }
                        None => return None,
                    }
                }
            },
        );
        Ok(stream.boxed())
    }
}
