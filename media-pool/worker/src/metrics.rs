//! `/metrics` in the Prometheus text exposition format 0.0.4, and the `CallMetrics` the live
//! call code records into.
//!
//! Written by hand rather than with the `prometheus` crate: the control plane already keeps
//! its counters as plain atomics (`ControlMetrics`) that only need rendering, the call
//! pipeline needs four fixed-bucket histograms and two counters, and the format is a few lines
//! of text. Recording is lock-free (a few relaxed atomic adds per observation), so the hot
//! path can call it per turn. The output is checked by a real parser (`prometheus_client`)
//! in `tests/tests/lifecycle.rs`.

use crate::lifecycle::EndReason;
use golos_control::ControlMetrics;
use golos_shard::ShardCounters;
use golos_transports::limits::EdgeCounters;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds of the call-duration buckets, in seconds (the last bucket, `+Inf`, is implied).
pub const CALL_DURATION_BUCKETS_S: &[f64] = &[5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0];
/// Agent response latency: the silence the caller hears; the alert is at p99 > 500 ms, so the
/// buckets are dense around it.
pub const RESPONSE_LATENCY_BUCKETS_MS: &[f64] =
    &[50.0, 100.0, 200.0, 300.0, 400.0, 500.0, 750.0, 1000.0, 1500.0, 2000.0, 3000.0, 5000.0, 10000.0];
/// LLM inference: first token is usually well under a second, whole answers take seconds.
pub const LLM_BUCKETS_MS: &[f64] = &[50.0, 100.0, 200.0, 300.0, 500.0, 700.0, 1000.0, 2000.0, 5000.0, 10000.0, 30000.0];
/// TTS latency to the first audio of a chunk.
pub const TTS_BUCKETS_MS: &[f64] = &[25.0, 50.0, 100.0, 200.0, 300.0, 500.0, 1000.0, 2000.0, 5000.0];

/// How far back `call_error_rate` looks.
pub const ERROR_RATE_WINDOW: Duration = Duration::from_secs(300);
const ERROR_RATE_SLOT: Duration = Duration::from_secs(10);
const ERROR_RATE_SLOTS: usize = 30;

