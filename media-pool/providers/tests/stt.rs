//! STT adapters: Deepgram against the provider simulator's live WebSocket, pocketsphinx for
//! real on speech spoken by espeak-ng.

use futures::StreamExt;
use golos_ports::SecretString;
use golos_providers::deepgram::{DeepgramConfig, DeepgramStt};
use golos_providers::espeak::EspeakTts;
use golos_providers::pocketsphinx::PocketsphinxStt;
use golos_providers::{
    ProviderError, SttConfig, SttEvent, SttProvider, SttSession, Transcript, TtsProvider, TtsRequest,
};
use golos_simulator::{Fault, FaultRule, Provider, Scenario, Simulator, SimulatorHandle};
use std::time::Duration;

const KEY: &str = "dg-test-key";

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
async fn pocketsphinx_hears_the_phrase_through_a_mu_law_phone_line() {
    let spoken = speak("what is the price", 8_000).await;
    let mut audio = golos_audio::g711::mulaw_decode_all(&golos_audio::g711::mulaw_encode_all(&spoken));
    audio.extend(vec![0; 8_000]);
    let session = PocketsphinxStt::default().open(&faq_config(8_000)).await.unwrap();
    let events = transcribe(session, &audio, 8_000).await;
    assert_eq!(finals(&events), ["what is the price"], "{events:?}");
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

async fn deepgram_sim(configure: impl FnOnce(&mut Scenario)) -> SimulatorHandle {
    let mut scenario = Scenario::default();
    scenario.deepgram.api_key = Some(KEY.into());
    configure(&mut scenario);
    Simulator::start(scenario).await.unwrap()
}

/// The simulator listens on loopback, which only an operator can allow.
fn loopback() -> std::sync::Arc<golos_egress::EgressAllowlist> {
    std::sync::Arc::new(golos_egress::EgressAllowlist::parse("127.0.0.1/32").unwrap())
}

fn deepgram(sim: &SimulatorHandle) -> DeepgramStt {
    DeepgramStt::new(DeepgramConfig::new(sim.deepgram_ws_url(), SecretString::new(KEY)), loopback())
}

/// `speech_ms` of a loud square wave then `silence_ms` of zeros: what the simulator hears as
/// one utterance.
fn utterance(sample_rate: u32, speech_ms: u32, silence_ms: u32) -> Vec<i16> {
    let speech = (sample_rate / 1_000 * speech_ms) as usize;
    let silence = (sample_rate / 1_000 * silence_ms) as usize;
    let mut audio: Vec<i16> = (0..speech).map(|i| if (i / 20) % 2 == 0 { 6_000 } else { -6_000 }).collect();
    audio.extend(vec![0; silence]);
    audio
}

#[tokio::test(start_paused = true)]
async fn deepgram_streams_interim_and_final_transcripts_with_confidence() {
    let sim = deepgram_sim(|_| {}).await;
    let session = deepgram(&sim).open(&SttConfig::new("en-US", 16_000)).await.unwrap();
    let events = transcribe(session, &utterance(16_000, 1_500, 1_500), 16_000).await;
    assert!(events.iter().all(Result::is_ok), "{events:?}");
    let events: Vec<SttEvent> = events.into_iter().map(Result::unwrap).collect();
    assert_eq!(events.first(), Some(&SttEvent::SpeechStarted), "{events:?}");
    let transcripts: Vec<&Transcript> = events
        .iter()
        .filter_map(|e| match e {
            SttEvent::Transcript(t) => Some(t),
            _ => None,
        })
        .collect();
    let interim = transcripts.iter().find(|t| !t.is_final).expect("an interim result");
    assert_eq!(interim.text, "what are your");
    let last = transcripts.last().unwrap();
    assert_eq!((last.text.as_str(), last.is_final, last.speech_final), ("what are your opening hours", true, true));
    assert!((last.confidence - 0.98).abs() < 1e-6);
    assert!(events.contains(&SttEvent::UtteranceEnd), "{events:?}");

    let request = sim.last_request(Provider::Deepgram).unwrap();
    let query = request.query.unwrap();
    for param in
        ["encoding=linear16", "sample_rate=16000", "interim_results=true", "endpointing=300", "vad_events=true"]
    {
        assert!(query.contains(param), "{param} missing from {query}");
    }
    let auth = request.headers.iter().find(|(k, _)| k == "authorization").map(|(_, v)| v.as_str());
    assert_eq!(auth, Some("Token dg-test-key"));
    let session = &sim.deepgram_sessions()[0];
    assert!(session.close_stream, "CloseStream ends the audio");
    assert_eq!(session.audio_bytes, 2 * 16 * 3_000);
}

#[tokio::test(start_paused = true)]
async fn deepgram_keepalive_holds_a_quiet_session_open() {
    let sim = deepgram_sim(|_| {}).await;
    let mut session = deepgram(&sim).open(&SttConfig::new("en-US", 8_000)).await.unwrap();
    // Twice Deepgram's 10 s idle limit without audio: only KeepAlive keeps the socket.
    let quiet = tokio::time::timeout(Duration::from_secs(25), session.next()).await;
    assert!(quiet.is_err(), "nothing happened while quiet, not even a close: {quiet:?}");
    let events = transcribe(session, &utterance(8_000, 1_500, 1_500), 8_000).await;
    assert!(finals(&events).contains(&"what are your opening hours".to_owned()), "{events:?}");
    assert!(sim.deepgram_sessions()[0].keep_alives >= 4);
}

#[tokio::test(start_paused = true)]
async fn deepgram_handshake_failures_are_classified_and_keep_the_key_out() {
    let sim = deepgram_sim(|s| s.deepgram.faults = vec![FaultRule::first(1, Fault::rate_limited(3))]).await;
    let config = SttConfig::new("en-US", 16_000);
    assert!(matches!(deepgram(&sim).open(&config).await.unwrap_err(), ProviderError::RateLimited { .. }));
    let wrong =
        DeepgramStt::new(DeepgramConfig::new(sim.deepgram_ws_url(), SecretString::new("wrong-key")), loopback());
    let error = wrong.open(&config).await.unwrap_err();
    assert_eq!(error, ProviderError::Auth { status: 401 });
    assert!(!format!("{error:?} {wrong:?}").contains("wrong-key"));
}

#[tokio::test(start_paused = true)]
async fn deepgram_failures_mid_session_end_the_events_with_an_error() {
    let sim = deepgram_sim(|s| {
        s.deepgram.faults = vec![
            FaultRule::first(1, Fault::StreamError { events: 1 }),
            FaultRule::requests(2, Some(2), Fault::ResetAfter { events: 1 }),
            FaultRule::requests(3, Some(3), Fault::Malformed { event: 1 }),
        ];
    })
    .await;
    let config = SttConfig::new("en-US", 16_000);
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let session = deepgram(&sim).open(&config).await.unwrap();
        let events = transcribe(session, &utterance(16_000, 1_500, 1_500), 16_000).await;
        assert!(events.iter().rev().skip(1).all(Result::is_ok), "only the last event is an error: {events:?}");
        outcomes.push(events.last().cloned().unwrap().unwrap_err());
    }
    assert!(matches!(outcomes[0], ProviderError::Server { .. }), "{outcomes:?}");
    assert!(matches!(outcomes[1], ProviderError::Connection(_)), "{outcomes:?}");
    assert!(matches!(outcomes[2], ProviderError::BadResponse(_)), "{outcomes:?}");
}
