//! The `call-events` consumer as an AWS Lambda function. Two triggers:
//! - the `call-events` SQS queue (event source mapping with `ReportBatchItemFailures`): each
//!   record goes through `golos_control::call_events::process_batch`; failed records are
//!   reported back so SQS redelivers only those and, after `maxReceiveCount`, dead-letters them;
//! - an EventBridge schedule: frees the leases of media workers that stopped heartbeating.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use golos_ports::QueueMessage;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let settings =
        golos_bootstrap::settings::Settings::from_environment().map_err(|e| format!("configuration: {e:#}"))?;
    // JSON whatever GOLOS_LOG_FORMAT says, as the functions have always logged: their lines
    // are read from CloudWatch, never from a terminal.
    golos_telemetry::init(golos_telemetry::LogFormat::Json, settings.telemetry.log_filter.as_deref());
    let state =
        golos_bootstrap::lambda::control_state(&settings).await.map_err(|e| format!("start-up failed: {e:#}"))?;
    let state = &state;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move { handle(state, event.payload).await }))
        .await
}

async fn handle(state: &golos_control::ControlState, payload: Value) -> Result<Value, Error> {
    if payload.get("Records").is_some() {
        let event: SqsEvent = serde_json::from_value(payload)?;
        let messages: Vec<QueueMessage> = event
            .records
            .into_iter()
            .map(|record| QueueMessage {
                id: record.message_id.unwrap_or_default(),
                receipt: record.receipt_handle.unwrap_or_default(),
                body: record.body.unwrap_or_default(),
                receive_count: record
                    .attributes
                    .get("ApproximateReceiveCount")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1),
            })
            .collect();
        let failed = golos_control::call_events::process_batch(state, &messages).await;
        let mut response = SqsBatchResponse::default();
        for (message, _) in failed {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier.clone_from(&message.id);
            response.batch_item_failures.push(failure);
        }
        return Ok(serde_json::to_value(response)?);
    }
    if payload.get("source").and_then(Value::as_str) == Some("aws.events") {
        let swept = golos_control::admission::sweep(state).await?;
        return Ok(json!({"swept": swept}));
    }
    Err("unrecognised event: expected an SQS batch or an EventBridge schedule".into())
}
