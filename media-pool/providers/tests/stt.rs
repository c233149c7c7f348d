//! STT adapters: Deepgram against the provider simulator's live WebSocket, pocketsphinx for
//! real on speech spoken by espeak-ng.

use futures::StreamExt;
use golos_providers::espeak::EspeakTts;
use golos_providers::pocketsphinx::PocketsphinxStt;
use golos_providers::{ProviderError, SttConfig, SttEvent, SttProvider, SttSession, TtsProvider, TtsRequest};

async fn speak(text: &str, sample_rate: u32) -> Vec<i16> {
    let request = TtsRequest { text: text.into(), language: "en-US".into(), sample_rate };
    let chunks: Vec<_> = EspeakTts::new(None).synthesize(&request).await.unwrap().collect().await;
    chunks.into_iter().flat_map(|c| c.unwrap().samples).collect()
}

/// Sends the audio in 20 ms frames, then ends it, and gathers every event.
async fn transcribe(mut session: SttSession, audio: &[i16], sample_rate: u32) -> Vec<Result<SttEvent, ProviderError>> {
    for frame in audio.chunks(sample_rate as usize / 50) {
        session.send(frame.to_vec()).await.unwrap();
    }
    session.finish();
    let mut events = Vec::new();
    while let Some(event) = session.next().await {
        events.push(event);
    }
    events
}

fn finals(events: &[Result<SttEvent, ProviderError>]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Ok(SttEvent::Transcript(t)) if t.is_final => Some(t.text.clone()),
            _ => None,
        })
        .collect()
}

fn faq_config(sample_rate: u32) -> SttConfig {
    let mut config = SttConfig::new("en-US", sample_rate);
    config.phrases = vec!["When are you open?".into(), "Book a table for two".into(), "What is the price".into()];
    config
}

#[tokio::test]
async fn pocketsphinx_recognises_grammar_phrases_from_phone_rate_audio() {
    let mut audio = speak("when are you open", 8_000).await;
    audio.extend(vec![0; 8_000]);
    audio.extend(speak("book a table for two", 8_000).await);
    audio.extend(vec![0; 8_000]);
    let session = PocketsphinxStt::default().open(&faq_config(8_000)).await.unwrap();
    assert_eq!(session.provider(), "pocketsphinx");
    let events = transcribe(session, &audio, 8_000).await;
    assert_eq!(finals(&events), ["when are you open", "book a table for two"], "{events:?}");
    assert!(events.iter().all(Result::is_ok));
}

#[tokio::test]
async fn pocketsphinx_is_skipped_with_a_reason_when_it_cannot_run() {
    let engine = PocketsphinxStt::default();
    let russian = engine
        .open(&SttConfig { phrases: vec!["когда вы открыты".into()], ..SttConfig::new("ru-RU", 8_000) })
        .await;
    assert!(matches!(russian, Err(ProviderError::Unavailable(ref r)) if r.contains("ru-RU")), "{russian:?}");
    let unknown_words = SttConfig { phrases: vec!["zxqv blorft".into()], ..SttConfig::new("en-US", 8_000) };
    assert!(matches!(engine.open(&unknown_words).await, Err(ProviderError::Unavailable(_))));
    let missing = PocketsphinxStt::new("pocketsphinx-not-installed", golos_providers::pocketsphinx::DEFAULT_MODEL_DIR);
    let error = missing.open(&faq_config(8_000)).await.unwrap_err();
    assert!(matches!(&error, ProviderError::Unavailable(r) if r.contains("apt-get install pocketsphinx")), "{error:?}");
    let no_model = PocketsphinxStt::new("pocketsphinx_continuous", "/nonexistent/model");
    assert!(matches!(no_model.open(&faq_config(8_000)).await, Err(ProviderError::Unavailable(_))));
}
