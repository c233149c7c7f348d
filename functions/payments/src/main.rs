//! Payment-provider webhooks as an AWS Lambda function behind API Gateway
//! (`/webhooks/payments/*`): YooKassa (address allowlist + confirmation by its API) and
//! HMAC-signed providers. The same handlers `golos serve` mounts locally.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let settings =
        golos_bootstrap::settings::Settings::from_environment().map_err(|e| format!("configuration: {e:#}"))?;
    // JSON whatever GOLOS_LOG_FORMAT says, as the functions have always logged: their lines
    // are read from CloudWatch, never from a terminal.
    golos_telemetry::init(golos_telemetry::LogFormat::Json, settings.telemetry.log_filter.as_deref());
    let state =
        golos_bootstrap::lambda::control_state(&settings).await.map_err(|e| format!("start-up failed: {e:#}"))?;
    golos_bootstrap::lambda::serve_http(golos_control::payments_router(state)).await
}
