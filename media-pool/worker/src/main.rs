//! `golos`: the media worker and, in embedded mode, the whole platform in one process.
//!
//! Thin by design: it parses configuration, wires adapters to ports, and serves. Everything
//! with behaviour lives in the library crates.

use anyhow::Context;
use clap::{Parser, Subcommand};
use golos_bootstrap::settings::{Env, Flags, Settings};
use std::net::SocketAddr;

#[derive(Debug, Parser)]
#[command(name = "golos", version, about = "Self-hostable AI voice agents")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the platform (the default).
    Serve(Flags),
    /// Place a demo call: start the embedded platform, create a café FAQ agent, and let an
    /// espeak-ng caller ask it two questions over the WebSocket transport.
    Demo(golos::demo::DemoArgs),
    /// Print the OpenAPI document of the control-plane API.
    Openapi,
    /// Recompute every organisation's balance from its ledger; exit 1 on any drift.
    Reconcile(Flags),
    /// Create the platform's generated secrets that do not exist yet (API-key pepper,
    /// call-token key, operator key); never replaces one. Run once per AWS deployment.
    InitSecrets(Flags),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = Cli::parse().command.unwrap_or_else(|| Command::Serve(Flags::default()));
    if let Command::Openapi = command {
        // A document of the code, the same under any configuration, so none can stop it.
        println!("{}", serde_json::to_string_pretty(&golos_control::openapi())?);
        return Ok(());
    }
    let flags = match &command {
        Command::Serve(flags) | Command::Reconcile(flags) | Command::InitSecrets(flags) => flags.clone(),
        Command::Demo(_) | Command::Openapi => Flags::default(),
    };
    // The one read of the configuration; what follows is handed its typed pieces.
    let settings = Settings::load(&flags, &Env::from_process())?;
    golos_telemetry::init(settings.telemetry.format(), settings.telemetry.log_filter.as_deref());
    match command {
        Command::Serve(_) => Box::pin(serve(settings)).await,
        Command::Reconcile(_) => {
            let state = golos_bootstrap::control_state(&settings.backend()?, settings.control_config()?).await?;
            let report = golos_control::reconcile::reconcile(&state).await?;
            println!("checked {} organisations, {} with drift", report.orgs_checked, report.drifts.len());
            for drift in &report.drifts {
                println!("  {}: stored {} but entries sum to {}", drift.org, drift.stored, drift.recomputed);
            }
            println!("checked {} ended calls, {} not billed once", report.calls_checked, report.unbilled_calls.len());
            for call in &report.unbilled_calls {
                let show = |k: Option<golos_domain::Kopecks>| k.map_or_else(|| "none".to_owned(), |k| k.to_string());
                println!("  {} {}: cost {} but debited {}", call.org, call.call, show(call.cost), show(call.debited));
            }
            println!("{} expired leases nobody billed", report.unswept_leases.len());
            for lease in &report.unswept_leases {
                println!("  {} {}: expired at {}", lease.org_id, lease.call_id, lease.expires_at);
            }
            if report.drifts.is_empty() && report.unbilled_calls.is_empty() && report.unswept_leases.is_empty() {
                Ok(())
            } else {
                std::process::exit(1)
            }
        }
        Command::InitSecrets(_) => {
            let created = golos_bootstrap::init_secrets(&settings.backend()?).await?;
            if created.is_empty() {
                println!("every platform secret exists already; nothing was changed");
            }
            for name in created {
                println!("created secret {name}");
            }
            Ok(())
        }
        Command::Demo(args) => golos::demo::run(args).await,
        Command::Openapi => unreachable!("answered before the settings are read"),
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let (server, limits) = (&settings.server, &settings.worker);
    let state = golos_bootstrap::control_state(&settings.backend()?, settings.control_config()?).await?;
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
    // Customers' webhooks: delivered, retried with per-message delays, dead-lettered. New
    // events wake a consumer at once (Queue::wait_for_send); the poll finds retries that came
    // due (their delays are whole seconds) and what other processes queued.
    let deliverer = tokio::spawn(golos_control::webhook_delivery::run_consumer(
        state.clone(),
        std::time::Duration::from_millis(100),
        stop(),
    ));
    let sweep_every = std::time::Duration::from_millis(state.config.sweep_interval_ms);
    let sweeper = tokio::spawn(golos_control::admission::run_sweeper(state.clone(), sweep_every, stop()));
    let worker = golos::Worker::new(std::sync::Arc::clone(&state.metrics));
    // Names this process in `call.shutdown_initiated` (its event ids derive from it).
    let worker_id = format!("wrk_{}", state.ids.new_suffix());
    let live = golos::calls::LiveCalls::new(
        state.clone(),
        worker.clone(),
        limits.shards.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)),
        golos::calls::LiveConfig {
            clips_dir: limits.clips_dir.clone(),
            max_connections: limits.ws_max_connections,
            max_connections_per_ip: limits.ws_max_connections_per_ip,
            max_twilio_connections_per_ip: limits.twilio_max_connections_per_ip,
            aws_region: settings.aws.region.clone(),
            ..golos::calls::LiveConfig::for_lease_ttl(std::time::Duration::from_millis(
                u64::try_from(state.config.lease_ttl_ms).unwrap_or(30_000),
            ))
        },
    );
    // On ECS: keep scale-in and deployments away from this task while it has live calls.
    let protection = match &limits.ecs_agent_uri {
        Some(agent_uri) => Some(tokio::spawn(golos::scale_in::run(
            golos::scale_in::AgentClient::new(agent_uri)?,
            limits.scale_in_protection_minutes,
            std::sync::Arc::clone(&worker.scale_in),
            worker.registry.subscribe_live(),
            stop_background.subscribe(),
        ))),
        None => None,
    };
    let sip = match (settings.sip.listen, settings.sip.media_address()?) {
        (Some(listen), Some(media_address)) => {
            let ports = settings.sip.rtp_ports;
            let config = golos::calls::sip::SipEdgeConfig {
                listen,
                rtp_ports: ports.first..=ports.last,
                media_address,
                breaker: breaker_config(&settings.sip),
                media_timeout: settings.sip.media_timeout()?,
            };
            let edge = Box::pin(live.start_sip(config)).await.with_context(|| format!("binding SIP on {listen}"))?;
            tracing::info!(addr = %edge.local_addr(), rtp_ports = %ports, %media_address, "taking phone calls over SIP");
            Some(edge)
        }
        _ => None,
    };
    let ops = if server.ops_listen.is_some() {
        golos::OpsRoutes::OwnListener
    } else {
        golos::OpsRoutes::PublicWithOperatorKey
    };
    let app = golos::app(state.clone(), worker.clone(), Some(live), ops);
    let listener =
        tokio::net::TcpListener::bind(server.listen).await.with_context(|| format!("binding {}", server.listen))?;
    let addr = listener.local_addr()?;
    // The operator listener lives as long as the process: `/ready` must say `draining` to the
    // orchestrator until the very end.
    if let Some(ops_addr) = server.ops_listen {
        let ops_listener =
            tokio::net::TcpListener::bind(ops_addr).await.with_context(|| format!("binding {ops_addr}"))?;
        tracing::info!(addr = %ops_listener.local_addr()?, "operator routes (/ready, /metrics) on their own listener");
        let ops_app = golos::router(worker.clone());
        tokio::spawn(async move {
            if let Err(error) = axum::serve(ops_listener, ops_app).await {
                tracing::error!(%error, "the operator listener failed");
            }
        });
    }
    let shutdown = shutdown_signal()?;
    // Scripts and black-box tests read this line to find a port-0 server.
    println!("golos listening on http://{addr}");
    tracing::info!(%addr, backend = ?server.backend, worker = %worker_id, "serving");
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    // HTTP goes on serving through the drain: `/ready` must answer 503 and live calls on
    // WebSockets must keep their connections until they end.
    // Live calls write small messages (20 ms of audio, events) one after another: with
    // Nagle's algorithm each waited for the client's ACK of the previous one, adding 12–17 ms
    // to the first audio of every turn (docs/performance.md).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY on a connection");
        }
    });
    let mut server = tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async {
                let _ = http_stopped.await;
            })
            .await
    });
    tokio::select! {
        () = shutdown => {}
        result = &mut server => {
            result.context("the HTTP server panicked")?.context("the HTTP server failed")?;
            anyhow::bail!("the HTTP server stopped by itself");
        }
    }
    if let Some(sip) = &sip {
        sip.set_draining(true);
    }
    let drain = golos::lifecycle::DrainConfig {
        drain_for: std::time::Duration::from_secs(limits.drain_secs),
        ..golos::lifecycle::DrainConfig::default()
    };
    let report = golos::lifecycle::drain(&worker.registry, &state, &worker_id, &drain).await;
    tracing::info!(?report, "drained");
    let _ = stop_http.send(());
    if let Some(sip) = &sip {
        sip.shutdown();
    }
    // Every call has ended; connections still open get a moment to close, then we go anyway.
    match tokio::time::timeout(std::time::Duration::from_secs(5), server).await {
        Ok(Ok(result)) => result.context("the HTTP server failed")?,
        Ok(Err(join)) => return Err(join).context("the HTTP server panicked"),
        Err(_) => tracing::warn!("HTTP connections still open after 5 s; closing them"),
    }
    let _ = stop_background.send(true);
    let _ = tokio::join!(consumer, deliverer, sweeper);
    if let Some(protection) = protection {
        // Off already when the last call ended; this waits for a retry if that failed.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), protection).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Hourly reconciliation of balances and calls in the embedded deployment (in AWS the
/// `golos-reconciliation` Lambda runs the same `reconcile` on a schedule). Drift and unbilled
/// calls are logged as alerts and kept as metrics (`reconcile` sets them).
async fn reconcile_periodically(state: golos_control::ControlState) {
    let mut every_hour = tokio::time::interval(std::time::Duration::from_secs(3_600));
    loop {
        every_hour.tick().await;
        if let Err(err) = golos_control::reconcile::reconcile(&state).await {
            tracing::warn!(error = %err, "reconciliation could not run");
        }
    }
}

/// The trunk circuit breaker's timings from the settings (checked there: all positive).
fn breaker_config(sip: &golos_bootstrap::settings::SipSettings) -> golos_sip::breaker::BreakerConfig {
    golos_sip::breaker::BreakerConfig {
        failures_to_open: sip.breaker_failures_to_open,
        open_for: std::time::Duration::from_millis(sip.breaker_open_ms),
        probes_to_close: sip.breaker_probes_to_close,
        probe_every: std::time::Duration::from_millis(sip.probe_every_ms),
    }
}

/// SIGTERM or SIGINT (Ctrl-C). The handlers are installed when this is called, not when the
/// future is first polled: a signal that arrives between the "listening" line and the first
/// poll must not take the default action (killing the process mid-call).
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
        }
    })
}

#[cfg(test)]
mod tests {
    /// golos-bootstrap sits below this crate, so its defaults repeat these numbers.
    #[test]
    fn the_settings_defaults_are_the_workers() {
        let worker = golos_bootstrap::settings::WorkerSettings::default();
        assert_eq!(worker.ws_max_connections, golos::calls::DEFAULT_MAX_CONNECTIONS);
        assert_eq!(worker.ws_max_connections_per_ip, golos::calls::DEFAULT_MAX_CONNECTIONS_PER_IP);
        assert_eq!(worker.twilio_max_connections_per_ip, golos::calls::DEFAULT_MAX_TWILIO_CONNECTIONS_PER_IP);
        let sip = golos_bootstrap::settings::SipSettings::default();
        assert_eq!(super::breaker_config(&sip), golos_sip::breaker::BreakerConfig::default());
        assert_eq!(sip.media_timeout().unwrap(), golos::calls::sip::DEFAULT_MEDIA_TIMEOUT);
    }
}
