//! An agent's `transfer_call` on a phone call, through the real `golos serve`: the engine's
//! transfer becomes a REFER to the trunk (SIPp), the trunk's NOTIFY says how the transfer
//! went, and the call either ends as transferred (golos sends BYE) or goes on with the agent
//! saying it did not work. The agent's LLM is the OpenAI simulator scripted to call the tool,
//! its STT the Deepgram simulator; the caller's voice is espeak-ng's, sent as A-law RTP.

use golos_tests::{RunningGolos, Simulator};
use serde_json::{json, Value};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const PAYMENT_SECRET: &str = "sip-transfer-test-payment-secret";
const NUMBER: &str = "+74951234567";
const TRANSFER_TARGET: &str = "+74959876543";

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sip").join(name)
}

/// A port free on 127.0.0.1 for UDP and TCP both (golos-sip listens on both).
fn free_sip_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Runs SIPp once as the trunk; its exit status and error log.
fn sipp(sip: SocketAddr, name: &str, rtp_port: u16) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let errors = dir.path().join("errors.log");
    let output = Command::new("sipp")
        .current_dir(dir.path())
        .arg(sip.to_string())
        .arg("-sf")
        .arg(scenario(name))
        .args(["-m", "1", "-t", "u1", "-i", "127.0.0.1", "-p", "0", "-nostdin"])
        .args(["-recv_timeout", "30s", "-timeout", "60s", "-timeout_error", "-trace_err", "-error_file"])
        .arg(&errors)
        .args(["-set", "rtpport", &rtp_port.to_string()])
        .output()
        .expect("sipp must be installed (scripts/install-deps)");
    let log = std::fs::read_to_string(&errors).unwrap_or_default();
    (output.status.success(), format!("{log}\n{}", String::from_utf8_lossy(&output.stdout)))
}

/// The trunk's media: a second of silence, the caller's words, silence until `until` says
/// stop; counts golos's loud packets.
fn trunk_media(socket: &UdpSocket, speech: &[u8], stop: &std::sync::atomic::AtomicBool) -> usize {
    socket.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
    let mut buf = [0u8; 1500];
    let (_, golos_media) = {
        socket.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let first = socket.recv_from(&mut buf).expect("golos sends the greeting as RTP");
        socket.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        first
    };
    let started = Instant::now();
    let mut next = started;
    let (mut sequence, mut timestamp) = (1u16, 1000u32);
    let silence = [0xD5u8; 160];
    let mut frames = speech.chunks(160).map(<[u8]>::to_vec);
    let mut loud_packets = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) && started.elapsed() < Duration::from_secs(60) {
        if Instant::now() >= next {
            let in_speech = started.elapsed() > Duration::from_secs(2);
            let payload = if in_speech { frames.next().unwrap_or_else(|| silence.to_vec()) } else { silence.to_vec() };
            let mut packet = vec![0x80, 8];
            packet.extend_from_slice(&sequence.to_be_bytes());
            packet.extend_from_slice(&timestamp.to_be_bytes());
            packet.extend_from_slice(&0x1234_5678u32.to_be_bytes());
            packet.extend_from_slice(&payload);
            let _ = socket.send_to(&packet, golos_media);
            sequence = sequence.wrapping_add(1);
            timestamp = timestamp.wrapping_add(160);
            next += Duration::from_millis(20);
        }
        if let Ok((len, _)) = socket.recv_from(&mut buf) {
            if len > 12 && buf[1] & 0x7F == 8 {
                let loud = buf[12..len].iter().filter(|&&b| golos_audio::g711::alaw_decode(b).unsigned_abs() > 1000);
                if loud.count() > 10 {
                    loud_packets += 1;
                }
            }
        }
    }
    loud_packets
}

struct Operator {
    http: reqwest::Client,
    base: String,
    operator: String,
}

impl Operator {
    async fn send(&self, method: reqwest::Method, path: &str, key: &str, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("X-API-Key", key)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, key: &str, body: &Value) -> Value {
        let (status, value) = self.send(reqwest::Method::POST, path, key, body).await;
        assert!((200..300).contains(&status), "POST {path}: {status} {value}");
        value
    }

    async fn get(&self, path: &str, key: &str) -> Value {
        self.send(reqwest::Method::GET, path, key, &Value::Null).await.1
    }

