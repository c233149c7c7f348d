//! Trust at the edges, from outside: the real `golos serve` against peers that misbehave on its
//! call sockets. Oversized frames before `start` are refused from their header (the worker's
//! memory stays flat), audio faster than real time is dropped and counted, sockets that never
//! start are closed, and connection caps answer 503 before the upgrade. Every loop is bounded
//! in count and time; every peer is on a loopback address (Linux routes all of 127/8 to `lo`,
//! so 127.0.0.x are distinct client addresses for the per-address cap).

use futures::{SinkExt, StreamExt};
use golos_tests::RunningGolos;
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::Message;

const PAYMENT_SECRET: &str = "sockets-test-payment-secret";
const WAIT: Duration = Duration::from_secs(30);
const MIB: u64 = 1024 * 1024;

fn start_golos(extra_env: &[(&str, &str)]) -> RunningGolos {
    let mut env = vec![("GOLOS_SECRET_PAYMENTS_HMAC_TEST", PAYMENT_SECRET)];
    env.extend_from_slice(extra_env);
    RunningGolos::start(&env)
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A TCP connection to the worker from `source`.
async fn connect_from(source: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    socket.connect(to).await.unwrap()
}

/// The WebSocket upgrade by hand: the status and, when refused, the headers and body.
async fn upgrade(tcp: &mut TcpStream, host: SocketAddr, path: &str) -> (u16, String) {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(timeout(WAIT, tcp.read_u8()).await.expect("a response in time").unwrap());
    }
    let head = String::from_utf8(head).unwrap();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status");
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0; if status == 101 { 0 } else { length }];
    tcp.read_exact(&mut body).await.unwrap();
    (status, head + &String::from_utf8_lossy(&body))
}

/// A client frame header: FIN + binary, masked with a zero key (so the payload goes as is),
/// announcing `len` bytes in the 64-bit length form (0xFF: mask bit + 127).
fn binary_frame_header(len: u64) -> Vec<u8> {
    let mut header = vec![0x82, 0xFF];
    header.extend(len.to_be_bytes());
    header.extend([0; 4]);
    header
}

/// Reads server frames until a close: its code; `None` if the connection ended without one
/// (reset, or EOF).
async fn close_code(tcp: &mut TcpStream) -> Option<u16> {
    loop {
        let frame = async {
            let opcode = tcp.read_u8().await? & 0x0F;
            let len = match tcp.read_u8().await? & 0x7F {
                0x7E => u64::from(tcp.read_u16().await?),
                0x7F => tcp.read_u64().await?,
                n => u64::from(n),
            };
            let mut payload = vec![0; usize::try_from(len).unwrap()];
            tcp.read_exact(&mut payload).await?;
            std::io::Result::Ok((opcode, payload))
        };
        match timeout(WAIT, frame).await.expect("the server ends the connection in time") {
            Ok((0x8, payload)) => return payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]])),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

/// The worker's resident memory.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// One sample of `/metrics` (a counter or an unlabelled gauge), 0 if absent.
fn metric(golos: &RunningGolos, name: &str) -> u64 {
    let (status, body) = golos.get_as_operator("/metrics");
    assert_eq!(status, 200);
    body.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0, |value| value.trim().parse().unwrap())
}

/// A funded org with a café agent (canned answers, espeak-ng voice) and a call token for it.
async fn agent_and_token(golos: &RunningGolos) -> (String, String) {
    let http = reqwest::Client::new();
    let base = golos.base_url();
    let post = |path: String, key: String, body: Value| {
        let request = http.post(format!("{base}{path}")).header("X-API-Key", key).json(&body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            assert!(status == 201, "{path}: {status}");
            response.json::<Value>().await.unwrap()
        }
    };
    let operator = golos.operator_key();
    let org = post("/v1/orgs".into(), operator.clone(), json!({"name": "Café"})).await;
    let org_id = org["id"].as_str().unwrap().to_owned();
    let key = post(format!("/v1/orgs/{org_id}/api-keys"), operator, json!({"name": "owner", "role": "admin"})).await;
    let key = key["token"].as_str().unwrap().to_owned();
    golos_tests::credit_by_test_payment(&http, &base, PAYMENT_SECRET, &org_id, 10_000).await;
    let agent = post(
        "/v1/agents".into(),
        key.clone(),
        json!({
            "name": "Café host",
            "system_prompt": "You are the host of a café.",
            "greeting": "Hello, how can I help?",
            "language": "en-US",
            "voice": {"provider": "espeak_ng", "voice_id": "en-us"},
            "faq": [{"questions": ["when are you open"], "answer": "We are open from eight in the morning."}],
            "providers": {"llm": [{"kind": "canned"}], "tts": [{"kind": "espeak_ng"}], "stt": [{"kind": "pocketsphinx"}]}
        }),
    )
    .await;
    let agent = agent["id"].as_str().unwrap().to_owned();
    let token = post(format!("/v1/agents/{agent}/call-tokens"), key, json!({})).await;
    (agent, token["token"].as_str().unwrap().to_owned())
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// A call on the golos protocol, started.
async fn start_call(golos: &RunningGolos, agent: &str, token: &str) -> Socket {
    let url = format!("ws://{}/ws/calls", golos.addr);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("websocket");
    let start = json!({"type": "start", "agent_id": agent, "token": token, "sample_rate": 16000});
    socket.send(Message::Text(start.to_string().into())).await.unwrap();
    let started = next_event(&mut socket, "started").await;
    assert!(started["call_id"].is_string(), "{started}");
    socket
}

/// Reads until an event of `kind` (audio and other events are skipped), failing after `WAIT`.
async fn next_event(socket: &mut Socket, kind: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next()).await;
        let message = message.unwrap_or_else(|_| panic!("no {kind} in time")).expect("open").unwrap();
        if let Message::Text(text) = message {
            let event: Value = serde_json::from_str(&text).unwrap();
            if event["type"] == kind {
                return event;
            }
        }
    }
}