/// A histogram with fixed buckets. Counts are kept per bucket and made cumulative when
/// rendered, so an observation touches one bucket, the sum and the count.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One per bound plus the `+Inf` bucket.
    counts: Box<[AtomicU64]>,
    /// The sum of observations, as `f64` bits.
    sum: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bucket bounds must increase");
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: f64) {
        let bucket = self.bounds.iter().position(|&le| value <= le).unwrap_or(self.bounds.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        // No atomic f64 add in std: a compare-exchange loop, uncontended in practice.
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| Some((f64::from_bits(bits) + value).to_bits()));
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn sum(&self) -> f64 {
        f64::from_bits(self.sum.load(Ordering::Relaxed))
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        header(out, name, help, "histogram");
        let mut cumulative = 0;
        for (i, counter) in self.counts.iter().enumerate() {
            cumulative += counter.load(Ordering::Relaxed);
            match self.bounds.get(i) {
                Some(le) => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"{le:?}\"}} {cumulative}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        // `_count` equals the `+Inf` bucket even if an observation lands between the reads.
        let _ = writeln!(out, "{name}_sum {:?}", self.sum());
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, help: &str, kind: &str, value: u64) {
    header(out, name, help, kind);
    let _ = writeln!(out, "{name} {value}");
}

/// Ended calls and failed calls in 10-second slots, for `call_error_rate` over the last
/// five minutes. Each slot remembers which slot index it holds, so stale slots read as empty.
#[derive(Debug)]
struct ErrorWindow {
    origin: Instant,
    /// `(slot index, ended, failed)`.
    slots: Mutex<[(u64, u64, u64); ERROR_RATE_SLOTS]>,
}

impl ErrorWindow {
    fn slot_at(&self, at: Instant) -> u64 {
        (at.saturating_duration_since(self.origin).as_secs() / ERROR_RATE_SLOT.as_secs()) + 1
    }

    fn record(&self, at: Instant, failed: bool) {
        let index = self.slot_at(at);
        let mut slots = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = &mut slots[(index % ERROR_RATE_SLOTS as u64) as usize];
        if slot.0 != index {
            *slot = (index, 0, 0);
        }
        slot.1 += 1;
        slot.2 += u64::from(failed);
    }

    /// `failed / ended` over the window; 0 when no call ended in it.
    fn rate(&self, now: Instant) -> f64 {
        let current = self.slot_at(now);
        let oldest = current.saturating_sub(ERROR_RATE_SLOTS as u64 - 1);
        let slots = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (ended, failed) = slots
            .iter()
            .filter(|(index, _, _)| (oldest..=current).contains(index))
            .fold((0, 0), |(e, f), (_, ended, failed)| (e + ended, f + failed));
        if ended == 0 {
            0.0
        } else {
            failed as f64 / ended as f64
        }
    }
}

/// What the live-call code records. Cheap to call from the hot path; share it as an `Arc`.
#[derive(Debug)]
pub struct CallMetrics {
    call_duration_seconds: Histogram,
    agent_response_latency_ms: Histogram,
    llm_inference_time_ms: Histogram,
    tts_latency_ms: Histogram,
    llm_fallback_activations: AtomicU64,
    /// Ended calls by reason, indexed like `EndReason::ALL`.
    calls_by_reason: [AtomicU64; EndReason::ALL.len()],
    errors: ErrorWindow,
}

impl Default for CallMetrics {
    fn default() -> Self {
        Self {
            call_duration_seconds: Histogram::new(CALL_DURATION_BUCKETS_S),
            agent_response_latency_ms: Histogram::new(RESPONSE_LATENCY_BUCKETS_MS),
            llm_inference_time_ms: Histogram::new(LLM_BUCKETS_MS),
            tts_latency_ms: Histogram::new(TTS_BUCKETS_MS),
            llm_fallback_activations: AtomicU64::new(0),
            calls_by_reason: std::array::from_fn(|_| AtomicU64::new(0)),
            errors: ErrorWindow { origin: Instant::now(), slots: Mutex::new([(0, 0, 0); ERROR_RATE_SLOTS]) },
        }
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl CallMetrics {
    /// One turn's response latency: the caller's last speech frame to our first audio frame
    /// (the silence the caller hears), measured at the audio boundary.
    pub fn observe_agent_response_latency(&self, latency: Duration) {
        self.agent_response_latency_ms.observe(millis(latency));
    }

    /// One LLM request: from sending it to the last token (time to first token is part of the
    /// response latency above).
    pub fn observe_llm_inference(&self, took: Duration) {
        self.llm_inference_time_ms.observe(millis(took));
    }

    /// One TTS request: from sending the text to its first audio.
    pub fn observe_tts_latency(&self, latency: Duration) {
        self.tts_latency_ms.observe(millis(latency));
    }

    /// The LLM chain switched to its next provider for a turn.
    pub fn incr_llm_fallback(&self) {
        self.llm_fallback_activations.fetch_add(1, Ordering::Relaxed);
    }

    /// A call ended: its connected duration and why. Call once per call, when it ends.
    pub fn call_ended(&self, duration: Duration, reason: EndReason) {
        self.call_duration_seconds.observe(duration.as_secs_f64());
        self.calls_by_reason[reason.index()].fetch_add(1, Ordering::Relaxed);
        self.errors.record(Instant::now(), reason.is_error());
    }

    /// Calls ended with `reason` so far.
    pub fn calls_ended(&self, reason: EndReason) -> u64 {
        self.calls_by_reason[reason.index()].load(Ordering::Relaxed)
    }

    /// `call_error_rate` as it would be rendered now.
    pub fn error_rate(&self) -> f64 {
        self.errors.rate(Instant::now())
    }
}

/// What one scrape reads besides `CallMetrics`.
#[derive(Debug, Clone, Copy)]
pub struct WorkerGauges {
    pub concurrent_calls_active: usize,
    pub draining: bool,
}

/// The whole `/metrics` page.
pub fn render(
    control: &ControlMetrics,
    calls: &CallMetrics,
    edge: &EdgeCounters,
    shards: &ShardCounters,
    gauges: WorkerGauges,
) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let counters: [(&str, &str, &AtomicU64); 12] = [
        ("golos_requests_total", "HTTP requests to the control-plane API.", &control.requests_total),
        (
            "golos_auth_failures_total",
            "Requests refused for a missing, wrong, expired or revoked API key.",
            &control.auth_failures_total,
        ),
        (
            "golos_rate_limited_total",
            "Requests answered 429 by the per-key or per-org rate limit.",
            &control.rate_limited_total,
        ),
        (
            "golos_idempotent_replays_total",
            "Requests answered from a stored Idempotency-Key response.",
            &control.idempotent_replays_total,
        ),
        (
            "golos_call_events_processed_total",
            "call.started / call.ended events processed (billing, usage, lease release).",
            &control.call_events_processed_total,
        ),
        (
            "golos_call_events_failed_total",
            "call events whose processing failed (retried, then dead-lettered).",
            &control.call_events_failed_total,
        ),
        (
            "golos_leases_swept_total",
            "Admission leases freed by the sweeper because their worker stopped heartbeating.",
            &control.leases_swept_total,
        ),
        (
            "golos_webhook_events_emitted_total",
            "Customer webhook events queued for delivery.",
            &control.webhook_events_emitted_total,
        ),
        (
            "golos_webhook_deliveries_succeeded_total",
            "Webhook delivery attempts an endpoint answered with 2xx.",
            &control.webhook_deliveries_succeeded_total,
        ),
        (
            "golos_webhook_deliveries_failed_total",
            "Webhook delivery attempts that failed (retried or dead-lettered).",
            &control.webhook_deliveries_failed_total,
        ),
        (
            "golos_webhook_dead_letters_total",
            "Webhook deliveries dead-lettered (a permanent status, an invalid URL, the last attempt, a disabled endpoint).",
            &control.webhook_dead_letters_total,
        ),
        (
            "golos_webhook_endpoints_disabled_total",
            "Webhook endpoints disabled after too many failed deliveries.",
            &control.webhook_endpoints_disabled_total,
        ),
    ];
    for (name, help, counter) in counters {
        sample(&mut out, name, help, "counter", load(counter));
    }
    sample(
        &mut out,
        "ledger_drift_orgs",
        "Organisations whose stored balance differed from their ledger at the last reconciliation; alert on > 0.",
        "gauge",
        load(&control.ledger_drift_orgs),
    );
    sample(
        &mut out,
        "unbilled_calls",
        "Ended calls without exactly one matching debit at the last reconciliation; alert on > 0.",
        "gauge",
        load(&control.unbilled_calls),
    );
    sample(
        &mut out,
        "concurrent_calls_active",
        "Live calls on this worker.",
        "gauge",
        gauges.concurrent_calls_active as u64,
    );
    sample(
        &mut out,
        "golos_worker_draining",
        "1 while this worker drains after SIGTERM (takes no new calls), else 0.",
        "gauge",
        u64::from(gauges.draining),
    );
    calls.call_duration_seconds.render(&mut out, "call_duration_seconds", "Connected duration of ended calls.");
    calls.agent_response_latency_ms.render(
        &mut out,
        "agent_response_latency_ms",
        "Per turn: the caller's last speech frame to the agent's first audio frame (the silence the caller hears).",
    );
    calls.llm_inference_time_ms.render(
        &mut out,
        "llm_inference_time_ms",
        "Per LLM request: request sent to last token.",
    );
    calls.tts_latency_ms.render(&mut out, "tts_latency_ms", "Per TTS request: text sent to first audio.");
    sample(
        &mut out,
        "llm_fallback_activations_total",
        "Turns on which the LLM chain switched to its next provider.",
        "counter",
        load(&calls.llm_fallback_activations),
    );
    header(&mut out, "calls_total", "Ended calls by end reason.", "counter");
    for reason in EndReason::ALL {
        let _ = writeln!(out, "calls_total{{reason=\"{}\"}} {}", reason.as_str(), calls.calls_ended(reason));
    }
    header(
        &mut out,
        "call_error_rate",
        "Fraction of the calls ended in the last 5 minutes that failed (0 when none ended).",
        "gauge",
    );
    let _ = writeln!(out, "call_error_rate {:?}", calls.error_rate());
    render_edge(&mut out, edge);
    sample(
        &mut out,
        "golos_shard_input_shed_total",
        "Caller audio frames shed (oldest first) because their shard's input queue was full: the shard is behind.",
        "counter",
        load(&shards.audio_shed),
    );
    out
}

/// The call sockets' limits (docs/runbook.md, "Sockets and queues").
fn render_edge(out: &mut String, edge: &EdgeCounters) {
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let counters: [(&str, &str, &AtomicU64); 5] = [
        (
            "golos_caller_audio_dropped_frames_total",
            "Caller audio messages dropped because the caller sent audio faster than real time beyond a 1 s burst.",
            &edge.caller_audio_dropped_frames,
        ),
        (
            "golos_caller_dtmf_dropped_total",
            "Caller key presses dropped because they came faster than a keypad allows.",
            &edge.caller_dtmf_dropped,
        ),
        (
            "golos_playout_shed_total",
            "Outbound 20 ms frames shed (oldest first) because a call's 10 s playout queue was full.",
            &edge.playout_shed_frames,
        ),
        (
            "golos_ws_oversize_closed_total",
            "Call sockets closed with 1009 for a frame or message over the protocol's limit.",
            &edge.oversize_closed,
        ),
        (
            "golos_ws_start_timeouts_total",
            "Call sockets closed with 1008 because no start came within 5 s.",
            &edge.start_timeouts,
        ),
    ];
    for (name, help, counter) in counters {
        sample(out, name, help, "counter", load(counter));
    }
    header(
        out,
        "golos_ws_connections_refused_total",
        "Call socket upgrades answered 503 by a connection cap, by cap.",
        "counter",
    );
    let _ = writeln!(
        out,
        "golos_ws_connections_refused_total{{cap=\"global\"}} {}",
        load(&edge.connections_refused_global)
    );
    let _ = writeln!(
        out,
        "golos_ws_connections_refused_total{{cap=\"per_ip\"}} {}",
        load(&edge.connections_refused_per_ip)
    );
    sample(
        out,
        "golos_ws_connections",
        "Call sockets open now (started or waiting for start).",
        "gauge",
        load(&edge.connections_open),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_count_matches() {
        let h = Histogram::new(&[1.0, 10.0]);
        for v in [0.5, 1.0, 5.0, 50.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "x_ms", "help");
        let expected = "# HELP x_ms help\n# TYPE x_ms histogram\nx_ms_bucket{le=\"1.0\"} 2\n\
            x_ms_bucket{le=\"10.0\"} 3\nx_ms_bucket{le=\"+Inf\"} 4\nx_ms_sum 56.5\nx_ms_count 4\n";
        assert_eq!(out, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn error_rate_covers_the_last_five_minutes_only() {
        let metrics = CallMetrics::default();
        metrics.call_ended(Duration::from_secs(10), EndReason::Failed);
        metrics.call_ended(Duration::from_secs(10), EndReason::CallerHangup);
        assert!((metrics.error_rate() - 0.5).abs() < f64::EPSILON);
        tokio::time::advance(Duration::from_secs(200)).await;
        metrics.call_ended(Duration::from_secs(10), EndReason::CallerHangup);
        metrics.call_ended(Duration::from_secs(10), EndReason::AgentHangup);
        assert!((metrics.error_rate() - 0.25).abs() < f64::EPSILON);
        // The first two fall out of the window; the failure with them.
        tokio::time::advance(Duration::from_secs(150)).await;
        assert!(metrics.error_rate().abs() < f64::EPSILON);
        assert_eq!(metrics.calls_ended(EndReason::CallerHangup), 2);
        tokio::time::advance(ERROR_RATE_WINDOW).await;
        assert!(metrics.error_rate().abs() < f64::EPSILON, "no calls, no errors");
    }
}
