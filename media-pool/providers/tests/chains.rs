//! Fallback chains end to end: built from an agent's `ProviderChains`, through the real
//! adapters, against the provider simulator, on tokio's paused clock so every switch time is
//! exact.

use futures::StreamExt;
use golos_domain::agent::{AgentConfig, LlmKind, ProviderRef, SttKind, TtsKind};
use golos_ports::SecretString;
use golos_providers::{
    build_chains, platform_keys_needed, AgentChains, AttemptOutcome, BreakerState, BuildContext, ChainedLlm, LlmEvent,
    LlmRequest, Message, ProviderError, SttConfig, TtsRequest,
};
use golos_simulator::{Fault, FaultRule, Provider, Scenario, Simulator, SimulatorHandle, WORKLOAD_TOKENS};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

const KEY: &str = "chain-test-key";

fn tier<K>(kind: K, endpoint: String) -> ProviderRef<K> {
    ProviderRef { kind, model: None, endpoint: Some(endpoint), credentials_secret: Some("sim-key".into()) }
}

/// The default chains of DESIGN.md §4, every cloud tier pointed at the simulator. The local
/// OpenAI-compatible tier is the simulator's OpenAI route under another model name, so faults
/// can tell the two apart (and it takes the key, since the simulator wants one).
fn agent(sim: &SimulatorHandle) -> AgentConfig {
    let mut agent = golos_testkit::fixtures::agent_config("Chains");
    let mut local = tier(LlmKind::OpenaiCompatible, sim.openai_base_url());
    local.model = Some("local-llama".into());
    agent.providers.llm = vec![
        tier(LlmKind::Openai, sim.openai_base_url()),
        tier(LlmKind::Anthropic, sim.anthropic_base_url()),
        local,
        ProviderRef::of(LlmKind::Canned),
    ];
    agent.providers.tts = vec![
        tier(TtsKind::Elevenlabs, sim.elevenlabs_base_url()),
        tier(TtsKind::Google, sim.google_base_url()),
        ProviderRef::of(TtsKind::EspeakNg),
    ];
    agent.providers.stt = vec![
        tier(SttKind::Deepgram, sim.deepgram_ws_url()),
        ProviderRef::of(SttKind::Pocketsphinx),
        ProviderRef::of(SttKind::DtmfMenu),
    ];
    agent
}

async fn setup(configure: impl FnOnce(&mut Scenario)) -> (SimulatorHandle, AgentChains) {
    let mut scenario = Scenario::default();
    configure(&mut scenario);
    let sim = Simulator::start(scenario).await.unwrap();
    let agent = agent(&sim);
    assert_eq!(agent.credential_names(), ["sim-key"]);
    let ctx = BuildContext::with_egress(HashMap::from([("sim-key".to_owned(), SecretString::new(KEY))]), loopback());
    let chains = build_chains(&agent, &ctx).await;
    (sim, chains)
}

/// Which key a tier gets: its org credential; else the platform's, only at the provider's own
/// endpoint. A tier pointed elsewhere without a credential of the org is left out, so the
/// platform's key never travels to a host a tenant chose.
#[tokio::test]
async fn platform_keys_never_go_to_a_custom_endpoint() {
    let mut agent = golos_testkit::fixtures::agent_config("Keys");
    let tenant_host = "https://tenant.example/v1".to_owned();
    agent.providers.llm = vec![
        ProviderRef { endpoint: Some(tenant_host.clone()), ..ProviderRef::of(LlmKind::Openai) },
        ProviderRef::of(LlmKind::Anthropic),
        ProviderRef { credentials_secret: Some("missing".into()), ..ProviderRef::of(LlmKind::Openai) },
        ProviderRef::of(LlmKind::Canned),
    ];
    agent.providers.tts = vec![
        ProviderRef { endpoint: Some(tenant_host.clone()), ..ProviderRef::of(TtsKind::Elevenlabs) },
        ProviderRef {
            endpoint: Some(tenant_host),
            credentials_secret: Some("own".into()),
            ..ProviderRef::of(TtsKind::Google)
        },
        ProviderRef::of(TtsKind::EspeakNg),
    ];
    agent.providers.stt = vec![ProviderRef::of(SttKind::Deepgram), ProviderRef::of(SttKind::Pocketsphinx)];
    assert_eq!(platform_keys_needed(&agent), ["anthropic", "deepgram"]);
    let mut ctx = BuildContext::new(HashMap::from([("own".to_owned(), SecretString::new("tenant-key"))]));
    for provider in ["openai", "anthropic", "elevenlabs", "google", "deepgram"] {
        ctx.platform_keys.insert(provider, SecretString::new("platform-key"));
    }
    let chains = build_chains(&agent, &ctx).await;
    let skipped: Vec<(&str, usize, &str)> =
        chains.skipped.iter().map(|s| (s.chain, s.index, s.reason.as_str())).collect();
    assert_eq!(
        skipped,
        [
            ("llm", 0, "a custom endpoint needs one of the organisation's own credentials"),
            ("llm", 2, "the organisation has no provider credential `missing`"),
            ("tts", 0, "a custom endpoint needs one of the organisation's own credentials"),
        ]
    );
}

