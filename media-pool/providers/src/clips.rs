//! Pre-recorded clips: WAV files in a folder, looked up by the text they say (the apology,
//! the greeting, FAQ answers recorded by a person). `Сейчас соединю!` is `сейчас_соединю.wav`.

use crate::tts::{AudioChunk, AudioStream, TtsProvider, TtsRequest};
use crate::wav;
use crate::ProviderError;
use async_trait::async_trait;
use futures::StreamExt;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct ClipLibrary {
    dir: PathBuf,
}

impl ClipLibrary {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The file name of a text: lower case, letters and digits, runs of anything else as one `_`.
    /// It can hold no path separator, so no text reaches outside the folder.
    pub fn file_name(text: &str) -> String {
        let mut name = String::new();
        for c in text.chars().flat_map(char::to_lowercase) {
            if c.is_alphanumeric() {
                name.push(c);
            } else if !name.is_empty() && !name.ends_with('_') {
                name.push('_');
            }
        }
        let name = name.trim_end_matches('_');
        format!("{name}.wav")
    }

    pub async fn load(&self, text: &str, sample_rate: u32) -> Result<Vec<i16>, ProviderError> {
        let path = self.dir.join(Self::file_name(text));
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| ProviderError::Unavailable(format!("no clip {} ({e})", path.display())))?;
        let parsed = wav::parse(&bytes)?;
        Ok(wav::resample(&parsed.samples, parsed.sample_rate, sample_rate))
    }
}

#[async_trait]
impl TtsProvider for ClipLibrary {
    fn name(&self) -> &'static str {
        "prerecorded"
    }

    async fn synthesize(&self, request: &TtsRequest) -> Result<AudioStream, ProviderError> {
        let samples = self.load(&request.text, request.sample_rate).await?;
        let chunk = AudioChunk { sample_rate: request.sample_rate, samples };
        Ok(futures::stream::once(async move { Ok(chunk) }).boxed())
    }
}
