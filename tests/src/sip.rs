//! What the SIP suites share: a `golos serve` with its SIP edge on, SIPp as the trunk's
//! signalling (scenarios in `tests/tests/sip/`), and the API calls that give a trunk a routed
//! number. The trunk's media is the test's own UDP socket or SIPp's (`play_pcap_audio`).

use crate::RunningGolos;
use serde_json::{json, Value};
use std::net::{SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// 8 kHz A-law of `text` in a caller's voice.
pub fn speak_alaw(text: &str) -> Vec<u8> {
    crate::speak_raw(text, &["-r", "8000", "-e", "a-law"])
}

/// How the trunk's media misbehaves on its way to golos.
#[derive(Debug, Clone, Copy, Default)]
pub struct BadNetwork {
    /// Every `drop_every`-th packet is lost (20: 5 %).
    pub drop_every: Option<u32>,
    /// Every `swap_every`-th packet is held back and sent after the next one.
    pub swap_every: Option<u32>,
}

/// Two UDP sockets on 127.0.0.1 at an even port and the one above: a trunk's RTP and RTCP.
pub fn media_pair() -> (UdpSocket, UdpSocket) {
    loop {
        let rtp = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
        let port = rtp.local_addr().expect("local address").port();
        if port.is_multiple_of(2) {
            if let Ok(rtcp) = UdpSocket::bind(("127.0.0.1", port + 1)) {
                return (rtp, rtcp);
            }
        }
    }
}

/// What the trunk's media socket heard from golos.
#[derive(Debug, Default)]
pub struct Heard {
    /// Where golos's media came from: the port its SDP answer named.
    pub golos_media: Option<SocketAddr>,
    /// golos's RTCP sender reports, each answered with a receiver report about golos's
    /// stream (LSR/DLSR), so golos can measure the round trip.
    pub sender_reports: usize,
    pub packets: usize,
    pub payload_types: std::collections::BTreeSet<u8>,
    pub loud_packets: usize,
    /// RFC 4733 digits golos keyed (payload type `telephone_event`), once each.
    pub digits: String,
}

/// The trunk's media for one call: waits for golos's first packet (the greeting; its source
/// is golos's media port), sends 2 s of A-law silence, `speech`, then silence, every 20 ms, until
/// `stop` is set or `limit` passes; records what golos sends.
pub fn trunk_media(
    socket: &UdpSocket,
    rtcp: Option<&UdpSocket>,
    speech: &[u8],
    network: BadNetwork,
    telephone_event: u8,
    stop: &AtomicBool,
    limit: Duration,
) -> Heard {
    let mut heard = Heard::default();
    if let Some(rtcp) = rtcp {
        rtcp.set_nonblocking(true).expect("non-blocking RTCP socket");
    }
    let mut buf = [0u8; 1500];
    socket.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let (len, golos_media) = socket.recv_from(&mut buf).expect("golos sends the greeting as RTP");
    heard.golos_media = Some(golos_media);
    heard.record(&buf[..len], telephone_event);
    socket.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
    let started = Instant::now();
    let mut next = started;
    let (mut sequence, mut timestamp, mut index) = (1u16, 1000u32, 0u32);
    let silence = [0xD5u8; 160];
    let mut frames = speech.chunks(160).map(<[u8]>::to_vec);
    let mut held_back: Option<Vec<u8>> = None;
    let mut last_key_timestamp: Option<u32> = None;
    while !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
        if Instant::now() >= next {
            let in_speech = started.elapsed() > Duration::from_secs(2);
            let payload = if in_speech { frames.next().unwrap_or_else(|| silence.to_vec()) } else { silence.to_vec() };
            let mut packet = vec![0x80, 8];
            packet.extend_from_slice(&sequence.to_be_bytes());
            packet.extend_from_slice(&timestamp.to_be_bytes());
            packet.extend_from_slice(&0x1234_5678u32.to_be_bytes());
            packet.extend_from_slice(&payload);
            index += 1;
            let dropped = network.drop_every.is_some_and(|n| index % n == 0);
            let swapped = network.swap_every.is_some_and(|n| index % n == 0);
            if swapped && !dropped {
                held_back = Some(packet);
            } else if !dropped {
                let _ = socket.send_to(&packet, golos_media);
                if let Some(late) = held_back.take() {
                    let _ = socket.send_to(&late, golos_media);
                }
            }
            sequence = sequence.wrapping_add(1);
            timestamp = timestamp.wrapping_add(160);
            next += Duration::from_millis(20);
        }
        if let Some(rtcp) = rtcp {
            if let Ok((len, from)) = rtcp.recv_from(&mut buf) {
                if let Some(report) = answer_sender_report(&buf[..len]) {
                    heard.sender_reports += 1;
                    let _ = rtcp.send_to(&report, from);
                }
            }
        }
        if let Ok((len, _)) = socket.recv_from(&mut buf) {
            if let Some((timestamp, digit)) = heard.record(&buf[..len], telephone_event) {
                // One digit per event: all its packets share a timestamp.
                if last_key_timestamp != Some(timestamp) {
                    heard.digits.push(digit);
                }
                last_key_timestamp = Some(timestamp);
            }
        }
    }
    heard
}

