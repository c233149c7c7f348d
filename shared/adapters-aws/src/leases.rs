//! Call admission leases: `ORG#o / LEASE#<call>` (gsi1 `LEASES` by zero-padded expiry), with
//! the org's active count on `ORG#o / COUNTERS` and the agent's on `ORG#o / AGENTCALLS#a`.

use crate::directory::{org_pk, COUNTERS};
use crate::dynamo::{
    get_n, get_n_opt, get_s, key, n, names, padded, s, tx_delete, tx_put, tx_update, values, Item, Table, TxOutcome,
    UpdateSpec, GSI1,
};
use crate::error::sdk_error;
use async_trait::async_trait;
use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
use aws_sdk_dynamodb::types::ReturnValue;
use golos_domain::{AgentId, CallId, OrgId, Timestamp};
use golos_ports::{AcquireOutcome, Lease, LeaseRequest, Leases, PortError, ReleaseOutcome, Result};

const LEASES_INDEX: &str = "LEASES";
const ATTEMPTS: usize = 5;

#[derive(Debug, Clone)]
pub(crate) struct DynamoLeases(pub Table);

fn lease_sk(call: &CallId) -> String {
    format!("LEASE#{call}")
}

fn agent_calls_sk(agent: &AgentId) -> String {
    format!("AGENTCALLS#{agent}")
}

fn lease_gsi1sk(lease: &Lease) -> String {
    format!("{}#{}#{}", padded(lease.expires_at.as_millis()), lease.org_id, lease.call_id)
}

fn lease_from(item: &Item) -> Result<Lease> {
    Ok(Lease {
        org_id: OrgId::parse(get_s(item, "org_id")?)?,
        agent_id: AgentId::parse(get_s(item, "agent_id")?)?,
        call_id: CallId::parse(get_s(item, "call_id")?)?,
        acquired_at: Timestamp::from_millis(get_n(item, "acquired_at")?),
        expires_at: Timestamp::from_millis(get_n(item, "expires_at")?),
    })
}

impl DynamoLeases {
    async fn read(&self, org: &OrgId, call: &CallId) -> Result<Option<Lease>> {
        self.0.get(org_pk(org), lease_sk(call)).await?.map(|item| lease_from(&item)).transpose()
    }

    /// Deletes the lease and frees both slots; with `expired_before`, only if the lease
    /// (still) expires before then. `None` when the condition did not hold.
    async fn release_lease(&self, lease: &Lease, expired_before: Option<Timestamp>) -> Result<Option<Lease>> {
        let table = &*self.0.name;
        let pk = org_pk(&lease.org_id);
        let (condition, del_names, del_values) = match expired_before {
            Some(now) => (
                "attribute_exists(#pk) AND #expires_at < :now",
                names(&["pk", "expires_at"]),
                values([(":now", n(now.as_millis()))]),
            ),
            None => ("attribute_exists(#pk)", names(&["pk"]), values([])),
        };
        let decrement = |sk: String| {
            tx_update(
                table,
                UpdateSpec {
                    key: key(&pk, sk),
                    update: "ADD #active :minus",
                    condition: None,
                    names: names(&["active"]),
                    values: values([(":minus", n(-1))]),
                },
            )
        };
        let outcome = self
            .0
            .transact(vec![
                tx_delete(table, key(&pk, lease_sk(&lease.call_id)), condition, del_names, del_values)?,
                decrement(COUNTERS.to_owned())?,
                decrement(agent_calls_sk(&lease.agent_id))?,
            ])
            .await?;
        Ok(match outcome {
            TxOutcome::Committed => Some(lease.clone()),
            TxOutcome::Cancelled(_) => None,
        })
    }
}

