//! `golos-load`: the WORKLOAD benchmark (`bench/WORKLOAD.md`).
//!
//! `golos-load inprocess --calls N [--shards S]` runs N simulated calls in this process on S
//! shards and prints the report; it exits 1 if any turn was lost (the CI smoke test).
//! `--sweep 1,10,100,...` runs each N in a fresh child process of itself, so peak RSS belongs
//! to one run, and prints a markdown table.
//!
//! `golos-load ws --url ws://HOST:PORT/ws/calls --agent ag_… --token … --calls N` plays the
//! same callers against a running `golos serve` over the golos WebSocket protocol (its providers
//! pointed at `golos-simulator`; `scripts/bench-ws` sets all of that up). `--worker-pid` adds the
//! worker's CPU and memory. It exits 1 if any turn was lost. `--sweep 1,10,50,...` runs each N
//! in turn against the same worker, stops at the first N whose p99 added latency is above
//! `--max-p99-ms` (20) or that lost a turn, and names the largest N that held; it exits 1 only
//! if none did.
//!
//! `golos-load sip --sip 127.0.0.1:5060 --number 7XXXXXXXXXX --calls N` places the same
//! callers as SIP calls from 127.0.0.1 (a trunk's `source_networks` must hold it) to a number
//! routed to such an agent, G.711 A-law over RTP (`scripts/bench-sip` sets all of that up);
//! `--sweep` as for ws, with a 10 ms p99 target (`--max-p99-ms`) for its verdict; it goes up
//! until a point is above `--stop-p99-ms` (200) or loses a turn.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use golos_load::load::{run_inprocess, LoadConfig, Report, TABLE_HEADER};
use golos_load::sip_load::{self, run_sip, SipLoadConfig, SipReport, Uac, SIP_TABLE_HEADER};
use golos_load::ws_load::{run_ws, warm_up, worker_rss_kib, WsConfig, WsReport, WS_TABLE_HEADER};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "golos-load", about = "The voice-agent WORKLOAD benchmark")]
struct Cli {
    #[command(subcommand)]
    command: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Simulated STT, LLM and TTS in this process, driven by the shards (the number comparable
    /// with the reference implementation).
    Inprocess(Args),
    /// Drive a running `golos serve` over its WebSocket audio protocol, with its providers
    /// pointed at `golos-simulator` (the realistic number).
    Ws(WsArgs),
    /// Place SIP calls (G.711 A-law over RTP) from 127.0.0.1 to a running `golos serve`'s SIP
    /// edge, to a number routed to an agent on `golos-simulator` (the phone number).
    Sip(SipArgs),
}

#[derive(Debug, clap::Args)]
struct SipArgs {
    /// golos's SIP address (GOLOS_SIP_LISTEN), e.g. 127.0.0.1:5060.
    #[arg(long)]
    sip: SocketAddr,
    /// The dialled number as the trunk sends it (the Request-URI's user part).
    #[arg(long)]
    number: String,
    /// Concurrent calls.
    #[arg(long, default_value_t = 10)]
    calls: usize,
    /// Run each of these N in turn and print a markdown table.
    #[arg(long, value_delimiter = ',')]
    sweep: Vec<usize>,
    /// Turns per call (5 in the WORKLOAD).
    #[arg(long, default_value_t = 5)]
    turns: u32,
    /// Calls start evenly over this many seconds (10 in the WORKLOAD).
    #[arg(long, default_value_t = 10.0)]
    spread_s: f64,
    /// The `golos` process: its CPU (/proc/P/stat) and RSS (/proc/P/status) are reported.
    #[arg(long)]
    worker_pid: Option<u32>,
    /// The `golos-simulator` process, for its CPU.
    #[arg(long)]
    sim_pid: Option<u32>,
    /// The sweep's target: stop above this p99 added latency.
    #[arg(long, default_value_t = 10.0)]
    max_p99_ms: f64,
    /// Stop going up the sweep after a point above this p99 (WORKLOAD §4: 200 ms, a late
    /// turn), or with a lost turn or an unanswered call.
    #[arg(long, default_value_t = 200.0)]
    stop_p99_ms: f64,
    /// Skip the throw-away warm-up call.
    #[arg(long)]
    no_warm_up: bool,
    /// Load-generator threads (tokio workers).
    #[arg(long, default_value_t = default_shards())]
    threads: usize,
    /// Print the report as one JSON line.
    #[arg(long)]
    json: bool,
    /// Print each call's setup and each turn's first audio to stderr.
    #[arg(long)]
    trace: bool,
}

#[derive(Debug, clap::Args)]
struct WsArgs {
    /// The worker's golos protocol endpoint, e.g. ws://127.0.0.1:8080/ws/calls.
    #[arg(long)]
    url: String,
    /// The agent to call (its providers must point at the simulator).
    #[arg(long)]
    agent: String,
    /// An API key or a call token for the agent (never printed).
    #[arg(long, env = "GOLOS_LOAD_TOKEN", hide_env_values = true)]
    token: String,
    /// Concurrent calls.
    #[arg(long, default_value_t = 10)]
    calls: usize,
    /// Run each of these N in turn and print a markdown table.
    #[arg(long, value_delimiter = ',')]
    sweep: Vec<usize>,
    /// Turns per call (5 in the WORKLOAD).
    #[arg(long, default_value_t = 5)]
    turns: u32,
    /// Calls start evenly over this many seconds (10 in the WORKLOAD).
    #[arg(long, default_value_t = 10.0)]
    spread_s: f64,
    /// The `golos` process: its CPU (/proc/P/stat) and RSS (/proc/P/status) are reported.
    #[arg(long)]
    worker_pid: Option<u32>,
    /// The `golos-simulator` process, for its CPU.
    #[arg(long)]
    sim_pid: Option<u32>,
    /// The sweep's target: stop above this p99 added latency.
    #[arg(long, default_value_t = 20.0)]
    max_p99_ms: f64,
    /// Skip the throw-away warm-up call.
    #[arg(long)]
    no_warm_up: bool,
    /// Load-generator threads (tokio workers).
    #[arg(long, default_value_t = default_shards())]
    threads: usize,
    /// Print the report as one JSON line.
    #[arg(long)]
    json: bool,
    /// Print the server's text messages and each turn's first audio to stderr.
    #[arg(long)]
    trace: bool,
}

#[derive(Debug, clap::Args)]
struct Args {
    /// Concurrent calls.
    #[arg(long, default_value_t = 20)]
    calls: usize,
    /// Shards (one per core).
    #[arg(long, default_value_t = default_shards())]
    shards: usize,
    /// Run each of these N in a child process and print a markdown table.
    #[arg(long, value_delimiter = ',')]
    sweep: Vec<usize>,
    /// Keep going up the sweep after a saturated run.
    #[arg(long)]
    no_stop: bool,
    /// Turns per call (5 in the WORKLOAD; fewer for a quick look).
    #[arg(long, default_value_t = 5)]
    turns: u32,
    /// Print the report as one JSON line (used by --sweep).
    #[arg(long)]
    json: bool,
}

fn default_shards() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

fn main() -> anyhow::Result<()> {
    let args = match Cli::parse().command {
        Mode::Inprocess(args) => args,
        Mode::Ws(args) => return ws(&args),
        Mode::Sip(args) => return sip(&args),
    };
    if !args.sweep.is_empty() {
        return sweep(&args);
    }
    let config = LoadConfig { turns: args.turns, ..LoadConfig::workload(args.calls, args.shards) };
    let report = run_inprocess(&config);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    if report.turns_lost > 0 {
        bail!("{} of {} turns lost", report.turns_lost, report.turns_expected);
    }
    Ok(())
}

fn print_report(r: &Report) {
    println!("golos-load inprocess: {} calls on {} shards, {:.1} s", r.calls, r.shards, r.wall_s);
    println!(
        "added latency ms: p50 {:.3}  p95 {:.3}  p99 {:.3}  max {:.3}  (>50 ms: {}, >200 ms: {})",
        r.p50_ms, r.p95_ms, r.p99_ms, r.max_ms, r.above_50ms, r.above_200ms
    );
    println!(
        "turns: {} expected, {} answered, {} lost, {} late",
        r.turns_expected, r.turns_answered, r.turns_lost, r.above_200ms
    );
    println!("input lag ms: p99 {:.3}  max {:.3}", r.input_lag_p99_ms, r.input_lag_max_ms);
    println!(
        "diagnostics p99 ms: final -> LLM request {:.3}, token 1 -> first TTS request {:.3}",
        r.final_to_llm_p99_ms, r.token_to_tts_p99_ms
    );
    println!("CPU: {:.1} % of one core over a {:.1} s steady window", r.cpu_percent, r.steady_window_s);
    println!(
        "RSS: baseline {} KiB, peak {} KiB, {:.1} KiB per call",
        r.baseline_rss_kib, r.peak_rss_kib, r.rss_per_call_kib
    );
    println!(
        "shards: {} wake-ups with work, {:.1} call steps per wake-up, busy {:.1} % of one core, longest batch {:.3} ms",
        r.batches, r.steps_per_batch, r.shard_busy_percent, r.batch_max_ms
    );
    println!(
        "timed wake-ups: {}, late by {:.3} ms on average, {:.3} ms at worst, {} over 1 ms",
        r.timer_wakes, r.wake_late_mean_ms, r.wake_late_max_ms, r.wakes_late_over_1ms
    );
    println!("load average {:.2} -> {:.2}", r.loadavg_start, r.loadavg_end);
}

fn sweep(args: &Args) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("own executable")?;
    println!("{TABLE_HEADER}");
    for &calls in &args.sweep {
        let output = Command::new(&exe)
            .args(["inprocess", "--json", "--calls", &calls.to_string(), "--shards", &args.shards.to_string()])
            .args(["--turns", &args.turns.to_string()])
            .output()
            .context("run a sweep point")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout.lines().last().unwrap_or_default();
        let report: Report =
            serde_json::from_str(line).with_context(|| format!("N = {calls}: no report in {stdout:?}"))?;
        println!("{}", report.table_row());
        if report.saturated() && !args.no_stop {
            println!("\nN = {calls} is saturated (WORKLOAD §4); stopping.");
            break;
        }
    }
    Ok(())
}

