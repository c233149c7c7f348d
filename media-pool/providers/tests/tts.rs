//! TTS adapters: ElevenLabs and Google against the provider simulator, Polly against moto,
//! espeak-ng and pre-recorded clips for real on this machine.

use futures::StreamExt;
use golos_ports::SecretString;
use golos_providers::clips::ClipLibrary;
use golos_providers::elevenlabs::{ElevenLabsConfig, ElevenLabsTts};
use golos_providers::espeak::EspeakTts;
use golos_providers::google_tts::{GoogleTts, GoogleTtsConfig};
use golos_providers::polly::{PollyConfig, PollyTts};
use golos_providers::{wav, ProviderError, TtsProvider, TtsRequest};
use golos_simulator::{Fault, FaultRule, Provider, Scenario, Simulator, SimulatorHandle};
use std::time::Duration;

/// The simulator listens on loopback, which only an operator can allow.
fn loopback_http() -> golos_egress::net::EgressClient {
    golos_providers::build::provider_http(golos_egress::EgressAllowlist::parse("127.0.0.1/32").unwrap())
}

const KEY: &str = "xi-test-key";

fn request(text: &str, sample_rate: u32) -> TtsRequest {
    TtsRequest { text: text.into(), language: "ru-RU".into(), sample_rate }
}

/// Every sample, or the error that ended the stream with the samples before it.
async fn collect(
    provider: &dyn TtsProvider,
    request: &TtsRequest,
) -> Result<(Vec<i16>, usize, Option<ProviderError>), ProviderError> {
    let mut stream = provider.synthesize(request).await?;
    let (mut samples, mut chunks) = (Vec::new(), 0);
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => {
                assert_eq!(chunk.sample_rate, request.sample_rate);
                assert!(!chunk.samples.is_empty(), "no empty chunks");
                samples.extend(chunk.samples);
                chunks += 1;
            }
            Err(e) => return Ok((samples, chunks, Some(e))),
        }
    }
    Ok((samples, chunks, None))
}

async fn sim(configure: impl FnOnce(&mut Scenario)) -> SimulatorHandle {
    let mut scenario = Scenario::default();
    scenario.elevenlabs.api_key = Some(KEY.into());
    scenario.google.api_key = Some(KEY.into());
    configure(&mut scenario);
    Simulator::start(scenario).await.unwrap()
}

fn elevenlabs(sim: &SimulatorHandle) -> ElevenLabsTts {
    ElevenLabsTts::new(
        ElevenLabsConfig {
            name: "elevenlabs".into(),
            base_url: sim.elevenlabs_base_url(),
            api_key: SecretString::new(KEY),
            voice_id: "21m00Tcm4TlvDq8ikWAM".into(),
            model_id: "eleven_multilingual_v2".into(),
        },
        loopback_http(),
    )
}

fn google(sim: &SimulatorHandle) -> GoogleTts {
    GoogleTts::new(
        GoogleTtsConfig {
            name: "google".into(),
            base_url: sim.google_base_url(),
            api_key: SecretString::new(KEY),
            voice_name: Some("ru-RU-Wavenet-A".into()),
        },
        loopback_http(),
    )
}

fn is_audible(samples: &[i16]) -> bool {
    samples.iter().any(|s| s.unsigned_abs() > 1_000)
}

#[tokio::test(start_paused = true)]
async fn elevenlabs_streams_pcm_chunk_by_chunk_at_the_requested_rate() {
    let sim = sim(|_| {}).await;
    // Three words at the simulator's 200 ms a word: 600 ms of audio.
    for (rate, expected) in [(16_000, 9_600), (8_000, 4_800), (12_000, 7_200)] {
        let (samples, chunks, error) = collect(&elevenlabs(&sim), &request("Добрый день, слушаю", rate)).await.unwrap();
        assert_eq!(error, None);
        assert_eq!(samples.len(), expected, "{rate} Hz");
        assert!(chunks >= 10, "streamed in pieces, got {chunks}");
        assert!(is_audible(&samples));
    }
    let logged = sim.requests(Provider::ElevenLabs);
    assert_eq!(logged[0].path, "/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM/stream");
    assert_eq!(logged[0].query.as_deref(), Some("output_format=pcm_16000"));
    assert_eq!(logged[1].query.as_deref(), Some("output_format=pcm_8000"));
    assert_eq!(logged[2].query.as_deref(), Some("output_format=pcm_16000"), "12 kHz is resampled from 16 kHz");
    let body = sim.last_body_json(Provider::ElevenLabs).unwrap();
    assert_eq!(body["model_id"], "eleven_multilingual_v2");
}

#[tokio::test(start_paused = true)]
async fn elevenlabs_faults_are_classified() {
    let sim = sim(|s| {
        s.elevenlabs.faults = vec![
            FaultRule::first(1, Fault::rate_limited(2)),
            FaultRule::requests(2, Some(2), Fault::status(500)),
            FaultRule::requests(3, Some(3), Fault::ResetAfter { events: 5 }),
            FaultRule::requests(4, Some(4), Fault::Hang),
        ];
    })
    .await;
    let tts = elevenlabs(&sim);
    let text = request("one two three four five", 16_000);
    assert_eq!(
        collect(&tts, &text).await.unwrap_err(),
        ProviderError::RateLimited { retry_after: Some(Duration::from_secs(2)) }
    );
    assert!(matches!(collect(&tts, &text).await.unwrap_err(), ProviderError::Server { status: 500, .. }));
    let (samples, _, error) = collect(&tts, &text).await.unwrap();
    assert_eq!(samples.len(), 5 * 320, "five 20 ms chunks before the reset");
    assert!(matches!(error, Some(ProviderError::Connection(_))), "{error:?}");
    assert!(
        tokio::time::timeout(Duration::from_secs(3), collect(&tts, &text)).await.is_err(),
        "a hang is the caller's to cut"
    );
}

