//! Deepgram live streaming against a plain tokio-tungstenite client written from the docs.

mod common;

use std::time::Duration;

use common::ms;
use futures::{SinkExt, StreamExt};
use golos_simulator::{Fault, FaultRule, Provider, Scenario, Simulator, SimulatorHandle, Transcript};
use serde_json::Value;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const WORKLOAD_QUERY: &str = "model=nova-3&encoding=linear16&sample_rate=16000&channels=1&interim_results=true\
&endpointing=300&vad_events=true&utterance_end_ms=1000";

async fn connect(sim: &SimulatorHandle, query: &str, auth: Option<&str>) -> Result<Ws, tungstenite::Error> {
    let mut request = format!("{}/v1/listen?{query}", sim.deepgram_ws_url()).into_client_request().unwrap();
    if let Some(auth) = auth {
        request.headers_mut().insert("authorization", auth.parse().unwrap());
    }
    // TCP_NODELAY: with Nagle a small message waits for the server's delayed ACK, and on the
    // paused test clock virtual time runs ahead meanwhile.
    tokio_tungstenite::connect_async_with_config(request, None, true).await.map(|(ws, _)| ws)
}

/// 20 ms frames of 16 kHz PCM: a 220 Hz sine of amplitude 3000 (WORKLOAD §2.1) or zeros.
struct Caller {
    n: u64,
}

impl Caller {
    fn frame(&mut self, speech: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(640);
        for _ in 0..320 {
            let s = if speech {
                (3000.0 * (2.0 * std::f64::consts::PI * 220.0 * self.n as f64 / 16_000.0).sin()) as i16
            } else {
                0
            };
            self.n += 1;
            out.extend_from_slice(&s.to_le_bytes());
        }
        out
    }
}

#[derive(Debug)]
struct Received {
    at: Duration,
    message: Message,
}

impl Received {
    fn json(&self) -> Value {
        match &self.message {
            Message::Text(t) => serde_json::from_str(t.as_str()).unwrap(),
            other => panic!("not a text message: {other:?}"),
        }
    }
}

