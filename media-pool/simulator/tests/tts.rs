//! ElevenLabs streaming TTS and Google Cloud TTS against plain HTTP clients written from the docs.

mod common;

use base64::Engine as _;
use common::ms;
use futures::StreamExt;
use golos_simulator::{Fault, FaultRule, Pacing, Provider, Scenario, Simulator, SimulatorHandle};
use serde_json::{json, Value};
use tokio::time::Instant;

const TEXT: &str = "We're open from nine to six, Monday through Friday."; // 9 words

fn eleven(sim: &SimulatorHandle, voice: &str, format: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(format!("{}/v1/text-to-speech/{voice}/stream?output_format={format}", sim.elevenlabs_base_url()))
        .header("xi-api-key", "xi-test")
}

/// Body chunks with their arrival time; the error if the body broke off.
async fn chunks(
    response: reqwest::Response,
    started: Instant,
) -> (Vec<(std::time::Duration, usize)>, Option<reqwest::Error>) {
    let mut body = response.bytes_stream();
    let mut out = Vec::new();
    while let Some(next) = body.next().await {
        match next {
            Ok(bytes) => out.push((started.elapsed(), bytes.len())),
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

#[tokio::test(start_paused = true)]
async fn elevenlabs_streams_w_times_200ms_of_pcm_in_realtime_20ms_chunks() {
    let sim = Simulator::start(Scenario::default()).await.unwrap();
    let started = Instant::now();
    let response = eleven(&sim, "JBFqnCBsd6RMkjVDRZzb", "pcm_16000")
        .json(&json!({"text": TEXT, "model_id": "eleven_flash_v2_5"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (chunks, failure) = chunks(response, started).await;
    assert!(failure.is_none());
    // 9 words → 1.8 s → 90 chunks of 640 bytes; chunk j due at request + 100 + 20·j ms.
    assert_eq!(chunks.len(), 90);
    assert_eq!(chunks.iter().map(|c| c.1).sum::<usize>(), 9 * 200 * 32);
    for (j, (at, len)) in chunks.iter().enumerate() {
        assert_eq!(*len, 640);
        assert_eq!(*at, ms(100 + 20 * j as u64), "chunk {j}");
    }
    let logged = sim.last_request(Provider::ElevenLabs).unwrap();
    assert_eq!(logged.path, "/v1/text-to-speech/JBFqnCBsd6RMkjVDRZzb/stream");
    assert_eq!(logged.query.as_deref(), Some("output_format=pcm_16000"));
    assert_eq!(logged.body_json().unwrap()["text"], TEXT);
}

#[tokio::test(start_paused = true)]
async fn elevenlabs_ulaw_and_as_fast_as_possible_pacing() {
    let mut scenario = Scenario::default();
    scenario.elevenlabs.pacing = Pacing::AsFastAsPossible;
    let sim = Simulator::start(scenario).await.unwrap();
    let started = Instant::now();
    let response = eleven(&sim, "v", "ulaw_8000").json(&json!({"text": "Sure. Thanks"})).send().await.unwrap();
    let bytes = response.bytes().await.unwrap();
    assert_eq!(started.elapsed(), ms(100), "everything right after the TTFB");
    assert_eq!(bytes.len(), 2 * 200 * 8);
    assert!(bytes.iter().any(|b| *b != 0xFF), "not mu-law silence");
}

#[tokio::test(start_paused = true)]
async fn elevenlabs_errors_follow_the_docs() {
    let sim = Simulator::start(Scenario::default()).await.unwrap();
    let url = format!("{}/v1/text-to-speech/v/stream?output_format=pcm_16000", sim.elevenlabs_base_url());
    let response = reqwest::Client::new().post(&url).json(&json!({"text": "hi"})).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.json::<Value>().await.unwrap()["detail"]["status"], "needs_authorization");

    let response = eleven(&sim, "v", "pcm_16000").json(&json!({"model_id": "m"})).send().await.unwrap();
    assert_eq!(response.status(), 422);
    assert_eq!(response.json::<Value>().await.unwrap()["detail"][0]["loc"], json!(["body", "text"]));

    let response = eleven(&sim, "v", "mp3_44100_128").json(&json!({"text": "hi"})).send().await.unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test(start_paused = true)]
async fn elevenlabs_faults_by_schedule_and_voice() {
    let mut scenario = Scenario::default();
    scenario.elevenlabs.faults = vec![
        FaultRule::first(1, Fault::rate_limited(2)),
        FaultRule::model("slow-voice", Fault::Slow { first_ms: 900 }),
        FaultRule::requests(2, Some(2), Fault::ResetAfter { events: 10 }),
    ];
    let sim = Simulator::start(scenario).await.unwrap();
    let body = json!({"text": TEXT});
    let response = eleven(&sim, "v", "pcm_16000").json(&body).send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "2");
    assert_eq!(response.json::<Value>().await.unwrap()["detail"]["status"], "too_many_concurrent_requests");

    let response = eleven(&sim, "v", "pcm_16000").json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let (got, failure) = chunks(response, Instant::now()).await;
    assert!(failure.is_some(), "reset mid-stream");
    assert_eq!(got.iter().map(|c| c.1).sum::<usize>(), 10 * 640);

    let started = Instant::now();
    let response = eleven(&sim, "slow-voice", "pcm_16000").json(&body).send().await.unwrap();
    let (got, failure) = chunks(response, started).await;
    assert!(failure.is_none());
    assert_eq!(got[0].0, ms(900));
    assert_eq!(sim.request_count(Provider::ElevenLabs), 3);
}

#[tokio::test(start_paused = true)]
async fn elevenlabs_non_streaming_convert() {
    let sim = Simulator::start(Scenario::default()).await.unwrap();
    let response = reqwest::Client::new()
        .post(format!("{}/v1/text-to-speech/v?output_format=pcm_24000", sim.elevenlabs_base_url()))
        .header("xi-api-key", "k")
        .json(&json!({"text": "one two three"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.bytes().await.unwrap().len(), 3 * 200 * 48);
}

async fn google(sim: &SimulatorHandle, auth: Option<&str>, body: &Value) -> reqwest::Response {
    let mut url = format!("{}/v1/text:synthesize", sim.google_base_url());
    if let Some(key) = auth {
        url.push_str("?key=");
        url.push_str(key);
    }
    reqwest::Client::new().post(url).json(body).send().await.unwrap()
}

fn google_request(encoding: &str, rate: u32) -> Value {
    json!({
        "input": {"text": TEXT},
        "voice": {"languageCode": "en-US", "name": "en-US-Neural2-F"},
        "audioConfig": {"audioEncoding": encoding, "sampleRateHertz": rate},
    })
}

#[tokio::test(start_paused = true)]
async fn google_returns_base64_wav_for_linear16() {
    let sim = Simulator::start(Scenario::default()).await.unwrap();
    let started = Instant::now();
    let response = google(&sim, Some("AIza-test"), &google_request("LINEAR16", 16_000)).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(started.elapsed(), ms(100));
    let wav = base64::engine::general_purpose::STANDARD.decode(body["audioContent"].as_str().unwrap()).unwrap();
    assert_eq!(&wav[0..4], b"RIFF");
    assert_eq!(&wav[8..16], b"WAVEfmt ");
    assert_eq!(u16::from_le_bytes([wav[20], wav[21]]), 1, "PCM");
    assert_eq!(u32::from_le_bytes([wav[24], wav[25], wav[26], wav[27]]), 16_000);
    assert_eq!(&wav[36..40], b"data");
    let data_len = u32::from_le_bytes([wav[40], wav[41], wav[42], wav[43]]) as usize;
    assert_eq!(data_len, 9 * 200 * 32);
    assert_eq!(wav.len(), 44 + data_len);

    let ssml = json!({
        "input": {"ssml": "<speak>Hello <break time=\"200ms\"/> there</speak>"},
        "voice": {"languageCode": "en-US"},
        "audioConfig": {"audioEncoding": "MULAW", "sampleRateHertz": 8000},
    });
    let body: Value = google(&sim, Some("k"), &ssml).await.json().await.unwrap();
    let wav = base64::engine::general_purpose::STANDARD.decode(body["audioContent"].as_str().unwrap()).unwrap();
    assert_eq!(u16::from_le_bytes([wav[20], wav[21]]), 7, "mu-law WAV");
    assert_eq!(wav.len(), 44 + 2 * 200 * 8);
}

#[tokio::test(start_paused = true)]
async fn google_errors_and_faults() {
    let mut scenario = Scenario::default();
    scenario.google.faults = vec![FaultRule::model("en-US-Broken", Fault::rate_limited(5))];
    let sim = Simulator::start(scenario).await.unwrap();
    let response = google(&sim, None, &google_request("LINEAR16", 16_000)).await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["status"], "UNAUTHENTICATED");
    assert_eq!(body["error"]["code"], 401);

    let response = google(&sim, Some("k"), &google_request("MP3", 24_000)).await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["status"], "INVALID_ARGUMENT");

    let mut broken = google_request("LINEAR16", 16_000);
    broken["voice"]["name"] = json!("en-US-Broken");
    let response = google(&sim, Some("k"), &broken).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "5");
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["status"], "RESOURCE_EXHAUSTED");

    let response = reqwest::Client::new()
        .post(format!("{}/v1/text:synthesize", sim.google_base_url()))
        .header("x-goog-api-key", "k")
        .json(&google_request("LINEAR16", 24_000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(sim.request_count(Provider::Google), 4);
}
