//! One in-process WORKLOAD run (`bench/WORKLOAD.md` §4) on a [`ShardPool`], and what it
//! measured. The `golos-load` binary is the command line around it.

use crate::sim::{Recorder, SimCall, SimShared};
use golos_call::CallConfig;
use golos_shard::{ShardPool, ShardStats};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub calls: usize,
    pub shards: usize,
    /// Turns per call (5).
    pub turns: u32,
    /// Calls start evenly over this (10 s).
    pub spread: Duration,
    /// Calls not done by t0 + cap are abandoned; their missing turns are lost (115 s).
    pub cap: Duration,
    /// Run the 1-turn throw-away call before the baseline.
    pub warm_up: bool,
}

impl LoadConfig {
    pub fn workload(calls: usize, shards: usize) -> Self {
        Self { calls, shards, turns: 5, spread: Duration::from_secs(10), cap: Duration::from_secs(115), warm_up: true }
    }
}

/// Everything one run reports. Latencies in ms.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub calls: usize,
    pub shards: usize,
    pub turns_expected: u64,
    pub turns_answered: u64,
    pub turns_lost: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub above_50ms: u64,
    /// Late turns (added latency above 200 ms).
    pub above_200ms: u64,
    pub input_lag_p99_ms: f64,
    pub input_lag_max_ms: f64,
    /// Diagnostics (§3), from the engine's `TurnMetrics`: final → LLM request, first token →
    /// first TTS request, p99.
    pub final_to_llm_p99_ms: f64,
    pub token_to_tts_p99_ms: f64,
    /// Process CPU (user + sys) over the steady window, % of one core.
    pub cpu_percent: f64,
    pub steady_window_s: f64,
    pub baseline_rss_kib: u64,
    pub peak_rss_kib: u64,
    pub rss_per_call_kib: f64,
    pub wall_s: f64,
    /// Shard wake-ups with work, and call steps per such wake-up.
    pub batches: u64,
    pub steps_per_batch: f64,
    /// /proc/loadavg (1 min) at the start and the end of the run: other load on the machine.
    /// The shards' timed wake-ups: mean and worst lateness against their deadline (the OS's
    /// share), and how many were over 1 ms late.
    pub wake_late_mean_ms: f64,
    pub wake_late_max_ms: f64,
    pub wakes_late_over_1ms: u64,
    pub timer_wakes: u64,
    /// Time the shards spent in batches, % of one core over the whole run, and the longest batch.
    pub shard_busy_percent: f64,
    pub batch_max_ms: f64,
    pub loadavg_start: f64,
    pub loadavg_end: f64,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    cpu: Duration,
    rss_kib: u64,
}

/// Process CPU time, user + system, from /proc/self/stat (clock ticks of 1/100 s, Linux's
/// USER_HZ), so no libc call is needed.
pub fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After the command name: state is field 3, utime 14, stime 15 (1-based).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// A field of /proc/self/status in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    line[field.len() + 1..].split_whitespace().next()?.parse().ok()
}

pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

fn sample() -> Sample {
    Sample { at: Instant::now(), cpu: process_cpu().unwrap_or_default(), rss_kib: status_kib("VmRSS").unwrap_or(0) }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1_000.0
}

/// The engine configuration of a WORKLOAD call: the English defaults, no greeting (the caller
/// speaks first).
pub fn workload_call_config() -> Arc<CallConfig> {
    Arc::new(CallConfig { greeting: None, ..CallConfig::english() })
}

fn ended(recorders: &[Arc<Mutex<Recorder>>]) -> u64 {
    recorders.iter().map(|r| r.lock().expect("recorder").calls_ended).sum()
}

