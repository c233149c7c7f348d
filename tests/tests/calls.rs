//! Live calls through the real `golos serve` as a black box: a caller whose voice is made by
//! espeak-ng talks to a café FAQ agent (pocketsphinx STT with the FAQ grammar, canned answers,
//! espeak-ng TTS) over the WebSocket transport and the Twilio Media Streams endpoint.
//! Admission (hold, refusal), resume within the snapshot window, billing of the call and the
//! drain with a live call are checked from outside, as a customer or an operator sees them.

use futures::{SinkExt, StreamExt};
use golos_tests::{RunningGolos, Simulator};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

const PAYMENT_SECRET: &str = "calls-test-payment-secret";
const WAIT: Duration = Duration::from_secs(60);

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The provider simulators listen on loopback: agents may point at them only because the
/// operator allows it (docs/security.md, "Egress"). Tests that need another allowlist pass
/// their own `GOLOS_EGRESS_ALLOW`, which comes later and wins.
const SIMULATORS_ALLOWED: (&str, &str) = ("GOLOS_EGRESS_ALLOW", "127.0.0.1/32");

fn start_golos(extra_env: &[(&str, &str)]) -> RunningGolos {
    let mut env = vec![("GOLOS_SECRET_PAYMENTS_HMAC_TEST", PAYMENT_SECRET), SIMULATORS_ALLOWED];
    env.extend_from_slice(extra_env);
    RunningGolos::start(&env)
}

/// Raw 16 kHz PCM16 of `text` in a caller's voice.
fn speak(text: &str) -> Vec<i16> {
    let raw = golos_tests::speak_raw(text, &["-r", "16000", "-b", "16", "-e", "signed-integer"]);
    raw.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()
}

struct Customer {
    http: reqwest::Client,
    base: String,
    key: String,
    org_id: String,
}

