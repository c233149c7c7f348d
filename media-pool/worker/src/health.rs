//! `/health`: the JSON shape of the reviews, one entry per dependency.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use golos_ports::{Clock, HealthCheck};
use serde_json::{json, Map, Value};
use std::sync::Arc;

#[derive(Debug, Clone)]
struct HealthState {
    checks: Arc<Vec<Arc<dyn HealthCheck>>>,
    clock: Arc<dyn Clock>,
}

pub fn router(checks: Vec<Arc<dyn HealthCheck>>, clock: Arc<dyn Clock>) -> Router {
    Router::new().route("/health", get(health)).with_state(HealthState { checks: Arc::new(checks), clock })
}

async fn health(State(state): State<HealthState>) -> (StatusCode, Json<Value>) {
    let results = run_checks(&state.checks).await;
    let mut checks = Map::new();
    let mut healthy = true;
    for (name, result) in results {
        match result {
            Ok(()) => {
                checks.insert(name.to_owned(), json!("ok"));
            }
            Err(err) => {
                healthy = false;
                tracing::warn!(dependency = name, error = %err, "health check failed");
                checks.insert(name.to_owned(), json!(format!("error: {err}")));
            }
        }
    }
    let status = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": if healthy { "healthy" } else { "unhealthy" },
        "version": env!("CARGO_PKG_VERSION"),
        "checks": checks,
        "timestamp": state.clock.now().to_string(),
    });
    (status, Json(body))
}

async fn run_checks(checks: &[Arc<dyn HealthCheck>]) -> Vec<(&'static str, golos_ports::Result<()>)> {
    let mut results = Vec::with_capacity(checks.len());
    for check in checks {
        let outcome = tokio::time::timeout(std::time::Duration::from_secs(2), check.check())
            .await
            .unwrap_or_else(|_| Err(golos_ports::PortError::unavailable("timed out after 2 s")));
        results.push((check.name(), outcome));
    }
    results
}