/// Sends `plan` (speech?, frame) paced at t0 + k·20 ms, then `CloseStream`; collects everything
/// the server sends until it closes.
async fn run_call(ws: Ws, plan: Vec<bool>) -> (Vec<Received>, Option<tungstenite::Error>) {
    let (mut sink, mut stream) = ws.split();
    let t0 = Instant::now();
    let sender = tokio::spawn(async move {
        let mut caller = Caller { n: 0 };
        for (k, speech) in plan.into_iter().enumerate() {
            tokio::time::sleep_until(t0 + ms(20 * k as u64)).await;
            if sink.send(Message::binary(caller.frame(speech))).await.is_err() {
                return sink;
            }
        }
        let _ = sink.send(Message::text(r#"{"type":"CloseStream"}"#)).await;
        sink
    });
    let mut received = Vec::new();
    let mut error = None;
    while let Some(next) = stream.next().await {
        match next {
            Ok(message) => received.push(Received { at: t0.elapsed(), message }),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    drop(sender.await);
    (received, error)
}

fn workload_utterance() -> Vec<bool> {
    let mut plan = vec![false; 50];
    plan.extend([true; 75]);
    plan.extend([false; 75]);
    plan
}

#[tokio::test(start_paused = true)]
async fn utterance_gives_speech_started_interim_final_utterance_end_and_metadata() {
    let sim = Simulator::start(Scenario::default()).await.unwrap();
    let ws = connect(&sim, WORKLOAD_QUERY, Some("Token dg-test")).await.unwrap();
    let (received, error) = run_call(ws, workload_utterance()).await;
    assert!(error.is_none(), "{error:?}");

    let kinds: Vec<String> = received
        .iter()
        .map(|r| match &r.message {
            Message::Text(_) => {
                let v = r.json();
                let t = v["type"].as_str().unwrap().to_owned();
                if t == "Results" {
                    format!("Results/{}/{}", v["is_final"], v["speech_final"])
                } else {
                    t
                }
            }
            Message::Close(_) => "Close".into(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        ["SpeechStarted", "Results/false/false", "Results/true/true", "UtteranceEnd", "Metadata", "Close"]
    );

    let started = received[0].json();
    assert_eq!(started["timestamp"], 1.0);
    assert_eq!(started["channel"], serde_json::json!([0, 1]));
    assert_eq!(received[0].at, ms(1000));

    let interim = received[1].json();
    assert_eq!(interim["channel"]["alternatives"][0]["transcript"], "what are your");
    assert_eq!(received[1].at, ms(1980), "after 1 s of speech, when the frame ending at 2.0 s arrives");

    let fin = received[2].json();
    let alt = &fin["channel"]["alternatives"][0];
    assert_eq!(alt["transcript"], "what are your opening hours");
    assert_eq!(alt["confidence"], 0.98);
    assert_eq!(alt["words"].as_array().unwrap().len(), 5);
    assert_eq!(alt["words"][0]["start"], 1.0);
    assert_eq!(alt["words"][4]["end"], 2.5);
    assert_eq!(fin["start"], 0.0);
    assert_eq!(fin["duration"], 2.8);
    assert_eq!(received[2].at, ms(2780), "300 ms of silence after the speech ends at 2.5 s");
    assert!(fin["metadata"]["request_id"].is_string());

    let ue = received[3].json();
    assert_eq!(ue["last_word_end"], 2.5);
    assert_eq!(received[3].at, ms(3480));

    let meta = received[4].json();
    assert_eq!(meta["duration"], 4.0);
    assert_eq!(meta["channels"], 1);
    match &received[5].message {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1000),
        other => panic!("expected a normal close, got {other:?}"),
    }

    tokio::time::sleep(ms(10)).await;
    let sessions = sim.deepgram_sessions();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].audio_bytes, 200 * 640);
    assert!(sessions[0].close_stream);
    assert_eq!(sessions[0].utterances, 1);
    let logged = sim.last_request(Provider::Deepgram).unwrap();
    assert_eq!(logged.header("authorization"), Some("Token dg-test"));
    assert!(logged.query.unwrap().contains("endpointing=300"));
}

#[tokio::test(start_paused = true)]
async fn scripted_transcripts_follow_utterances_and_mulaw_works() {
    let mut scenario = Scenario::default();
    scenario.deepgram.transcripts = vec![Transcript::new("hello", 0.91), Transcript::new("mumble mumble", 0.42)];
    let sim = Simulator::start(scenario).await.unwrap();
    let ws = connect(&sim, "encoding=linear16&sample_rate=16000&endpointing=100", Some("Token k")).await.unwrap();
    let mut plan = Vec::new();
    for _ in 0..2 {
        plan.extend([true; 20]);
        plan.extend([false; 20]);
    }
    let (received, _) = run_call(ws, plan).await;
    let finals: Vec<Value> = received
        .iter()
        .filter(|r| matches!(r.message, Message::Text(_)))
        .map(Received::json)
        .filter(|v| v["is_final"] == true)
        .collect();
    assert_eq!(finals.len(), 2);
    assert_eq!(finals[0]["channel"]["alternatives"][0]["transcript"], "hello");
    assert_eq!(finals[1]["channel"]["alternatives"][0]["confidence"], 0.42);
    assert!(received.iter().all(|r| !matches!(&r.message, Message::Text(t) if t.as_str().contains("SpeechStarted"))));

    // μ-law at 8 kHz: 0xFF is silence, a loud tone is speech.
    let ws = connect(&sim, "encoding=mulaw&sample_rate=8000&endpointing=200", Some("Token k")).await.unwrap();
    let (mut sink, mut stream) = ws.split();
    sink.send(Message::binary(vec![0x80u8; 8000])).await.unwrap(); // 1 s of near full-scale
    sink.send(Message::binary(vec![0xFFu8; 1600])).await.unwrap(); // 200 ms of silence
    let first = stream.next().await.unwrap().unwrap();
    let v: Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
    assert_eq!(v["is_final"], true);
    assert_eq!(v["speech_final"], true);
    assert_eq!(v["channel"]["alternatives"][0]["transcript"], "hello");
}

#[tokio::test(start_paused = true)]
async fn finalize_flushes_the_utterance_in_progress() {
    let sim = Simulator::start(Scenario::default()).await.unwrap();
    let ws = connect(&sim, "encoding=linear16&sample_rate=16000&endpointing=false", Some("Token k")).await.unwrap();
    let (mut sink, mut stream) = ws.split();
    let mut caller = Caller { n: 0 };
    for _ in 0..30 {
        sink.send(Message::binary(caller.frame(true))).await.unwrap();
    }
    sink.send(Message::text(r#"{"type":"Finalize"}"#)).await.unwrap();
    let v: Value = serde_json::from_str(stream.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(v["is_final"], true);
    assert_eq!(v["speech_final"], false);
    assert_eq!(v["from_finalize"], true);
}

#[tokio::test(start_paused = true)]
async fn idle_stream_is_closed_with_net_0001_after_the_timeout_and_keepalive_prevents_it() {
    let sim = Simulator::start(Scenario::default()).await.unwrap();
    let ws = connect(&sim, "encoding=linear16&sample_rate=16000", Some("Token k")).await.unwrap();
    let (mut sink, mut stream) = ws.split();
    let t0 = Instant::now();
    for k in 1..=4 {
        tokio::time::sleep_until(t0 + ms(4000 * k)).await;
        sink.send(Message::text(r#"{"type":"KeepAlive"}"#)).await.unwrap();
    }
    let message = stream.next().await.unwrap().unwrap();
    assert_eq!(t0.elapsed(), ms(26_000), "10 s after the last KeepAlive at 16 s");
    match message {
        Message::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 1011);
            assert!(frame.reason.as_str().starts_with("NET-0001"));
        }
        other => panic!("expected close, got {other:?}"),
    }
    tokio::time::sleep(ms(10)).await;
    assert_eq!(sim.deepgram_sessions()[0].keep_alives, 4);
}

#[tokio::test(start_paused = true)]
async fn auth_is_checked_before_the_upgrade_and_the_subprotocol_form_works() {
    let mut scenario = Scenario::default();
    scenario.deepgram.api_key = Some("right".into());
    let sim = Simulator::start(scenario).await.unwrap();
    for auth in [None, Some("Token wrong")] {
        match connect(&sim, WORKLOAD_QUERY, auth).await {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 401);
                let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
                assert_eq!(body["err_code"], "INVALID_AUTH");
            }
            other => panic!("expected HTTP 401, got {other:?}"),
        }
    }
    let mut request = format!("{}/v1/listen?encoding=linear16&sample_rate=16000", sim.deepgram_ws_url())
        .into_client_request()
        .unwrap();
    request.headers_mut().insert("sec-websocket-protocol", "token, right".parse().unwrap());
    let (_ws, response) = tokio_tungstenite::connect_async_with_config(request, None, true).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "token");
    assert!(response.headers().contains_key("dg-request-id"));
}

#[tokio::test(start_paused = true)]
async fn faults_rejected_upgrade_reset_and_stream_error() {
    let mut scenario = Scenario::default();
    scenario.deepgram.faults = vec![
        FaultRule::first(1, Fault::rate_limited(1)),
        FaultRule::model("nova-reset", Fault::ResetAfter { events: 1 }),
        FaultRule::model("nova-error", Fault::StreamError { events: 0 }),
    ];
    let sim = Simulator::start(scenario).await.unwrap();
    match connect(&sim, WORKLOAD_QUERY, Some("Token k")).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 429),
        other => panic!("expected HTTP 429, got {other:?}"),
    }

    let ws = connect(&sim, "model=nova-reset&encoding=linear16&sample_rate=16000&vad_events=true", Some("Token k"))
        .await
        .unwrap();
    let (received, error) = run_call(ws, workload_utterance()).await;
    assert_eq!(received.len(), 1, "SpeechStarted, then the connection drops");
    assert!(received.iter().all(|r| !matches!(r.message, Message::Close(_))), "no close frame on a reset");
    assert!(error.is_some());

    let ws = connect(&sim, "model=nova-error&encoding=linear16&sample_rate=16000", Some("Token k")).await.unwrap();
    let (received, _) = run_call(ws, vec![true; 10]).await;
    match &received[0].message {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1011),
        other => panic!("expected close 1011, got {other:?}"),
    }
    assert_eq!(sim.request_count(Provider::Deepgram), 3);
}

#[tokio::test(start_paused = true)]
async fn raw_audio_needs_encoding_and_sample_rate() {
    let sim = Simulator::start(Scenario::default()).await.unwrap();
    for query in ["encoding=linear16", "sample_rate=16000", "encoding=opus&sample_rate=48000"] {
        match connect(&sim, query, Some("Token k")).await {
            Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 400, "{query}"),
            other => panic!("expected HTTP 400 for {query}, got {other:?}"),
        }
    }
}
