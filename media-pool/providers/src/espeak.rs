//! The local TTS tier: `espeak-ng --stdout` reading the text from stdin (so no text is ever
//! taken for an option), WAV on stdout, resampled to the requested rate.

use crate::tts::{AudioChunk, AudioStream, TtsProvider, TtsRequest};
use crate::wav;
use crate::ProviderError;
use async_trait::async_trait;
use futures::StreamExt;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

#[derive(Debug, Clone)]
pub struct EspeakTts {
    name: String,
    program: String,
    /// An espeak-ng voice such as `ru` or `en-us`; by the request's language when absent.
    voice: Option<String>,
}

impl EspeakTts {
    pub fn new(voice: Option<String>) -> Self {
        Self { name: "espeak-ng".into(), program: "espeak-ng".into(), voice }
    }

    /// Another binary (a path, or a stand-in that is not installed, for tests).
    pub fn with_program(mut self, program: impl Into<String>) -> Self {
        self.program = program.into();
        self
    }

    fn voice_for(&self, language: &str) -> String {
        self.voice.clone().unwrap_or_else(|| {
            let lower = language.to_ascii_lowercase();
            match lower.split('-').next().unwrap_or("en") {
                // espeak-ng's English voices are by region; the rest by language alone.
                "en" if lower == "en-gb" => "en".to_owned(),
                "en" => "en-us".to_owned(),
                primary => primary.to_owned(),
            }
        })
    }
}

#[async_trait]
impl TtsProvider for EspeakTts {
    fn name(&self) -> &str {
        &self.name
    }

    async fn synthesize(&self, request: &TtsRequest) -> Result<AudioStream, ProviderError> {
        let mut child = tokio::process::Command::new(&self.program)
            .args(["--stdout", "--stdin", "-v", &self.voice_for(&request.language)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                ProviderError::Unavailable(format!(
                    "cannot run {} ({e}); install it: apt-get install espeak-ng",
                    self.program
                ))
            })?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        let text = request.text.clone();
        let writer = async move {
            stdin.write_all(text.as_bytes()).await?;
            stdin.write_all(b"\n").await?;
            stdin.shutdown().await
        };
        let (written, output) = tokio::join!(writer, child.wait_with_output());
        let output = output.map_err(|e| ProviderError::Unavailable(format!("{}: {e}", self.program)))?;
        written.map_err(|e| ProviderError::Unavailable(format!("{}: {e}", self.program)))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(ProviderError::Unavailable(format!(
                "{} failed ({}): {}",
                self.program,
                output.status,
                stderr.trim()
            )));
        }
        let parsed = wav::parse(&output.stdout)?;
        let samples = wav::resample(&parsed.samples, parsed.sample_rate, request.sample_rate);
        if samples.is_empty() {
            return Err(ProviderError::BadResponse(format!("{} produced no audio", self.program)));
        }
        let chunk = AudioChunk { sample_rate: request.sample_rate, samples };
        Ok(futures::stream::once(async move { Ok(chunk) }).boxed())
    }
}
