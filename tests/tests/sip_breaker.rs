//! The trunk circuit breaker through the real `golos serve`: a trunk whose `sip_address` is a
//! UDP socket this test answers OPTIONS on. While it answers `503` (or nothing), golos's
//! health checks open the trunk's breaker and SIPp's INVITE from the trunk's network is
//! refused `503` with Retry-After; once it answers `200` again, checks close the breaker and
//! the same INVITE gets past it (to the `480` of a number the trunk does not carry). A
//! trunk whose address is removed is no longer checked and takes calls again. The
//! breaker runs on test timings (checks every 200 ms, open for 1 s) set through the
//! settings, and the test follows it on `/metrics` with deadlines, never fixed sleeps.

use golos_tests::RunningGolos;
use serde_json::{json, Value};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the test's trunk answers OPTIONS with; 0: nothing (a trunk that went silent).
const SILENT: u16 = 0;

/// SIPp as the trunk from 127.0.0.1.
fn sipp(sip: SocketAddr, name: &str) -> (bool, String) {
    golos_tests::sip::Sipp::new(sip, name).run()
}

/// The trunk's signalling side for health checks: answers every OPTIONS with the status in
/// `answer` (RFC 3261 §8.2.6: the request's Via, From, To with a tag, Call-ID, CSeq).
fn trunk_answering_options(socket: &UdpSocket, answer: &AtomicU16, stop: &AtomicBool) {
    socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let Ok((len, from)) = socket.recv_from(&mut buf) else { continue };
        let request = String::from_utf8_lossy(&buf[..len]);
        let status = answer.load(Ordering::Relaxed);
        if !request.starts_with("OPTIONS ") || status == SILENT {
            continue;
        }
        let reason = if status == 200 { "OK" } else { "Service Unavailable" };
        let mut response = format!("SIP/2.0 {status} {reason}\r\n");
        for line in request.lines() {
            let lower = line.to_ascii_lowercase();
            if ["via:", "from:", "call-id:", "cseq:"].iter().any(|h| lower.starts_with(h)) {
                response.push_str(line);
                response.push_str("\r\n");
            } else if lower.starts_with("to:") {
                response.push_str(line);
                response.push_str(";tag=trunk\r\n");
            }
        }
        response.push_str("Content-Length: 0\r\n\r\n");
        let _ = socket.send_to(response.as_bytes(), from);
    }
}

