//! `/metrics` with real observations in it, read back by the Prometheus project's own parser
//! (`prometheus_client`, installed by `scripts/install-deps`): the values the call code
//! records come out as the cumulative buckets, sums and counts Prometheus expects.

use golos::lifecycle::{EndReason, LiveCall};
use golos::Worker;
use golos_control::ControlMetrics;
use golos_sip::breaker::TrunkOutcome;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// Sample name + labels (as `name{k=v,...}`) → value, for every sample of every family, and
/// family name → type.
fn parse(exposition: &str) -> (BTreeMap<String, f64>, BTreeMap<String, String>) {
    const SCRIPT: &str = r"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
samples, types = {}, {}
for family in text_string_to_metric_families(sys.stdin.read()):
    types[family.name] = family.type
    for s in family.samples:
        labels = ','.join(f'{k}={v}' for k, v in sorted(s.labels.items()))
        samples[f'{s.name}{{{labels}}}' if labels else s.name] = s.value
print(json.dumps([samples, types]))
";
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed (scripts/install-deps)");
    child.stdin.take().unwrap().write_all(exposition.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "prometheus_client rejected the exposition (or is missing: pip install prometheus-client): {}\n{exposition}",
        String::from_utf8_lossy(&output.stderr)
    );
    let [samples, types]: [Value; 2] = serde_json::from_slice(&output.stdout).unwrap();
    let samples = samples.as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_f64().unwrap())).collect();
    let types = types.as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())).collect();
    (samples, types)
}

#[tokio::test]
async fn recorded_values_come_out_as_prometheus_reads_them() {
    let control = Arc::new(ControlMetrics::default());
    ControlMetrics::incr(&control.requests_total);
    ControlMetrics::incr(&control.requests_total);
    control.ledger_drift_orgs.store(1, std::sync::atomic::Ordering::Relaxed);
    control.unbilled_calls.store(2, std::sync::atomic::Ordering::Relaxed);
    let worker = Worker::new(control);
    let metrics = &worker.call_metrics;
    for ms in [120, 480, 480, 2_500] {
        metrics.observe_agent_response_latency(Duration::from_millis(ms));
    }
    metrics.observe_llm_inference(Duration::from_micros(812_500));
    metrics.observe_tts_latency(Duration::from_millis(75));
    metrics.incr_llm_fallback();
    metrics.call_ended(Duration::from_secs(61), EndReason::CallerHangup);
    metrics.call_ended(Duration::from_millis(4_500), EndReason::Failed);
    let _live = worker
        .registry
        .register(LiveCall {
            org_id: "org_a".parse().unwrap(),
            agent_id: "agt_a".parse().unwrap(),
            call_id: "call_a".parse().unwrap(),
        })
        .unwrap();
    // One trunk whose health checks keep failing, one that answers.
    let (sick, well) = ("trk_sick".parse().unwrap(), "trk_well".parse().unwrap());
    let now = std::time::Instant::now();
    for _ in 0..5 {
        worker.trunk_health.record_probe(&sick, TrunkOutcome::Timeout, now);
    }
    worker.trunk_health.record_probe(&well, TrunkOutcome::Answered(200), now);

    let (samples, types) = parse(&worker.render_metrics());
    let at = |key: &str| *samples.get(key).unwrap_or_else(|| panic!("{key} missing from {samples:#?}"));
    // Counts and counters are whole numbers; compare them as such.
    let n = |key: &str| {
        let value = at(key);
        assert!(value.fract().abs() < f64::EPSILON, "{key} = {value} is not a whole number");
        value as u64
    };

    assert_eq!(types["agent_response_latency_ms"], "histogram");
    assert_eq!(n("agent_response_latency_ms_bucket{le=100.0}"), 0);
    assert_eq!(n("agent_response_latency_ms_bucket{le=200.0}"), 1);
    assert_eq!(n("agent_response_latency_ms_bucket{le=500.0}"), 3, "cumulative");
    assert_eq!(n("agent_response_latency_ms_bucket{le=2000.0}"), 3);
    assert_eq!(n("agent_response_latency_ms_bucket{le=3000.0}"), 4);
    assert_eq!(n("agent_response_latency_ms_bucket{le=+Inf}"), 4);
    assert_eq!(n("agent_response_latency_ms_count"), 4);
    assert!((at("agent_response_latency_ms_sum") - 3_580.0).abs() < 1e-6);
    assert!((at("llm_inference_time_ms_sum") - 812.5).abs() < 1e-6);
    assert_eq!(n("llm_inference_time_ms_bucket{le=700.0}"), 0);
    assert_eq!(n("llm_inference_time_ms_bucket{le=1000.0}"), 1);
    assert_eq!(n("tts_latency_ms_bucket{le=100.0}"), 1);
    assert_eq!(n("call_duration_seconds_bucket{le=5.0}"), 1);
    assert_eq!(n("call_duration_seconds_bucket{le=120.0}"), 2);
    assert!((at("call_duration_seconds_sum") - 65.5).abs() < 1e-9);
    assert_eq!(types["calls"], "counter");
    assert_eq!(n("calls_total{reason=caller_hangup}"), 1);
    assert_eq!(n("calls_total{reason=failed}"), 1);
    assert_eq!(n("calls_total{reason=forced_shutdown}"), 0);
    assert!((at("call_error_rate") - 0.5).abs() < 1e-9);
    assert_eq!(n("llm_fallback_activations_total"), 1);
    assert_eq!(n("concurrent_calls_active"), 1);
    assert_eq!(n("golos_worker_draining"), 0);
    assert_eq!(n("golos_requests_total"), 2);
    assert_eq!(n("ledger_drift_orgs"), 1);
    assert_eq!(n("unbilled_calls"), 2);
    assert_eq!(types["golos_sip_trunk_breaker_open"], "gauge");
    assert_eq!(n("golos_sip_trunk_breaker_open{trunk=trk_sick}"), 1);
    assert_eq!(n("golos_sip_trunk_breaker_open{trunk=trk_well}"), 0);
    assert_eq!(types["golos_sip_trunk_probes"], "counter");
    assert_eq!(n("golos_sip_trunk_probes_total{outcome=timeout,trunk=trk_sick}"), 5);
    assert_eq!(n("golos_sip_trunk_probes_total{outcome=answered,trunk=trk_well}"), 1);
}