fn ws(args: &WsArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let mut config = WsConfig::workload(args.url.clone(), args.agent.clone(), args.token.clone(), args.calls);
    config.turns = args.turns;
    config.spread = Duration::from_secs_f64(args.spread_s.max(0.0));
    config.worker_pid = args.worker_pid;
    config.sim_pid = args.sim_pid;
    config.trace = args.trace;
    runtime.block_on(async {
        if !args.no_warm_up {
            warm_up(&config).await.map_err(|e| anyhow::anyhow!("warm-up call failed: {e}"))?;
        }
        // The idle baseline for RSS per call: after the warm-up, before any measured call.
        let baseline = worker_rss_kib(&config);
        if args.sweep.is_empty() {
            let report = run_ws(&config, baseline).await;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print_ws_report(&report);
            }
            if report.turns_lost > 0 {
                bail!("{} of {} turns lost", report.turns_lost, report.turns_expected);
            }
            return Ok(());
        }
        println!("{WS_TABLE_HEADER}");
        let mut held = None;
        for &calls in &args.sweep {
            let report = run_ws(&WsConfig { calls, ..config.clone() }, baseline).await;
            println!("{}", report.table_row());
            if !report.holds(args.max_p99_ms) {
                println!(
                    "\nN = {calls}: p99 {:.2} ms, {} turns lost, {} calls not started{}; stopping.",
                    report.p99_ms,
                    report.turns_lost,
                    report.calls_failed,
                    errors_suffix(&report)
                );
                break;
            }
            held = Some(calls);
            // Let the worker settle (calls ended, sockets closed) before the next point.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        match held {
            Some(n) => {
                println!("\nlargest N with p99 <= {} ms and no lost turn: {n}", args.max_p99_ms);
                Ok(())
            }
            None => bail!("no N held p99 <= {} ms without lost turns", args.max_p99_ms),
        }
    })
}