impl Customer {
    async fn post(&self, path: &str, key: &str, body: &Value) -> (u16, Value) {
        let response =
            self.http.post(format!("{}{path}", self.base)).header("X-API-Key", key).json(body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn put_credential(&self, name: &str, value: &str) {
        let response = self
            .http
            .put(format!("{}/v1/provider-credentials/{name}", self.base))
            .header("X-API-Key", &self.key)
            .json(&json!({"value": value}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.text().await.unwrap());
    }

    async fn get(&self, path: &str) -> Value {
        let response = self.http.get(format!("{}{path}", self.base)).header("X-API-Key", &self.key).send().await;
        response.unwrap().json().await.unwrap()
    }

    /// An org with an admin key, topped up with `kopecks` unless 0.
    async fn new(golos: &RunningGolos, kopecks: i64) -> Self {
        let http = reqwest::Client::new();
        let base = golos.base_url();
        let operator = golos.operator_key();
        let mut customer = Self { http, base, key: String::new(), org_id: String::new() };
        let (status, org) = customer.post("/v1/orgs", &operator, &json!({"name": "Café"})).await;
        assert_eq!(status, 201, "{org}");
        customer.org_id = org["id"].as_str().unwrap().to_owned();
        let path = format!("/v1/orgs/{}/api-keys", customer.org_id);
        let (status, key) = customer.post(&path, &operator, &json!({"name": "owner", "role": "admin"})).await;
        assert_eq!(status, 201, "{key}");
        customer.key = key["token"].as_str().unwrap().to_owned();
        if kopecks > 0 {
            golos_tests::credit_by_test_payment(
                &customer.http,
                &customer.base,
                PAYMENT_SECRET,
                &customer.org_id,
                kopecks,
            )
            .await;
        }
        customer
    }

    async fn cafe_agent(&self, max_concurrent_calls: u32) -> String {
        self.agent(max_concurrent_calls, &json!([{"kind": "pocketsphinx"}])).await
    }

    async fn agent(&self, max_concurrent_calls: u32, stt: &Value) -> String {
        self.agent_with_priority(max_concurrent_calls, stt, None).await
    }

    async fn agent_with_priority(&self, max_concurrent_calls: u32, stt: &Value, priority: Option<u8>) -> String {
        let mut agent = golos_tests::cafe_agent(max_concurrent_calls, stt);
        if let Some(priority) = priority {
            agent["priority"] = json!(priority);
        }
        let (status, agent) = self.post("/v1/agents", &self.key, &agent).await;
        assert_eq!(status, 201, "{agent}");
        agent["id"].as_str().unwrap().to_owned()
    }

    async fn call_token(&self, agent: &str) -> String {
        let (status, token) = self.post(&format!("/v1/agents/{agent}/call-tokens"), &self.key, &json!({})).await;
        assert_eq!(status, 201, "{token}");
        token["token"].as_str().unwrap().to_owned()
    }

    /// The call's record once billing has processed its `call.ended`.
    async fn billed_call(&self, call_id: &str) -> Value {
        let until = Instant::now() + WAIT;
        loop {
            let record = self.get(&format!("/v1/calls/{call_id}")).await;
            if record["status"] == "ended" && record["cost_kopecks"].is_i64() {
                return record;
            }
            assert!(Instant::now() < until, "call {call_id} was not billed: {record}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// One caller on the golos WebSocket protocol, sending 20 ms frames on a real-time schedule
/// (silence unless it is saying something), recording what it receives.
struct Caller {
    socket: Socket,
    next_frame: Instant,
    to_say: std::collections::VecDeque<i16>,
    transcript: Vec<(String, String)>,
    audio_frames: usize,
    events: Vec<Value>,
}

impl Caller {
    async fn connect(golos: &RunningGolos, path: &str) -> Socket {
        let url = format!("ws://{}{path}", golos.addr);
        tokio_tungstenite::connect_async(url).await.expect("websocket").0
    }

    async fn start(golos: &RunningGolos, start: Value) -> Self {
        let mut socket = Self::connect(golos, "/ws/calls").await;
        socket.send(Message::Text(start.to_string().into())).await.unwrap();
        Self {
            socket,
            next_frame: Instant::now(),
            to_say: std::collections::VecDeque::new(),
            transcript: Vec::new(),
            audio_frames: 0,
            events: Vec::new(),
        }
    }

    fn say(&mut self, samples: &[i16]) {
        self.to_say.extend(samples);
    }

    /// Counts an audio frame or records an event.
    fn take(&mut self, message: Message) {
        match message {
            Message::Binary(_) => self.audio_frames += 1,
            Message::Text(text) => {
                let event: Value = serde_json::from_str(&text).unwrap();
                if event["type"] == "transcript" {
                    self.transcript
                        .push((event["role"].as_str().unwrap().to_owned(), event["text"].as_str().unwrap().to_owned()));
                }
                self.events.push(event);
            }
            _ => {}
        }
    }

    /// Runs the call until `done` holds for what was received, or the call ends.
    async fn until(&mut self, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}; events: {:?}", self.events);
            tokio::select! {
                () = tokio::time::sleep_until(self.next_frame) => {
                    self.next_frame += Duration::from_millis(20);
                    let frame: Vec<u8> = (0..320)
                        .map(|_| self.to_say.pop_front().unwrap_or(0))
                        .flat_map(i16::to_le_bytes)
                        .collect();
                    if self.socket.send(Message::Binary(frame.into())).await.is_err() {
                        // The server closed: what it sent before closing (`ended`) may still
                        // be unread, and a busy machine makes the send fail first.
                        while let Some(Ok(message)) = self.socket.next().await {
                            self.take(message);
                        }
                        return;
                    }
                }
                message = self.socket.next() => match message {
                    Some(Ok(message)) => self.take(message),
                    Some(Err(_)) | None => return,
                },
            }
        }
    }

    fn event(&self, kind: &str) -> Option<&Value> {
        self.events.iter().find(|e| e["type"] == kind)
    }

    fn call_id(&self) -> String {
        self.event("started").map(|e| e["call_id"].as_str().unwrap().to_owned()).unwrap_or_default()
    }

    fn said(&self, role: &str, words: &str) -> bool {
        self.transcript.iter().any(|(r, text)| r == role && text.to_lowercase().contains(words))
    }

    fn ended(&self) -> Option<String> {
        self.event("ended").map(|e| e["reason"].as_str().unwrap().to_owned())
    }

    async fn hang_up(&mut self) {
        self.socket.send(Message::Text(json!({"type": "hangup"}).to_string().into())).await.unwrap();
        self.until("ended", |c| c.ended().is_some()).await;
    }
}

/// golos, a funded customer and a café agent whose STT is the Deepgram simulator (its key
/// the org's own provider credential), with a call token.
async fn with_deepgram_simulator() -> (Simulator, RunningGolos, Customer, String, String) {
    let simulator = Simulator::start();
    let golos = start_golos(&[]);
    let customer = Customer::new(&golos, 10_000).await;
    customer.put_credential("deepgram-sim", "sim-key").await;
    let stt = json!([{"kind": "deepgram", "endpoint": simulator.ws_url(), "credentials_secret": "deepgram-sim"}]);
    let agent = customer.agent(10, &stt).await;
    let token = customer.call_token(&agent).await;
    (simulator, golos, customer, agent, token)
}

fn start_message(agent: &str, token: &str) -> Value {
    json!({"type": "start", "agent_id": agent, "token": token, "sample_rate": 16000})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_call_is_answered_heard_billed_and_resumable() {
    let golos = start_golos(&[]);
    let customer = Customer::new(&golos, 10_000).await;
    let agent = customer.cafe_agent(10).await;
    let token = customer.call_token(&agent).await;

    let mut start = start_message(&agent, &token);
    start["metadata"] = json!({"user_id": "u-17"});
    let mut caller = Caller::start(&golos, start).await;
    caller.until("the greeting", |c| c.said("assistant", "how can i help")).await;
    caller.say(&speak("When are you open?"));
    caller.until("the answer", |c| c.said("assistant", "eight in the morning")).await;
    caller.until("the turn's metrics", |c| c.event("turn_metrics").is_some()).await;
    assert!(caller.said("user", "when are you open"), "{:?}", caller.transcript);
    assert!(caller.audio_frames > 50, "the answer arrived as audio ({} frames)", caller.audio_frames);
    let first_call = caller.call_id();
    // The connection drops without a hangup: the caller's network went away.
    drop(caller);

    let record = customer.billed_call(&first_call).await;
    assert_eq!(record["end_reason"], "caller_hangup", "{record}");
    assert_eq!(record["metrics"]["metadata"], json!({"user_id": "u-17"}), "the client's metadata stays with the call");
    assert_eq!(record["cost_kopecks"], 600, "one started minute at the default 6 RUB/min: {record}");
    let detail = &record["transcript"];
    assert!(detail.to_string().contains("eight in the morning"), "the stored transcript: {detail}");

    // The snapshot is sealed under the org and the call: another organisation's caller
    // naming this call id is refused as if it did not exist, and the snapshot stays.
    let stranger = Customer::new(&golos, 10_000).await;
    let stranger_agent = stranger.cafe_agent(10).await;
    let mut theft = start_message(&stranger_agent, &stranger.call_token(&stranger_agent).await);
    theft["call_id"] = json!(first_call);
    let mut thief = Caller::start(&golos, theft).await;
    thief.until("the refusal", |c| c.ended().is_some()).await;
    assert_eq!(thief.event("error").unwrap()["code"], "call_not_found");

    // Reconnecting within 5 minutes resumes the conversation: no second greeting.
    let mut resume = start_message(&agent, &token);
    resume["call_id"] = json!(first_call);
    let mut caller = Caller::start(&golos, resume.clone()).await;
    caller.until("started", |c| c.event("started").is_some()).await;
    caller.say(&speak("Do you have wifi?"));
    caller.until("the second answer", |c| c.said("assistant", "free wifi")).await;
    assert!(
        !caller.said("assistant", "how can i help"),
        "a resumed call is not greeted again: {:?}",
        caller.transcript
    );
    let second_call = caller.call_id();
    assert_ne!(second_call, first_call);
    caller.hang_up().await;
    let record = customer.billed_call(&second_call).await;
    assert_eq!(record["metrics"]["resumed_from"], json!(first_call), "{record}");

    // A snapshot resumes once; an unknown id is refused with a stable code.
    let mut again = Caller::start(&golos, resume).await;
    again.until("the refusal", |c| c.ended().is_some()).await;
    assert_eq!(again.event("error").unwrap()["code"], "call_not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_refused_without_balance_or_with_a_bad_token() {
    let golos = start_golos(&[]);
    let customer = Customer::new(&golos, 0).await;
    let agent = customer.cafe_agent(10).await;
    let token = customer.call_token(&agent).await;
    let (status, problem) =
        customer.post(&format!("/v1/agents/{agent}/call-tokens"), &customer.key, &json!({"ttl_secs": 0})).await;
    assert_eq!((status, problem["code"].as_str()), (422, Some("validation_failed")), "{problem}");
    let mut caller = Caller::start(&golos, start_message(&agent, &token)).await;
    caller.until("the refusal", |c| c.ended().is_some()).await;
    assert_eq!(caller.event("error").unwrap()["code"], "no_balance", "{:?}", caller.events);

    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    let mut caller = Caller::start(&golos, start_message(&agent, &forged)).await;
    caller.until("the refusal", |c| c.ended().is_some()).await;
    assert_eq!(caller.event("error").unwrap()["code"], "unauthorized");

    // A token is for one agent only.
    let other = customer.cafe_agent(10).await;
    let mut caller = Caller::start(&golos, start_message(&other, &token)).await;
    caller.until("the refusal", |c| c.ended().is_some()).await;
    assert_eq!(caller.event("error").unwrap()["code"], "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_over_the_agent_limit_is_held_then_connected() {
    let golos = start_golos(&[]);
    let customer = Customer::new(&golos, 10_000).await;
    let agent = customer.agent_with_priority(1, &json!([{"kind": "pocketsphinx"}]), Some(9)).await;
    let token = customer.call_token(&agent).await;
    let mut first = Caller::start(&golos, start_message(&agent, &token)).await;
    first.until("the greeting", |c| c.said("assistant", "how can i help")).await;

    let mut second = Caller::start(&golos, start_message(&agent, &token)).await;
    second.until("the hold prompt", |c| c.audio_frames > 25).await;
    assert!(second.transcript.is_empty(), "a held caller is not greeted yet: {:?}", second.transcript);
    assert!(second.ended().is_none());
    // The held call waits with its agent's priority (9): a priority-8 caller lines up behind it.
    let body = json!({"org_id": customer.org_id, "agent_id": agent, "call_id": "call_behind", "priority": 8});
    let (status, behind) = customer.post("/v1/admissions", &golos.operator_key(), &body).await;
    assert_eq!(status, 200, "{behind}");
    assert_eq!((behind["decision"].as_str(), behind["position"].as_u64()), (Some("wait"), Some(2)), "{behind}");

    first.hang_up().await;
    second.until("the greeting after the hold", |c| c.said("assistant", "how can i help")).await;
    second.hang_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twilio_media_stream_is_answered_in_mulaw() {
    use base64::Engine as _;
    // pocketsphinx's model is wideband and hears nothing in 8 kHz phone audio, so the phone
    // call's STT is Deepgram, here its simulator (WORKLOAD.md: any non-zero audio is speech,
    // and the final is "what are your opening hours") through the real Deepgram adapter.
    let (_simulator, golos, customer, agent, token) = with_deepgram_simulator().await;
    let mut socket = Caller::connect(&golos, "/ws/twilio").await;
    let send = |v: Value| Message::Text(v.to_string().into());
    socket.send(send(json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}))).await.unwrap();
    socket
        .send(send(json!({"event": "start", "sequenceNumber": "1", "streamSid": "MZ1", "start": {
            "streamSid": "MZ1", "accountSid": "AC1", "callSid": "CA1", "tracks": ["inbound"],
            "customParameters": {"agent_id": agent, "token": token},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})))
        .await
        .unwrap();
    // Silence through the greeting (speech over it would barge in, and the marks of dropped
    // audio are never answered), 1.5 s of "speech", then silence, as 20 ms μ-law media
    // messages on a real-time pace.
    let question: Vec<i16> = (0..12_000).map(|i| ((f64::from(i) * 0.35).sin() * 8_000.0) as i16).collect();
    let mut pcm = vec![0i16; 4 * 8_000];
    pcm.extend(question);
    pcm.extend(vec![0i16; 8 * 8_000]);
    let mut chunks = pcm.chunks(160).enumerate();
    let mut next = Instant::now();
    let mut media_out = 0usize;
    let mut marks = 0usize;
    let deadline = Instant::now() + WAIT;
    while media_out < 100 || marks < 2 {
        assert!(Instant::now() < deadline, "media out {media_out}, marks {marks}");
        tokio::select! {
            () = tokio::time::sleep_until(next) => {
                next += Duration::from_millis(20);
                let Some((i, chunk)) = chunks.next() else { break };
                let payload = golos_audio::g711::mulaw_encode_all(chunk);
                let media = json!({"event": "media", "sequenceNumber": (i + 2).to_string(), "streamSid": "MZ1",
                    "media": {"track": "inbound", "chunk": (i + 1).to_string(), "timestamp": (i * 20).to_string(),
                              "payload": base64::engine::general_purpose::STANDARD.encode(payload)}});
                socket.send(send(media)).await.unwrap();
            }
            message = socket.next() => {
                let Some(Ok(Message::Text(text))) = message else { continue };
                let event: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(event["streamSid"], "MZ1");
                match event["event"].as_str().unwrap() {
                    "media" => media_out += 1,
                    "mark" => marks += 1,
                    _ => {}
                }
            }
        }
    }
    // The greeting and the answer, each followed by its mark.
    assert!(media_out >= 100 && marks >= 2, "media out {media_out}, marks {marks}");
    socket.send(send(json!({"event": "stop", "sequenceNumber": "999", "streamSid": "MZ1", "stop": {"accountSid": "AC1", "callSid": "CA1"}}))).await.unwrap();
    let calls = customer.get("/v1/calls").await;
    let call_id = calls["items"][0]["id"].as_str().unwrap().to_owned();
    let record = customer.billed_call(&call_id).await;
    assert_eq!(record["direction"], "inbound");
    assert_eq!(record["metrics"]["metadata"]["provider_call_sid"], "CA1", "{record}");
    assert!(record["transcript"].to_string().contains("eight in the morning"), "{record}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_live_call_then_ends_it_as_forced_shutdown() {
    let golos = start_golos(&[("GOLOS_DRAIN_SECS", "2")]);
    let customer = Customer::new(&golos, 10_000).await;
    let agent = customer.cafe_agent(10).await;
    let token = customer.call_token(&agent).await;
    let mut caller = Caller::start(&golos, start_message(&agent, &token)).await;
    caller.until("the greeting", |c| c.said("assistant", "how can i help")).await;
    let pid = golos.pid().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    // The signal is handled asynchronously: wait until the worker says it is draining.
    let until = Instant::now() + WAIT;
    while tokio::task::block_in_place(|| golos.get("/ready").0) != 503 {
        assert!(Instant::now() < until, "the worker never reported draining");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Draining: no new calls; the live one goes on until the drain time, then ends.
    let mut refused = Caller::start(&golos, start_message(&agent, &token)).await;
    refused.until("the refusal", |c| c.ended().is_some()).await;
    assert_eq!(refused.event("error").unwrap()["code"], "unavailable");
    caller.until("the forced end", |c| c.ended().is_some()).await;
    assert_eq!(caller.ended().as_deref(), Some("forced_shutdown"));
    assert!(golos.wait().success(), "golos exits 0 after the drain");
}

/// A cloud STT tier (the Deepgram simulator through the real adapter, its key from the
/// Secrets port): the client gets live interim captions, and speech over the greeting cuts
/// it (`clear`) and is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_captions_and_barge_in_over_the_greeting() {
    let (_simulator, golos, _customer, agent, token) = with_deepgram_simulator().await;
    let mut caller = Caller::start(&golos, start_message(&agent, &token)).await;
    caller.until("started", |c| c.event("started").is_some()).await;
    // 1.6 s of "speech" (WORKLOAD.md: non-zero audio) from the first frame, over the greeting.
    let speech: Vec<i16> = (0..25_600).map(|i| ((f64::from(i) * 0.35).sin() * 8_000.0) as i16).collect();
    caller.say(&speech);
    caller.until("the answer", |c| c.said("assistant", "eight in the morning")).await;
    let interim = caller.events.iter().position(|e| e["type"] == "transcript" && e["final"] == false);
    let interim = interim.expect("an interim caption");
    assert_eq!(caller.events[interim]["text"], "what are your");
    let cleared = caller.events.iter().position(|e| e["type"] == "clear").expect("the greeting was cut");
    let heard = caller.events.iter().position(|e| e["text"] == "what are your opening hours").expect("the final");
    assert!(cleared < heard && interim < heard, "{:?}", caller.events);
    caller.hang_up().await;
}

/// README's run command: `golos demo` places its scripted call and checks the answers.
#[test]
fn the_demo_call_is_heard_answered_and_billed() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("call.wav");
    let output = Command::new(golos_tests::golos_binary())
        .args(["demo", "--wav"])
        .arg(&wav)
        // The local tiers, whatever keys the machine running the tests has.
        .env_remove("OPENAI_API_KEY")
        .env_remove("DEEPGRAM_API_KEY")
        .env_remove("ELEVENLABS_API_KEY")
        .output()
        .expect("run golos demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    for line in ["heard   ▸ when are you open", "heard   ▸ do you have wifi", "both questions were heard and answered"]
    {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    assert!(stdout.contains("ended by caller_hangup, cost 6.00 RUB"), "{stdout}");
    let audio = std::fs::read(&wav).unwrap();
    assert!(audio.len() > 44 + 16_000 * 2 * 5, "at least 5 s of call audio in the WAV ({} bytes)", audio.len());
}

/// A host of a tenant's that records every byte sent to it (bounded) and answers 500, so the
/// chain falls back to the next tier and the call goes on.
struct TenantListener {
    url: String,
    received: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl TenantListener {
    async fn start() -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&received);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let sink = std::sync::Arc::clone(&sink);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
                        sink.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        Self { url, received }
    }

    fn saw(&self, needle: &str) -> bool {
        let received = self.received.lock().unwrap();
        received.windows(needle.len()).any(|w| w == needle.as_bytes())
    }
}

/// The exfiltration of issue 14, tried as an attacker would: an editor points a TTS tier at
/// their own host and names a platform secret as its credential. Nothing the platform holds
/// (operator key, pepper, payment secret, the platform's own provider key) reaches the host,
/// whatever the agent names; the org's own credential of the same name is all it can send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cannot_send_a_platform_secret_to_its_own_host() {
    const PLATFORM_KEY: &str = "platform-elevenlabs-key-0123456789";
    const TENANT_KEY: &str = "tenant-own-elevenlabs-key-9876";
    let listener = TenantListener::start().await;
    // The operator lets calls reach loopback (a self-hosted model's setting), so the
    // listener is reachable and only the credential rules stand between it and the secrets.
    let golos =
        start_golos(&[("GOLOS_SECRET_PROVIDER_ELEVENLABS", PLATFORM_KEY), ("GOLOS_EGRESS_ALLOW", "127.0.0.1/32")]);
    let customer = Customer::new(&golos, 10_000).await;
    let platform_secrets = [
        golos.operator_key(),
        golos_tests::read_secret(golos.data_dir.path(), "api-key-pepper"),
        PAYMENT_SECRET.to_owned(),
        PLATFORM_KEY.to_owned(),
    ];
    let agent_with_tts = |tier: Value| {
        json!({
            "name": "Exfiltrator", "system_prompt": "x", "greeting": "Hello, how can I help?", "language": "en-US",
            "voice": {"provider": "espeak_ng", "voice_id": "en-us"},
            "faq": [{"questions": ["hello"], "answer": "Hi."}],
            "providers": {"llm": [{"kind": "canned"}], "tts": [tier, {"kind": "espeak_ng"}], "stt": [{"kind": "pocketsphinx"}]}
        })
    };
    for secret in ["operator-api-key", "api-key-pepper", "payments-hmac-test", "provider-elevenlabs"] {
        let tier = json!({"kind": "elevenlabs", "endpoint": listener.url, "credentials_secret": secret});
        let (status, body) = customer.post("/v1/agents", &customer.key, &agent_with_tts(tier)).await;
        assert_eq!(status, 422, "naming `{secret}` must be refused: {body}");
        assert_eq!(body["errors"][0]["code"], "unknown_credential");
    }
    // Without a credential, a custom endpoint gets no key at all (never the platform's).
    let (status, keyless) = customer
        .post("/v1/agents", &customer.key, &agent_with_tts(json!({"kind": "elevenlabs", "endpoint": listener.url})))
        .await;
    assert_eq!(status, 201, "{keyless}");
    // The org's own credential, named like a platform secret, is the org's.
    customer.put_credential("operator-api-key", TENANT_KEY).await;
    let tier = json!({"kind": "elevenlabs", "endpoint": listener.url, "credentials_secret": "operator-api-key"});
    let (status, own) = customer.post("/v1/agents", &customer.key, &agent_with_tts(tier)).await;
    assert_eq!(status, 201, "{own}");

    for agent in [keyless["id"].as_str().unwrap(), own["id"].as_str().unwrap()] {
        let token = customer.call_token(agent).await;
        let mut caller = Caller::start(&golos, start_message(agent, &token)).await;
        // Audio of the greeting comes from espeak-ng, the second tier: the first one has been
        // tried (and answered 500 by the listener, after it recorded the request) or skipped.
        caller
            .until("the greeting's audio (from the fallback tier)", |c| {
                c.said("assistant", "how can i help") && c.audio_frames > 0
            })
            .await;
        assert!(caller.audio_frames > 0, "the greeting was heard: {:?}", caller.events);
        caller.hang_up().await;
    }
    assert!(listener.saw(TENANT_KEY), "the org's own credential went to the org's host");
    for secret in &platform_secrets {
        assert!(!listener.saw(secret), "a platform secret reached the tenant's host");
    }
}

/// A scripted LLM (the OpenAI simulator on 127.0.0.2, which the operator allows) that answers
/// the caller's question by calling the agent's function tools, then says which error the
/// tools returned; Deepgram's simulator hears the caller. Returns the simulator and its
/// scenario file's folder.
fn tool_calling_simulator(tool_names: &[&str]) -> (Simulator, tempfile::TempDir) {
    let calls: Vec<Value> = tool_names
        .iter()
        .map(|name| json!({"name": name, "arguments": "{\"q\": \"hours\"}", "fragments": 1}))
        .collect();
    let scenario = json!({
        "openai": {
            "replies": [
                {"when": "destination_forbidden", "tokens": ["The", " tool", " was", " refused."]},
                {"when": "tool_response_too_large", "tokens": ["The", " answer", " was", " too", " large."]},
                {"tokens": [], "tool_calls": calls}
            ],
            "latency": {"ttft_ms": 20, "token_interval_ms": 5}
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tools.json");
    std::fs::write(&path, scenario.to_string()).unwrap();
    let simulator = Simulator::start_with(&["--host", "127.0.0.2", "--config", path.to_str().unwrap()]);
    (simulator, dir)
}

/// An agent whose LLM and STT are the simulator and whose tools are `(name, url)`.
async fn tool_agent(customer: &Customer, simulator: &Simulator, tools: &[(&str, String)]) -> (u16, Value) {
    customer.put_credential("sim-key", "sim-key").await;
    let tools: Vec<Value> = tools
        .iter()
        .map(|(name, url)| json!({"type": "function", "name": name, "description": "Look it up",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}, "url": url, "timeout_ms": 10_000}))
        .collect();
    let agent = json!({
        "name": "Tool host",
        "system_prompt": "Use your tools.",
        "language": "en-US",
        "voice": {"provider": "espeak_ng", "voice_id": "en-us"},
        "tools": tools,
        "providers": simulator.agent_providers("sim-key")
    });
    customer.post("/v1/agents", &customer.key, &agent).await
}

/// Places a call that asks the question (1.6 s of "speech" for the Deepgram simulator) and
/// runs until the agent says `answer`; returns the call's id.
async fn ask_until(golos: &RunningGolos, customer: &Customer, agent: &str, answer: &str) -> String {
    let token = customer.call_token(agent).await;
    let mut caller = Caller::start(golos, start_message(agent, &token)).await;
    caller.until("started", |c| c.event("started").is_some()).await;
    let speech: Vec<i16> = (0..25_600).map(|i| ((f64::from(i) * 0.35).sin() * 8_000.0) as i16).collect();
    caller.say(&speech);
    caller.until(answer, |c| c.said("assistant", answer)).await;
    assert!(caller.ended().is_none(), "the call goes on after the tool error: {:?}", caller.events);
    let call_id = caller.call_id();
    caller.hang_up().await;
    call_id
}

/// Where the handing-off agent's `escalate_to_human` transfers calls.
const ESCALATION_TARGET: &str = "+74959876543";

/// The delivered webhooks of `kind` about `call_id`.
fn webhooks_of<'a>(queued: &'a [Value], kind: &str, call_id: &str) -> Vec<&'a Value> {
    queued.iter().filter(|e| e["type"] == kind && e["data"]["call_id"] == call_id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalations_and_transfers_reach_the_orgs_webhook_endpoint() {
    // The LLM escalates whatever the caller says, in more words than a webhook carries; told
    // a person will follow up, it says so.
    let reason = format!("Double charge on the card. {}", "Очень недоволен. ".repeat(40));
    let scenario = json!({"openai": {
        "replies": [
            {"when": "escalation recorded", "tokens": ["Someone", " will", " call", " you", " back."]},
            {"tokens": [], "tool_calls": [{"name": "escalate_to_human", "arguments": json!({"reason": reason}).to_string(), "fragments": 1}]}
        ],
        "latency": {"ttft_ms": 20, "token_interval_ms": 5}
    }});
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("escalations.json");
    std::fs::write(&path, scenario.to_string()).unwrap();
    let simulator = Simulator::start_with(&["--config", path.to_str().unwrap()]);
    let golos = start_golos(&[]);
    let customer = Customer::new(&golos, 10_000).await;
    customer.put_credential("sim-key", "sim-key").await;
    // The org's CRM: golos serve's own consumer delivers to it, signed.
    let receiver = golos_tests::WebhookReceiver::start().await;
    let (status, endpoint) = customer
        .post(
            "/v1/webhook-endpoints",
            &customer.key,
            &json!({"url": receiver.url, "event_types": ["agent.escalation_triggered", "call.transfer", "call.ended"]}),
        )
        .await;
    assert_eq!(status, 201, "{endpoint}");
    let secret = endpoint["secret"].as_str().unwrap().to_owned();
    let agent = |tools: Value| {
        json!({"name": "Support", "system_prompt": "Help the caller.", "language": "en-US",
            "voice": {"provider": "espeak_ng", "voice_id": "en-us"}, "tools": tools,
            "providers": simulator.agent_providers("sim-key")})
    };
    let (status, follow_up) =
        customer.post("/v1/agents", &customer.key, &agent(json!([{"type": "escalate_to_human"}]))).await;
    assert_eq!(status, 201, "{follow_up}");
    let handoff = json!([{"type": "escalate_to_human", "destination": ESCALATION_TARGET}]);
    let (status, handoff) = customer.post("/v1/agents", &customer.key, &agent(handoff)).await;
    assert_eq!(status, 201, "{handoff}");
    // 1.6 s of "speech": the Deepgram simulator makes it a turn.
    let speech: Vec<i16> = (0..25_600).map(|i| ((f64::from(i) * 0.35).sin() * 8_000.0) as i16).collect();

    // Without a destination the escalation is reported and the conversation goes on.
    let follow_up = follow_up["id"].as_str().unwrap();
    let token = customer.call_token(follow_up).await;
    let mut caller = Caller::start(&golos, start_message(follow_up, &token)).await;
    caller.until("started", |c| c.event("started").is_some()).await;
    caller.say(&speech);
    caller.until("the follow-up promise", |c| c.said("assistant", "call you back")).await;
    assert!(caller.ended().is_none(), "the call goes on after an escalation without a destination");
    let followed_up = caller.call_id();
    caller.hang_up().await;

    // With one, the call is handed off; a web call has no line to hand over, so it ends as
    // transferred and the org's systems follow up with the caller.
    let handoff = handoff["id"].as_str().unwrap();
    let token = customer.call_token(handoff).await;
    let mut caller = Caller::start(&golos, start_message(handoff, &token)).await;
    caller.until("started", |c| c.event("started").is_some()).await;
    caller.say(&speech);
    caller.until("the end of the call", |c| c.ended().is_some()).await;
    assert_eq!(caller.ended().as_deref(), Some("transfer"), "{:?}", caller.events);
    let handed_off = caller.call_id();

    let queued = receiver
        .until("both escalations, the transfer and the calls' ends", |q| {
            webhooks_of(q, "agent.escalation_triggered", &followed_up).len() == 1
                && webhooks_of(q, "agent.escalation_triggered", &handed_off).len() == 1
                && webhooks_of(q, "call.transfer", &handed_off).len() == 1
                && webhooks_of(q, "call.ended", &handed_off).len() == 1
        })
        .await;
    for delivery in receiver.received() {
        delivery.verify(&secret);
        assert!(delivery.headers.contains_key("x-webhook-attempt"), "{:?}", delivery.headers);
    }
    // The transcript crossed the queues sealed and is decrypted for the delivery.
    let ended = webhooks_of(&queued, "call.ended", &handed_off)[0];
    let turns = ended["data"]["transcript"].as_array().unwrap_or_else(|| panic!("an inline transcript: {ended}"));
    assert!(turns.iter().any(|t| t["role"] == "assistant"), "{ended}");
    assert_eq!(ended["data"]["transcript_url"], format!("/v1/calls/{handed_off}"), "{ended}");
    assert_eq!(ended["data"]["end_reason"], "transfer", "{ended}");
    let capped: String = reason.chars().take(500).collect();
    let escalation = webhooks_of(&queued, "agent.escalation_triggered", &followed_up)[0];
    assert_eq!(escalation["id"], format!("evt_agent_escalation_triggered_{followed_up}_1"), "{escalation}");
    assert_eq!(escalation["org_id"], customer.org_id.as_str());
    let data = &escalation["data"];
    assert_eq!(data["agent_id"], follow_up, "{escalation}");
    assert_eq!(data["direction"], "web", "{escalation}");
    assert_eq!(data["reason"], capped.as_str(), "the LLM's reason, cut at 500 characters: {escalation}");
    assert_eq!(data["transfer_to"], Value::Null, "{escalation}");
    assert_eq!((&data["from"], &data["to"]), (&Value::Null, &Value::Null), "a web call has no numbers: {escalation}");
    assert!(data["triggered_at"].as_str().is_some_and(|t| t.len() == 24 && t.ends_with('Z')), "{escalation}");
    assert!(webhooks_of(&queued, "call.transfer", &followed_up).is_empty(), "nothing was transferred");

    let escalation = webhooks_of(&queued, "agent.escalation_triggered", &handed_off)[0];
    assert_eq!(escalation["id"], format!("evt_agent_escalation_triggered_{handed_off}_1"), "{escalation}");
    assert_eq!(escalation["data"]["transfer_to"], ESCALATION_TARGET, "{escalation}");
    let transfer = webhooks_of(&queued, "call.transfer", &handed_off)[0];
    assert_eq!(transfer["id"], format!("evt_call_transfer_{handed_off}_1"), "{transfer}");
    let data = &transfer["data"];
    assert_eq!(data["agent_id"], handoff, "{transfer}");
    assert_eq!(data["destination"], ESCALATION_TARGET, "{transfer}");
    assert_eq!(data["status"], "completed", "{transfer}");
    assert_eq!(data["reason"], Value::Null, "{transfer}");
    assert_eq!(data["initiated_by"], "escalate_to_human", "{transfer}");
    let (requested, ended) = (data["requested_at"].as_str().unwrap(), data["ended_at"].as_str().unwrap());
    assert!(requested <= ended && escalation["data"]["triggered_at"].as_str().unwrap() <= requested, "{transfer}");
    let record = customer.billed_call(&handed_off).await;
    assert_eq!(record["end_reason"], "transfer", "{record}");
}

/// A listener on 127.0.0.1 that must never be reached; `accept` tells afterwards whether
/// anything connected (the kernel queues a connection even if nobody accepts it).
fn tripwire() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

fn assert_untouched(listener: &std::net::TcpListener) {
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("something connected to the worker's own network: {other:?}"),
    }
}

/// Tool URLs that lead to the worker's own network — an IPv4-mapped loopback literal, the
/// cloud metadata address, a name that resolves to loopback — are refused at write time where
/// that can be known, and in any case at connect time: nothing reaches them, the LLM gets a
/// clear tool error and the call goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_tools_cannot_reach_the_workers_own_network() {
    let (listener, port) = tripwire();
    let (simulator, _scenario) = tool_calling_simulator(&["mapped", "metadata", "named"]);
    let mapped = format!("http://[::ffff:127.0.0.1]:{port}/lookup");
    let metadata = "http://169.254.169.254/latest/meta-data/".to_owned();
    let named = format!("https://localhost:{port}/lookup");
    let allow_simulator = ("GOLOS_EGRESS_ALLOW", "127.0.0.2/32");
    let golos = start_golos(&[allow_simulator]);
    let customer = Customer::new(&golos, 10_000).await;

    // Write time: IP literals of forbidden classes are refused with the field and the class.
    for url in [&mapped, &metadata] {
        let (status, problem) = tool_agent(&customer, &simulator, &[("lookup", url.clone())]).await;
        assert_eq!(status, 422, "{problem}");
        let issue = &problem["errors"][0];
        assert_eq!(
            (issue["field"].as_str(), issue["code"].as_str()),
            (Some("tools[0].url"), Some("forbidden_destination"))
        );
    }

    // An agent saved while the operator still allowed those destinations (or by a worker
    // with another allowlist) meets the connect-time check, the one that matters.
    let data_dir = golos.crash();
    let permissive = ("GOLOS_EGRESS_ALLOW", "127.0.0.2/32,::ffff:0:0/96,169.254.169.254/32");
    let golos = RunningGolos::start_in(data_dir, &[SIMULATORS_ALLOWED, permissive]);
    let tools = [("mapped", mapped), ("metadata", metadata), ("named", named)];
    let (status, agent) = tool_agent(&customer_of(&golos, &customer), &simulator, &tools).await;
    assert_eq!(status, 201, "{agent}");
    let agent = agent["id"].as_str().unwrap().to_owned();
    let data_dir = golos.crash();
    let golos = RunningGolos::start_in(data_dir, &[allow_simulator]);
    let customer = customer_of(&golos, &customer);

    let call_id = ask_until(&golos, &customer, &agent, "tool was refused").await;
    assert_untouched(&listener);
    let record = customer.billed_call(&call_id).await;
    assert_eq!(record["end_reason"], "caller_hangup", "{record}");
}

/// The same customer against a restarted golos (same data directory, so the same keys).
fn customer_of(golos: &RunningGolos, customer: &Customer) -> Customer {
    Customer {
        http: customer.http.clone(),
        base: golos.base_url(),
        key: customer.key.clone(),
        org_id: customer.org_id.clone(),
    }
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A tool that answers with a 1 GiB stream is cut at 64 KiB: the worker's memory does not grow
/// with it, the LLM is told the answer was too large, and the call goes on. The tool's request
/// is signed with the org's key (Standard Webhooks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_answering_a_gigabyte_is_cut_at_the_cap() {
    use std::io::Write;
    let (simulator, _scenario) = tool_calling_simulator(&["firehose"]);
    let firehose = std::net::TcpListener::bind("127.0.0.3:0").unwrap();
    let url = format!("http://{}/firehose", firehose.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (mut socket, _) = firehose.accept().unwrap();
        let request = read_http_request(&mut socket);
        socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n").unwrap();
        let chunk = vec![b' '; 1 << 20];
        let mut sent = 0usize;
        while sent < 1 << 30 {
            if socket.write_all(&chunk).is_err() {
                break;
            }
            sent += chunk.len();
        }
        (request, sent)
    });
    let golos = start_golos(&[("GOLOS_EGRESS_ALLOW", "127.0.0.2/32,127.0.0.3/32")]);
    let customer = Customer::new(&golos, 10_000).await;
    let (status, agent) = tool_agent(&customer, &simulator, &[("firehose", url)]).await;
    assert_eq!(status, 201, "{agent}");
    let agent = agent["id"].as_str().unwrap().to_owned();
    let before = rss_kib(golos.pid());

    ask_until(&golos, &customer, &agent, "answer was too large").await;
    let grown = rss_kib(golos.pid()).saturating_sub(before);
    assert!(grown < 64 * 1024, "the worker grew by {grown} KiB");
    let ((headers, body), sent) = server.join().unwrap();
    assert!(sent < 1 << 30, "the worker stopped reading; the tool could not send it all ({sent} bytes)");
    assert_signed(&customer, &headers, &body).await;
}

/// One HTTP/1.1 request as the tool endpoint sees it: header names (lower-cased) and values,
/// and the body (`content-length` bytes).
fn read_http_request(socket: &mut std::net::TcpStream) -> (Vec<(String, String)>, Vec<u8>) {
    use std::io::Read;
    let mut request = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        let read = socket.read(&mut buffer).unwrap();
        request.extend_from_slice(&buffer[..read]);
        let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
            assert!(read > 0, "the request ended inside its head");
            continue;
        };
        let head = String::from_utf8_lossy(&request[..end]).into_owned();
        let headers: Vec<(String, String)> = head
            .lines()
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        let length: usize = headers.iter().find(|(n, _)| n == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
        if request.len() >= end + 4 + length || read == 0 {
            let body = request[end + 4..(end + 4 + length).min(request.len())].to_vec();
            return (headers, body);
        }
    }
}

/// The tool request carries Standard Webhooks headers whose signature verifies, independently
/// of golos's code, with the org's secret from `GET /v1/tool-signing-secret`.
async fn assert_signed(customer: &Customer, headers: &[(String, String)], body: &[u8]) {
    use base64::Engine as _;
    use hmac::Mac as _;
    let header = |name: &str| {
        let found = headers.iter().find(|(n, _)| n == name);
        found.unwrap_or_else(|| panic!("no {name}: {headers:?}")).1.clone()
    };
    let (id, timestamp, signature) = (header("webhook-id"), header("webhook-timestamp"), header("webhook-signature"));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(timestamp.parse::<u64>().unwrap().abs_diff(now) < 300, "timestamp {timestamp}");
    let secret = customer.get("/v1/tool-signing-secret").await;
    let secret = secret["secret"].as_str().and_then(|s| s.strip_prefix("whsec_")).expect("whsec_ secret").to_owned();
    let key = base64::engine::general_purpose::STANDARD.decode(secret).unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()));
    assert_eq!(signature, expected, "the signature verifies with the org's secret");
    // The secret is an admin's to read, like webhook settings.
    let (status, editor) = customer.post("/v1/api-keys", &customer.key, &json!({"name": "ed", "role": "editor"})).await;
    assert_eq!(status, 201, "{editor}");
    let url = format!("{}/v1/tool-signing-secret", customer.base);
    let refused = customer.http.get(url).header("X-API-Key", editor["token"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 403);
    let sent: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(sent["name"], "firehose");
    assert_eq!(sent["arguments"], json!({"q": "hours"}));
}

/// The org's balance as its admin reads it.
async fn balance_of(customer: &Customer) -> i64 {
    customer.get("/v1/balance").await["balance_kopecks"].as_i64().expect("balance")
}

/// Issue #15: 2 minutes and a kopeck (1,201 kopecks at 600 a minute) admit three concurrent
/// calls; the first heartbeat (every second under a 3 s lease) finds three started minutes
/// run up against it, and every call hears the goodbye and ends `balance_exhausted`. The org
/// ends less than one minute per live call below its limit, and a fourth call is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_calls_end_politely_when_the_balance_runs_out() {
    let golos = start_golos(&[("GOLOS_LEASE_TTL_MS", "3000")]);
    let customer = Customer::new(&golos, 2 * 600 + 1).await;
    let agent = customer.cafe_agent(10).await;
    let token = customer.call_token(&agent).await;
    let mut callers = Vec::new();
    for _ in 0..3 {
        let mut caller = Caller::start(&golos, start_message(&agent, &token)).await;
        caller.until("started", |c| c.event("started").is_some() || c.ended().is_some()).await;
        assert!(caller.ended().is_none(), "admitted: {:?}", caller.events);
        callers.push(caller);
    }
    // All three are driven at once, as three phones would be: a caller left unread while the
    // server closes its socket could lose the last events to the reset.
    futures::future::join_all(callers.iter_mut().map(|c| c.until("the end", |c| c.ended().is_some()))).await;
    for caller in &callers {
        assert_eq!(caller.ended().as_deref(), Some("balance_exhausted"), "{:?}", caller.events);
        // Goodbyes are prompts, not conversation, so they are heard but not transcribed: the
        // greeting is at most 1.5 s (75 frames); with the goodbye (about 4 s) it is far more.
        assert!(caller.audio_frames > 150, "the goodbye was heard: {} frames", caller.audio_frames);
    }
    for caller in &callers {
        let record = customer.billed_call(&caller.call_id()).await;
        assert_eq!(record["end_reason"], "balance_exhausted", "{record}");
        assert_eq!(record["cost_kopecks"], 600, "{record}");
    }
    let balance = balance_of(&customer).await;
    assert_eq!(balance, 1_201 - 3 * 600);
    let mut fourth = Caller::start(&golos, start_message(&agent, &token)).await;
    fourth.until("the refusal", |c| c.ended().is_some()).await;
    assert_eq!(fourth.event("error").unwrap()["code"], "no_balance", "{:?}", fourth.events);
    assert!(balance >= -3 * 600, "at most one minute per live call below the limit");
}

/// Issue #15: a worker `kill -9`ed mid-call bills nothing itself; restarted on the same data,
/// its sweeper ends the call from its last heartbeat (`worker_lost`) within lease TTL + sweep
/// interval, once; the call's own `call.ended` posted afterwards changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_call_is_billed_once_by_the_sweeper() {
    let env = [("GOLOS_LEASE_TTL_MS", "3000"), ("GOLOS_SWEEP_INTERVAL_MS", "500")];
    let golos = start_golos(&env);
    let customer = Customer::new(&golos, 10_000).await;
    let agent = customer.cafe_agent(10).await;
    let token = customer.call_token(&agent).await;
    let mut caller = Caller::start(&golos, start_message(&agent, &token)).await;
    caller.until("the greeting", |c| c.said("assistant", "how can i help")).await;
    let call_id = caller.call_id();
    // Wait for a few heartbeats, so the call has run up a known stretch.
    let started = Instant::now();
    caller.until("a few seconds of call", |_| started.elapsed() > Duration::from_secs(4)).await;
    let data = golos.crash();
    drop(caller);

    let mut env = vec![("GOLOS_SECRET_PAYMENTS_HMAC_TEST", PAYMENT_SECRET), SIMULATORS_ALLOWED];
    env.extend_from_slice(&[("GOLOS_LEASE_TTL_MS", "3000"), ("GOLOS_SWEEP_INTERVAL_MS", "500")]);
    let golos = RunningGolos::start_in(data, &env);
    let customer = customer_of(&golos, &customer);
    let until = Instant::now() + WAIT;
    let record = loop {
        let record = customer.get(&format!("/v1/calls/{call_id}")).await;
        if record["status"] == "ended" {
            break record;
        }
        assert!(Instant::now() < until, "the lost call was never billed: {record}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(record["end_reason"], "worker_lost", "{record}");
    assert_eq!(record["cost_kopecks"], 600, "billed to its last heartbeat: {record}");
    assert!(record["duration_secs"].as_u64().unwrap() >= 3, "{record}");
    assert_eq!(balance_of(&customer).await, 10_000 - 600);

    // The worker's own end turns up late (say it sat in a queue): nothing moves.
    let late = json!({"type": "call.ended", "call_id": call_id, "org_id": customer.org_id, "agent_id": agent,
        "direction": "web", "started_at": 0, "ended_at": 90_000, "duration_secs": 90,
        "end_reason": "caller_hangup", "transcript": [], "metrics": {}});
    let (status, queued) = customer.post("/v1/call-events", &golos.operator_key(), &late).await;
    assert_eq!(status, 202, "{queued}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(balance_of(&customer).await, 10_000 - 600, "billed once");
    let kept = customer.get(&format!("/v1/calls/{call_id}")).await;
    assert_eq!(kept["end_reason"], "worker_lost", "an ended record is never overwritten: {kept}");
    let ledger = customer.get("/v1/ledger").await;
    let debits = ledger["items"].as_array().unwrap().iter().filter(|e| e["type"] == "call_debit").count();
    assert_eq!(debits, 1, "{ledger}");
}

/// Issue #15 on DynamoDB, SQS and KMS (moto): two workers of one pool; the one holding a call
/// is `kill -9`ed mid-call, and the other worker's sweeper bills the call once from its last
/// heartbeat (`worker_lost`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_call_on_aws_is_billed_once_by_another_worker() {
    let mut aws = golos_tests::AwsDeployment::provision("lost").await;
    let operator = aws.init_secrets().await;
    aws.env.extend(
        [("GOLOS_LEASE_TTL_MS", "3000"), ("GOLOS_SWEEP_INTERVAL_MS", "500"), SIMULATORS_ALLOWED]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let env = aws.env();
    let (holding, other) = (RunningGolos::start_aws(&env), RunningGolos::start_aws(&env));

    let mut customer =
        Customer { http: reqwest::Client::new(), base: holding.base_url(), key: String::new(), org_id: String::new() };
    let (status, org) = customer.post("/v1/orgs", &operator, &json!({"name": "Café"})).await;
    assert_eq!(status, 201, "{org}");
    customer.org_id = org["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/orgs/{}/api-keys", customer.org_id);
    let (status, key) = customer.post(&path, &operator, &json!({"name": "owner", "role": "admin"})).await;
    assert_eq!(status, 201, "{key}");
    customer.key = key["token"].as_str().unwrap().to_owned();
    let org_id = golos_domain::OrgId::parse(&customer.org_id).unwrap();
    let payment = golos_domain::billing::LedgerEventKind::PaymentCredit {
        provider: golos_domain::billing::PaymentProvider::Signed("test".into()),
        payment_id: "p-1".into(),
        amount: golos_domain::Kopecks::new(10_000),
    };
    aws.platform.stores().ledger.apply(&org_id, &payment, golos_domain::Timestamp::from_millis(0)).await.unwrap();

    let agent = customer.cafe_agent(10).await;
    let token = customer.call_token(&agent).await;
    let mut caller = Caller::start(&holding, start_message(&agent, &token)).await;
    caller.until("the greeting", |c| c.said("assistant", "how can i help")).await;
    let call_id = caller.call_id();
    let started = Instant::now();
    caller.until("a few seconds of call", |_| started.elapsed() > Duration::from_secs(4)).await;
    drop(holding.crash());
    drop(caller);

    let customer = customer_of(&other, &customer);
    let until = Instant::now() + WAIT;
    let record = loop {
        let record = customer.get(&format!("/v1/calls/{call_id}")).await;
        if record["status"] == "ended" {
            break record;
        }
        assert!(Instant::now() < until, "the lost call was never billed: {record}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(record["end_reason"], "worker_lost", "{record}");
    assert_eq!(record["cost_kopecks"], 600, "billed to its last heartbeat: {record}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(balance_of(&customer).await, 10_000 - 600, "billed once, though both workers sweep");
}

/// A fake ECS container agent: answers `PUT /api/<task>/task-protection/v1/state` as the
/// documented endpoint does, recording each body. The first request gets a `failure` answer
/// (as for a task the agent cannot protect yet), every later one the `protection` state.
struct FakeEcsAgent {
    uri: String,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

impl FakeEcsAgent {
    const TASK_ARN: &'static str = "arn:aws:ecs:eu-west-1:111122223333:task/golos/0123456789abcdef";

    async fn start() -> Self {
        use axum::routing::put;
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
        let seen = std::sync::Arc::clone(&bodies);
        let app = axum::Router::new().route(
            "/api/task-1/task-protection/v1/state",
            put(move |axum::Json(body): axum::Json<Value>| {
                let seen = std::sync::Arc::clone(&seen);
                async move {
                    let first = {
                        let mut seen = seen.lock().unwrap();
                        seen.push(body.clone());
                        seen.len() == 1
                    };
                    if first {
                        return axum::Json(
                            json!({"failure": {"Arn": Self::TASK_ARN, "Reason": "TASK_NOT_VALID", "Detail": null}}),
                        );
                    }
                    let enabled = body["ProtectionEnabled"].as_bool().unwrap_or(false);
                    axum::Json(json!({"protection": {
                        "ExpirationDate": if enabled { json!("2026-12-06T06:00:00.000Z") } else { Value::Null },
                        "ProtectionEnabled": enabled,
                        "TaskArn": Self::TASK_ARN,
                    }}))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("http://{}/api/task-1", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { uri, bodies }
    }

    fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }

    async fn until(&self, what: &str, done: impl Fn(&[Value]) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done(&self.bodies()) {
            assert!(Instant::now() < deadline, "the ECS agent never saw {what}: {:?}", self.bodies());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// On ECS (`ECS_AGENT_URI` set) the worker protects its task from scale-in while it has a
/// live call and lifts the protection when the call ends; a failed request is retried and
/// never disturbs the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_on_ecs_protects_its_task_from_scale_in_while_a_call_is_live() {
    let agent_api = FakeEcsAgent::start().await;
    let golos = start_golos(&[("ECS_AGENT_URI", &agent_api.uri), ("GOLOS_SCALE_IN_PROTECTION_MINUTES", "20")]);
    let customer = Customer::new(&golos, 10_000).await;
    let agent = customer.cafe_agent(10).await;
    let token = customer.call_token(&agent).await;
    assert!(agent_api.bodies().is_empty(), "no call, no protection");

    let mut caller = Caller::start(&golos, start_message(&agent, &token)).await;
    caller.until("the greeting", |c| c.said("assistant", "how can i help")).await;
    let protect = json!({"ProtectionEnabled": true, "ExpiresInMinutes": 20});
    // The first answer is a failure: the same request again a few seconds later, while the
    // call goes on.
    let deadline = Instant::now() + WAIT;
    while agent_api.bodies().len() < 2 {
        assert!(Instant::now() < deadline, "protection was not retried: {:?}", agent_api.bodies());
        let moment = Instant::now() + Duration::from_millis(200);
        caller.until("a moment of the call", move |_| Instant::now() >= moment).await;
    }
    assert_eq!(agent_api.bodies(), [protect.clone(), protect.clone()]);
    assert!(caller.ended().is_none(), "the call goes on: {:?}", caller.events);
    let metrics = |expected: &'static str| {
        let golos = &golos;
        async move {
            let deadline = Instant::now() + WAIT;
            loop {
                let (_, page) = tokio::task::block_in_place(|| golos.get_as_operator("/metrics"));
                if page.contains(expected) && page.contains("golos_scale_in_protection_failures_total 1\n") {
                    return;
                }
                assert!(Instant::now() < deadline, "/metrics never showed {expected}:\n{page}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    metrics("golos_worker_scale_in_protected 1\n").await;

    caller.hang_up().await;
    agent_api.until("the protection lifted", |bodies| bodies.len() >= 3).await;
    assert_eq!(agent_api.bodies(), [protect.clone(), protect, json!({"ProtectionEnabled": false})]);
    metrics("golos_worker_scale_in_protected 0\n").await;
    assert!(tokio::task::block_in_place(|| golos.terminate()).success());
    assert_eq!(agent_api.bodies().len(), 3, "nothing more to lift at the drain's end");
}