#[async_trait]
impl Leases for DynamoLeases {
    async fn acquire(&self, request: &LeaseRequest, now: Timestamp) -> Result<AcquireOutcome> {
        let lease = Lease {
            org_id: request.org_id.clone(),
            agent_id: request.agent_id.clone(),
            call_id: request.call_id.clone(),
            acquired_at: now,
            expires_at: now.plus_millis(request.ttl_ms),
        };
        if request.org_limit == 0 || request.agent_limit == 0 {
            // `attribute_not_exists(active)` would let a first call past a zero limit.
            if let Some(held) = self.read(&request.org_id, &request.call_id).await? {
                return Ok(AcquireOutcome::AlreadyHeld(held));
            }
            return Ok(if request.agent_limit == 0 {
                AcquireOutcome::AgentLimitReached { limit: 0 }
            } else {
                AcquireOutcome::OrgLimitReached { limit: 0 }
            });
        }
        let table = &*self.0.name;
        let pk = org_pk(&request.org_id);
        for _ in 0..ATTEMPTS {
            let mut item = key(&pk, lease_sk(&request.call_id));
            item.extend([
                ("gsi1pk".to_owned(), s(LEASES_INDEX)),
                ("gsi1sk".to_owned(), s(lease_gsi1sk(&lease))),
                ("org_id".to_owned(), s(lease.org_id.as_str())),
                ("agent_id".to_owned(), s(lease.agent_id.as_str())),
                ("call_id".to_owned(), s(lease.call_id.as_str())),
                ("acquired_at".to_owned(), n(now.as_millis())),
                ("expires_at".to_owned(), n(lease.expires_at.as_millis())),
            ]);
            let increment = |sk: String, limit: u32| {
                tx_update(
                    table,
                    UpdateSpec {
                        key: key(&pk, sk),
                        update: "ADD #active :one",
                        condition: Some("attribute_not_exists(#active) OR #active < :limit"),
                        names: names(&["active"]),
                        values: values([(":one", n(1)), (":limit", n(limit))]),
                    },
                )
            };
            let outcome = self
                .0
                .transact(vec![
                    tx_put(table, item, Some("attribute_not_exists(pk)"), None, None)?,
                    increment(COUNTERS.to_owned(), request.org_limit)?,
                    increment(agent_calls_sk(&request.agent_id), request.agent_limit)?,
                ])
                .await?;
            if matches!(outcome, TxOutcome::Committed) {
                return Ok(AcquireOutcome::Granted(lease));
            }
            if outcome.failed(0) {
                match self.read(&request.org_id, &request.call_id).await? {
                    Some(held) => return Ok(AcquireOutcome::AlreadyHeld(held)),
                    None => continue, // released meanwhile: try again
                }
            }
            // Both may be full: the agent's limit is the narrower answer.
            if outcome.failed(2) {
                return Ok(AcquireOutcome::AgentLimitReached { limit: request.agent_limit });
            }
            if outcome.failed(1) {
                return Ok(AcquireOutcome::OrgLimitReached { limit: request.org_limit });
            }
        }
        Err(PortError::unavailable("lease acquire kept racing a release"))
    }

    async fn heartbeat(&self, org: &OrgId, call: &CallId, ttl_ms: i64, now: Timestamp) -> Result<Lease> {
        let expires_at = now.plus_millis(ttl_ms);
        let gsi1sk = format!("{}#{org}#{call}", padded(expires_at.as_millis()));
        let result = self
            .0
            .client
            .update_item()
            .table_name(&*self.0.name)
            .set_key(Some(key(org_pk(org), lease_sk(call))))
            .update_expression("SET #expires_at = :e, #gsi1sk = :g")
            .condition_expression("attribute_exists(#pk)")
            .set_expression_attribute_names(Some(names(&["pk", "expires_at", "gsi1sk"])))
            .set_expression_attribute_values(Some(values([(":e", n(expires_at.as_millis())), (":g", s(gsi1sk))])))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => lease_from(&out.attributes.unwrap_or_default()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                Err(PortError::not_found(format!("lease of {call}")))
            }
            Err(e) => Err(sdk_error("UpdateItem", &e)),
        }
    }

    async fn release(&self, org: &OrgId, call: &CallId) -> Result<ReleaseOutcome> {
        let Some(lease) = self.read(org, call).await? else {
            return Ok(ReleaseOutcome::NotHeld);
        };
        Ok(match self.release_lease(&lease, None).await? {
            Some(lease) => ReleaseOutcome::Released(lease),
            None => ReleaseOutcome::NotHeld,
        })
    }

    async fn expired(&self, now: Timestamp, max: usize) -> Result<Vec<Lease>> {
        let mut expired = Vec::new();
        let mut start = None;
        while expired.len() < max {
            let out = self
                .0
                .client
                .query()
                .table_name(&*self.0.name)
                .index_name(GSI1)
                .key_condition_expression("#g = :p AND #gs < :now")
                .set_expression_attribute_names(Some(
                    [("#g", "gsi1pk"), ("#gs", "gsi1sk")]
                        .into_iter()
                        .map(|(a, b)| (a.to_owned(), b.to_owned()))
                        .collect(),
                ))
                .set_expression_attribute_values(Some(values([
                    (":p", s(LEASES_INDEX)),
                    (":now", s(padded(now.as_millis()))),
                ])))
                .limit(100)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query", &e))?;
            for item in out.items.unwrap_or_default() {
                if expired.len() >= max {
                    break;
                }
                // The index is eventually consistent: re-read, so a lease just heartbeated
                // (or released) is not reported.
                let listed = lease_from(&item)?;
                if let Some(lease) = self.read(&listed.org_id, &listed.call_id).await? {
                    if lease.expires_at < now {
                        expired.push(lease);
                    }
                }
            }
            match out.last_evaluated_key {
                Some(next) => start = Some(next),
                None => break,
            }
        }
        Ok(expired)
    }

    async fn list(&self, org: &OrgId) -> Result<Vec<Lease>> {
        let items = self.0.query_prefix(&org_pk(org), "LEASE#").await?;
        items.iter().map(lease_from).collect()
    }

    async fn active(&self, org: &OrgId, agent: Option<&AgentId>) -> Result<u32> {
        let sk = agent.map_or_else(|| COUNTERS.to_owned(), agent_calls_sk);
        match self.0.get(org_pk(org), sk).await? {
            Some(item) => Ok(get_n_opt::<i64>(&item, "active")?.unwrap_or(0).max(0) as u32),
            None => Ok(0),
        }
    }
}
