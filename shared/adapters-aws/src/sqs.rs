//! SQS queues: `<prefix>-<name>` with a redrive policy to `<prefix>-<name>-dlq`.

use crate::error::{sdk_error, AwsError};
use async_trait::async_trait;
use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName};
use aws_sdk_sqs::Client;
use golos_ports::{DeadLetter, PortError, Queue, QueueConfig, QueueMessage, Result};
use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

const MAX_DELAY_SECS: u64 = 900;
const MAX_VISIBILITY_SECS: u64 = 43_200;

#[derive(Debug, Clone)]
pub(crate) struct SqsQueue {
    client: Client,
    config: QueueConfig,
    url: String,
    dlq_url: String,
}

fn ceil_secs(d: Duration, max: u64) -> i32 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.min(max) as i32
}

/// SQS queue names allow letters, digits, `-` and `_`, at most 80 characters.
fn queue_name(prefix: &str, name: &str, suffix: &str) -> std::result::Result<String, AwsError> {
    let full = format!("{prefix}-{name}{suffix}");
    if full.len() > 80 || !full.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(AwsError::Config(format!("invalid SQS queue name {full:?}")));
    }
    Ok(full)
}

/// The URL of queue `name`, creating it with `attributes` if it does not exist. An existing
/// queue is used as it is: in production Terraform owns the queues, and the functions' IAM
/// policy allows neither `CreateQueue` nor `SetQueueAttributes`.
async fn ensure_queue(
    client: &Client,
    name: &str,
    attributes: &[(QueueAttributeName, String)],
) -> std::result::Result<(String, bool), AwsError> {
    let lookup = client.get_queue_url().queue_name(name).send().await;
    match lookup {
        Ok(out) => {
            if let Some(url) = out.queue_url {
                return Ok((url, false));
            }
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(aws_sdk_sqs::operation::get_queue_url::GetQueueUrlError::is_queue_does_not_exist)
                || e.code().is_some_and(|c| c.contains("NonExistentQueue") || c.contains("QueueDoesNotExist")) => {}
        Err(e) => return Err(AwsError::call("GetQueueUrl", sdk_error("GetQueueUrl", &e))),
    }
    let mut request = client.create_queue().queue_name(name);
    for (k, v) in attributes {
        request = request.attributes(k.clone(), v);
    }
    match request.send().await {
        Ok(out) => out
            .queue_url
            .map(|url| (url, true))
            .ok_or_else(|| AwsError::Config(format!("CreateQueue {name} returned no URL"))),
        // Created concurrently by another instance with other attributes: use that one.
        Err(e) if matches!(e.code(), Some("QueueAlreadyExists" | "QueueNameExists")) => {
            let url = client
                .get_queue_url()
                .queue_name(name)
                .send()
                .await
                .map_err(|e| AwsError::call("GetQueueUrl", sdk_error("GetQueueUrl", &e)))?
                .queue_url
                .ok_or_else(|| AwsError::Config(format!("GetQueueUrl {name} returned no URL")))?;
            Ok((url, false))
        }
        Err(e) => Err(AwsError::call("CreateQueue", sdk_error("CreateQueue", &e))),
    }
}

async fn queue_attribute(
    client: &Client,
    url: &str,
    name: QueueAttributeName,
) -> std::result::Result<Option<String>, AwsError> {
    Ok(client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(name.clone())
        .send()
        .await
        .map_err(|e| AwsError::call("GetQueueAttributes", sdk_error("GetQueueAttributes", &e)))?
        .attributes
        .and_then(|mut a| a.remove(&name)))
}

impl SqsQueue {
    pub(crate) async fn create(
        client: Client,
        prefix: &str,
        config: QueueConfig,
    ) -> std::result::Result<Self, AwsError> {
        let name = queue_name(prefix, &config.name, "")?;
        let dlq_name = queue_name(prefix, &config.name, "-dlq")?;
        let (dlq_url, _) =
            ensure_queue(&client, &dlq_name, &[(QueueAttributeName::MessageRetentionPeriod, "1209600".to_owned())])
                .await?;
        let dlq_arn = queue_attribute(&client, &dlq_url, QueueAttributeName::QueueArn)
            .await?
            .ok_or_else(|| AwsError::Config(format!("queue {dlq_name} has no ARN")))?;
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": config.max_receives.max(1),
        })
        .to_string();
        let (url, created) = ensure_queue(
            &client,
            &name,
            &[
                (QueueAttributeName::RedrivePolicy, redrive),
                (
                    QueueAttributeName::VisibilityTimeout,
                    ceil_secs(config.default_visibility, MAX_VISIBILITY_SECS).to_string(),
                ),
            ],
        )
        .await?;
        if !created {
            let stored = queue_attribute(&client, &url, QueueAttributeName::RedrivePolicy).await?;
            let max_receives = stored
                .as_deref()
                .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
                .and_then(|p| p.get("maxReceiveCount").and_then(|m| m.as_u64().or_else(|| m.as_str()?.parse().ok())));
            if max_receives != Some(u64::from(config.max_receives.max(1))) {
                tracing::warn!(
                    queue = %name,
                    expected = config.max_receives,
                    stored = ?max_receives,
                    "existing queue has another redrive policy; using it as it is"
                );
            }
        }
        Ok(Self { client, config, url, dlq_url })
    }

    async fn receive_from(
        &self,
        url: &str,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<aws_sdk_sqs::types::Message>> {
        let out = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .visibility_timeout(ceil_secs(visibility, MAX_VISIBILITY_SECS))
            .wait_time_seconds(0)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| sdk_error("ReceiveMessage", &e))?;
        Ok(out.messages.unwrap_or_default())
    }

    async fn send_to(&self, url: &str, body: &str, delay: Duration) -> Result<String> {
        let out = self
            .client
            .send_message()
            .queue_url(url)
            .message_body(body)
            .delay_seconds(ceil_secs(delay, MAX_DELAY_SECS))
            .send()
            .await
            .map_err(|e| sdk_error("SendMessage", &e))?;
        out.message_id.ok_or_else(|| PortError::unavailable("SendMessage returned no id"))
    }

    async fn delete_from(&self, url: &str, receipt: &str) -> Result<()> {
        match self.client.delete_message().queue_url(url).receipt_handle(receipt).send().await {
            Ok(_) => Ok(()),
            // An already deleted message (or a stale handle of one) is not an error.
            Err(e)
                if matches!(
                    e.code(),
                    Some(
                        "ReceiptHandleIsInvalid"
                            | "InvalidParameterValue"
                            | "AWS.SimpleQueueService.ReceiptHandleIsInvalid"
                    )
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(sdk_error("DeleteMessage", &e)),
        }
    }
}

