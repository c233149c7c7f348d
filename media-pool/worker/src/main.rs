//! `golos`: the media worker and, in embedded mode, the whole platform in one process.
//!
//! Thin by design: it parses configuration, wires adapters to ports, and serves. Everything
//! with behaviour lives in the library crates.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "golos", version, about = "Self-hostable AI voice agents")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the platform (the default).
    Serve(ServeArgs),
    /// Print the OpenAPI document of the control-plane API.
    Openapi,
    /// Recompute every organisation's balance from its ledger; exit 1 on any drift.
    Reconcile(ServeArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// SQLite, a local key file and secret files under --data-dir: no cloud account needed.
    Local,
    /// DynamoDB, SQS, KMS and Secrets Manager, configured by GOLOS_* and AWS_* variables.
    Aws,
}

#[derive(Debug, Clone, Parser)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (printed at start).
    #[arg(long, env = "GOLOS_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Where the embedded backend keeps its database, key file and secrets.
    #[arg(long, env = "GOLOS_DATA_DIR", default_value = ".golos")]
    pub data_dir: PathBuf,
    #[arg(long, env = "GOLOS_BACKEND", value_enum, default_value_t = Backend::Local)]
    pub backend: Backend,
    /// Take the client address from X-Forwarded-For (only behind a trusted proxy).
    #[arg(long, env = "GOLOS_TRUST_FORWARDED_FOR", default_value_t = false)]
    pub trust_forwarded_for: bool,
}

impl Default for ServeArgs {
    fn default() -> Self {
        Self::parse_from(["serve"])
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    golos_telemetry::init(golos_telemetry::LogFormat::from_env());
    let cli = Cli::parse();
    match cli.command.unwrap_or_else(|| Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => serve(args).await,
        Command::Reconcile(args) => {
            let config = golos_bootstrap::control_config_from_env(args.trust_forwarded_for)?;
            let state = golos_bootstrap::control_state(&backend_of(&args), config).await?;
            let report = golos_control::reconcile::reconcile_all(&state.stores).await?;
            println!("checked {} organisations, {} with drift", report.orgs_checked, report.drifts.len());
            for drift in &report.drifts {
                println!("  {}: stored {} but entries sum to {}", drift.org, drift.stored, drift.recomputed);
            }
            if report.drifts.is_empty() {
                Ok(())
            } else {
                std::process::exit(1)
            }
        }
        Command::Openapi => {
            println!("{}", serde_json::to_string_pretty(&golos_control::openapi())?);
            Ok(())
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let backend = backend_of(&args);
    let config = golos_bootstrap::control_config_from_env(args.trust_forwarded_for)?;
    let state = golos_bootstrap::control_state(&backend, config).await?;
    let (stop_background, stopped) = tokio::sync::watch::channel(false);
    let stop = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    tokio::spawn(reconcile_periodically(state.clone()));
    // The same handlers as the Lambda functions, driven from the embedded queue and a timer.
    let consumer = tokio::spawn(golos_control::call_events::run_consumer(
        state.clone(),
        state.queues.call_events.clone(),
        std::time::Duration::from_millis(50),
        stop(),
    ));
    let sweeper =
        tokio::spawn(golos_control::admission::run_sweeper(state.clone(), std::time::Duration::from_secs(10), stop()));
    let app = golos_control::router(state);
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    // Scripts and black-box tests read this line to find a port-0 server.
    println!("golos listening on http://{addr}");
    tracing::info!(%addr, backend = ?args.backend, "serving");
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    let _ = stop_background.send(true);
    let _ = tokio::join!(consumer, sweeper);
    tracing::info!("stopped");
    Ok(())
}

fn backend_of(args: &ServeArgs) -> golos_bootstrap::Backend {
    match args.backend {
        Backend::Local => golos_bootstrap::Backend::Local { data_dir: args.data_dir.clone() },
        Backend::Aws => golos_bootstrap::Backend::Aws,
    }
}

/// Hourly ledger reconciliation in the embedded deployment (in AWS a scheduled Lambda runs
/// the same `reconcile_all`). Drift is logged as an alert and kept as a metric.
async fn reconcile_periodically(state: golos_control::ControlState) {
    let mut every_hour = tokio::time::interval(std::time::Duration::from_secs(3_600));
    loop {
        every_hour.tick().await;
        match golos_control::reconcile::reconcile_all(&state.stores).await {
            Ok(report) => {
                state.metrics.ledger_drift_orgs.store(report.drifts.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
            Err(err) => tracing::warn!(error = %err, "ledger reconciliation could not run"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
