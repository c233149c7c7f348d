//! Payment-provider webhooks as an AWS Lambda function behind API Gateway
//! (`/webhooks/payments/*`): YooKassa (address allowlist + confirmation by its API) and
//! HMAC-signed providers. The same handlers `golos serve` mounts locally.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let (_, state) = golos_bootstrap::lambda::start().await?;
    golos_bootstrap::lambda::serve_http(golos_control::payments_router(state)).await
}
