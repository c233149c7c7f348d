//! Organisations, agents and API keys.

use crate::dynamo::{
    get_json, get_n, get_n_opt, get_s, key, n, names, s, to_json, tx_delete, tx_put, tx_update, values, Item, Table,
    TxOutcome, UpdateSpec, GSI1,
};
use crate::error::sdk_error;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use golos_domain::agent::AgentConfig;
use golos_domain::{AgentId, ApiKeyId, OrgId, Timestamp};
use golos_ports::{
    AgentRecord, AgentStore, ApiKeyRecord, ApiKeyStore, Org, OrgStore, Page, PageRequest, PortError, Result,
};
use std::collections::HashMap;

pub(crate) fn org_pk(org: &OrgId) -> String {
    format!("ORG#{org}")
}

pub(crate) const COUNTERS: &str = "COUNTERS";
const ORGS_INDEX: &str = "ORGS";

fn is_condition_failure<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(
    err: &aws_sdk_dynamodb::error::SdkError<E>,
) -> bool {
    use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
    err.code() == Some("ConditionalCheckFailedException")
}

// ---------------------------------------------------------------------------------------------
// Orgs: `ORG#o / META`, listed through gsi1 `ORGS` by id.

#[derive(Debug, Clone)]
pub(crate) struct DynamoOrgs(pub Table);

fn org_from(item: &Item) -> Result<Org> {
    Ok(Org {
        id: OrgId::parse(get_s(item, "org_id")?)?,
        name: get_s(item, "name")?.to_owned(),
        plan: get_json(item, "plan")?,
        quotas: get_json(item, "quotas")?,
        settings: get_json(item, "settings")?,
        disabled: matches!(item.get("disabled"), Some(AttributeValue::Bool(true))),
        created_at: Timestamp::from_millis(get_n(item, "created_at")?),
        // Orgs written before versions existed are at version 1.
        version: get_n_opt(item, "version")?.unwrap_or(1),
    })
}

#[async_trait]
impl OrgStore for DynamoOrgs {
    async fn create(&self, org: &Org) -> Result<()> {
        let mut item = key(org_pk(&org.id), "META");
        item.extend([
            ("gsi1pk".to_owned(), s(ORGS_INDEX)),
            ("gsi1sk".to_owned(), s(org.id.as_str())),
            ("org_id".to_owned(), s(org.id.as_str())),
            ("name".to_owned(), s(&org.name)),
            ("plan".to_owned(), s(to_json(&org.plan)?)),
            ("quotas".to_owned(), s(to_json(&org.quotas)?)),
            ("settings".to_owned(), s(to_json(&org.settings)?)),
            ("disabled".to_owned(), AttributeValue::Bool(org.disabled)),
            ("created_at".to_owned(), n(org.created_at.as_millis())),
            ("version".to_owned(), n(1)),
        ]);
        if self.0.put_if(item, "attribute_not_exists(pk)", HashMap::new(), HashMap::new()).await? {
            Ok(())
        } else {
            Err(PortError::AlreadyExists { what: format!("org {}", org.id) })
        }
    }

    async fn get(&self, id: &OrgId) -> Result<Option<Org>> {
        self.0.get(org_pk(id), "META").await?.map(|item| org_from(&item)).transpose()
    }

    async fn update(&self, org: &Org) -> Result<u64> {
        let result = self
            .0
            .client
            .update_item()
            .table_name(&*self.0.name)
            .set_key(Some(key(org_pk(&org.id), "META")))
            .update_expression(
                "SET #name = :name, #plan = :plan, #quotas = :quotas, #settings = :settings, \
                 #disabled = :disabled, #version = :next",
            )
            // An org stored before versions existed has none and counts as version 1.
            .condition_expression(
                "attribute_exists(#pk) AND (#version = :expected OR (attribute_not_exists(#version) AND :expected = :one))",
            )
            .set_expression_attribute_names(Some(names(&[
                "pk", "name", "plan", "quotas", "settings", "disabled", "version",
            ])))
            .set_expression_attribute_values(Some(values([
                (":name", s(&org.name)),
                (":plan", s(to_json(&org.plan)?)),
                (":quotas", s(to_json(&org.quotas)?)),
                (":settings", s(to_json(&org.settings)?)),
                (":disabled", AttributeValue::Bool(org.disabled)),
                (":expected", n(org.version)),
                (":next", n(org.version + 1)),
                (":one", n(1)),
            ])))
            .send()
            .await;
        match result {
            Ok(_) => Ok(org.version + 1),
            Err(e) if is_condition_failure(&e) => match self.get(&org.id).await? {
                None => Err(PortError::not_found(format!("org {}", org.id))),
                Some(stored) => Err(PortError::Conflict { expected: org.version, actual: stored.version }),
            },
            Err(e) => Err(sdk_error("UpdateItem", &e)),
        }
    }

