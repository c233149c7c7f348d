//! The one DynamoDB table: attribute helpers, transactions with conflict retries, pages.

use crate::error::{build_error, corrupt, sdk_error};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use base64::Engine as _;
use golos_ports::{Page, PageRequest, PortError, Result};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

pub(crate) type Item = HashMap<String, AttributeValue>;

pub(crate) const GSI1: &str = "gsi1";
const KEY_ATTRS: [&str; 4] = ["pk", "sk", "gsi1pk", "gsi1sk"];
const TX_ATTEMPTS: u32 = 12;
/// Attempts for a cancellation whose reasons are neither conditions nor contention.
const TX_OTHER_ATTEMPTS: u32 = 3;
/// Cancellation reasons that are contention: retried the full `TX_ATTEMPTS` times.
const TX_TRANSIENT: [&str; 4] = ["None", "TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"];

/// The table and its client; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub client: Client,
    pub name: Arc<str>,
}

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn n(value: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Zero-padded so that string order is numeric order (for GSI sort keys).
pub(crate) fn padded(ms: i64) -> String {
    format!("{:020}", ms.max(0))
}

pub(crate) fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(corrupt("item", format!("missing string attribute {name}"))),
    }
}

pub(crate) fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T> {
    get_n_opt(item, name)?.ok_or_else(|| corrupt("item", format!("missing number attribute {name}")))
}

pub(crate) fn get_n_opt<T: std::str::FromStr>(item: &Item, name: &str) -> Result<Option<T>> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::N(v)) => v.parse().map(Some).map_err(|_| corrupt("item", format!("bad number in {name}"))),
        Some(_) => Err(corrupt("item", format!("{name} is not a number"))),
    }
}

pub(crate) fn get_b(item: &Item, name: &str) -> Result<Vec<u8>> {
    match item.get(name) {
        Some(AttributeValue::B(v)) => Ok(v.clone().into_inner()),
        _ => Err(corrupt("item", format!("missing binary attribute {name}"))),
    }
}

pub(crate) fn get_json<T: serde::de::DeserializeOwned>(item: &Item, name: &str) -> Result<T> {
    serde_json::from_str(get_s(item, name)?).map_err(|e| corrupt(name, e))
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| PortError::invalid(format!("encode: {e}")))
}

/// Expression attribute names `#x` → `x` for every given name.
pub(crate) fn names(list: &[&str]) -> HashMap<String, String> {
    list.iter().map(|n| (format!("#{n}"), (*n).to_owned())).collect()
}

pub(crate) fn values<const N: usize>(list: [(&str, AttributeValue); N]) -> HashMap<String, AttributeValue> {
    list.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// How a transaction ended.
#[derive(Debug)]
pub(crate) enum TxOutcome {
    Committed,
    /// Cancelled by conditions: per item, whether its condition failed.
    Cancelled(Vec<bool>),
}

impl TxOutcome {
    pub fn failed(&self, index: usize) -> bool {
        matches!(self, Self::Cancelled(reasons) if reasons.get(index).copied().unwrap_or(false))
    }
}

pub(crate) fn tx_put(
    table: &str,
    item: Item,
    condition: Option<&str>,
    names_: Option<HashMap<String, String>>,
    values_: Option<HashMap<String, AttributeValue>>,
) -> Result<TransactWriteItem> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .set_condition_expression(condition.map(str::to_owned))
        .set_expression_attribute_names(names_)
        .set_expression_attribute_values(values_)
        .build()
        .map_err(|e| build_error(&e))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

pub(crate) struct UpdateSpec<'a> {
    pub key: Item,
    pub update: &'a str,
    pub condition: Option<&'a str>,
    pub names: HashMap<String, String>,
    pub values: HashMap<String, AttributeValue>,
}

pub(crate) fn tx_update(table: &str, spec: UpdateSpec<'_>) -> Result<TransactWriteItem> {
    let update = Update::builder()
        .table_name(table)
        .set_key(Some(spec.key))
        .update_expression(spec.update)
        .set_condition_expression(spec.condition.map(str::to_owned))
        .set_expression_attribute_names(Some(spec.names).filter(|m| !m.is_empty()))
        .set_expression_attribute_values(Some(spec.values).filter(|m| !m.is_empty()))
        .build()
        .map_err(|e| build_error(&e))?;
    Ok(TransactWriteItem::builder().update(update).build())
}

pub(crate) fn tx_delete(
    table: &str,
    key: Item,
    condition: &str,
    names_: HashMap<String, String>,
    values_: HashMap<String, AttributeValue>,
) -> Result<TransactWriteItem> {
    let delete = Delete::builder()
        .table_name(table)
        .set_key(Some(key))
        .condition_expression(condition)
        .set_expression_attribute_names(Some(names_).filter(|m| !m.is_empty()))
        .set_expression_attribute_values(Some(values_).filter(|m| !m.is_empty()))
        .build()
        .map_err(|e| build_error(&e))?;
    Ok(TransactWriteItem::builder().delete(delete).build())
}

