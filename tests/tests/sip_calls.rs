//! Phone calls over SIP through the real `golos serve` as a black box. SIPp plays the trunk's
//! signalling; the test's own UDP socket is the trunk's media, speaking a question spoken by
//! espeak-ng as A-law RTP and recording the RTP golos sends back. The agent is the café FAQ
//! agent of `calls.rs` (pocketsphinx STT, canned answers, espeak-ng TTS), reached through a
//! trunk, a granted number and its route, all made through the API.

use golos_tests::RunningGolos;
use serde_json::{json, Value};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const PAYMENT_SECRET: &str = "sip-test-payment-secret";
const NUMBER: &str = "+74951234567";

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

/// 8 kHz A-law of `text` in a caller's voice.
fn speak_alaw(text: &str) -> Vec<u8> {
    golos_tests::speak_raw(text, &["-r", "8000", "-e", "a-law"])
}

/// Runs SIPp once as the trunk (UAC) from `local_ip`; its exit status and error log.
fn sipp(sip: SocketAddr, local_ip: &str, name: &str, sets: &[(&str, String)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let errors = dir.path().join("errors.log");
    let mut command = Command::new("sipp");
    command
        .current_dir(dir.path())
        .arg(sip.to_string())
        .arg("-sf")
        .arg(scenario(name))
        .args(["-m", "1", "-t", "u1", "-i", local_ip, "-p", "0", "-nostdin"])
        .args(["-recv_timeout", "20s", "-timeout", "60s", "-timeout_error", "-trace_err", "-error_file"])
        .arg(&errors);
    for (name, value) in sets {
        command.args(["-set", name, value]);
    }
    let output = command.output().expect("sipp must be installed (scripts/install-deps)");
    let log = std::fs::read_to_string(&errors).unwrap_or_default();
    (output.status.success(), format!("{log}\n{}", String::from_utf8_lossy(&output.stdout)))
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
        let response = self.http.get(format!("{}{path}", self.base)).header("X-API-Key", key).send().await.unwrap();
        response.json().await.unwrap()
    }

    /// An org with money and an admin key, the café agent, `NUMBER` granted and routed to
    /// it, and a trunk from 127.0.0.1 carrying it. Answers the admin key.
    async fn phone_line(&self) -> String {
        let org = self.post("/v1/orgs", &self.operator, &json!({"name": "Café"})).await;
        let org_id = org["id"].as_str().unwrap().to_owned();
        let key = self
            .post(&format!("/v1/orgs/{org_id}/api-keys"), &self.operator, &json!({"name": "owner", "role": "admin"}))
            .await;
        let key = key["token"].as_str().unwrap().to_owned();
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
        let agent = json!({
            "name": "Café host",
            "system_prompt": "You are the host of a café.",
            "greeting": "Hello, how can I help?",
            "language": "en-US",
            "voice": {"provider": "espeak_ng", "voice_id": "en-us"},
            "faq": [
                {"questions": ["when are you open", "what time do you open", "what are your opening hours"], "answer": "We are open from eight in the morning."},
                {"questions": ["do you have wifi"], "answer": "Yes, we have free wifi."}
            ],
            "limits": {"max_concurrent_calls": 5, "max_call_duration_secs": 600, "silence_timeout_secs": 60},
            "providers": {"llm": [{"kind": "canned"}], "tts": [{"kind": "espeak_ng"}], "stt": [{"kind": "pocketsphinx"}]}
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
}

/// What the test's media socket heard from golos.
#[derive(Debug, Default)]
struct Heard {
    packets: usize,
    payload_types: std::collections::BTreeSet<u8>,
    loud_packets: usize,
}

/// The trunk's media side for `talk`: sends `speech` as 20 ms A-law RTP after a second of
/// silence (the greeting), then silence, and records golos's packets. Every packet goes to
/// where golos's SDP said; golos latches onto this socket as the peer.
fn trunk_media(socket: &UdpSocket, golos_media: SocketAddr, speech: &[u8], talk: Duration) -> Heard {
    socket.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
    let mut heard = Heard::default();
    let started = Instant::now();
    let mut next = started;
    let (mut sequence, mut timestamp) = (1u16, 1000u32);
    let silence = [0xD5u8; 160];
    let mut frames = speech.chunks(160).map(<[u8]>::to_vec);
    let mut buf = [0u8; 1500];
    while started.elapsed() < talk {
        if Instant::now() >= next {
            let in_speech = started.elapsed() > Duration::from_secs(3);
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
            if len >= 12 && buf[0] >> 6 == 2 {
                heard.packets += 1;
                heard.payload_types.insert(buf[1] & 0x7F);
                // A-law silence is 0xD5/0x55; speech moves far from it.
                let loud = buf[12..len].iter().filter(|&&b| golos_audio::g711::alaw_decode(b).unsigned_abs() > 1000);
                if loud.count() > 10 {
                    heard.loud_packets += 1;
                }
            }
        }
    }
    heard
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_call_to_a_routed_number_is_answered_in_pcma_talks_and_is_billed_inbound() {
    let sip_port = free_sip_port();
    let rtp_first = 40_000 + (std::process::id() % 200) as u16 * 100;
    let sip_listen = format!("127.0.0.1:{sip_port}");
    let rtp_ports = format!("{rtp_first}-{}", rtp_first + 99);
    let golos = RunningGolos::start(&[
        ("GOLOS_SECRET_PAYMENTS_HMAC_TEST", PAYMENT_SECRET),
        ("GOLOS_EGRESS_ALLOW", "127.0.0.1/32"),
        ("GOLOS_SIP_LISTEN", &sip_listen),
        ("GOLOS_RTP_PORTS", &rtp_ports),
    ]);
    let operator = Operator { http: reqwest::Client::new(), base: golos.base_url(), operator: golos.operator_key() };
    let key = operator.phone_line().await;
    let sip: SocketAddr = sip_listen.parse().unwrap();

    // An unknown source address: 127.0.0.2 is loopback too, but no trunk's network.
    let (ok, log) =
        tokio::task::spawn_blocking(move || sipp(sip, "127.0.0.2", "inbound-refused.xml", &[])).await.unwrap();
    assert!(ok, "an INVITE from an unknown address must be refused 403:\n{log}");
    // From the trunk, but to a number it does not carry, or with no codec golos speaks.
    let (ok, log) =
        tokio::task::spawn_blocking(move || sipp(sip, "127.0.0.1", "inbound-unrouted.xml", &[])).await.unwrap();
    assert!(ok, "an INVITE to a number the trunk does not carry must be refused 480:\n{log}");
    let (ok, log) =
        tokio::task::spawn_blocking(move || sipp(sip, "127.0.0.1", "inbound-no-common-codec.xml", &[])).await.unwrap();
    assert!(ok, "an INVITE offering only G.729 must be refused 488:\n{log}");
    let (ok, log) =
        tokio::task::spawn_blocking(move || sipp(sip, "127.0.0.1", "inbound-media-inside.xml", &[])).await.unwrap();
    assert!(ok, "an INVITE aiming the media at a private address must be refused 488:\n{log}");

    let media = UdpSocket::bind("127.0.0.1:0").unwrap();
    let media_port = media.local_addr().unwrap().port();
    let speech = speak_alaw("when are you open");
    let call = tokio::task::spawn_blocking(move || {
        sipp(sip, "127.0.0.1", "inbound-call.xml", &[("rtpport", media_port.to_string())])
    });
    // golos sends its first RTP (the greeting) to the SDP's address, this socket; its source
    // is golos's media port, which the SDP answer named.
    media.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut buf = [0u8; 1500];
    let (_, golos_media) = media.recv_from(&mut buf).expect("golos sends the greeting as RTP");
    assert!((rtp_first..=rtp_first + 99).contains(&golos_media.port()), "{golos_media}");
    let heard = tokio::task::spawn_blocking(move || trunk_media(&media, golos_media, &speech, Duration::from_secs(8)))
        .await
        .unwrap();
    let (ok, log) = call.await.unwrap();
    assert!(ok, "the call must be answered 200 with PCMA and hung up with BYE:\n{log}");
    assert_eq!(heard.payload_types, [8].into(), "{heard:?}");
    assert!(heard.packets >= 100 && heard.loud_packets >= 25, "{heard:?}");

    // The call's record: inbound, ended by the caller's BYE, billed, with the conversation.
    let until = Instant::now() + Duration::from_secs(60);
    let record = loop {
        let calls = operator.get("/v1/calls", &key).await;
        if let Some(id) = calls["items"][0]["id"].as_str() {
            let record = operator.get(&format!("/v1/calls/{id}"), &key).await;
            if record["status"] == "ended" && record["cost_kopecks"].is_i64() {
                break record;
            }
        }
        assert!(Instant::now() < until, "the phone call was not billed: {calls}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(record["direction"], "inbound", "{record}");
    assert_eq!(record["end_reason"], "caller_hangup", "{record}");
    let transcript = record["transcript"].to_string().to_lowercase();
    assert!(transcript.contains("how can i help"), "{record}");
    assert!(transcript.contains("eight in the morning"), "{record}");
}
