//! The local STT tier: pocketsphinx with a JSGF grammar made of the phrases the agent expects
//! (a FAQ agent's questions), so it recognises scripted phrases even through mu-law. It runs
//! `pocketsphinx_continuous` reading raw 16 kHz PCM from stdin and printing one line per
//! utterance, loaded at run time: when the program, the acoustic model or a usable phrase is
//! missing, `open` says why with `Unavailable` and the chain skips the tier.

use crate::stt::{SttBackend, SttConfig, SttEvent, SttProvider, SttSession, Transcript};
use crate::wav::resample;
use crate::ProviderError;
use async_trait::async_trait;
use std::collections::HashSet;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Debian's `pocketsphinx-en-us`.
pub const DEFAULT_MODEL_DIR: &str = "/usr/share/pocketsphinx/model/en-us";
const RATE: u32 = 16_000;

#[derive(Debug, Clone)]
pub struct PocketsphinxStt {
    program: String,
    /// Holds `en-us/` (the acoustic model) and `cmudict-en-us.dict`.
    model_dir: PathBuf,
}

impl Default for PocketsphinxStt {
    fn default() -> Self {
        Self { program: "pocketsphinx_continuous".into(), model_dir: DEFAULT_MODEL_DIR.into() }
    }
}

impl PocketsphinxStt {
    pub fn new(program: impl Into<String>, model_dir: impl Into<PathBuf>) -> Self {
        Self { program: program.into(), model_dir: model_dir.into() }
    }

    /// The JSGF grammar of the phrases whose every word the dictionary knows (an unknown word
    /// makes pocketsphinx refuse the whole grammar), and the phrases that were left out.
    pub fn grammar(phrases: &[String], dictionary: &HashSet<String>) -> (Option<String>, Vec<String>) {
        let mut kept = Vec::new();
        let mut dropped = Vec::new();
        for phrase in phrases {
            let words: Vec<String> = phrase
                .split(|c: char| !(c.is_alphanumeric() || c == '\''))
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect();
            if !words.is_empty() && words.iter().all(|w| dictionary.contains(w)) {
                let line = words.join(" ");
                if !kept.contains(&line) {
                    kept.push(line);
                }
            } else {
                dropped.push(phrase.clone());
            }
        }
        if kept.is_empty() {
            return (None, dropped);
        }
        let grammar = format!("#JSGF V1.0;\ngrammar golos;\npublic <phrase> = {};\n", kept.join(" | "));
        (Some(grammar), dropped)
    }
}

fn unavailable(reason: impl Into<String>) -> ProviderError {
    ProviderError::Unavailable(reason.into())
}

#[async_trait]
impl SttProvider for PocketsphinxStt {
    fn name(&self) -> &'static str {
        "pocketsphinx"
    }

    async fn open(&self, config: &SttConfig) -> Result<SttSession, ProviderError> {
        if !config.language.to_ascii_lowercase().starts_with("en") {
            return Err(unavailable(format!("pocketsphinx has no model for {} here (en-US only)", config.language)));
        }
        let acoustic = self.model_dir.join("en-us");
        let dict_path = self.model_dir.join("cmudict-en-us.dict");
        let dict_text = tokio::fs::read_to_string(&dict_path).await.map_err(|e| {
            unavailable(format!(
                "no pocketsphinx dictionary at {} ({e}); apt-get install pocketsphinx-en-us",
                dict_path.display()
            ))
        })?;
        if !acoustic.is_dir() {
            return Err(unavailable(format!("no pocketsphinx acoustic model at {}", acoustic.display())));
        }
        // Alternative pronunciations are listed as `word(2)`.
        let dictionary: HashSet<String> = dict_text
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(|w| w.split('(').next().unwrap_or(w).to_owned())
            .collect();
        let (grammar, dropped) = Self::grammar(&config.phrases, &dictionary);
        let grammar =
            grammar.ok_or_else(|| unavailable("no phrase of the agent can be recognised by the grammar STT"))?;
        if !dropped.is_empty() {
            tracing::info!(
                count = dropped.len(),
                "phrases with words outside the pocketsphinx dictionary are left out"
            );
        }
        let mut file = tempfile::Builder::new()
            .suffix(".jsgf")
            .tempfile()
            .map_err(|e| unavailable(format!("cannot write the grammar: {e}")))?;
        file.write_all(grammar.as_bytes()).map_err(|e| unavailable(format!("cannot write the grammar: {e}")))?;
        let mut child = tokio::process::Command::new(&self.program)
            .arg("-infile")
            .arg("/dev/stdin")
            .arg("-jsgf")
            .arg(file.path())
            .arg("-hmm")
            .arg(&acoustic)
            .arg("-dict")
            .arg(&dict_path)
            .args(["-samprate", "16000", "-logfn", "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| unavailable(format!("cannot run {} ({e}); apt-get install pocketsphinx", self.program)))?;
        let (session, backend) = SttSession::channel("pocketsphinx");
        let rate = config.sample_rate;
        tokio::spawn(async move {
            run(&mut child, backend, rate).await;
            // The grammar file lives until the recogniser has finished with it.
            drop(file);
        });
        Ok(session)
    }
}

async fn run(child: &mut tokio::process::Child, backend: SttBackend, rate: u32) {
    let SttBackend { mut audio, events } = backend;
    let mut stdin = child.stdin.take();
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    loop {
        tokio::select! {
            frame = audio.recv(), if stdin.is_some() => match frame {
                Some(samples) => {
                    let bytes: Vec<u8> = resample(&samples, rate, RATE).iter().flat_map(|s| s.to_le_bytes()).collect();
                    let pipe = stdin.as_mut().expect("checked by the guard");
                    if pipe.write_all(&bytes).await.is_err() {
                        // The recogniser died; its exit status below says so.
                        stdin = None;
                    }
                }
                // End of audio: closing stdin makes the recogniser flush its last utterance.
                None => stdin = None,
            },
            () = events.closed() => return,
            line = lines.next_line() => match line {
                Ok(Some(line)) => {
                    let text = line.trim();
                    if text.is_empty() {
                        continue;
                    }
                    let transcript = Transcript { text: text.to_owned(), confidence: 1.0, is_final: true, speech_final: true };
                    if events.send(Ok(SttEvent::Transcript(transcript))).await.is_err() {
                        return;
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
    drop(stdin);
    match child.wait().await {
        Ok(status) if status.success() => {}
        Ok(status) => {
            let _ = events.send(Err(unavailable(format!("pocketsphinx exited with {status}")))).await;
        }
        Err(e) => {
            let _ = events.send(Err(unavailable(format!("pocketsphinx: {e}")))).await;
        }
    }
}
