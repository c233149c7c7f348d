//! What the SIP suites share: a `golos serve` with its SIP edge on, SIPp as the trunk's
//! signalling (scenarios in `tests/tests/sip/`), and the API calls that give a trunk a routed
//! number. The trunk's media is the test's own UDP socket or SIPp's (`play_pcap_audio`).

use crate::RunningGolos;
use serde_json::{json, Value};
use std::net::{SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The payment webhook secret `SipGolos` starts golos with (`Operator::phone_line` credits
/// the org through it).
pub const PAYMENT_SECRET: &str = "sip-test-payment-secret";
/// The number the trunk carries and the café agent answers.
pub const NUMBER: &str = "+74951234567";

/// A scenario of `tests/tests/sip/`.
pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sip").join(name)
}

/// A port free on 127.0.0.1 for UDP and TCP both (golos-sip listens on both).
pub fn free_sip_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
        let port = udp.local_addr().expect("local address").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// An even UDP port free on 127.0.0.1 with the three above it, for SIPp's media (audio on
/// it, video on +2): SIPp's default, 6000, is shared by every SIPp on the machine.
fn free_media_port() -> u16 {
    loop {
        let port = UdpSocket::bind("127.0.0.1:0").expect("bind UDP").local_addr().expect("local address").port() & !1;
        // All four held at once, then let go for SIPp.
        let held: Vec<_> = (0..4).map_while(|i| UdpSocket::bind(("127.0.0.1", port.checked_add(i)?)).ok()).collect();
        if held.len() == 4 {
            return port;
        }
    }
}

/// `golos serve` with SIP on 127.0.0.1 and an RTP range of its own, and the operator's API.
#[derive(Debug)]
pub struct SipGolos {
    pub golos: RunningGolos,
    pub sip: SocketAddr,
    pub rtp_ports: RangeInclusive<u16>,
    pub operator: Operator,
}

impl SipGolos {
    /// Starts golos with SIP, the payment secret and `127.0.0.1/32` allowed by the egress
    /// policy (the trunk's media is on loopback), plus `extra_env`.
    pub fn start(extra_env: &[(&str, &str)]) -> Self {
        let sip_port = free_sip_port();
        let rtp_first = 40_000 + (std::process::id() % 200) as u16 * 100;
        let sip_listen = format!("127.0.0.1:{sip_port}");
        let rtp_ports = format!("{rtp_first}-{}", rtp_first + 99);
        let mut env = vec![
            ("GOLOS_SECRET_PAYMENTS_HMAC_TEST", PAYMENT_SECRET),
            ("GOLOS_EGRESS_ALLOW", "127.0.0.1/32"),
            ("GOLOS_SIP_LISTEN", sip_listen.as_str()),
            ("GOLOS_RTP_PORTS", rtp_ports.as_str()),
        ];
        env.extend_from_slice(extra_env);
        let golos = RunningGolos::start(&env);
        let operator =
            Operator { http: reqwest::Client::new(), base: golos.base_url(), operator: golos.operator_key() };
        Self { golos, sip: sip_listen.parse().expect("an address"), rtp_ports: rtp_first..=rtp_first + 99, operator }
    }

    /// A SIPp run of `scenario` against this golos, from 127.0.0.1 (the trunk's network).
    pub fn sipp(&self, scenario: &str) -> Sipp {
        Sipp::new(self.sip, scenario)
    }
}

/// One SIPp run (UAC, one call, UDP) of a scenario. Fails on any unexpected message, on a
/// wait longer than `-recv_timeout`, and on a whole run longer than `-timeout`.
#[derive(Debug, Clone)]
pub struct Sipp {
    target: SocketAddr,
    scenario: String,
    local_ip: String,
    sets: Vec<(String, String)>,
}

impl Sipp {
    pub fn new(target: SocketAddr, scenario: &str) -> Self {
        Self { target, scenario: scenario.to_owned(), local_ip: "127.0.0.1".to_owned(), sets: Vec::new() }
    }

    /// Sends from `ip` (127.0.0.2 is loopback, but no trunk's network).
    pub fn from_ip(mut self, ip: &str) -> Self {
        ip.clone_into(&mut self.local_ip);
        self
    }

    /// `-set name value`: a `[$name]` of the scenario.
    pub fn set(mut self, name: &str, value: impl std::fmt::Display) -> Self {
        self.sets.push((name.to_owned(), value.to_string()));
        self
    }

    /// Runs SIPp to its end; its exit status and its error log with its screen.
    pub fn run(&self) -> (bool, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let errors = dir.path().join("errors.log");
        let mut command = Command::new("sipp");
        command
            .current_dir(dir.path())
            .arg(self.target.to_string())
            .arg("-sf")
            .arg(scenario(&self.scenario))
            .args(["-m", "1", "-t", "u1", "-i", &self.local_ip, "-p", "0", "-nostdin"])
            .args(["-mi", "127.0.0.1", "-mp", &free_media_port().to_string()])
            .args(["-recv_timeout", "20s", "-timeout", "60s", "-timeout_error", "-trace_err", "-error_file"])
            .arg(&errors);
        for (name, value) in &self.sets {
            command.args(["-set", name, value]);
        }
        let output = command.output().expect("sipp must be installed (scripts/install-deps)");
        let log = std::fs::read_to_string(&errors).unwrap_or_default();
        (output.status.success(), format!("{log}\n{}", String::from_utf8_lossy(&output.stdout)))
    }

    /// Runs SIPp on a blocking thread of the test's runtime.
    pub async fn run_async(self) -> (bool, String) {
        tokio::task::spawn_blocking(move || self.run()).await.expect("sipp's thread")
    }
}

/// An org's line to its agent, as `Operator::phone_line` made it.
#[derive(Debug, Clone)]
pub struct PhoneLine {
    pub org_id: String,
    pub agent_id: String,
    /// The org's admin key.
    pub key: String,
}

/// The API as the platform's operator (and the org's admin) uses it.
#[derive(Debug, Clone)]
pub struct Operator {
    pub http: reqwest::Client,
    pub base: String,
    /// The operator's key.
    pub operator: String,
}

impl Operator {
    pub async fn send(&self, method: reqwest::Method, path: &str, key: &str, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("X-API-Key", key)
            .json(body)
            .send()
            .await
            .expect("the API answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A POST that must succeed (2xx); its answer.
    pub async fn post(&self, path: &str, key: &str, body: &Value) -> Value {
        let (status, value) = self.send(reqwest::Method::POST, path, key, body).await;
        assert!((200..300).contains(&status), "POST {path}: {status} {value}");
        value
    }

    pub async fn get(&self, path: &str, key: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header("X-API-Key", key)
            .send()
            .await
            .expect("the API answers");
        response.json().await.expect("JSON")
    }

    /// An org with money and an admin key, the café agent (pocketsphinx STT, canned answers,
    /// espeak-ng TTS), `NUMBER` granted and routed to it, and a trunk from 127.0.0.1
    /// carrying it.
    pub async fn phone_line(&self) -> PhoneLine {
        let org = self.post("/v1/orgs", &self.operator, &json!({"name": "Café"})).await;
        let org_id = org["id"].as_str().expect("org id").to_owned();
        let key = self
            .post(&format!("/v1/orgs/{org_id}/api-keys"), &self.operator, &json!({"name": "owner", "role": "admin"}))
            .await;
        let key = key["token"].as_str().expect("admin token").to_owned();
        let body =
            json!({"event": "payment.succeeded", "id": format!("p-{org_id}"), "org_id": org_id, "amount_kopecks": 10_000})
                .to_string();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
        let signature =
            golos_control::payments::sign(PAYMENT_SECRET, i64::try_from(now).expect("time"), body.as_bytes());
        let response = self
            .http
            .post(format!("{}/webhooks/payments/test", self.base))
            .header("Content-Type", "application/json")
            .header(golos_control::payments::SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await
            .expect("the API answers");
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
        let agent_id = agent["id"].as_str().expect("agent id").to_owned();
        self.post(&format!("/v1/orgs/{org_id}/numbers"), &self.operator, &json!({"number": NUMBER})).await;
        let (status, route) = self
            .send(reqwest::Method::PUT, &format!("/v1/numbers/{NUMBER}"), &key, &json!({"agent_id": agent_id}))
            .await;
        assert!((200..300).contains(&status), "{status} {route}");
        let trunk =
            json!({"org_id": org_id, "name": "test trunk", "source_networks": ["127.0.0.1/32"], "numbers": [NUMBER]});
        self.post("/v1/sip-trunks", &self.operator, &trunk).await;
        PhoneLine { org_id, agent_id, key }
    }

    /// The org's calls once `count` of them are ended and billed, newest first; panics after
    /// a minute.
    pub async fn ended_calls(&self, key: &str, count: usize) -> Vec<Value> {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let calls = self.get("/v1/calls", key).await;
            let items = calls["items"].as_array().cloned().unwrap_or_default();
            let mut records = Vec::new();
            for item in &items {
                let id = item["id"].as_str().expect("call id");
                let record = self.get(&format!("/v1/calls/{id}"), key).await;
                if record["status"] != "in_progress" && record["cost_kopecks"].is_i64() {
                    records.push(record);
                }
            }
            if records.len() >= count {
                return records;
            }
            assert!(Instant::now() < until, "{count} calls were not ended and billed: {calls}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
