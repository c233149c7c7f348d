//! The `call-events` consumer as an AWS Lambda function. Two triggers:
//! - the `call-events` SQS queue (event source mapping with `ReportBatchItemFailures`): each
//!   record goes through `golos_control::call_events::process_batch`; failed records are
//!   reported back so SQS redelivers only those and, after `maxReceiveCount`, dead-letters them;
//! - an EventBridge schedule: frees the leases of media workers that stopped heartbeating.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (_, state) = golos_bootstrap::lambda::start().await?;
    let state = &state;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move { handle(state, event.payload).await }))
        .await
}

async fn handle(state: &golos_control::ControlState, payload: Value) -> Result<Value, Error> {
    if payload.get("Records").is_some() {
        let event: SqsEvent = serde_json::from_value(payload)?;
        let messages = golos_bootstrap::lambda::sqs_messages(event);
        let failed = golos_control::call_events::process_batch(state, &messages).await;
        let response = golos_bootstrap::lambda::batch_failures(failed.into_iter().map(|(message, _)| message));
        return Ok(serde_json::to_value(response)?);
    }
    if payload.get("source").and_then(Value::as_str) == Some("aws.events") {
        let swept = golos_control::admission::sweep(state).await?;
        return Ok(json!({"swept": swept}));
    }
    Err("unrecognised event: expected an SQS batch or an EventBridge schedule".into())
}
