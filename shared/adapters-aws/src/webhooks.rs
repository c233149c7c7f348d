//! Webhook endpoints: `ORG#o / WEBHOOK#<id>`, the record as JSON with its version as a number
//! attribute (so updates are conditional on it); the org's count lives on `ORG#o / COUNTERS`
//! (`webhook_endpoints`), moved in the same transaction as the create or delete.

use crate::directory::{org_pk, COUNTERS};
use crate::dynamo::{
    get_json, get_n, key, n, names, s, to_json, tx_delete, tx_put, tx_update, values, Item, Table, TxOutcome,
    UpdateSpec,
};
use async_trait::async_trait;
use golos_domain::{OrgId, WebhookEndpointId};
use golos_ports::{PortError, Result, WebhookEndpoint, WebhookEndpointStore};
use std::collections::HashMap;

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