/// The value of one sample on `/metrics` (`None`: not there).
fn sample(golos: &RunningGolos, series: &str) -> Option<f64> {
    let (status, page) = golos.get_as_operator("/metrics");
    assert_eq!(status, 200, "{page}");
    page.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Polls `/metrics` until `series` reads `value`, for at most 20 s.
fn wait_for(golos: &RunningGolos, series: &str, value: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if sample(golos, series) == Some(value) {
            return;
        }
        let page = golos.get_as_operator("/metrics").1;
        let ours: Vec<_> = page.lines().filter(|l| l.starts_with("golos_sip_trunk")).collect();
        assert!(Instant::now() < deadline, "{series} never became {value}:\n{}", ours.join("\n"));
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn post(http: &reqwest::Client, golos: &RunningGolos, path: &str, body: &Value) -> Value {
    let response = http
        .post(format!("{}{path}", golos.base_url()))
        .header("X-API-Key", golos.operator_key())
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let value: Value = response.json().await.unwrap_or(Value::Null);
    assert!((200..300).contains(&status), "POST {path}: {status} {value}");
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_failing_its_health_checks_has_its_calls_refused_503_until_it_recovers() {
    let trunk_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let trunk_sip = trunk_socket.local_addr().unwrap();
    let answer = Arc::new(AtomicU16::new(200));
    let stop = Arc::new(AtomicBool::new(false));
    let responder = {
        let (answer, stop) = (Arc::clone(&answer), Arc::clone(&stop));
        std::thread::spawn(move || trunk_answering_options(&trunk_socket, &answer, &stop))
    };

    let sip_listen = format!("127.0.0.1:{}", golos_tests::sip::free_sip_port());
    let golos = RunningGolos::start(&[
        ("GOLOS_SIP_LISTEN", &sip_listen),
        ("GOLOS_SIP_PROBE_EVERY_MS", "200"),
        ("GOLOS_SIP_BREAKER_OPEN_MS", "1000"),
    ]);
    let sip: SocketAddr = sip_listen.parse().unwrap();
    let http = reqwest::Client::new();
    let org = post(&http, &golos, "/v1/orgs", &json!({"name": "Trunked"})).await;
    let trunk = json!({"org_id": org["id"], "name": "flaky trunk", "source_networks": ["127.0.0.1/32"],
        "sip_address": trunk_sip.to_string()});
    let trunk = post(&http, &golos, "/v1/sip-trunks", &trunk).await;
    let id = trunk["id"].as_str().unwrap().to_owned();
    let open = format!("golos_sip_trunk_breaker_open{{trunk=\"{id}\"}}");
    let probes = |outcome: &str| format!("golos_sip_trunk_probes_total{{trunk=\"{id}\",outcome=\"{outcome}\"}}");

    // A healthy trunk: probed, breaker closed, its INVITE routed as usual (to 480: the trunk
    // carries no number).
    let (golos, open_series) = (Arc::new(golos), open.clone());
    let g = Arc::clone(&golos);
    tokio::task::spawn_blocking(move || wait_for(&g, &open_series, 0.0)).await.unwrap();
    let (ok, log) = tokio::task::spawn_blocking(move || sipp(sip, "inbound-unrouted.xml")).await.unwrap();
    assert!(ok, "with the breaker closed the INVITE reaches routing (480):\n{log}");

    // It answers 503: five failed checks open the breaker; its INVITEs are refused 503.
    answer.store(503, Ordering::Relaxed);
    let (g, open_series) = (Arc::clone(&golos), open.clone());
    tokio::task::spawn_blocking(move || wait_for(&g, &open_series, 1.0)).await.unwrap();
    let failed = sample(&golos, &probes("error_status")).unwrap_or_default();
    assert!(failed >= 5.0, "the breaker opened after {failed} failed checks");
    let (ok, log) = tokio::task::spawn_blocking(move || sipp(sip, "inbound-breaker-open.xml")).await.unwrap();
    assert!(ok, "with the breaker open the INVITE must be refused 503 with Retry-After:\n{log}");
    let (ok, log) = tokio::task::spawn_blocking(move || sipp(sip, "options-draining.xml")).await.unwrap();
    assert!(ok, "with its breaker open the trunk's own health check is answered 503 with Retry-After:\n{log}");

    // It answers 200 again: after `open_for`, three good checks close the breaker.
    let answered_before = sample(&golos, &probes("answered")).unwrap_or_default();
    answer.store(200, Ordering::Relaxed);
    let (g, open_series) = (Arc::clone(&golos), open.clone());
    tokio::task::spawn_blocking(move || wait_for(&g, &open_series, 0.0)).await.unwrap();
    let answered = sample(&golos, &probes("answered")).unwrap_or_default() - answered_before;
    assert!(answered >= 3.0, "the breaker closed after {answered} good checks");
    let (ok, log) = tokio::task::spawn_blocking(move || sipp(sip, "inbound-unrouted.xml")).await.unwrap();
    assert!(ok, "with the breaker closed again the INVITE is no longer refused 503:\n{log}");
    let (ok, log) = tokio::task::spawn_blocking(move || sipp(sip, "options.xml")).await.unwrap();
    assert!(ok, "with the breaker closed the trunk's health check is answered 200:\n{log}");

    // A trunk that goes silent fails its checks by timeout, and its breaker opens again.
    answer.store(SILENT, Ordering::Relaxed);
    let (g, open_series) = (Arc::clone(&golos), open.clone());
    tokio::task::spawn_blocking(move || wait_for(&g, &open_series, 1.0)).await.unwrap();
    assert!(sample(&golos, &probes("timeout")).unwrap_or_default() >= 5.0);

    // Its address removed, the trunk is no longer checked: its breaker is forgotten (the
    // series leaves /metrics) and its calls are taken though it is still silent.
    let response = http
        .patch(format!("{}/v1/sip-trunks/{id}", golos.base_url()))
        .header("X-API-Key", golos.operator_key())
        .json(&json!({"sip_address": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let g = Arc::clone(&golos);
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        while sample(&g, &open).is_some() {
            assert!(Instant::now() < deadline, "{open} stayed on /metrics after the address was removed");
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    let (ok, log) = tokio::task::spawn_blocking(move || sipp(sip, "inbound-unrouted.xml")).await.unwrap();
    assert!(ok, "a trunk that is not checked is not refused by its breaker:\n{log}");

    stop.store(true, Ordering::Relaxed);
    responder.join().unwrap();
}
