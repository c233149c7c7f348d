//! Webhook endpoints: `ORG#o / WEBHOOK#<id>`, the record as JSON with its version as a number
//! attribute (so updates are conditional on it); the org's count lives on `ORG#o / COUNTERS`
//! (`webhook_endpoints`), moved in the same transaction as the create or delete.
//!
//! The deliveries log: `WHD#<endpoint> / <created_at ms, 13 digits>#<delivery id>`, so an
//! endpoint's attempts are one partition in time order; `org_id`, `outcome`, `expires_at`
//! (ms) for the filters, the record as JSON in `body`, and `ttl` (s) for DynamoDB to delete
//! it, lazily: reads filter expired items themselves.

use crate::directory::{org_pk, COUNTERS};
use crate::dynamo::{
    get_json, get_n, get_s, key, n, names, s, to_json, tx_delete, tx_put, tx_update, values, Item, Table, TxOutcome,
    UpdateSpec,
};
use crate::error::build_error;
use crate::error::sdk_error;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{PutRequest, Select, WriteRequest};
use golos_domain::{OrgId, Timestamp, WebhookEndpointId};
use golos_ports::{
    DeliveryOutcome, Page, PageRequest, PortError, Result, WebhookDelivery, WebhookDeliveryStore, WebhookEndpoint,
    WebhookEndpointStore,
};
use std::collections::HashMap;
use std::time::Duration;

const ENDPOINT_PREFIX: &str = "WEBHOOK#";

#[derive(Debug, Clone)]
pub(crate) struct DynamoWebhookEndpoints(pub Table);

fn endpoint_sk(id: &WebhookEndpointId) -> String {
    format!("{ENDPOINT_PREFIX}{id}")
}

fn endpoint_item(endpoint: &WebhookEndpoint) -> Result<Item> {
    let mut item = key(org_pk(&endpoint.org_id), endpoint_sk(&endpoint.id));
    item.extend([("version".to_owned(), n(endpoint.version)), ("body".to_owned(), s(to_json(endpoint)?))]);
    Ok(item)
}

#[async_trait]
impl WebhookEndpointStore for DynamoWebhookEndpoints {
    async fn create(&self, endpoint: &WebhookEndpoint, max_per_org: u32) -> Result<()> {
        let what = || format!("webhook endpoint {}", endpoint.id);
        let quota = PortError::QuotaExceeded { quota: "max_webhook_endpoints", limit: u64::from(max_per_org) };
        if max_per_org == 0 {
            // `attribute_not_exists(count)` would let a first endpoint past a zero limit.
            return Err(quota);
        }
        let table = &*self.0.name;
        let outcome = self
            .0
            .transact(vec![
                tx_put(table, endpoint_item(endpoint)?, Some("attribute_not_exists(pk)"), None, None)?,
                tx_update(
                    table,
                    UpdateSpec {
                        key: key(org_pk(&endpoint.org_id), COUNTERS),
                        update: "ADD #webhook_endpoints :one",
                        condition: Some("attribute_not_exists(#webhook_endpoints) OR #webhook_endpoints < :max"),
                        names: names(&["webhook_endpoints"]),
                        values: values([(":one", n(1)), (":max", n(max_per_org))]),
                    },
                )?,
            ])
            .await?;
        if outcome.failed(0) {
            return Err(PortError::AlreadyExists { what: what() });
        }
        if outcome.failed(1) {
            return Err(quota);
        }
        Ok(())
    }

    async fn get(&self, org: &OrgId, id: &WebhookEndpointId) -> Result<Option<WebhookEndpoint>> {
        self.0.get(org_pk(org), endpoint_sk(id)).await?.map(|item| get_json(&item, "body")).transpose()
    }

    async fn update(&self, endpoint: &WebhookEndpoint) -> Result<u64> {
        let next = WebhookEndpoint { version: endpoint.version + 1, ..endpoint.clone() };
        let condition = "attribute_exists(pk) AND #v = :expected";
        let condition_names = HashMap::from([("#v".to_owned(), "version".to_owned())]);
        let expected = values([(":expected", n(endpoint.version))]);
        if self.0.put_if(endpoint_item(&next)?, condition, condition_names, expected).await? {
            return Ok(next.version);
        }
        match self.0.get(org_pk(&endpoint.org_id), endpoint_sk(&endpoint.id)).await? {
            None => Err(PortError::not_found(format!("webhook endpoint {}", endpoint.id))),
            Some(item) => Err(PortError::Conflict { expected: endpoint.version, actual: get_n(&item, "version")? }),
        }
    }