    /// A funded org whose number reaches an agent that transfers every caller to
    /// `TRANSFER_TARGET`, through a trunk from 127.0.0.1. Answers the org's admin key.
    async fn transferring_line(&self, simulator: &Simulator) -> String {
        let org = self.post("/v1/orgs", &self.operator, &json!({"name": "Reception"})).await;
        let org_id = org["id"].as_str().unwrap().to_owned();
        let key = self
            .post(&format!("/v1/orgs/{org_id}/api-keys"), &self.operator, &json!({"name": "owner", "role": "admin"}))
            .await["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let body =
            json!({"event": "payment.succeeded", "id": format!("p-{org_id}"), "org_id": org_id, "amount_kopecks": 10_000})
                .to_string();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let signature = golos_control::payments::sign(PAYMENT_SECRET, i64::try_from(now).unwrap(), body.as_bytes());
        let response = self
            .http
            .post(format!("{}/webhooks/payments/test", self.base))
            .header("Content-Type", "application/json")
            .header(golos_control::payments::SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let (status, body) = self
            .send(reqwest::Method::PUT, "/v1/provider-credentials/sim-key", &key, &json!({"value": "sim-key"}))
            .await;
        assert!((200..300).contains(&status), "{status} {body}");
        let agent = json!({
            "name": "Reception",
            "system_prompt": "Transfer every caller to a person.",
            "greeting": "Hello, how can I help?",
            "language": "en-US",
            "voice": {"provider": "espeak_ng", "voice_id": "en-us"},
            "tools": [{"type": "transfer_call", "destination": TRANSFER_TARGET}],
            "providers": {
                "llm": [{"kind": "openai_compatible", "endpoint": format!("http://{}/v1", simulator.addr), "credentials_secret": "sim-key"}],
                "tts": [{"kind": "espeak_ng"}],
                "stt": [{"kind": "deepgram", "endpoint": simulator.ws_url(), "credentials_secret": "sim-key"}]
            }
        });
        let agent = self.post("/v1/agents", &key, &agent).await;
        let agent_id = agent["id"].as_str().unwrap();
        self.post(&format!("/v1/orgs/{org_id}/numbers"), &self.operator, &json!({"number": NUMBER})).await;
        let (status, route) = self
            .send(reqwest::Method::PUT, &format!("/v1/numbers/{NUMBER}"), &key, &json!({"agent_id": agent_id}))
            .await;
        assert!((200..300).contains(&status), "{status} {route}");
        let trunk =
            json!({"org_id": org_id, "name": "test trunk", "source_networks": ["127.0.0.1/32"], "numbers": [NUMBER]});
        self.post("/v1/sip-trunks", &self.operator, &trunk).await;
        key
    }

    /// The newest call's record once it is billed.
    async fn billed_call(&self, key: &str, previous: Option<&str>) -> Value {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let calls = self.get("/v1/calls", key).await;
            if let Some(id) = calls["items"][0]["id"].as_str().filter(|id| Some(*id) != previous) {
                let record = self.get(&format!("/v1/calls/{id}"), key).await;
                if record["status"] == "ended" && record["cost_kopecks"].is_i64() {
                    return record;
                }
            }
            assert!(Instant::now() < until, "the phone call was not billed: {calls}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// One call through `name`, the caller asking for a person; what SIPp said and how many loud
/// packets the caller heard.
async fn call(sip: SocketAddr, name: &'static str) -> (bool, String, usize) {
    let media = UdpSocket::bind("127.0.0.1:0").unwrap();
    let media_port = media.local_addr().unwrap().port();
    let speech = golos_tests::speak_raw("I would like to speak to a person", &["-r", "8000", "-e", "a-law"]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let talking = {
        let stop = std::sync::Arc::clone(&stop);
        tokio::task::spawn_blocking(move || trunk_media(&media, &speech, &stop))
    };
    let (ok, log) = tokio::task::spawn_blocking(move || sipp(sip, name, media_port)).await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let loud = talking.await.unwrap();
    (ok, log, loud)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_call_refers_the_caller_to_the_target_and_a_refused_transfer_goes_on() {
    let scenario = json!({
        "openai": {
            "replies": [
                {"when": "did not go through", "tokens": ["Sorry", " about", " that."]},
                {"tokens": [], "tool_calls": [{"name": "transfer_call", "arguments": "{\"reason\": \"asked for a person\"}", "fragments": 1}]}
            ],
            "latency": {"ttft_ms": 20, "token_interval_ms": 5}
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("transfer.json");
    std::fs::write(&path, scenario.to_string()).unwrap();
    let simulator = Simulator::start_with(&["--config", path.to_str().unwrap()]);

    let sip_port = free_sip_port();
    let rtp_first = 45_000 + (std::process::id() % 100) as u16 * 100;
    let sip_listen = format!("127.0.0.1:{sip_port}");
    let rtp_ports = format!("{rtp_first}-{}", rtp_first + 99);
    let golos = RunningGolos::start(&[
        ("GOLOS_SECRET_PAYMENTS_HMAC_TEST", PAYMENT_SECRET),
        ("GOLOS_EGRESS_ALLOW", "127.0.0.1/32"),
        ("GOLOS_SIP_LISTEN", &sip_listen),
        ("GOLOS_RTP_PORTS", &rtp_ports),
    ]);
    let operator = Operator { http: reqwest::Client::new(), base: golos.base_url(), operator: golos.operator_key() };
    let key = operator.transferring_line(&simulator).await;
    let sip: SocketAddr = sip_listen.parse().unwrap();

    // The trunk takes the transfer and its NOTIFY says the target answered: golos hangs up.
    let (ok, log, loud) = call(sip, "transfer-accepted.xml").await;
    assert!(ok, "golos must REFER the caller to the target, then hang up after the trunk's NOTIFY 200:\n{log}");
    assert!(loud > 25, "the caller heard the greeting and the transfer message ({loud} loud packets)");
    let record = operator.billed_call(&key, None).await;
    assert_eq!(record["end_reason"], "transfer", "{record}");
    assert_eq!(record["metrics"]["line"]["transfer"]["outcome"], "completed", "{record}");
    let media = &record["metrics"]["line"]["media"];
    assert!(media["packets_received"].as_u64().is_some_and(|n| n > 100), "{record}");
    assert!(media["mos"].as_f64().is_some_and(|mos| mos > 4.0), "a clean loopback line: {record}");
    let first = record["id"].as_str().unwrap().to_owned();

    // The trunk refuses the REFER: the agent says so and the call goes on until the caller
    // hangs up.
    let (ok, log, _) = call(sip, "transfer-refused.xml").await;
    assert!(ok, "a refused REFER must leave the call up (the trunk's BYE answered 200):\n{log}");
    let record = operator.billed_call(&key, Some(&first)).await;
    assert_eq!(record["end_reason"], "caller_hangup", "{record}");
    assert_eq!(record["metrics"]["line"]["transfer"]["outcome"], "refused", "{record}");
    assert_eq!(record["metrics"]["line"]["transfer"]["sip_status"], 603, "{record}");
}