    async fn list(&self, page: &PageRequest) -> Result<Page<Org>> {
        let raw = self.0.page(Some(GSI1), ORGS_INDEX, None, true, page).await?;
        Ok(Page { items: raw.items.iter().map(org_from).collect::<Result<_>>()?, next_cursor: raw.next_cursor })
    }
}

// ---------------------------------------------------------------------------------------------
// Agents: `ORG#o / AGENT#a` with a numeric `version`; the count lives on `ORG#o / COUNTERS`.

#[derive(Debug, Clone)]
pub(crate) struct DynamoAgents(pub Table);

fn agent_sk(id: &AgentId) -> String {
    format!("AGENT#{id}")
}

fn agent_from(item: &Item) -> Result<AgentRecord> {
    Ok(AgentRecord {
        org_id: OrgId::parse(get_s(item, "org_id")?)?,
        id: AgentId::parse(get_s(item, "agent_id")?)?,
        config: get_json(item, "config")?,
        version: get_n(item, "version")?,
        created_at: Timestamp::from_millis(get_n(item, "created_at")?),
        updated_at: Timestamp::from_millis(get_n(item, "updated_at")?),
    })
}

impl DynamoAgents {
    async fn stored_version(&self, org: &OrgId, id: &AgentId) -> Result<Option<u64>> {
        match self.0.get(org_pk(org), agent_sk(id)).await? {
            Some(item) => Ok(Some(get_n(&item, "version")?)),
            None => Ok(None),
        }
    }
}