    async fn delete(&self, org: &OrgId, id: &WebhookEndpointId) -> Result<()> {
        let table = &*self.0.name;
        let outcome = self
            .0
            .transact(vec![
                tx_delete(
                    table,
                    key(org_pk(org), endpoint_sk(id)),
                    "attribute_exists(#pk)",
                    names(&["pk"]),
                    values([]),
                )?,
                tx_update(
                    table,
                    UpdateSpec {
                        key: key(org_pk(org), COUNTERS),
                        update: "ADD #webhook_endpoints :minus",
                        condition: None,
                        names: names(&["webhook_endpoints"]),
                        values: values([(":minus", n(-1))]),
                    },
                )?,
            ])
            .await?;
        match outcome {
            TxOutcome::Committed => Ok(()),
            TxOutcome::Cancelled(_) => Err(PortError::not_found(format!("webhook endpoint {id}"))),
        }
    }

    async fn list(&self, org: &OrgId) -> Result<Vec<WebhookEndpoint>> {
        let items = self.0.query_prefix(&org_pk(org), ENDPOINT_PREFIX).await?;
        items.iter().map(|item| get_json(item, "body")).collect()
    }
}

const DELIVERY_PK_PREFIX: &str = "WHD#";
/// `BatchWriteItem` takes at most 25 puts.
const BATCH_WRITE_MAX: usize = 25;
/// Attempts to write a batch's unprocessed items (throttling) before giving up.
const BATCH_WRITE_ATTEMPTS: u32 = 6;

#[derive(Debug, Clone)]
pub(crate) struct DynamoWebhookDeliveries(pub Table);

fn delivery_pk(endpoint: &WebhookEndpointId) -> String {
    format!("{DELIVERY_PK_PREFIX}{endpoint}")
}

/// Milliseconds zero-padded to 13 digits (good until the year 2286), so string order is time
/// order.
fn padded_ms(at: Timestamp) -> String {
    format!("{:013}", at.as_millis().max(0))
}

fn delivery_sk(delivery: &WebhookDelivery) -> String {
    format!("{}#{}", padded_ms(delivery.created_at), delivery.id)
}

fn delivery_item(delivery: &WebhookDelivery) -> Result<Item> {
    let mut item = key(delivery_pk(&delivery.endpoint_id), delivery_sk(delivery));
    item.extend([
        ("org_id".to_owned(), s(delivery.org_id.as_str())),
        ("outcome".to_owned(), s(delivery.outcome.as_str())),
        ("expires_at".to_owned(), n(delivery.expires_at.as_millis())),
        // Seconds, rounded up: DynamoDB never deletes an item before it expired.
        ("ttl".to_owned(), n(delivery.expires_at.as_secs() + 1)),
        ("body".to_owned(), s(to_json(delivery)?)),
    ]);
    Ok(item)
}

/// A cursor is the sort key of the last delivery shown, spelt URL-safe: 13 digits, `.`, an
/// id (the key's `#` would end a URL's query). Answers the sort key.
fn check_cursor(cursor: &str) -> Result<String> {
    match cursor.split_once('.') {
        Some((at, id))
            if at.len() == 13 && at.bytes().all(|b| b.is_ascii_digit()) && !id.is_empty() && !id.contains('#') =>
        {
            Ok(format!("{at}#{id}"))
        }
        _ => Err(PortError::bad_cursor("webhook deliveries")),
    }
}

fn cursor_of(sort_key: &str) -> String {
    sort_key.replacen('#', ".", 1)
}

impl DynamoWebhookDeliveries {
    /// One `BatchWriteItem` of at most 25 puts, writing again what DynamoDB left unprocessed
    /// (throttling) with a short backoff.
    async fn write_batch(&self, mut requests: Vec<WriteRequest>) -> Result<()> {
        let mut delay = Duration::from_millis(20);
        for attempt in 1..=BATCH_WRITE_ATTEMPTS {
            let out = self
                .0
                .client
                .batch_write_item()
                .request_items(&*self.0.name, requests)
                .send()
                .await
                .map_err(|e| sdk_error("BatchWriteItem", &e))?;
            requests = out.unprocessed_items.and_then(|mut left| left.remove(&*self.0.name)).unwrap_or_default();
            if requests.is_empty() {
                return Ok(());
            }
            if attempt < BATCH_WRITE_ATTEMPTS {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(500));
            }
        }
        Err(PortError::Throttled { reason: format!("{} webhook deliveries left unprocessed", requests.len()) })
    }
}