/// The greeting is heard and a hangup ends the call: the worker serves calls.
async fn a_normal_call_works(golos: &RunningGolos, agent: &str, token: &str) {
    let mut socket = start_call(golos, agent, token).await;
    let greeting = next_event(&mut socket, "transcript").await;
    assert_eq!(greeting["role"], "assistant", "{greeting}");
    socket.send(Message::Text(json!({"type": "hangup"}).to_string().into())).await.unwrap();
    assert_eq!(next_event(&mut socket, "ended").await["reason"], "hangup");
}

/// 200 peers each announce a 16 MiB frame before `start` and push its payload as fast as they
/// can: the worker refuses each from the frame header (close 1009, or a reset when the peer's
/// unread bytes are still arriving), its memory stays flat, and a call works afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_16_mib_frames_before_start_are_refused_without_buffering() {
    let golos = start_golos(&[]);
    let (agent, token) = agent_and_token(&golos).await;
    let pid = golos.pid();
    let addr = golos.addr;

    // One well-behaved peer that announces the frame and waits: a clean close with 1009.
    let mut tcp = connect_from(loopback(1), addr).await;
    assert_eq!(upgrade(&mut tcp, addr, "/ws/calls").await.0, 101);
    tcp.write_all(&binary_frame_header(16 * MIB)).await.unwrap();
    assert_eq!(close_code(&mut tcp).await, Some(1009));
    drop(tcp);

    let baseline = rss_kib(pid);
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(baseline));
    let watcher = {
        let peak = std::sync::Arc::clone(&peak);
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(pid), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // 20 peers from each of 10 addresses: the per-address cap (20) lets every one upgrade.
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    let peers: Vec<_> = (0..200u32)
        .map(|i| {
            tokio::spawn(async move {
                let mut tcp = connect_from(loopback(10 + u8::try_from(i % 10).unwrap()), addr).await;
                let (status, _) = upgrade(&mut tcp, addr, if i % 2 == 0 { "/ws/calls" } else { "/ws/twilio" }).await;
                assert_eq!(status, 101, "peer {i}");
                let mut sent = 0u64;
                if tcp.write_all(&binary_frame_header(16 * MIB)).await.is_ok() {
                    while sent < 16 * MIB && tcp.write_all(&ZEROS).await.is_ok() {
                        sent += ZEROS.len() as u64;
                    }
                }
                let code = close_code(&mut tcp).await;
                (sent, code)
            })
        })
        .collect();
    let mut refused_with_1009 = 0;
    let mut payload_accepted = 0u64;
    for peer in peers {
        let (sent, code) = timeout(Duration::from_secs(120), peer).await.expect("every peer is answered").unwrap();
        payload_accepted += sent;
        assert!(matches!(code, None | Some(1009)), "closed with {code:?}");
        refused_with_1009 += usize::from(code == Some(1009));
    }
    watcher.abort();
    let growth_mib = peak.load(std::sync::atomic::Ordering::Relaxed).saturating_sub(baseline) / 1024;
    println!(
        "RSS {baseline} KiB, +{growth_mib} MiB at peak; {refused_with_1009}/200 read their 1009; {} MiB written by the peers before the worker closed",
        payload_accepted / MIB
    );
    assert!(growth_mib < 100, "the worker grew by {growth_mib} MiB under 200 × 16 MiB frames");
    assert!(
        payload_accepted < 200 * 16 * MIB / 2,
        "the worker read the payloads instead of closing: {} MiB",
        payload_accepted / MIB
    );
    assert!(metric(&golos, "golos_ws_oversize_closed_total") >= 201 - 20, "most refusals are counted");
    a_normal_call_works(&golos, &agent, &token).await;
}

