//! `/health`: the JSON shape of the reviews, one entry per dependency; 503 when any fails.

use crate::state::ControlState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use golos_ports::{HealthCheck, PortError};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Health of the service and each dependency.
#[utoipa::path(get, path = "/health", tag = "health", security(()),
    responses((status = 200, description = "healthy", body = Object), (status = 503, description = "a dependency failed", body = Object)))]
pub async fn health(State(state): State<ControlState>) -> (StatusCode, Json<Value>) {
    let results = futures::future::join_all(state.health_checks.iter().map(run_check)).await;
    let mut checks = Map::new();
    let mut healthy = true;
    for (name, result) in results {
        let value = match result {
            Ok(()) => json!("ok"),
            Err(err) => {
                healthy = false;
                tracing::warn!(dependency = name, error = %err, "health check failed");
                json!(format!("error: {err}"))
            }
        };
        checks.insert(name.to_owned(), value);
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

async fn run_check(check: &Arc<dyn HealthCheck>) -> (&'static str, Result<(), PortError>) {
    let outcome = tokio::time::timeout(CHECK_TIMEOUT, check.check())
        .await
        .unwrap_or_else(|_| Err(PortError::unavailable("timed out after 2 s")));
    (check.name(), outcome)
}