pub(crate) fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

impl Table {
    /// Runs one `TransactWriteItems`. Condition failures (the only real conflicts) come back
    /// as `Cancelled`. Every other cancellation is retried here with backoff: transaction
    /// conflicts (another transaction on the same item) and throttling up to `TX_ATTEMPTS`
    /// times, any other reason (`ValidationError`, an unknown code) up to
    /// `TX_OTHER_ATTEMPTS` times; what persists is `Throttled` or `Unavailable`, never
    /// `Invalid`: the caller answers 503 / leaves the message to be retried, and an event is
    /// never dead-lettered or refused because the store was busy.
    pub async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<TxOutcome> {
        let mut delay = Duration::from_millis(5);
        for attempt in 1..=TX_ATTEMPTS {
            let result = self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await;
            let Err(err) = result else {
                return Ok(TxOutcome::Committed);
            };
            match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancel)) => {
                    let codes: Vec<&str> =
                        cancel.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None")).collect();
                    let failed: Vec<bool> = codes.iter().map(|c| *c == "ConditionalCheckFailed").collect();
                    if failed.iter().any(|f| *f) {
                        return Ok(TxOutcome::Cancelled(failed));
                    }
                    let transient = codes.iter().all(|c| TX_TRANSIENT.contains(c));
                    let limit = if transient { TX_ATTEMPTS } else { TX_OTHER_ATTEMPTS };
                    if attempt >= limit {
                        return Err(cancelled_error(&codes));
                    }
                }
                Some(TransactWriteItemsError::TransactionInProgressException(_)) => {}
                // The SDK has retried throttling and faults of the whole request already.
                _ => return Err(sdk_error("TransactWriteItems", &err)),
            }
            if attempt < TX_ATTEMPTS {
                tokio::time::sleep(jitter(delay)).await;
                delay = (delay * 2).min(Duration::from_millis(500));
            }
        }
        Err(PortError::unavailable("transaction retries exhausted"))
    }

    /// Writes `item`, replacing whatever had its key.
    pub async fn put(&self, item: Item) -> Result<()> {
        self.client
            .put_item()
            .table_name(&*self.name)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| sdk_error("PutItem", &e))?;
        Ok(())
    }

    /// Writes `item` only if `condition` holds (with its `#name`s and `:value`s); `false` when
    /// it did not, and nothing was written.
    pub async fn put_if(
        &self,
        item: Item,
        condition: &str,
        names_: HashMap<String, String>,
        values_: HashMap<String, AttributeValue>,
    ) -> Result<bool> {
        let result = self
            .client
            .put_item()
            .table_name(&*self.name)
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names_).filter(|m| !m.is_empty()))
            .set_expression_attribute_values(Some(values_).filter(|m| !m.is_empty()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if aws_sdk_dynamodb::error::ProvideErrorMetadata::code(&e)
                    == Some("ConditionalCheckFailedException") =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk_error("PutItem", &e)),
        }
    }

    /// A strongly consistent read of one item.
    pub async fn get(&self, pk: impl Into<String>, sk: impl Into<String>) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&*self.name)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", &e))?;
        Ok(out.item)
    }

    pub async fn delete(&self, pk: impl Into<String>, sk: impl Into<String>) -> Result<()> {
        self.client
            .delete_item()
            .table_name(&*self.name)
            .set_key(Some(key(pk, sk)))
            .send()
            .await
            .map_err(|e| sdk_error("DeleteItem", &e))?;
        Ok(())
    }

    /// Every item a query matches, page after page (DynamoDB answers at most 1 MB a call).
    /// `query` builds the query without its start key; it is called once per page.
    pub async fn query_all(
        &self,
        query: impl Fn() -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = query().set_exclusive_start_key(start.take()).send().await.map_err(|e| sdk_error("Query", &e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(next) => start = Some(next),
                None => return Ok(items),
            }
        }
    }

    /// Every item of partition `pk` whose sort key begins with `prefix`, strongly consistent,
    /// all pages.
    pub async fn query_prefix(&self, pk: &str, prefix: &str) -> Result<Vec<Item>> {
        self.query_all(|| {
            self.client
                .query()
                .table_name(&*self.name)
                .consistent_read(true)
                .key_condition_expression("#pk = :p AND begins_with(#sk, :pre)")
                .set_expression_attribute_names(Some(names(&["pk", "sk"])))
                .set_expression_attribute_values(Some(values([(":p", s(pk)), (":pre", s(prefix))])))
        })
        .await
    }

    /// One page of a query, in sort-key order (`forward`) or reverse. `index` is `None` for
    /// the table (`pk` = `partition`, `sk` begins with `prefix`) or `Some(GSI1)`
    /// (`gsi1pk` = `partition`). The cursor is the encoded key of the last item returned.
    pub async fn page(
        &self,
        index: Option<&str>,
        partition: &str,
        prefix: Option<&str>,
        forward: bool,
        request: &PageRequest,
    ) -> Result<Page<Item>> {
        let limit = request.clamped_limit() as usize;
        let mut start = match &request.cursor {
            Some(cursor) => Some(decode_cursor(cursor, index.is_some())?),
            None => None,
        };
        let mut items: Vec<Item> = Vec::new();
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&*self.name)
                .scan_index_forward(forward)
                .limit((limit + 1 - items.len()) as i32)
                .set_exclusive_start_key(start.take());
            query = match (index, prefix) {
                (Some(index), _) => query
                    .index_name(index)
                    .key_condition_expression("#g = :p")
                    .expression_attribute_names("#g", "gsi1pk")
                    .expression_attribute_values(":p", s(partition)),
                (None, Some(prefix)) => query
                    .consistent_read(true)
                    .key_condition_expression("#pk = :p AND begins_with(#sk, :pre)")
                    .expression_attribute_names("#pk", "pk")
                    .expression_attribute_names("#sk", "sk")
                    .expression_attribute_values(":p", s(partition))
                    .expression_attribute_values(":pre", s(prefix)),
                (None, None) => query
                    .consistent_read(true)
                    .key_condition_expression("#pk = :p")
                    .expression_attribute_names("#pk", "pk")
                    .expression_attribute_values(":p", s(partition)),
            };
            let out = query.send().await.map_err(|e| sdk_error("Query", &e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(next) if items.len() <= limit => start = Some(next),
                _ => break,
            }
        }
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(encode_cursor)
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }
}