/// How long the DLQ messages a `redrive_ids` search looked at stay hidden if it cannot hand
/// them back.
const REDRIVE_SEARCH_VISIBILITY: Duration = Duration::from_secs(30);
/// Rounds in a row without an unseen message that end the search: one short-poll receive
/// samples only some of SQS's servers, so one empty answer is not proof of an empty queue.
const REDRIVE_FRUITLESS_ROUNDS: u32 = 3;
/// Receives in one search at most (10 messages each).
const REDRIVE_MAX_ROUNDS: u32 = 1_000;

impl SqsQueue {
    /// Moves the DLQ messages with `wanted` ids (removed from it as they are found) to the
    /// queue; receipts of the other messages it received are pushed to `others`.
    async fn redrive_search(&self, wanted: &mut HashSet<&str>, others: &mut Vec<String>) -> Result<usize> {
        let mut seen = HashSet::new();
        let (mut moved, mut fruitless) = (0, 0);
        for _ in 0..REDRIVE_MAX_ROUNDS {
            if wanted.is_empty() || fruitless >= REDRIVE_FRUITLESS_ROUNDS {
                break;
            }
            let batch = self.receive_from(&self.dlq_url, 10, REDRIVE_SEARCH_VISIBILITY).await?;
            let mut fresh = false;
            for m in batch {
                let (Some(id), Some(receipt)) = (m.message_id, m.receipt_handle) else {
                    continue;
                };
                fresh |= seen.insert(id.clone());
                if wanted.remove(id.as_str()) {
                    self.send_to(&self.url, m.body.as_deref().unwrap_or_default(), Duration::ZERO).await?;
                    self.delete_from(&self.dlq_url, &receipt).await?;
                    moved += 1;
                } else {
                    others.push(receipt);
                }
            }
            fruitless = if fresh { 0 } else { fruitless + 1 };
        }
        Ok(moved)
    }

    /// Makes these DLQ messages visible again at once. Best effort: one left hidden comes
    /// back by itself after `REDRIVE_SEARCH_VISIBILITY`.
    async fn release(&self, receipts: &[String]) {
        for chunk in receipts.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, receipt)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .visibility_timeout(0)
                        .build()
                })
                .collect::<std::result::Result<Vec<_>, _>>();
            let sent = match entries {
                Ok(entries) => self
                    .client
                    .change_message_visibility_batch()
                    .queue_url(&self.dlq_url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map(|out| out.failed.len())
                    .map_err(|e| sdk_error("ChangeMessageVisibilityBatch", &e).to_string()),
                Err(e) => Err(e.to_string()),
            };
            match sent {
                Ok(0) => {}
                Ok(failed) => tracing::warn!(failed, "dead letters left hidden after a redrive search"),
                Err(error) => tracing::warn!(%error, "dead letters left hidden after a redrive search"),
            }
        }
    }
}