fn errors_suffix(r: &WsReport) -> String {
    errors_list(&r.errors)
}

fn errors_list(errors: &std::collections::BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return String::new();
    }
    let list: Vec<String> = errors.iter().map(|(e, n)| format!("{e} ×{n}")).collect();
    format!("; errors: {}", list.join(", "))
}

fn sip(args: &SipArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let mut config = SipLoadConfig::workload(args.sip, args.number.clone(), args.calls);
    config.turns = args.turns;
    config.spread = Duration::from_secs_f64(args.spread_s.max(0.0));
    config.worker_pid = args.worker_pid;
    config.sim_pid = args.sim_pid;
    config.trace = args.trace;
    runtime.block_on(async {
        let uac = Arc::new(Uac::bind().await.context("bind the SIP client")?);
        if !args.no_warm_up {
            sip_load::warm_up(&uac, &config).await.map_err(|e| anyhow::anyhow!("warm-up call failed: {e}"))?;
        }
        let baseline = sip_load::worker_rss_kib(&config);
        if args.sweep.is_empty() {
            let report = run_sip(&uac, &config, baseline).await;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print_sip_report(&report);
            }
            if report.turns_lost > 0 || report.calls_failed > 0 {
                bail!(
                    "{} of {} turns lost, {} calls not answered{}",
                    report.turns_lost,
                    report.turns_expected,
                    report.calls_failed,
                    errors_list(&report.errors)
                );
            }
            return Ok(());
        }
        println!("{SIP_TABLE_HEADER}");
        let (mut held, mut whole) = (None, None);
        for &calls in &args.sweep {
            let report = run_sip(&uac, &SipLoadConfig { calls, ..config.clone() }, baseline).await;
            println!("{}", report.table_row());
            if report.holds(args.max_p99_ms) {
                held = Some(calls);
            }
            if !report.holds(args.stop_p99_ms) {
                println!(
                    "\nN = {calls}: p99 {:.2} ms, {} turns lost, {} calls not answered{}; stopping.",
                    report.p99_ms,
                    report.turns_lost,
                    report.calls_failed,
                    errors_list(&report.errors)
                );
                break;
            }
            whole = Some((calls, report.p99_ms));
            // Let the worker settle (calls ended, ports free) before the next point.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        if let Some((n, p99)) = whole {
            println!("\nlargest N with p99 <= {} ms and no lost turn: {n} (p99 {p99:.2} ms)", args.stop_p99_ms);
        }
        match held {
            Some(n) => {
                println!("largest N with p99 <= {} ms and no lost turn: {n}", args.max_p99_ms);
                Ok(())
            }
            None => bail!("no N held p99 <= {} ms without lost turns", args.max_p99_ms),
        }
    })
}