/// Runs the WORKLOAD at `config.calls` calls and measures it. Takes about a minute.
pub fn run_inprocess(config: &LoadConfig) -> Report {
    let loadavg_start = loadavg();
    let call_config = workload_call_config();
    let pool = ShardPool::new(config.shards);
    let shards = pool.len();

    if config.warm_up {
        let recorder = Recorder::shared();
        let shared = SimShared::new(1, Arc::clone(&recorder));
        pool.add_call_on(0, Arc::clone(&call_config), Box::new(SimCall::new(shared, u64::MAX)));
        let until = Instant::now() + Duration::from_secs(30);
        while ended(std::slice::from_ref(&recorder)) == 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // The measuring apparatus exists before the baseline, so it is not charged to the calls.
    let recorders: Vec<_> = (0..shards).map(|_| Recorder::shared()).collect();
    let shared: Vec<_> = recorders.iter().map(|r| SimShared::new(config.turns, Arc::clone(r))).collect();
    let baseline_rss_kib = status_kib("VmRSS").unwrap_or(0);

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut samples = Vec::with_capacity(512);
            let start = Instant::now();
            let mut k = 0u32;
            while !stop.load(Ordering::Relaxed) {
                samples.push(sample());
                k += 1;
                std::thread::sleep((start + Duration::from_millis(500) * k).saturating_duration_since(Instant::now()));
            }
            samples.push(sample());
            samples
        })
    };

    let t0 = Instant::now() + Duration::from_millis(10);
    let n = config.calls.max(1);
    let mut last_start = t0;
    for i in 0..n {
        let start = t0 + config.spread.mul_f64(i as f64 / n as f64);
        std::thread::sleep(start.saturating_duration_since(Instant::now()));
        let sink = SimCall::new(Arc::clone(&shared[i % shards]), i as u64);
        pool.add_call_on(i % shards, Arc::clone(&call_config), Box::new(sink));
        last_start = start;
    }
    let deadline = t0 + config.cap;
    while ended(&recorders) < n as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let end = Instant::now();
    let stats: Vec<ShardStats> = pool.shutdown();
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().expect("sampler");

    let mut total = Recorder::default();
    for recorder in &recorders {
        total.merge(&recorder.lock().expect("recorder"));
    }

    // Steady window: all calls up, from the last call's start + 1 s to the first call's end.
    let window_start = last_start + Duration::from_secs(1);
    let window_end = total.first_call_end.unwrap_or(end).min(end);
    let (from, to) =
        if window_end > window_start + Duration::from_secs(2) { (window_start, window_end) } else { (t0, end) };
    let first = samples.iter().find(|s| s.at >= from).copied().unwrap_or(samples[0]);
    let last = samples.iter().rev().find(|s| s.at <= to).copied().unwrap_or(samples[samples.len() - 1]);
    let wall = last.at.saturating_duration_since(first.at);
    let cpu_percent = if wall.is_zero() {
        f64::NAN
    } else {
        100.0 * last.cpu.saturating_sub(first.cpu).as_secs_f64() / wall.as_secs_f64()
    };
    let peak_rss_kib = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0).max(status_kib("VmHWM").unwrap_or(0));

    let batches: u64 = stats.iter().map(|s| s.batches).sum();
    let steps: u64 = stats.iter().map(|s| s.steps).sum();
    let turns_expected = n as u64 * u64::from(config.turns);
    let timer_wakes: u64 = stats.iter().map(|s| s.timer_wakes).sum();
    let late_total: Duration = stats.iter().map(|s| s.wake_late_total).sum();
    let busy: Duration = stats.iter().map(|s| s.busy).sum();
    Report {
        calls: n,
        shards,
        turns_expected,
        turns_answered: total.turns_answered,
        turns_lost: total.turns_lost.max(turns_expected.saturating_sub(total.turns_answered)),
        p50_ms: ms(total.added_us.value_at_quantile(0.50)),
        p95_ms: ms(total.added_us.value_at_quantile(0.95)),
        p99_ms: ms(total.added_us.value_at_quantile(0.99)),
        max_ms: total.added_max.as_secs_f64() * 1_000.0,
        above_50ms: total.above_50ms,
        above_200ms: total.above_200ms,
        input_lag_p99_ms: ms(total.input_lag_us.value_at_quantile(0.99)),
        input_lag_max_ms: ms(total.input_lag_us.max()),
        final_to_llm_p99_ms: ms(total.final_to_llm_us.value_at_quantile(0.99)),
        token_to_tts_p99_ms: ms(total.token_to_tts_us.value_at_quantile(0.99)),
        cpu_percent,
        steady_window_s: wall.as_secs_f64(),
        baseline_rss_kib,
        peak_rss_kib,
        rss_per_call_kib: peak_rss_kib.saturating_sub(baseline_rss_kib) as f64 / n as f64,
        wall_s: end.saturating_duration_since(t0).as_secs_f64(),
        batches,
        steps_per_batch: if batches == 0 { 0.0 } else { steps as f64 / batches as f64 },
        wake_late_mean_ms: if timer_wakes == 0 { 0.0 } else { late_total.as_secs_f64() * 1e3 / timer_wakes as f64 },
        wake_late_max_ms: stats.iter().map(|s| s.wake_late_max).max().unwrap_or_default().as_secs_f64() * 1e3,
        wakes_late_over_1ms: stats.iter().map(|s| s.wakes_late_over_1ms).sum(),
        timer_wakes,
        shard_busy_percent: 100.0 * busy.as_secs_f64() / end.saturating_duration_since(t0).as_secs_f64(),
        batch_max_ms: stats.iter().map(|s| s.batch_max).max().unwrap_or_default().as_secs_f64() * 1e3,
        loadavg_start,
        loadavg_end: loadavg(),
    }
}

/// The sweep table's header.
pub const TABLE_HEADER: &str = "| N | shards | p50 ms | p95 ms | p99 ms | max ms | >50 ms | >200 ms | lost | input lag p99 ms | CPU % of one core | peak RSS MiB | KiB/call | steps/wake | wakes >1 ms late | load avg |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|";

impl Report {
    pub fn table_row(&self) -> String {
        format!(
            "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} | {} | {:.3} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:.2}→{:.2} |",
            self.calls,
            self.shards,
            self.p50_ms,
            self.p95_ms,
            self.p99_ms,
            self.max_ms,
            self.above_50ms,
            self.above_200ms,
            self.turns_lost,
            self.input_lag_p99_ms,
            self.cpu_percent,
            self.peak_rss_kib as f64 / 1024.0,
            self.rss_per_call_kib,
            self.steps_per_batch,
            self.wakes_late_over_1ms,
            self.loadavg_start,
            self.loadavg_end,
        )
    }

    /// Saturated in the WORKLOAD's sense (§4): stop going up.
    pub fn saturated(&self) -> bool {
        self.p99_ms > 200.0
            || self.input_lag_p99_ms > 50.0
            || self.turns_lost > 0
            || self.cpu_percent >= 95.0 * self.shards as f64
    }
}
