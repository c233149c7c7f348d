//! Idempotency records (`IDEM#scope / KEY#k`), conversation snapshots (`CALL#c / CTX`) and
//! fixed-window counters (`COUNTER#key#window / META`).

use crate::dynamo::{get_b, get_n, get_n_opt, get_s, key, n, names, s, values, Table};
use crate::error::sdk_error;
use async_trait::async_trait;
use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use golos_domain::{CallId, Timestamp};
use golos_ports::{ContextStore, Counters, IdempotencyBegin, IdempotencyStore, PortError, Result, StoredResponse};

const COMPLETED: &str = "completed";
const IN_PROGRESS: &str = "in_progress";

fn idem_key(scope: &str, key_: &str) -> crate::dynamo::Item {
    key(format!("IDEM#{scope}"), format!("KEY#{key_}"))
}

/// Seconds for the DynamoDB TTL attribute (deletion is lazy; reads check expiry themselves).
fn ttl_secs(at: Timestamp) -> i64 {
    at.as_secs() + 1
}

#[derive(Debug, Clone)]
pub(crate) struct DynamoIdempotency(pub Table);

#[async_trait]
impl IdempotencyStore for DynamoIdempotency {
    async fn begin(
        &self,
        scope: &str,
        key_: &str,
        fingerprint: &str,
        claim_ttl_ms: i64,
        now: Timestamp,
    ) -> Result<IdempotencyBegin> {
        let expires_at = now.plus_millis(claim_ttl_ms);
        for _ in 0..5 {
            let mut item = idem_key(scope, key_);
            item.extend([
                ("fingerprint".to_owned(), s(fingerprint)),
                ("state".to_owned(), s(IN_PROGRESS)),
                ("expires_at".to_owned(), n(expires_at.as_millis())),
                ("ttl".to_owned(), n(ttl_secs(expires_at))),
            ]);
            let condition = "attribute_not_exists(#pk) OR #expires_at <= :now";
            let now_value = values([(":now", n(now.as_millis()))]);
            if self.0.put_if(item, condition, names(&["pk", "expires_at"]), now_value).await? {
                return Ok(IdempotencyBegin::Started);
            }
            let Some(stored) = self.0.get(format!("IDEM#{scope}"), format!("KEY#{key_}")).await? else {
                continue; // abandoned meanwhile
            };
            if get_n::<i64>(&stored, "expires_at")? <= now.as_millis() {
                continue;
            }
            if get_s(&stored, "fingerprint")? != fingerprint {
                return Ok(IdempotencyBegin::Mismatch);
            }
            if get_s(&stored, "state")? == COMPLETED {
                return Ok(IdempotencyBegin::Completed(StoredResponse {
                    status: get_n(&stored, "status")?,
                    content_type: get_s(&stored, "content_type")?.to_owned(),
                    body: get_b(&stored, "body")?,
                }));
            }
            return Ok(IdempotencyBegin::InProgress);
        }
        Err(PortError::unavailable("idempotency record kept changing"))
    }

    async fn complete(&self, scope: &str, key_: &str, response: &StoredResponse, expires_at: Timestamp) -> Result<()> {
        let result = self
            .0
            .client
            .update_item()
            .table_name(&*self.0.name)
            .set_key(Some(idem_key(scope, key_)))
            .update_expression(
                "SET #state = :done, #status = :status, #content_type = :ct, #body = :body, \
                 #expires_at = :expires_at, #ttl = :ttl",
            )
            .condition_expression("attribute_exists(#pk)")
            .set_expression_attribute_names(Some(names(&[
                "pk",
                "state",
                "status",
                "content_type",
                "body",
                "expires_at",
                "ttl",
            ])))
            .set_expression_attribute_values(Some(values([
                (":done", s(COMPLETED)),
                (":expires_at", n(expires_at.as_millis())),
                (":ttl", n(ttl_secs(expires_at))),
                (":status", n(response.status)),
                (":ct", s(&response.content_type)),
                (":body", AttributeValue::B(Blob::new(response.body.clone()))),
            ])))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                Err(PortError::not_found(format!("idempotency key {key_} in {scope}")))
            }
            Err(e) => Err(sdk_error("UpdateItem", &e)),
        }
    }

    async fn abandon(&self, scope: &str, key_: &str) -> Result<()> {
        self.0.delete(format!("IDEM#{scope}"), format!("KEY#{key_}")).await
    }
}

#[derive(Debug, Clone)]
pub(crate) struct DynamoContexts(pub Table);

fn ctx_pk(call: &CallId) -> String {
    format!("CALL#{call}")
}

#[async_trait]
impl ContextStore for DynamoContexts {
    async fn put(&self, call: &CallId, snapshot: &[u8], expires_at: Timestamp) -> Result<()> {
        let mut item = key(ctx_pk(call), "CTX");
        item.extend([
            ("snapshot".to_owned(), AttributeValue::B(Blob::new(snapshot.to_vec()))),
            ("expires_at".to_owned(), n(expires_at.as_millis())),
            ("ttl".to_owned(), n(ttl_secs(expires_at))),
        ]);
        self.0.put(item).await
    }

    async fn get(&self, call: &CallId, now: Timestamp) -> Result<Option<Vec<u8>>> {
        let Some(item) = self.0.get(ctx_pk(call), "CTX").await? else {
            return Ok(None);
        };
        if get_n::<i64>(&item, "expires_at")? <= now.as_millis() {
            return Ok(None);
        }
        get_b(&item, "snapshot").map(Some)
    }

    async fn delete(&self, call: &CallId) -> Result<()> {
        self.0.delete(ctx_pk(call), "CTX").await
    }
}

#[derive(Debug, Clone)]
pub(crate) struct DynamoCounters(pub Table);

#[async_trait]
impl Counters for DynamoCounters {
    async fn hit(&self, key_: &str, window_ms: i64, now: Timestamp) -> Result<u64> {
        if window_ms <= 0 {
            return Err(PortError::invalid("counter window must be positive"));
        }
        let window = now.as_millis().div_euclid(window_ms);
        let window_end = Timestamp::from_millis((window + 1).saturating_mul(window_ms));
        let out = self
            .0
            .client
            .update_item()
            .table_name(&*self.0.name)
            .set_key(Some(key(format!("COUNTER#{key_}#{window}"), "META")))
            .update_expression("ADD #count :one SET #ttl = :ttl")
            .set_expression_attribute_names(Some(names(&["count", "ttl"])))
            .set_expression_attribute_values(Some(values([(":one", n(1)), (":ttl", n(ttl_secs(window_end)))])))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| sdk_error("UpdateItem", &e))?;
        let attrs = out.attributes.unwrap_or_default();
        get_n_opt(&attrs, "count")?.ok_or_else(|| PortError::corrupt("counter update returned no count"))
    }

    async fn count(&self, key_: &str, window_ms: i64, now: Timestamp) -> Result<u64> {
        if window_ms <= 0 {
            return Err(PortError::invalid("counter window must be positive"));
        }
        let window = now.as_millis().div_euclid(window_ms);
        let item = self.0.get(format!("COUNTER#{key_}#{window}"), "META").await?;
        Ok(match item {
            Some(item) => get_n_opt(&item, "count")?.unwrap_or(0),
            None => 0,
        })
    }
}