fn receive_count(message: &aws_sdk_sqs::types::Message) -> u32 {
    message
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

#[async_trait]
impl Queue for SqsQueue {
    fn config(&self) -> &QueueConfig {
        &self.config
    }

    async fn send(&self, body: &str, delay: Duration) -> Result<String> {
        self.send_to(&self.url, body, delay).await
    }

    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<QueueMessage>> {
        let messages = self.receive_from(&self.url, max, visibility).await?;
        Ok(messages
            .into_iter()
            .filter_map(|m| {
                let receive_count = receive_count(&m);
                Some(QueueMessage {
                    id: m.message_id?,
                    receipt: m.receipt_handle?,
                    body: m.body.unwrap_or_default(),
                    receive_count,
                })
            })
            .collect())
    }

    async fn delete(&self, receipt: &str) -> Result<()> {
        self.delete_from(&self.url, receipt).await
    }

    async fn change_visibility(&self, receipt: &str, visibility: Duration) -> Result<()> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(ceil_secs(visibility, MAX_VISIBILITY_SECS))
            .send()
            .await
            .map_err(|e| match e.code() {
                // The delivery is over: deleted, or received again under a newer receipt.
                Some(
                    "ReceiptHandleIsInvalid"
                    | "MessageNotInflight"
                    | "AWS.SimpleQueueService.MessageNotInflight"
                    | "AWS.SimpleQueueService.ReceiptHandleIsInvalid",
                ) => PortError::not_found("message in flight under this receipt"),
                _ => sdk_error("ChangeMessageVisibility", &e),
            })?;
        Ok(())
    }

    /// `receive_count` is the DLQ's `ApproximateReceiveCount`: SQS keeps the count a message
    /// had when it was dead-lettered, but every look (a receive with visibility 0) adds to it.
    async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>> {
        let max = max.max(1);
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        let mut held = Vec::new();
        // Each round hides what it received, so the next one reaches further (a receive with
        // visibility 0 returns the same few messages again); all are handed back at the end.
        // Rounds that bring nothing new end the search: one receive samples only some servers.
        let mut fruitless = 0;
        while out.len() < max && fruitless < 3 {
            let batch =
                match self.receive_from(&self.dlq_url, (max - out.len()).min(10), REDRIVE_SEARCH_VISIBILITY).await {
                    Ok(batch) => batch,
                    Err(error) => {
                        self.release(&held).await;
                        return Err(error);
                    }
                };
            let mut fresh = false;
            for m in batch {
                let receive_count = receive_count(&m);
                held.extend(m.receipt_handle.clone());
                let Some(id) = m.message_id else { continue };
                if seen.insert(id.clone()) {
                    fresh = true;
                    out.push(DeadLetter { id, body: m.body.unwrap_or_default(), receive_count });
                }
            }
            fruitless = if fresh { 0 } else { fruitless + 1 };
        }
        self.release(&held).await;
        Ok(out)
    }

    async fn redrive(&self, max: usize) -> Result<usize> {
        let mut moved = 0;
        while moved < max {
            let batch = self.receive_from(&self.dlq_url, max - moved, Duration::from_secs(30)).await?;
            if batch.is_empty() {
                break;
            }
            for m in batch {
                let (Some(receipt), Some(body)) = (m.receipt_handle, m.body) else {
                    continue;
                };
                self.send_to(&self.url, &body, Duration::ZERO).await?;
                self.delete_from(&self.dlq_url, &receipt).await?;
                moved += 1;
            }
        }
        Ok(moved)
    }

    async fn dead_letter(&self, body: &str) -> Result<String> {
        self.send_to(&self.dlq_url, body, Duration::ZERO).await
    }

    /// Searches the DLQ: receives rounds of up to 10 (hidden for `REDRIVE_SEARCH_VISIBILITY`,
    /// so each round draws others) until every id is found or rounds stop bringing unseen
    /// messages; the named ones are sent to the queue and deleted, the others handed back at
    /// once (visibility 0) so they stay inspectable.
    async fn redrive_ids(&self, ids: &[String]) -> Result<usize> {
        let mut wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
        if wanted.is_empty() {
            return Ok(0);
        }
        let mut others = Vec::new();
        let searched = self.redrive_search(&mut wanted, &mut others).await;
        self.release(&others).await;
        searched
    }

    async fn depth(&self) -> Result<u64> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| sdk_error("GetQueueAttributes", &e))?;
        let attrs = out.attributes.unwrap_or_default();
        let get = |name: &QueueAttributeName| -> u64 { attrs.get(name).and_then(|v| v.parse().ok()).unwrap_or(0) };
        Ok(get(&QueueAttributeName::ApproximateNumberOfMessages)
            + get(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            + get(&QueueAttributeName::ApproximateNumberOfMessagesDelayed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_up_and_clamp() {
        assert_eq!(ceil_secs(Duration::ZERO, MAX_DELAY_SECS), 0);
        assert_eq!(ceil_secs(Duration::from_millis(1), MAX_DELAY_SECS), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1_500), MAX_DELAY_SECS), 2);
        assert_eq!(ceil_secs(Duration::from_secs(3_600), MAX_DELAY_SECS), 900);
    }

    #[test]
    fn queue_names_are_checked() {
        assert_eq!(queue_name("golos", "webhooks", "-dlq").unwrap(), "golos-webhooks-dlq");
        assert!(queue_name("golos", "bad name", "").is_err());
        assert!(queue_name("golos", &"x".repeat(80), "").is_err());
    }
}