fn print_sip_report(r: &SipReport) {
    println!("golos-load sip: {} calls, {:.1} s", r.calls, r.wall_s);
    println!(
        "added latency ms (client: end of utterance + 300 ms endpointing -> first RTP of the answer, - 300 ms): p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}  min {:.2}  (>50 ms: {}, late >200 ms: {})",
        r.p50_ms, r.p95_ms, r.p99_ms, r.max_ms, r.min_ms, r.above_50ms, r.late
    );
    println!(
        "turns: {} expected, {} answered, {} lost, {} late, {} not 192,000 bytes; calls not answered: {}",
        r.turns_expected, r.turns_answered, r.turns_lost, r.late, r.odd_turns, r.calls_failed
    );
    println!("call setup (INVITE -> 200 OK) ms: p50 {:.1}  p99 {:.1}", r.setup_p50_ms, r.setup_p99_ms);
    println!("input lag (this generator's sends) ms: p99 {:.2}  max {:.2}", r.input_lag_p99_ms, r.input_lag_max_ms);
    println!(
        "CPU % of one core over a {:.1} s steady window: worker {:.1} ({:.2} ms per call-second), simulator {:.1}, load generator {:.1}",
        r.steady_window_s, r.worker_cpu_percent, r.worker_cpu_ms_per_call_s, r.sim_cpu_percent, r.client_cpu_percent
    );
    println!(
        "worker RSS: idle baseline {} KiB, peak {} KiB, {:.1} KiB per call",
        r.baseline_rss_kib, r.peak_rss_kib, r.rss_per_call_kib
    );
    println!("load average {:.2} -> {:.2}", r.loadavg_start, r.loadavg_end);
    if !r.errors.is_empty() {
        println!("{}", errors_list(&r.errors).trim_start_matches("; "));
    }
}

fn print_ws_report(r: &WsReport) {
    println!("golos-load ws: {} calls, {:.1} s", r.calls, r.wall_s);
    println!(
        "added latency ms (client: end of utterance + 300 ms endpointing -> first audio, - 300 ms): p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}  min {:.2}  (>50 ms: {}, late >200 ms: {})",
        r.p50_ms, r.p95_ms, r.p99_ms, r.max_ms, r.min_ms, r.above_50ms, r.late
    );
    println!(
        "added latency ms (server turn_metrics added_ms, {} turns): p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}",
        r.server_turns, r.server_p50_ms, r.server_p95_ms, r.server_p99_ms, r.server_max_ms
    );
    println!(
        "worker-measured, p50 / p99 ms: LLM TTFT {:.2} / {:.2} (simulator 200), TTS first audio {:.2} / {:.2} (simulator 100), end of utterance {:.2} / {:.2} (endpointing 300)",
        r.server_ttft_p50_ms,
        r.server_ttft_p99_ms,
        r.server_tts_first_audio_p50_ms,
        r.server_tts_first_audio_p99_ms,
        r.server_end_of_utterance_p50_ms,
        r.server_end_of_utterance_p99_ms
    );
    println!("diagnostic: user final received -> first audio - 300 ms, p99 {:.2} ms", r.final_to_audio_p99_ms);
    println!(
        "turns: {} expected, {} answered, {} lost, {} late, {} not 192,000 bytes; calls not started: {}",
        r.turns_expected, r.turns_answered, r.turns_lost, r.late, r.odd_turns, r.calls_failed
    );
    println!("input lag (this generator's sends) ms: p99 {:.2}  max {:.2}", r.input_lag_p99_ms, r.input_lag_max_ms);
    println!(
        "CPU % of one core over a {:.1} s steady window: worker {:.1}, simulator {:.1}, load generator {:.1}",
        r.steady_window_s, r.worker_cpu_percent, r.sim_cpu_percent, r.client_cpu_percent
    );
    println!(
        "worker RSS: idle baseline {} KiB, peak {} KiB, {:.1} KiB per call",
        r.baseline_rss_kib, r.peak_rss_kib, r.rss_per_call_kib
    );
    println!("load average {:.2} -> {:.2}", r.loadavg_start, r.loadavg_end);
    if !r.errors.is_empty() {
        println!("{}", errors_suffix(r).trim_start_matches("; "));
    }
}
