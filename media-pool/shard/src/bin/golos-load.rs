//! `golos-load`: the WORKLOAD benchmark (`bench/WORKLOAD.md`).
//!
//! `golos-load inprocess --calls N [--shards S]` runs N simulated calls in this process on S
//! shards and prints the report; it exits 1 if any turn was lost (the CI smoke test).
//! `--sweep 1,10,100,...` runs each N in a fresh child process of itself, so peak RSS belongs
//! to one run, and prints a markdown table.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use golos_shard::load::{run_inprocess, LoadConfig, Report, TABLE_HEADER};
use std::process::Command;

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
    let Mode::Inprocess(args) = Cli::parse().command;
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
