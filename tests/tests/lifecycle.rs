//! The worker lifecycle of `golos serve` as a black box: `/ready`, `/metrics` read by a real
//! Prometheus parser, and SIGTERM with no live calls. The drain with a live call is in
//! `calls.rs` (black box) and in `media-pool/worker/tests/drain.rs` (in-process, on a paused
//! clock, with the exact drain timings).

use golos_tests::RunningGolos;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

/// Parses the exposition with the Prometheus project's Python client
/// (`prometheus_client.parser.text_string_to_metric_families`) and hands back, per family,
/// its type and its samples as `[name, labels, value]`.
fn parse_with_prometheus_client(exposition: &str) -> BTreeMap<String, (String, Vec<serde_json::Value>)> {
    const SCRIPT: &str = r"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    out[family.name] = [family.type, [[s.name, s.labels, s.value] for s in family.samples]]
print(json.dumps(out))
";
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed (scripts/install-deps)");
    child.stdin.take().expect("stdin").write_all(exposition.as_bytes()).expect("write the exposition");
    let output = child.wait_with_output().expect("run the parser");
    assert!(
        output.status.success(),
        "prometheus_client rejected the exposition (or is missing: pip install prometheus-client): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let parsed: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&output.stdout).expect("parser output");
    parsed
        .into_iter()
        .map(|(name, v)| (name, (v[0].as_str().unwrap().to_owned(), v[1].as_array().unwrap().clone())))
        .collect()
}

#[test]
fn ready_answers_200_while_taking_calls() {
    let golos = RunningGolos::start(&[]);
    let (status, body) = golos.get("/ready");
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap(), serde_json::json!({"status": "ready"}));
}

#[test]
fn metrics_parse_and_carry_the_names_from_the_reviews() {
    let golos = RunningGolos::start(&[]);
    assert_eq!(golos.get("/health").0, 200, "one API request, so a counter moves");
    let (status, body) = golos.get_as_operator("/metrics");
    assert_eq!(status, 200, "{body}");
    let families = parse_with_prometheus_client(&body);
    // The Python client names counter families without `_total`; samples keep it.
    let expected = [
        ("call_duration_seconds", "histogram"),
        ("agent_response_latency_ms", "histogram"),
        ("llm_inference_time_ms", "histogram"),
        ("tts_latency_ms", "histogram"),
        ("llm_fallback_activations", "counter"),
        ("call_error_rate", "gauge"),
        ("calls", "counter"),
        ("concurrent_calls_active", "gauge"),
        ("ledger_drift_orgs", "gauge"),
        ("unbilled_calls", "gauge"),
        ("golos_worker_draining", "gauge"),
        ("golos_worker_scale_in_protected", "gauge"),
        ("golos_scale_in_protection_failures", "counter"),
        ("golos_requests", "counter"),
        ("golos_auth_failures", "counter"),
        ("golos_rate_limited", "counter"),
        ("golos_idempotent_replays", "counter"),
        ("golos_call_events_processed", "counter"),
        ("golos_call_events_failed", "counter"),
        ("golos_leases_swept", "counter"),
        ("golos_webhook_events_emitted", "counter"),
    ];
    for (name, kind) in expected {
        let (found, _) = families.get(name).unwrap_or_else(|| panic!("{name} missing from\n{body}"));
        assert_eq!(found, kind, "type of {name}");
    }
    let value =
        |family: &str, sample: &str| families[family].1.iter().find(|s| s[0] == sample).map(|s| s[2].as_f64().unwrap());
    assert_eq!(value("concurrent_calls_active", "concurrent_calls_active"), Some(0.0));
    assert_eq!(value("golos_worker_draining", "golos_worker_draining"), Some(0.0));
    assert!(value("golos_requests", "golos_requests_total").is_some_and(|n| n >= 1.0), "{body}");
    let reasons: Vec<_> = families["calls"].1.iter().map(|s| s[1]["reason"].as_str().unwrap().to_owned()).collect();
    assert!(reasons.iter().any(|r| r == "forced_shutdown"), "{reasons:?}");
    // Histograms: cumulative buckets ending in +Inf, which equals _count.
    for name in ["call_duration_seconds", "agent_response_latency_ms", "llm_inference_time_ms", "tts_latency_ms"] {
        let samples = &families[name].1;
        let buckets: Vec<_> = samples.iter().filter(|s| s[0] == format!("{name}_bucket")).collect();
        assert!(buckets.len() > 3, "{name} has buckets");
        assert_eq!(buckets.last().unwrap()[1]["le"], "+Inf", "{name}");
        assert!(buckets.windows(2).all(|w| w[0][2].as_f64() <= w[1][2].as_f64()), "{name} is cumulative");
        assert_eq!(value(name, &format!("{name}_count")), buckets.last().unwrap()[2].as_f64(), "{name}");
        assert!(value(name, &format!("{name}_sum")).is_some(), "{name}_sum");
    }
}

#[test]
fn sigterm_without_live_calls_exits_0_without_waiting_for_the_drain_time() {
    // The default drain time (10 minutes) is in force: an exit well inside it shows the drain
    // ended as soon as it saw no live call rather than at its deadline.
    let golos = RunningGolos::start(&[]);
    assert_eq!(golos.get("/ready").0, 200);
    let asked = std::time::Instant::now();
    let status = golos.terminate();
    assert!(status.success(), "{status:?}");
    assert!(asked.elapsed() < std::time::Duration::from_secs(60), "exited after {:?}", asked.elapsed());
}

/// `/metrics` is the operator's: on the public listener only with the operator key; with an
/// operator listener, only there (and `/ready` with it), gone from the public one.
#[test]
fn metrics_are_for_the_operator_only() {
    let golos = RunningGolos::start(&[]);
    assert_eq!(golos.get("/metrics").0, 401, "no key");
    let wrong = golos_tests::get_from(golos.addr, "/metrics", "Authorization: Bearer gop_not-the-key\r\n");
    assert_eq!(wrong.0, 401, "a wrong key");
    assert_eq!(golos.get_as_operator("/metrics").0, 200);
    assert_eq!(golos.get("/ready").0, 200, "a load balancer's probe needs no key");

    let ops_addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let golos = RunningGolos::start(&[("GOLOS_OPS_LISTEN", &ops_addr.to_string())]);
    assert_eq!(golos.get_as_operator("/metrics").0, 404, "not on the public listener, even with the key");
    assert_eq!(golos.get("/ready").0, 404);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(ops_addr).is_err() {
        assert!(std::time::Instant::now() < deadline, "the operator listener never came up");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (status, body) = golos_tests::get_from(ops_addr, "/metrics", "");
    assert_eq!(status, 200);
    assert!(body.contains("concurrent_calls_active"), "{body}");
    assert_eq!(golos_tests::get_from(ops_addr, "/ready", "").0, 200);
}