fn encode_cursor(item: &Item) -> String {
    let keys: BTreeMap<&str, &str> = KEY_ATTRS
        .iter()
        .filter_map(|k| match item.get(*k) {
            Some(AttributeValue::S(v)) => Some((*k, v.as_str())),
            _ => None,
        })
        .collect();
    let json = serde_json::to_vec(&keys).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

fn decode_cursor(cursor: &str, with_index: bool) -> Result<Item> {
    let bad = || PortError::bad_cursor("page");
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let keys: BTreeMap<String, String> = serde_json::from_slice(&json).map_err(|_| bad())?;
    if !keys.contains_key("pk") || !keys.contains_key("sk") {
        return Err(bad());
    }
    Ok(keys.into_iter().filter(|(k, _)| with_index || k == "pk" || k == "sk").map(|(k, v)| (k, s(v))).collect())
}

/// The error for a transaction still cancelled after its retries: throttling if any reason
/// was throttling, otherwise unavailable. Reasons other than contention are logged at error:
/// they mean a request DynamoDB refuses (an item too large, say), which retries will not cure
/// and an operator must see; the message is retried and, at last, dead-lettered.
fn cancelled_error(codes: &[&str]) -> PortError {
    let reason = format!("transaction cancelled: {codes:?}");
    if codes.iter().any(|c| matches!(*c, "ThrottlingError" | "ProvisionedThroughputExceeded")) {
        return PortError::Throttled { reason };
    }
    if !codes.iter().all(|c| TX_TRANSIENT.contains(c)) {
        tracing::error!(
            alert = "store_transaction_refused",
            ?codes,
            "DynamoDB kept cancelling a transaction for a reason other than contention"
        );
    }
    PortError::Unavailable { reason }
}

fn jitter(delay: Duration) -> Duration {
    let nanos = u64::from(uuid::Uuid::new_v4().as_fields().0);
    let max = delay.as_nanos().max(1) as u64;
    delay + Duration::from_nanos(nanos % max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persistent_cancellations_are_retryable() {
        for codes in [
            &["ValidationError"][..],
            &["None", "ThrottlingError"],
            &["TransactionConflict", "None"],
            &["ProvisionedThroughputExceeded"],
            &["ItemCollectionSizeLimitExceeded"],
        ] {
            let err = cancelled_error(codes);
            assert!(err.is_retryable(), "{codes:?}: {err:?}");
        }
        assert!(matches!(cancelled_error(&["None", "ThrottlingError"]), PortError::Throttled { .. }));
        assert!(matches!(cancelled_error(&["ValidationError"]), PortError::Unavailable { .. }));
    }

    #[test]
    fn padded_times_sort_as_numbers() {
        assert!(padded(999) < padded(1_000));
        assert_eq!(padded(-5), padded(0));
        assert_eq!(padded(1_795_305_600_000).len(), 20);
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let mut item = key("ORG#o", "LEDGER#k");
        item.insert("gsi1pk".into(), s("ORG#o#LEDGER"));
        item.insert("gsi1sk".into(), s("00000000000000000001#k"));
        item.insert("data".into(), s("{}"));
        let cursor = encode_cursor(&item);
        let for_index = decode_cursor(&cursor, true).unwrap();
        assert_eq!(for_index.len(), 4, "the index needs its keys and the table's");
        assert_eq!(decode_cursor(&cursor, false).unwrap(), key("ORG#o", "LEDGER#k"));
        assert!(decode_cursor("not base64!", false).is_err());
        assert!(decode_cursor(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("{}"), false).is_err());
    }
}
