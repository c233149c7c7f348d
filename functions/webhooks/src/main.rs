//! The `webhooks` consumer as an AWS Lambda function, on the `webhooks` SQS queue (event
//! source mapping with `ReportBatchItemFailures`). Each record goes through
//! `golos_control::webhook_delivery::process_batch`: delivered, queued again with a delay, or
//! dead-lettered, each endpoint on its own. A record reported as failed (a store or the queue
//! was down) comes back after the visibility timeout and, after `maxReceiveCount`, goes to the
//! dead-letter queue.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (_, state) = golos_bootstrap::lambda::start().await?;
    let state = &state;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<SqsEvent>| async move { handle(state, event.payload).await },
    ))
    .await
}

async fn handle(state: &golos_control::ControlState, event: SqsEvent) -> Result<SqsBatchResponse, Error> {
    let messages = golos_bootstrap::lambda::sqs_messages(event);
    let failed = golos_control::webhook_delivery::process_batch(state, &messages).await;
    Ok(golos_bootstrap::lambda::batch_failures(failed.into_iter().map(|(message, _)| message)))
}