/// A receiver report (RFC 3550 §6.4.2) answering a compound packet that starts with an SR:
/// one report block about the SR's sender echoing its NTP time (LSR) after a zero delay
/// (DLSR), written by hand so the suite does not check golos with golos's own code.
fn answer_sender_report(packet: &[u8]) -> Option<Vec<u8>> {
    if packet.len() < 28 || packet[0] >> 6 != 2 || packet[1] != 200 {
        return None;
    }
    let ssrc = &packet[4..8];
    let lsr = &packet[10..14]; // the middle 32 bits of the 64-bit NTP time
    let mut report = vec![0x81, 201, 0, 7];
    report.extend_from_slice(&0x5EED_0001u32.to_be_bytes());
    report.extend_from_slice(ssrc);
    report.extend_from_slice(&[0; 4]); // fraction and cumulative lost
    report.extend_from_slice(&[0; 4]); // highest sequence
    report.extend_from_slice(&[0; 4]); // jitter
    report.extend_from_slice(lsr);
    report.extend_from_slice(&[0; 4]); // DLSR
    Some(report)
}

impl Heard {
    /// Counts one of golos's packets; a telephone-event's (timestamp, digit).
    fn record(&mut self, packet: &[u8], telephone_event: u8) -> Option<(u32, char)> {
        if packet.len() < 12 || packet[0] >> 6 != 2 {
            return None;
        }
        self.packets += 1;
        let payload_type = packet[1] & 0x7F;
        self.payload_types.insert(payload_type);
        if payload_type == telephone_event && packet.len() >= 16 {
            let timestamp = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
            let digit = match packet[12] {
                event @ 0..=9 => char::from(b'0' + event),
                10 => '*',
                11 => '#',
                event @ 12..=15 => char::from(b'A' + event - 12),
                _ => return None,
            };
            return Some((timestamp, digit));
        }
        // A-law silence is 0xD5/0x55; speech moves far from it.
        let loud = packet[12..].iter().filter(|&&b| golos_audio::g711::alaw_decode(b).unsigned_abs() > 1000);
        if loud.count() > 10 {
            self.loud_packets += 1;
        }
        None
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
        let (org_id, key) = self.funded_org("Café").await;
        let agent = crate::cafe_agent(5, &json!([{"kind": "pocketsphinx"}]));
        let trunk = json!({"source_networks": ["127.0.0.1/32"]});
        let agent_id = self.agent_line(&org_id, &key, &agent, &trunk).await;
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

    /// A new org with 100 RUB and an admin key: (org id, key).
    pub async fn funded_org(&self, name: &str) -> (String, String) {
        let org = self.post("/v1/orgs", &self.operator, &json!({"name": name})).await;
        let org_id = org["id"].as_str().unwrap().to_owned();
        let key = self
            .post(&format!("/v1/orgs/{org_id}/api-keys"), &self.operator, &json!({"name": "owner", "role": "admin"}))
            .await;
        let key = key["token"].as_str().unwrap().to_owned();
        crate::credit_by_test_payment(&self.http, &self.base, PAYMENT_SECRET, &org_id, 10_000).await;
        (org_id, key)
    }

    /// `NUMBER` granted to `org_id` and routed to a new `agent`, carried by a trunk identified
    /// by `identification` (its `source_networks` and/or `digest_username` and
    /// `digest_password`); the agent's id.
    pub async fn agent_line(&self, org_id: &str, key: &str, agent: &Value, identification: &Value) -> String {
        let agent = self.post("/v1/agents", key, agent).await;
        let agent_id = agent["id"].as_str().unwrap().to_owned();
        self.post(&format!("/v1/orgs/{org_id}/numbers"), &self.operator, &json!({"number": NUMBER})).await;
        let (status, route) = self
            .send(reqwest::Method::PUT, &format!("/v1/numbers/{NUMBER}"), key, &json!({"agent_id": agent_id}))
            .await;
        assert!((200..300).contains(&status), "{status} {route}");
        let mut trunk = json!({"org_id": org_id, "name": "test trunk", "numbers": [NUMBER]});
        for (field, value) in identification.as_object().into_iter().flatten() {
            trunk[field] = value.clone();
        }
        self.post("/v1/sip-trunks", &self.operator, &trunk).await;
        agent_id
    }

    /// Stores a provider credential of the org (the simulators take any key).
    pub async fn put_credential(&self, key: &str, name: &str, value: &str) {
        let path = format!("/v1/provider-credentials/{name}");
        let (status, body) = self.send(reqwest::Method::PUT, &path, key, &json!({"value": value})).await;
        assert!((200..300).contains(&status), "{status} {body}");
    }

    /// The newest call's record once it is over and billed (and is not `previous`).
    pub async fn billed_call(&self, key: &str, previous: Option<&str>) -> Value {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let calls = self.get("/v1/calls", key).await;
            if let Some(id) = calls["items"][0]["id"].as_str().filter(|id| Some(*id) != previous) {
                let record = self.get(&format!("/v1/calls/{id}"), key).await;
                if record["status"] != "in_progress" && record["cost_kopecks"].is_i64() {
                    return record;
                }
            }
            assert!(Instant::now() < until, "the phone call was not billed: {calls}");
            // Two requests a poll: well inside the API's 200 a minute per key.
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
    }
}

/// Sends 20 ms A-law silence packets (SSRC `ssrc`) to `to` from `socket` until `stop` is set:
/// a trunk's live media stream.
pub fn stream_silence(socket: &UdpSocket, to: SocketAddr, ssrc: u32, stop: &AtomicBool) {
    let (mut sequence, mut timestamp) = (1u16, 1000u32);
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let mut packet = vec![0x80, 8];
        packet.extend_from_slice(&sequence.to_be_bytes());
        packet.extend_from_slice(&timestamp.to_be_bytes());
        packet.extend_from_slice(&ssrc.to_be_bytes());
        packet.extend_from_slice(&[0xD5; 160]);
        let _ = socket.send_to(&packet, to);
        sequence = sequence.wrapping_add(1);
        timestamp = timestamp.wrapping_add(160);
        next += Duration::from_millis(20);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}