#[async_trait]
impl WebhookDeliveryStore for DynamoWebhookDeliveries {
    async fn record(&self, deliveries: &[WebhookDelivery]) -> Result<()> {
        // One put per key, the last one winning: a batch must not name a key twice.
        let mut order: Vec<(String, String)> = Vec::new();
        let mut latest: HashMap<(String, String), Item> = HashMap::new();
        for delivery in deliveries {
            let item = delivery_item(delivery)?;
            let item_key = (delivery_pk(&delivery.endpoint_id), delivery_sk(delivery));
            if latest.insert(item_key.clone(), item).is_none() {
                order.push(item_key);
            }
        }
        let mut requests = Vec::with_capacity(order.len());
        for item_key in order {
            let item = latest.remove(&item_key).unwrap_or_default();
            let put = PutRequest::builder().set_item(Some(item)).build().map_err(|e| build_error(&e))?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        while !requests.is_empty() {
            let rest = requests.split_off(requests.len().min(BATCH_WRITE_MAX));
            self.write_batch(std::mem::replace(&mut requests, rest)).await?;
        }
        Ok(())
    }

    async fn list(
        &self,
        org: &OrgId,
        endpoint: &WebhookEndpointId,
        page: &PageRequest,
        now: Timestamp,
    ) -> Result<Page<WebhookDelivery>> {
        let limit = page.clamped_limit() as usize;
        let pk = delivery_pk(endpoint);
        let mut start = match &page.cursor {
            Some(cursor) => {
                let sort_key = check_cursor(cursor)?;
                Some(key(pk.clone(), sort_key))
            }
            None => None,
        };
        let mut items: Vec<Item> = Vec::new();
        loop {
            let out = self
                .0
                .client
                .query()
                .table_name(&*self.0.name)
                .consistent_read(true)
                .scan_index_forward(false)
                .key_condition_expression("#pk = :p")
                .filter_expression("#org = :org AND #exp > :now")
                .set_expression_attribute_names(Some(HashMap::from([
                    ("#pk".to_owned(), "pk".to_owned()),
                    ("#org".to_owned(), "org_id".to_owned()),
                    ("#exp".to_owned(), "expires_at".to_owned()),
                ])))
                .set_expression_attribute_values(Some(values([
                    (":p", s(pk.clone())),
                    (":org", s(org.as_str())),
                    (":now", n(now.as_millis())),
                ])))
                .limit((limit + 1) as i32)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query", &e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(next) if items.len() <= limit => start = Some(next),
                _ => break,
            }
        }
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|item| get_s(item, "sk").map(cursor_of)).transpose()?
        } else {
            None
        };
        let items = items.iter().map(|item| get_json(item, "body")).collect::<Result<Vec<WebhookDelivery>>>()?;
        Ok(Page { items, next_cursor })
    }

    async fn count_failures_since(
        &self,
        org: &OrgId,
        endpoint: &WebhookEndpointId,
        since: Timestamp,
        cap: u32,
    ) -> Result<u32> {
        let mut counted: u32 = 0;
        let mut start: Option<Item> = None;
        while counted < cap {
            let out = self
                .0
                .client
                .query()
                .table_name(&*self.0.name)
                .consistent_read(true)
                .select(Select::Count)
                .key_condition_expression("#pk = :p AND #sk >= :since")
                .filter_expression("#org = :org AND #outcome IN (:retrying, :dead)")
                .set_expression_attribute_names(Some(HashMap::from([
                    ("#pk".to_owned(), "pk".to_owned()),
                    ("#sk".to_owned(), "sk".to_owned()),
                    ("#org".to_owned(), "org_id".to_owned()),
                    ("#outcome".to_owned(), "outcome".to_owned()),
                ])))
                .set_expression_attribute_values(Some(values([
                    (":p", s(delivery_pk(endpoint))),
                    (":since", s(padded_ms(since))),
                    (":org", s(org.as_str())),
                    (":retrying", s(DeliveryOutcome::Retrying.as_str())),
                    (":dead", s(DeliveryOutcome::DeadLettered.as_str())),
                ])))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query", &e))?;
            counted = counted.saturating_add(u32::try_from(out.count).unwrap_or(0));
            match out.last_evaluated_key {
                Some(next) => start = Some(next),
                None => break,
            }
        }
        Ok(counted.min(cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_sort_keys_order_by_time_and_cursors_are_checked() {
        assert_eq!(padded_ms(Timestamp::from_millis(1_795_305_600_000)), "1795305600000");
        assert!(padded_ms(Timestamp::from_millis(999)) < padded_ms(Timestamp::from_millis(1_000)));
        assert_eq!(padded_ms(Timestamp::from_millis(-5)), "0000000000000");
        assert_eq!(check_cursor("1795305600000.whd_abc").unwrap(), "1795305600000#whd_abc");
        assert_eq!(cursor_of("1795305600000#whd_abc"), "1795305600000.whd_abc");
        for bad in [
            "",
            "1795305600000",
            "179530560000.whd_abc",
            "17953056000x0.whd_abc",
            "1795305600000.",
            "1795305600000#whd_abc",
        ] {
            assert!(check_cursor(bad).is_err(), "{bad:?}");
        }
    }
}