/// A caller that sends 20 ms frames at 50× real time for 4 s: a second of burst and real time
/// get through, the rest is dropped and counted, and the call goes on to a clean hangup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_at_fifty_times_real_time_is_dropped_and_counted_and_the_call_goes_on() {
    let golos = start_golos(&[]);
    let (agent, token) = agent_and_token(&golos).await;
    let mut socket = start_call(&golos, &agent, &token).await;
    // Silence, so the VAD hears no barge-in: 20 ms frames on a 50× schedule (2,500 a second),
    // catching up after each 1 ms pause.
    let frame = Message::Binary(vec![0u8; 640].into());
    let began = Instant::now();
    let mut sent = 0u64;
    while began.elapsed() < Duration::from_secs(4) {
        let due = (began.elapsed().as_secs_f64() * 2_500.0) as u64;
        while sent < due {
            socket.send(frame.clone()).await.unwrap();
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed_s = began.elapsed().as_secs_f64();
    // Real time plus the 1 s burst may pass (and a margin for the worker reading late).
    let may_pass = ((elapsed_s + 1.0) * 50.0) as u64 + 50;
    let deadline = Instant::now() + WAIT;
    let dropped = loop {
        let dropped = metric(&golos, "golos_caller_audio_dropped_frames_total");
        if dropped + may_pass >= sent || Instant::now() > deadline {
            break dropped;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "sent {sent} frames in {elapsed_s:.2} s ({:.0}× real time); {dropped} dropped",
        sent as f64 * 0.02 / elapsed_s
    );
    assert!(sent as f64 * 0.02 / elapsed_s > 40.0, "the test really sent at about 50× real time");
    assert!(dropped + may_pass >= sent, "{dropped} of {sent} dropped; at most {may_pass} may pass");
    assert!(dropped < sent, "real time passes");
    // The call is alive: the greeting is heard, a hangup is answered.
    let greeting = next_event(&mut socket, "transcript").await;
    assert_eq!(greeting["role"], "assistant");
    socket.send(Message::Text(json!({"type": "hangup"}).to_string().into())).await.unwrap();
    assert_eq!(next_event(&mut socket, "ended").await["reason"], "hangup");
}

/// 20 sockets from one address fill its cap: the 21st is answered 503 (problem+json, a stable
/// code, `Retry-After`) before any upgrade while another address still gets in. The 20 never
/// send `start`, so the worker closes them (1008) after 5 s, and the address gets in again. A
/// worker with a global cap of 3 refuses the 4th socket from anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_caps_answer_503_before_the_upgrade_and_idle_sockets_are_closed() {
    let golos = start_golos(&[]);
    let addr = golos.addr;
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut tcp = connect_from(loopback(2), addr).await;
        assert_eq!(upgrade(&mut tcp, addr, "/ws/calls").await.0, 101);
        held.push(tcp);
    }
    let mut tcp = connect_from(loopback(2), addr).await;
    let (status, response) = upgrade(&mut tcp, addr, "/ws/calls").await;
    assert_eq!(status, 503, "{response}");
    let lower = response.to_ascii_lowercase();
    assert!(lower.contains("content-type: application/problem+json"), "{response}");
    assert!(lower.contains("retry-after: 5"), "{response}");
    let body: Value = serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(
        (body["status"].as_u64(), body["code"].as_str()),
        (Some(503), Some("too_many_connections_from_address"))
    );
    let mut other = connect_from(loopback(3), addr).await;
    assert_eq!(upgrade(&mut other, addr, "/ws/calls").await.0, 101, "another address is not capped by this one");

    let waited = Instant::now();
    for tcp in &mut held {
        assert_eq!(close_code(tcp).await, Some(1008), "no start: closed as a policy violation");
    }
    let waited = waited.elapsed();
    assert!(waited < Duration::from_secs(10), "closed after the 5 s start timeout, not later: {waited:?}");
    drop(held);
    // The places come back as the worker's tasks end.
    let deadline = Instant::now() + WAIT;
    loop {
        let mut tcp = connect_from(loopback(2), addr).await;
        if upgrade(&mut tcp, addr, "/ws/calls").await.0 == 101 {
            break;
        }
        assert!(Instant::now() < deadline, "the address never got its places back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(metric(&golos, "golos_ws_start_timeouts_total") >= 20);
    let (_, page) = golos.get_as_operator("/metrics");
    assert!(page.contains("golos_ws_connections_refused_total{cap=\"per_ip\"} 1"), "{page}");

    let small = start_golos(&[("GOLOS_WS_MAX_CONNECTIONS", "3")]);
    let mut open = Vec::new();
    for i in 0..3u8 {
        let mut tcp = connect_from(loopback(20 + i), small.addr).await;
        assert_eq!(upgrade(&mut tcp, small.addr, "/ws/twilio").await.0, 101);
        open.push(tcp);
    }
    assert_eq!(metric(&small, "golos_ws_connections"), 3);
    let mut tcp = connect_from(loopback(30), small.addr).await;
    let (status, response) = upgrade(&mut tcp, small.addr, "/ws/calls").await;
    assert_eq!(status, 503, "{response}");
    assert!(response.contains("\"code\":\"too_many_connections\""), "{response}");
}
