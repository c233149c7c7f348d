//! What the load generators over a real transport (`golos-load ws`, `golos-load sip`) measure
//! besides latency: CPU of the worker, the simulator and this process from `/proc/<pid>/stat`,
//! the worker's RSS from `/proc/<pid>/status`, sampled every 0.5 s on a thread of its own, and
//! reduced over the WORKLOAD's steady window (§4: from the last call's start + 1 s to the first
//! call's end, when all N calls are up).

use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `utime + stime` of a process from `/proc/<pid>/stat` (`None`: this process), in USER_HZ
/// ticks of 10 ms.
pub fn proc_cpu(pid: Option<u32>) -> Option<Duration> {
    let path = pid.map_or_else(|| "/proc/self/stat".to_owned(), |p| format!("/proc/{p}/stat"));
    parse_stat_cpu(&std::fs::read_to_string(path).ok()?)
}

/// utime and stime are fields 14 and 15 (1-based); the command name before them may hold
/// spaces, so counting starts after its closing parenthesis.
pub fn parse_stat_cpu(stat: &str) -> Option<Duration> {
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    parse_status_kib(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?, field)
}

pub fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    line[field.len() + 1..].split_whitespace().next()?.parse().ok()
}

/// CPU used between two samples, as % of one core.
pub fn cpu_percent(cpu_from: Duration, cpu_to: Duration, wall: Duration) -> f64 {
    if wall.is_zero() {
        return f64::NAN;
    }
    100.0 * cpu_to.saturating_sub(cpu_from).as_secs_f64() / wall.as_secs_f64()
}

/// (peak − idle baseline) / N.
pub fn rss_per_call_kib(peak_kib: u64, baseline_kib: u64, calls: usize) -> f64 {
    peak_kib.saturating_sub(baseline_kib) as f64 / calls.max(1) as f64
}

/// Call `i` of `n` starts at `t0 + spread·i/n` (§4).
pub fn start_offset(spread: Duration, i: usize, n: usize) -> Duration {
    spread.mul_f64(i as f64 / n.max(1) as f64)
}

/// Latencies are recorded in µs, from 1 µs to 10 minutes.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

/// Milliseconds from `from` to `to` (0 if `to` is earlier).
pub fn ms_since(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64() * 1e3
}

/// A process's VmRSS in KiB now (0 without a pid or a readable /proc).
pub fn rss_kib(pid: Option<u32>) -> u64 {
    pid.and_then(|p| proc_status_kib(p, "VmRSS")).unwrap_or(0)
}

pub fn ms(us: u64) -> f64 {
    us as f64 / 1_000.0
}

pub fn us_of_ms(v: f64) -> u64 {
    (v.max(0.0) * 1_000.0).round() as u64
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    worker_cpu: Option<Duration>,
    worker_rss: Option<u64>,
    sim_cpu: Option<Duration>,
    own_cpu: Option<Duration>,
}

fn sample(worker: Option<u32>, sim: Option<u32>) -> Sample {
    Sample {
        at: Instant::now(),
        worker_cpu: worker.and_then(|p| proc_cpu(Some(p))),
        worker_rss: worker.and_then(|p| proc_status_kib(p, "VmRSS")),
        sim_cpu: sim.and_then(|p| proc_cpu(Some(p))),
        own_cpu: proc_cpu(None),
    }
}

/// Samples the processes every 0.5 s until [`Sampler::finish`].
#[derive(Debug)]
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Sample>>,
}

/// CPU (% of one core) over the steady window and the worker's peak RSS; NaN for a process
/// that was not given.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub worker_cpu_percent: f64,
    pub sim_cpu_percent: f64,
    pub client_cpu_percent: f64,
    pub window_s: f64,
    pub peak_rss_kib: u64,
}

impl Sampler {
    pub fn start(worker: Option<u32>, sim: Option<u32>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::with_capacity(512);
            let start = Instant::now();
            let mut k = 0u32;
            while !flag.load(Ordering::Relaxed) {
                samples.push(sample(worker, sim));
                k += 1;
                std::thread::sleep((start + Duration::from_millis(500) * k).saturating_duration_since(Instant::now()));
            }
            samples.push(sample(worker, sim));
            samples
        });
        Self { stop, thread }
    }

    /// Stops sampling and reduces over `[from, to]`, or over `[t0, end]` when that window is
    /// under 2 s (a run too short to have one).
    pub fn finish(self, from: Instant, to: Instant, t0: Instant, end: Instant) -> Usage {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self.thread.join().expect("sampler");
        let (from, to) = if to > from + Duration::from_secs(2) { (from, to) } else { (t0, end) };
        let first = samples.iter().find(|s| s.at >= from).copied().unwrap_or(samples[0]);
        let last = samples.iter().rev().find(|s| s.at <= to).copied().unwrap_or(samples[samples.len() - 1]);
        let wall = last.at.saturating_duration_since(first.at);
        let pct = |get: fn(&Sample) -> Option<Duration>| match (get(&first), get(&last)) {
            (Some(a), Some(b)) => cpu_percent(a, b, wall),
            _ => f64::NAN,
        };
        Usage {
            worker_cpu_percent: pct(|s| s.worker_cpu),
            sim_cpu_percent: pct(|s| s.sim_cpu),
            client_cpu_percent: pct(|s| s.own_cpu),
            window_s: wall.as_secs_f64(),
            peak_rss_kib: samples.iter().filter_map(|s| s.worker_rss).max().unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_from_proc_stat() {
        // A command name with spaces and parentheses; utime 250, stime 50 ticks.
        let stat = "4242 (golos (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_stat_cpu(stat), Some(Duration::from_secs(3)));
        assert_eq!(parse_stat_cpu("garbage"), None);
    }

    #[test]
    fn rss_from_proc_status() {
        let status = "Name:\tgolos\nVmHWM:\t   90000 kB\nVmRSS:\t   81234 kB\nRssAnon:\t 1 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(81_234));
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(90_000));
        assert_eq!(parse_status_kib(status, "Vm"), None);
    }

    #[test]
    fn cpu_percent_and_memory_per_call() {
        let p = cpu_percent(Duration::from_secs(10), Duration::from_secs(13), Duration::from_secs(12));
        assert!((p - 25.0).abs() < 1e-9);
        assert!(cpu_percent(Duration::ZERO, Duration::ZERO, Duration::ZERO).is_nan());
        assert!((rss_per_call_kib(60_000, 50_000, 100) - 100.0).abs() < 1e-9);
        // Memory given back below the baseline counts as zero, not as a wrapped number.
        assert!(rss_per_call_kib(40_000, 50_000, 100).abs() < 1e-9);
    }

    #[test]
    fn calls_spread_evenly_over_ten_seconds() {
        let spread = Duration::from_secs(10);
        assert_eq!(start_offset(spread, 0, 1), Duration::ZERO);
        assert_eq!(start_offset(spread, 5, 10), Duration::from_secs(5));
        assert_eq!(start_offset(spread, 99, 100), Duration::from_millis(9_900));
    }
}
