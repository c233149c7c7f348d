//! The control-plane API as an AWS Lambda function: the same axum router as `golos serve`,
//! behind API Gateway (HTTP API v2 or REST v1 events) through `lambda_http`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let (_, state) = golos_bootstrap::lambda::start().await?;
    golos_bootstrap::lambda::serve_http(golos_control::router(state)).await
}
