//! The control-plane API as an AWS Lambda function: the same axum router as `golos serve`,
//! behind API Gateway (HTTP API v2 or REST v1 events) through `lambda_http`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    golos_telemetry::init(golos_telemetry::LogFormat::Json);
    let config = golos_bootstrap::control_config_from_env(false).map_err(|e| format!("configuration: {e:#}"))?;
    let state = golos_bootstrap::control_state(&golos_bootstrap::Backend::Aws, config)
        .await
        .map_err(|e| format!("start-up failed: {e:#}"))?;
    golos_bootstrap::lambda::serve_http(golos_control::router(state)).await
}