#[async_trait]
impl AgentStore for DynamoAgents {
    async fn create(
        &self,
        org: &OrgId,
        id: &AgentId,
        config: &AgentConfig,
        max_agents: u32,
        now: Timestamp,
    ) -> Result<AgentRecord> {
        if max_agents == 0 {
            // `attribute_not_exists(agents)` would let a first agent past a zero quota.
            if self.stored_version(org, id).await?.is_some() {
                return Err(PortError::AlreadyExists { what: format!("agent {id}") });
            }
            return Err(PortError::QuotaExceeded { quota: "max_agents", limit: 0 });
        }
        let record = AgentRecord {
            org_id: org.clone(),
            id: id.clone(),
            config: config.clone(),
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let mut item = key(org_pk(org), agent_sk(id));
        item.extend([
            ("org_id".to_owned(), s(org.as_str())),
            ("agent_id".to_owned(), s(id.as_str())),
            ("config".to_owned(), s(to_json(config)?)),
            ("version".to_owned(), n(1)),
            ("created_at".to_owned(), n(now.as_millis())),
            ("updated_at".to_owned(), n(now.as_millis())),
        ]);
        let table = &*self.0.name;
        let outcome = self
            .0
            .transact(vec![
                tx_put(table, item, Some("attribute_not_exists(pk)"), None, None)?,
                tx_update(
                    table,
                    UpdateSpec {
                        key: key(org_pk(org), COUNTERS),
                        update: "ADD #agents :one",
                        condition: Some("attribute_not_exists(#agents) OR #agents < :max"),
                        names: names(&["agents"]),
                        values: values([(":one", n(1)), (":max", n(max_agents))]),
                    },
                )?,
            ])
            .await?;
        if outcome.failed(0) {
            return Err(PortError::AlreadyExists { what: format!("agent {id}") });
        }
        if outcome.failed(1) {
            return Err(PortError::QuotaExceeded { quota: "max_agents", limit: u64::from(max_agents) });
        }
        Ok(record)
    }

    async fn get(&self, org: &OrgId, id: &AgentId) -> Result<Option<AgentRecord>> {
        self.0.get(org_pk(org), agent_sk(id)).await?.map(|item| agent_from(&item)).transpose()
    }

    async fn list(&self, org: &OrgId, page: &PageRequest) -> Result<Page<AgentRecord>> {
        let raw = self.0.page(None, &org_pk(org), Some("AGENT#"), true, page).await?;
        Ok(Page { items: raw.items.iter().map(agent_from).collect::<Result<_>>()?, next_cursor: raw.next_cursor })
    }

    async fn update(
        &self,
        org: &OrgId,
        id: &AgentId,
        config: &AgentConfig,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<AgentRecord> {
        let result = self
            .0
            .client
            .update_item()
            .table_name(&*self.0.name)
            .set_key(Some(key(org_pk(org), agent_sk(id))))
            .update_expression("SET #config = :config, #version = :next, #updated_at = :now")
            .condition_expression("#version = :expected")
            .set_expression_attribute_names(Some(names(&["config", "version", "updated_at"])))
            .set_expression_attribute_values(Some(values([
                (":config", s(to_json(config)?)),
                (":next", n(expected_version + 1)),
                (":expected", n(expected_version)),
                (":now", n(now.as_millis())),
            ])))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => agent_from(&out.attributes.unwrap_or_default()),
            Err(e) if is_condition_failure(&e) => match self.stored_version(org, id).await? {
                Some(actual) => Err(PortError::Conflict { expected: expected_version, actual }),
                None => Err(PortError::not_found(format!("agent {id}"))),
            },
            Err(e) => Err(sdk_error("UpdateItem", &e)),
        }
    }

    async fn delete(&self, org: &OrgId, id: &AgentId, expected_version: Option<u64>) -> Result<()> {
        let table = &*self.0.name;
        let (condition, vals) = match expected_version {
            Some(v) => ("attribute_exists(#pk) AND #version = :expected", values([(":expected", n(v))])),
            None => ("attribute_exists(#pk)", values([])),
        };
        let mut del_names = names(&["pk"]);
        if expected_version.is_some() {
            del_names.extend(names(&["version"]));
        }
        let outcome = self
            .0
            .transact(vec![
                tx_delete(table, key(org_pk(org), agent_sk(id)), condition, del_names, vals)?,
                tx_update(
                    table,
                    UpdateSpec {
                        key: key(org_pk(org), COUNTERS),
                        update: "ADD #agents :minus",
                        condition: None,
                        names: names(&["agents"]),
                        values: values([(":minus", n(-1))]),
                    },
                )?,
            ])
            .await?;
        match outcome {
            TxOutcome::Committed => Ok(()),
            TxOutcome::Cancelled(_) => match (self.stored_version(org, id).await?, expected_version) {
                (None, _) => Err(PortError::not_found(format!("agent {id}"))),
                (Some(actual), Some(expected)) => Err(PortError::Conflict { expected, actual }),
                (Some(_), None) => {
                    Err(PortError::ConditionFailed { reason: format!("agent {id} changed during delete") })
                }
            },
        }
    }

    async fn count(&self, org: &OrgId) -> Result<u32> {
        match self.0.get(org_pk(org), COUNTERS).await? {
            Some(item) => Ok(get_n_opt::<i64>(&item, "agents")?.unwrap_or(0).max(0) as u32),
            None => Ok(0),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// API keys: `APIKEY#k / META`, listed per org through gsi1 `ORG#o#APIKEYS` by key id.

#[derive(Debug, Clone)]
pub(crate) struct DynamoApiKeys(pub Table);

fn key_pk(id: &ApiKeyId) -> String {
    format!("APIKEY#{id}")
}

fn api_key_from(item: &Item) -> Result<ApiKeyRecord> {
    let mut record: ApiKeyRecord = get_json(item, "data")?;
    record.revoked_at = get_n_opt(item, "revoked_at")?.map(Timestamp::from_millis);
    Ok(record)
}

#[async_trait]
impl ApiKeyStore for DynamoApiKeys {
    async fn create(&self, record: &ApiKeyRecord) -> Result<()> {
        let mut item = key(key_pk(&record.id), "META");
        item.extend([
            ("gsi1pk".to_owned(), s(format!("{}#APIKEYS", org_pk(&record.org_id)))),
            ("gsi1sk".to_owned(), s(record.id.as_str())),
            ("data".to_owned(), s(to_json(record)?)),
        ]);
        if let Some(at) = record.revoked_at {
            item.insert("revoked_at".to_owned(), n(at.as_millis()));
        }
        if self.0.put_if(item, "attribute_not_exists(pk)", HashMap::new(), HashMap::new()).await? {
            Ok(())
        } else {
            Err(PortError::AlreadyExists { what: format!("api key {}", record.id) })
        }
    }

    async fn get(&self, id: &ApiKeyId) -> Result<Option<ApiKeyRecord>> {
        self.0.get(key_pk(id), "META").await?.map(|item| api_key_from(&item)).transpose()
    }

    async fn list(&self, org: &OrgId, page: &PageRequest) -> Result<Page<ApiKeyRecord>> {
        let partition = format!("{}#APIKEYS", org_pk(org));
        let raw = self.0.page(Some(GSI1), &partition, None, true, page).await?;
        Ok(Page { items: raw.items.iter().map(api_key_from).collect::<Result<_>>()?, next_cursor: raw.next_cursor })
    }

    async fn revoke(&self, id: &ApiKeyId, at: Timestamp) -> Result<ApiKeyRecord> {
        let result = self
            .0
            .client
            .update_item()
            .table_name(&*self.0.name)
            .set_key(Some(key(key_pk(id), "META")))
            .update_expression("SET #revoked_at = :at")
            .condition_expression("attribute_exists(#pk) AND (attribute_not_exists(#revoked_at) OR #revoked_at > :at)")
            .set_expression_attribute_names(Some(names(&["pk", "revoked_at"])))
            .set_expression_attribute_values(Some(values([(":at", n(at.as_millis()))])))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => api_key_from(&out.attributes.unwrap_or_default()),
            Err(e) if is_condition_failure(&e) => {
                self.get(id).await?.ok_or_else(|| PortError::not_found(format!("api key {id}")))
            }
            Err(e) => Err(sdk_error("UpdateItem", &e)),
        }
    }
}