/// The simulator listens on loopback, which only an operator can allow.
fn loopback() -> golos_egress::EgressAllowlist {
    golos_egress::EgressAllowlist::parse("127.0.0.1/32").unwrap()
}

fn request() -> LlmRequest {
    LlmRequest::new(vec![Message::User("when are you open".into())])
}

/// Text until the stream ends, and the error that ended it, if any; also when the first
/// token came.
async fn read(mut stream: ChainedLlm) -> (String, Option<ProviderError>) {
    let mut text = String::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(LlmEvent::TextDelta(t)) => text.push_str(&t),
            Ok(_) => {}
            Err(e) => return (text, Some(e)),
        }
    }
    (text, None)
}

#[tokio::test(start_paused = true)]
async fn a_rate_limited_primary_hands_the_turn_to_the_secondary_at_once() {
    let (sim, chains) = setup(|s| s.openai.faults = vec![FaultRule::always(Fault::rate_limited(30))]).await;
    assert!(chains.skipped.is_empty(), "every tier is built: {:?}", chains.skipped);
    assert!(chains.dtmf_menu, "the STT chain ends with the keypad");
    let started = Instant::now();
    let stream = chains.llm.stream(&request()).await.unwrap();
    let first_token_at = started.elapsed();
    assert_eq!(stream.provider, "anthropic");
    assert_eq!(
        stream.attempts[0].outcome,
        AttemptOutcome::Failed(ProviderError::RateLimited { retry_after: Some(Duration::from_secs(30)) })
    );
    assert!(stream.attempts[0].after < Duration::from_millis(300), "switched after {:?}", stream.attempts[0].after);
    // The secondary's own time to first token (the simulator's 200 ms) is all the caller waits.
    assert_eq!(first_token_at, Duration::from_millis(200));
    assert_eq!(read(stream).await, (WORKLOAD_TOKENS.concat(), None));
    assert_eq!(sim.request_count(Provider::OpenAi), 1, "a 429 is not retried on the same provider");
}

