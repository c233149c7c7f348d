//! The control-plane API as an AWS Lambda function: the same axum router as `golos serve`,
//! behind API Gateway (HTTP API v2 or REST v1 events) through `lambda_http`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let settings =
        golos_bootstrap::settings::Settings::from_environment().map_err(|e| format!("configuration: {e:#}"))?;
    // JSON whatever GOLOS_LOG_FORMAT says, as the functions have always logged: their lines
    // are read from CloudWatch, never from a terminal.
    golos_telemetry::init(golos_telemetry::LogFormat::Json, settings.telemetry.log_filter.as_deref());
    let state =
        golos_bootstrap::lambda::control_state(&settings).await.map_err(|e| format!("start-up failed: {e:#}"))?;
    golos_bootstrap::lambda::serve_http(golos_control::router(state)).await
}
