//! `golos-simulator --config scenario.json --port N`: serves every simulated provider on one port
//! until Ctrl-C or SIGTERM. The first line on stdout is `listening on http://HOST:PORT`, so
//! scripts that pass `--port 0` can read the bound address.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use golos_simulator::{Scenario, Simulator};

#[derive(Debug, Parser)]
#[command(name = "golos-simulator", about = "Local OpenAI/Anthropic/Deepgram/ElevenLabs/Google TTS simulators")]
struct Args {
    /// Scenario JSON (see README.md); without it the WORKLOAD.md defaults are used.
    #[arg(long)]
    config: Option<PathBuf>,
    /// 0 picks a free port.
    #[arg(long, default_value_t = 0)]
    port: u16,
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    host: IpAddr,
    /// Print the effective scenario as JSON and exit (a starting point for a config file).
    #[arg(long)]
    print_scenario: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let scenario = match &args.config {
        Some(path) => match Scenario::from_file(path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("golos-simulator: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => Scenario::default(),
    };
    if args.print_scenario {
        println!("{}", serde_json::to_string_pretty(&scenario).expect("scenario serializes"));
        return ExitCode::SUCCESS;
    }
    let sim = match Simulator::start_on(SocketAddr::new(args.host, args.port), scenario).await {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("golos-simulator: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {}", sim.base_url());
    let _ = writeln!(out, "openai      {}", sim.openai_base_url());
    let _ = writeln!(out, "anthropic   {}", sim.anthropic_base_url());
    let _ = writeln!(out, "deepgram    {}/v1/listen", sim.deepgram_ws_url());
    let _ = writeln!(out, "elevenlabs  {}", sim.elevenlabs_base_url());
    let _ = writeln!(out, "google      {}", sim.google_base_url());
    let _ = out.flush();
    drop(out);
    wait_for_signal().await;
    sim.shutdown().await;
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