#[tokio::test(start_paused = true)]
async fn a_slow_primary_is_abandoned_exactly_at_the_first_token_deadline() {
    let (sim, chains) = setup(|s| s.openai.faults = vec![FaultRule::always(Fault::Slow { first_ms: 5_000 })]).await;
    let started = Instant::now();
    let stream = chains.llm.stream(&request()).await.unwrap();
    assert_eq!(stream.provider, "anthropic");
    assert_eq!(stream.attempts[0].after, Duration::from_millis(1_500));
    assert!(matches!(stream.attempts[0].outcome, AttemptOutcome::Failed(ProviderError::Timeout(_))));
    assert_eq!(started.elapsed(), Duration::from_millis(1_700), "deadline plus the secondary's first token");
    assert_eq!(read(stream).await.0, WORKLOAD_TOKENS.concat());
    assert_eq!(sim.request_count(Provider::Anthropic), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failure_after_the_first_token_surfaces_and_nothing_switches() {
    let (sim, chains) = setup(|s| s.openai.faults = vec![FaultRule::always(Fault::ResetAfter { events: 4 })]).await;
    let stream = chains.llm.stream(&request()).await.unwrap();
    assert_eq!(stream.provider, "openai");
    let (text, error) = read(stream).await;
    assert!(!text.is_empty() && text.len() < WORKLOAD_TOKENS.concat().len(), "{text}");
    assert!(matches!(error, Some(ProviderError::Connection(_))), "{error:?}");
    assert_eq!(sim.request_count(Provider::Anthropic), 0, "the played text cannot be taken back");
}

#[tokio::test(start_paused = true)]
async fn when_every_cloud_and_local_model_fails_the_canned_tier_still_answers() {
    let (_sim, chains) = setup(|s| {
        s.openai.faults = vec![FaultRule::model("local-llama", Fault::Hang), FaultRule::always(Fault::status(500))];
        s.anthropic.faults = vec![FaultRule::always(Fault::status(529))];
    })
    .await;
    let started = Instant::now();
    let stream = chains.llm.stream(&request()).await.unwrap();
    assert_eq!(stream.provider, "canned");
    let outcomes: Vec<_> = stream.attempts.iter().map(|a| (a.provider.as_str(), a.after)).collect();
    assert_eq!(
        outcomes,
        [
            ("openai", Duration::ZERO),
            ("anthropic", Duration::ZERO),
            ("openai-compatible", Duration::from_millis(1_500))
        ]
    );
    assert_eq!(started.elapsed(), Duration::from_millis(1_500), "the caller hears an answer within 2 s");
    assert_eq!(read(stream).await, ("From nine to nine.".into(), None));
}

#[tokio::test(start_paused = true)]
async fn a_chain_without_a_canned_tier_reports_exhaustion_for_the_apology() {
    let (sim, mut chains) = setup(|s| {
        s.openai.faults = vec![FaultRule::always(Fault::status(503))];
        s.anthropic.faults = vec![FaultRule::always(Fault::StreamError { events: 0 })];
    })
    .await;
    let mut agent = agent(&sim);
    agent.providers.llm.truncate(2);
    let ctx = BuildContext::with_egress(HashMap::from([("sim-key".to_owned(), SecretString::new(KEY))]), loopback());
    chains.llm = build_chains(&agent, &ctx).await.llm;
    let exhausted = chains.llm.stream(&request()).await.unwrap_err();
    let reasons: Vec<_> = exhausted.attempts.iter().map(|a| (a.provider.as_str(), a.outcome.clone())).collect();
    assert!(
        matches!(reasons[0], ("openai", AttemptOutcome::Failed(ProviderError::Server { status: 503, .. }))),
        "{reasons:?}"
    );
    assert!(
        matches!(reasons[1], ("anthropic", AttemptOutcome::Failed(ProviderError::Server { status: 529, .. }))),
        "{reasons:?}"
    );
    assert!(exhausted.to_string().contains("every provider"));
}

#[tokio::test(start_paused = true)]
async fn a_failing_provider_is_skipped_by_its_open_breaker_and_probed_after_30_s() {
    let (sim, chains) = setup(|s| s.openai.faults = vec![FaultRule::first(5, Fault::status(500))]).await;
    for _ in 0..5 {
        assert_eq!(chains.llm.stream(&request()).await.unwrap().provider, "anthropic");
    }
    let stream = chains.llm.stream(&request()).await.unwrap();
    assert_eq!(stream.attempts[0].outcome, AttemptOutcome::BreakerOpen);
    assert_eq!(sim.request_count(Provider::OpenAi), 5, "no request while the breaker is open");
    drop(stream);
    tokio::time::advance(Duration::from_secs(30)).await;
    // The half-open probe succeeds (the simulator recovered after five faults).
    assert_eq!(chains.llm.stream(&request()).await.unwrap().provider, "openai");
    let breaker = golos_providers::Breakers::default();
    assert!(matches!(breaker.get("unused").lock().unwrap().state(), BreakerState::Closed { .. }));
}

fn sentence() -> TtsRequest {
    TtsRequest { text: "From nine to nine".into(), language: "en-US".into(), sample_rate: 8_000 }
}

#[tokio::test(start_paused = true)]
async fn slow_elevenlabs_audio_hands_the_sentence_to_google_at_the_deadline() {
    let (sim, chains) =
        setup(|s| s.elevenlabs.faults = vec![FaultRule::first(1, Fault::Slow { first_ms: 4_000 })]).await;
    let started = Instant::now();
    let audio = chains.tts.synthesize(&sentence()).await.unwrap();
    assert_eq!(audio.provider, "google");
    assert_eq!(audio.attempts[0].after, Duration::from_millis(1_500));
    assert_eq!(started.elapsed(), Duration::from_millis(1_600), "deadline plus Google's 100 ms");
    let samples: usize = audio.map(|c| c.unwrap().samples.len()).collect::<Vec<_>>().await.iter().sum();
    assert_eq!(samples, 4 * 1_600, "four words of 200 ms at 8 kHz");
    assert_eq!(chains.tts.synthesize(&sentence()).await.unwrap().provider, "elevenlabs", "the next sentence");
    assert_eq!(sim.request_count(Provider::Google), 1);
}

/// On the real clock: espeak-ng is a real process, which tokio's paused clock would not wait
/// for. Nothing here measures time.
#[tokio::test]
async fn with_both_cloud_voices_down_espeak_ng_speaks() {
    let (_sim, chains) = setup(|s| {
        s.elevenlabs.faults = vec![FaultRule::always(Fault::status(503))];
        s.google.faults = vec![FaultRule::always(Fault::rate_limited(1))];
    })
    .await;
    let audio = chains.tts.synthesize(&sentence()).await.unwrap();
    assert_eq!(audio.provider, "espeak-ng");
    let providers: Vec<&str> = audio.attempts.iter().map(|a| a.provider.as_str()).collect();
    assert_eq!(providers, ["elevenlabs", "google"]);
    let samples: usize = audio.map(|c| c.unwrap().samples.len()).collect::<Vec<_>>().await.iter().sum();
    assert!(samples > 4_000, "espeak-ng spoke {samples} samples");
}

#[tokio::test(start_paused = true)]
async fn stt_falls_back_from_deepgram_to_the_grammar_recogniser() {
    let (_sim, chains) = setup(|s| s.deepgram.faults = vec![FaultRule::always(Fault::status(500))]).await;
    let mut config = SttConfig::new("en-US", 8_000);
    config.phrases = vec!["when are you open".into()];
    let (session, attempts) = chains.stt.open(&config).await.unwrap();
    assert_eq!(session.provider(), "pocketsphinx");
    assert!(matches!(attempts[0].outcome, AttemptOutcome::Failed(ProviderError::Server { status: 500, .. })));
    // Russian has no grammar model here: the tier is skipped with its reason, and the chain
    // reports exhaustion for the engine's DTMF menu.
    let exhausted = chains.stt.open(&SttConfig::new("ru-RU", 8_000)).await.unwrap_err();
    assert!(
        matches!(&exhausted.attempts[1].outcome, AttemptOutcome::Failed(ProviderError::Unavailable(r)) if r.contains("ru-RU")),
        "{exhausted:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_stalls_after_its_first_token_ends_at_the_total_timeout() {
    let (_sim, chains) = setup(|s| s.openai.faults = vec![FaultRule::always(Fault::StallAfter { events: 3 })]).await;
    let started = Instant::now();
    let stream = chains.llm.stream(&request()).await.unwrap();
    assert_eq!(stream.provider, "openai");
    let (text, error) = read(stream).await;
    assert!(!text.is_empty());
    assert!(matches!(error, Some(ProviderError::Timeout(_))), "{error:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(30));
}

/// On the real clock, since espeak-ng is a real process.
#[tokio::test]
async fn when_every_model_and_cloud_voice_is_down_the_caller_hears_a_spoken_apology() {
    let (sim, mut chains) = setup(|s| {
        s.openai.faults = vec![FaultRule::always(Fault::status(500))];
        s.anthropic.faults = vec![FaultRule::always(Fault::status(529))];
        s.elevenlabs.faults = vec![FaultRule::always(Fault::status(500))];
        s.google.faults = vec![FaultRule::always(Fault::status(503))];
    })
    .await;
    let mut agent = agent(&sim);
    agent.providers.llm.truncate(2);
    let ctx = BuildContext::with_egress(HashMap::from([("sim-key".to_owned(), SecretString::new(KEY))]), loopback());
    chains.llm = build_chains(&agent, &ctx).await.llm;
    assert!(chains.llm.stream(&request()).await.is_err());
    let (samples, source) = golos_providers::apology_audio(&chains.tts, "en-US", 8_000).await;
    assert_eq!(source, golos_providers::ApologySource::Spoken("espeak-ng".into()));
    assert!(samples.len() > 8_000 && samples.iter().any(|s| s.unsigned_abs() > 1_000));
}

/// Without the operator allowing loopback, every cloud tier pointed at the simulator is refused
/// by the egress policy before a connection: the chains fall through to the local tiers, no
/// breaker opens (configuration, not an outage), and the simulator sees no request.
#[tokio::test(start_paused = true)]
async fn endpoints_the_egress_policy_refuses_fall_through_without_a_request() {
    let sim = Simulator::start(Scenario::default()).await.unwrap();
    let ctx = BuildContext::new(HashMap::from([("sim-key".to_owned(), SecretString::new(KEY))]));
    let chains = build_chains(&agent(&sim), &ctx).await;
    let stream = chains.llm.stream(&request()).await.unwrap();
    assert_eq!(stream.provider, "canned");
    assert_eq!(stream.attempts.len(), 3, "{:?}", stream.attempts);
    for attempt in &stream.attempts {
        assert!(
            matches!(&attempt.outcome, AttemptOutcome::Failed(ProviderError::Forbidden(m)) if m.contains("loopback")),
            "{attempt:?}"
        );
    }
    let exhausted = chains.stt.open(&SttConfig::new("ru-RU", 8_000)).await.unwrap_err();
    assert!(
        matches!(&exhausted.attempts[0].outcome, AttemptOutcome::Failed(ProviderError::Forbidden(m)) if m.contains("loopback")),
        "{exhausted:?}"
    );
    for provider in [Provider::OpenAi, Provider::Anthropic, Provider::Deepgram] {
        assert_eq!(sim.request_count(provider), 0, "{provider:?}");
    }
}
