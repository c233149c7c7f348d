//! The lease sweeper as an AWS Lambda function, invoked every minute by an EventBridge
//! schedule (infra/terraform/modules/functions): one `golos_control::admission::sweep` per
//! invocation, the same sweep `golos serve` runs every 10 s. Any event triggers it (the
//! schedule's carries nothing it needs), so an operator can also invoke it by hand.
//! A failed sweep fails the invocation; EventBridge retries it, and the next minute's
//! sweep finds what this one left.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (_, state) = golos_bootstrap::lambda::start().await?;
    let state = &state;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move { handle(state, &event.payload).await }))
        .await
}

async fn handle(state: &golos_control::ControlState, payload: &Value) -> Result<Value, Error> {
    let source = payload.get("source").and_then(Value::as_str).unwrap_or("direct");
    let swept = golos_control::admission::sweep(state).await?;
    tracing::info!(source, swept, "lease sweep finished");
    Ok(json!({"swept": swept}))
}
