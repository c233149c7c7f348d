//! Payment-provider webhooks as an AWS Lambda function behind API Gateway
//! (`/webhooks/payments/*`): YooKassa (address allowlist + confirmation by its API) and
//! HMAC-signed providers. The same handlers `golos serve` mounts locally.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    golos_telemetry::init(golos_telemetry::LogFormat::Json);
    let config = golos_bootstrap::control_config_from_env(false).map_err(|e| format!("configuration: {e:#}"))?;
    let state = golos_bootstrap::control_state(&golos_bootstrap::Backend::Aws, config)
        .await
        .map_err(|e| format!("start-up failed: {e:#}"))?;
    golos_bootstrap::lambda::serve_http(golos_control::payments_router(state)).await
}