#[tokio::test(start_paused = true)]
async fn a_wrong_elevenlabs_key_is_an_auth_error() {
    let sim = sim(|s| s.elevenlabs.api_key = Some("another".into())).await;
    let error = collect(&elevenlabs(&sim), &request("hello", 16_000)).await.unwrap_err();
    assert_eq!(error, ProviderError::Auth { status: 401 });
    assert!(!format!("{error:?}").contains(KEY));
}

#[tokio::test(start_paused = true)]
async fn google_linear16_comes_without_its_wav_header() {
    let sim = sim(|_| {}).await;
    let (samples, chunks, error) = collect(&google(&sim), &request("Добрый день, слушаю", 16_000)).await.unwrap();
    assert_eq!((samples.len(), chunks, error), (9_600, 1, None));
    assert!(is_audible(&samples));
    let (samples, _, _) = collect(&google(&sim), &request("Добрый день", 8_000)).await.unwrap();
    assert_eq!(samples.len(), 3_200);
    let logged = sim.last_request(Provider::Google).unwrap();
    assert!(logged.query.is_none(), "the key travels in x-goog-api-key, not the URL");
    let body = sim.last_body_json(Provider::Google).unwrap();
    assert_eq!(body["audioConfig"]["audioEncoding"], "LINEAR16");
    assert_eq!(body["audioConfig"]["sampleRateHertz"], 8_000);
    assert_eq!(body["voice"]["name"], "ru-RU-Wavenet-A");
}

#[tokio::test(start_paused = true)]
async fn google_faults_are_classified() {
    let sim = sim(|s| {
        s.google.faults = vec![
            FaultRule::first(1, Fault::status(503)),
            FaultRule::requests(2, Some(2), Fault::rate_limited(1)),
            FaultRule::requests(3, Some(3), Fault::Malformed { event: 0 }),
        ];
    })
    .await;
    let tts = google(&sim);
    let text = request("hello", 16_000);
    assert!(matches!(collect(&tts, &text).await.unwrap_err(), ProviderError::Server { status: 503, .. }));
    assert!(matches!(collect(&tts, &text).await.unwrap_err(), ProviderError::RateLimited { .. }));
    assert!(matches!(collect(&tts, &text).await.unwrap_err(), ProviderError::BadResponse(_)));
}

#[tokio::test]
async fn polly_synthesizes_pcm_through_the_real_sdk_against_moto() {
    let polly = PollyTts::connect(PollyConfig {
        name: "polly".into(),
        region: "eu-central-1".into(),
        endpoint_url: Some(golos_testkit::moto::endpoint()),
        voice_id: None,
    })
    .await;
    // moto validates the request (format, rate, voice) and answers 8 bytes of silence.
    let (samples, _, error) = collect(&polly, &request("Добрый день", 16_000)).await.unwrap();
    assert_eq!((samples, error), (vec![0; 4], None));
    let wrong_voice = PollyTts::connect(PollyConfig {
        name: "polly".into(),
        region: "eu-central-1".into(),
        endpoint_url: Some(golos_testkit::moto::endpoint()),
        voice_id: Some("NoSuchVoice".into()),
    })
    .await;
    let error = collect(&wrong_voice, &request("hello", 8_000)).await.unwrap_err();
    assert!(matches!(&error, ProviderError::BadResponse(m) if m.contains("InvalidParameterValue")), "{error:?}");
}

#[tokio::test]
async fn espeak_ng_speaks_at_the_requested_rate() {
    let tts = EspeakTts::new(None);
    let (samples, _, error) = collect(&tts, &request("Добрый день, вас слушают.", 8_000)).await.unwrap();
    assert_eq!(error, None);
    let seconds = samples.len() as f64 / 8_000.0;
    assert!((0.8..5.0).contains(&seconds), "{seconds} s");
    assert!(is_audible(&samples));
    let english = TtsRequest { language: "en-US".into(), ..request("Hello", 16_000) };
    assert!(!collect(&tts, &english).await.unwrap().0.is_empty());
}

#[tokio::test]
async fn a_missing_local_engine_is_unavailable_not_a_panic() {
    let tts = EspeakTts::new(None).with_program("espeak-ng-that-is-not-installed");
    let error = collect(&tts, &request("hello", 8_000)).await.unwrap_err();
    assert!(
        matches!(&error, ProviderError::Unavailable(reason) if reason.contains("apt-get install espeak-ng")),
        "{error:?}"
    );
}

#[tokio::test]
async fn clips_are_found_by_their_text_and_resampled() {
    let dir = tempfile::tempdir().unwrap();
    let tone: Vec<i16> = (0..1_600).map(|i| if i % 20 < 10 { 8_000 } else { -8_000 }).collect();
    std::fs::write(dir.path().join("извините_перезвоните_позже.wav"), wav::encode(16_000, &tone)).unwrap();
    let clips = ClipLibrary::new(dir.path());
    assert_eq!(ClipLibrary::file_name("Извините, перезвоните позже!"), "извините_перезвоните_позже.wav");
    let (samples, _, _) = collect(&clips, &request("Извините, перезвоните позже!", 8_000)).await.unwrap();
    assert_eq!(samples.len(), 800);
    let error = collect(&clips, &request("../../etc/passwd", 8_000)).await.unwrap_err();
    assert!(matches!(&error, ProviderError::Unavailable(m) if m.contains("etc_passwd.wav")), "{error:?}");
}
