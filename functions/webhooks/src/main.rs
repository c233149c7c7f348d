//! The `webhooks` consumer as an AWS Lambda function, on the `webhooks` SQS queue (event
//! source mapping with `ReportBatchItemFailures`). Each record goes through
//! `golos_control::webhook_delivery::process_batch`: delivered, queued again with a delay, or
//! dead-lettered, each endpoint on its own. A record reported as failed (a store or the queue
//! was down) comes back after the visibility timeout and, after `maxReceiveCount`, goes to the
//! dead-letter queue.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use golos_ports::QueueMessage;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let settings =
        golos_bootstrap::settings::Settings::from_environment().map_err(|e| format!("configuration: {e:#}"))?;
    golos_telemetry::init(golos_telemetry::LogFormat::Json, settings.telemetry.log_filter.as_deref());
    let state =
        golos_bootstrap::lambda::control_state(&settings).await.map_err(|e| format!("start-up failed: {e:#}"))?;
    let state = &state;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<SqsEvent>| async move { handle(state, event.payload).await },
    ))
    .await
}

async fn handle(state: &golos_control::ControlState, event: SqsEvent) -> Result<SqsBatchResponse, Error> {
    let messages: Vec<QueueMessage> = event
        .records
        .into_iter()
        .map(|record| QueueMessage {
            id: record.message_id.unwrap_or_default(),
            receipt: record.receipt_handle.unwrap_or_default(),
            body: record.body.unwrap_or_default(),
            receive_count: record.attributes.get("ApproximateReceiveCount").and_then(|c| c.parse().ok()).unwrap_or(1),
        })
        .collect();
    let failed = golos_control::webhook_delivery::process_batch(state, &messages).await;
    let mut response = SqsBatchResponse::default();
    for (message, _) in failed {
        let mut failure = BatchItemFailure::default();
        failure.item_identifier.clone_from(&message.id);
        response.batch_item_failures.push(failure);
    }
    Ok(response)
}
