//! The hold queue, under the org's partition: one item per waiter, `ORG#o / HOLD#<call>`,
//! the number of waiters on `ORG#o / HOLDS` (`waiting`, for the per-org cap) and the arrival
//! sequence on `ORG#o / HOLDSEQ` (`seq`).
//!
//! A join takes the next `seq` (an atomic `ADD`), then writes the waiter and counts it in one
//! transaction: a put conditional on the item being absent (so two workers joining one call
//! store it once, and a refresh never moves anyone back) and an `ADD` conditional on
//! `waiting < cap`. A refresh is an update conditional on the waiter being there and fresh;
//! every delete (leaving, forgetting a stale waiter) is conditional and takes `waiting` down
//! in the same transaction, so the count never drifts. `seq` lives on its own item because a
//! plain update of an item inside a running transaction is refused.

use crate::directory::org_pk;
use crate::dynamo::{
    get_n, get_s, key, n, names, s, tx_delete, tx_put, tx_update, values, Item, Table, TxOutcome, UpdateSpec,
};
use crate::error::sdk_error;
use async_trait::async_trait;
use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
use aws_sdk_dynamodb::types::ReturnValue;
use golos_domain::{AgentId, CallId, OrgId, Timestamp};
use golos_ports::hold::{sort_line, HOLD_QUEUE_QUOTA};
use golos_ports::{HoldQueue, HoldReason, HoldRequest, PortError, Result, Waiter};

const WAITER_PREFIX: &str = "HOLD#";
const WAITING: &str = "HOLDS";
const SEQUENCE: &str = "HOLDSEQ";
const ATTEMPTS: usize = 5;

#[derive(Debug, Clone)]
pub(crate) struct DynamoHoldQueue(pub Table);

fn waiter_sk(call: &CallId) -> String {
    format!("{WAITER_PREFIX}{call}")
}

fn waiter_from(item: &Item) -> Result<Waiter> {
    Ok(Waiter {
        org_id: OrgId::parse(get_s(item, "org_id")?)?,
        agent_id: AgentId::parse(get_s(item, "agent_id")?)?,
        call_id: CallId::parse(get_s(item, "call_id")?)?,
        priority: get_n(item, "priority")?,
        arrival: get_n(item, "arrival")?,
        reason: HoldReason::parse(get_s(item, "reason")?)
            .ok_or_else(|| PortError::corrupt("hold waiter: unknown reason"))?,
        since: Timestamp::from_millis(get_n(item, "since")?),
        last_seen: Timestamp::from_millis(get_n(item, "last_seen")?),
    })
}

const fn cutoff(now: Timestamp, stale_after_ms: i64) -> i64 {
    now.as_millis().saturating_sub(stale_after_ms)
}

impl DynamoHoldQueue {
    /// Deletes the waiter and counts it out, in one transaction; with `seen`, only if its
    /// `last_seen` is still that (a stale waiter that did not ask again meanwhile). `false`
    /// when the condition did not hold.
    async fn delete(&self, org: &OrgId, call: &CallId, seen: Option<Timestamp>) -> Result<bool> {
        let table = &*self.0.name;
        let pk = org_pk(org);
        let (condition, del_names, del_values) = match seen {
            Some(seen) => (
                "attribute_exists(#pk) AND #last_seen = :seen",
                names(&["pk", "last_seen"]),
                values([(":seen", n(seen.as_millis()))]),
            ),
            None => ("attribute_exists(#pk)", names(&["pk"]), values([])),
        };
        let outcome = self
            .0
            .transact(vec![
                tx_delete(table, key(&pk, waiter_sk(call)), condition, del_names, del_values)?,
                tx_update(
                    table,
                    UpdateSpec {
                        key: key(&pk, WAITING),
                        update: "ADD #waiting :minus",
                        condition: None,
                        names: names(&["waiting"]),
                        values: values([(":minus", n(-1))]),
                    },
                )?,
            ])
            .await?;
        Ok(matches!(outcome, TxOutcome::Committed))
    }

    /// Every waiter item of the org, strongly consistent, in no particular order.
    async fn all(&self, org: &OrgId) -> Result<Vec<Waiter>> {
        let items = self.0.query_prefix(&org_pk(org), WAITER_PREFIX).await?;
        items.iter().map(waiter_from).collect()
    }

    /// Refreshes a fresh waiter: `None` if it is absent or stale.
    async fn refresh(&self, request: &HoldRequest, now: Timestamp, stale_after_ms: i64) -> Result<Option<Waiter>> {
        let result = self
            .0
            .client
            .update_item()
            .table_name(&*self.0.name)
            .set_key(Some(key(org_pk(&request.org_id), waiter_sk(&request.call_id))))
            .update_expression("SET #last_seen = :now, #reason = :reason")
            .condition_expression("attribute_exists(#pk) AND #last_seen > :cutoff")
            .set_expression_attribute_names(Some(names(&["pk", "last_seen", "reason"])))
            .set_expression_attribute_values(Some(values([
                (":now", n(now.as_millis())),
                (":reason", s(request.reason.as_str())),
                (":cutoff", n(cutoff(now, stale_after_ms))),
            ])))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => Ok(Some(waiter_from(&out.attributes.unwrap_or_default())?)),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(None),
            Err(e) => Err(sdk_error("UpdateItem", &e)),
        }
    }

    /// The org's waiters that are not stale, in no particular order, and how many stale
    /// ones were forgotten.
    async fn live(&self, org: &OrgId, now: Timestamp, stale_after_ms: i64) -> Result<(Vec<Waiter>, usize)> {
        let mut waiters = self.all(org).await?;
        let mut forgotten = 0;
        for stale in waiters.iter().filter(|w| w.is_stale(now, stale_after_ms)) {
            // Only if it did not ask again since it was read.
            if self.delete(org, &stale.call_id, Some(stale.last_seen)).await? {
                forgotten += 1;
            }
        }
        waiters.retain(|w| !w.is_stale(now, stale_after_ms));
        Ok((waiters, forgotten))
    }

    async fn next_arrival(&self, org: &OrgId) -> Result<u64> {
        let out = self
            .0
            .client
            .update_item()
            .table_name(&*self.0.name)
            .set_key(Some(key(org_pk(org), SEQUENCE)))
            .update_expression("ADD #seq :one")
            .set_expression_attribute_names(Some(names(&["seq"])))
            .set_expression_attribute_values(Some(values([(":one", n(1))])))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| sdk_error("UpdateItem", &e))?;
        get_n(&out.attributes.unwrap_or_default(), "seq")
    }

    /// Writes a new waiter if the call is not in line and the line has room. `None`: the
    /// call was put in line meanwhile (by another worker).
    async fn join(&self, request: &HoldRequest, now: Timestamp, max_waiters: u32) -> Result<Option<Waiter>> {
        let waiter = Waiter {
            org_id: request.org_id.clone(),
            agent_id: request.agent_id.clone(),
            call_id: request.call_id.clone(),
            priority: request.priority,
            arrival: self.next_arrival(&request.org_id).await?,
            reason: request.reason,
            since: now,
            last_seen: now,
        };
        let table = &*self.0.name;
        let pk = org_pk(&request.org_id);
        let mut item = key(&pk, waiter_sk(&waiter.call_id));
        item.extend([
            ("org_id".to_owned(), s(waiter.org_id.as_str())),
            ("agent_id".to_owned(), s(waiter.agent_id.as_str())),
            ("call_id".to_owned(), s(waiter.call_id.as_str())),
            ("priority".to_owned(), n(waiter.priority)),
            ("arrival".to_owned(), n(waiter.arrival)),
            ("reason".to_owned(), s(waiter.reason.as_str())),
            ("since".to_owned(), n(now.as_millis())),
            ("last_seen".to_owned(), n(now.as_millis())),
        ]);
        let outcome = self
            .0
            .transact(vec![
                tx_put(table, item, Some("attribute_not_exists(pk)"), None, None)?,
                tx_update(
                    table,
                    UpdateSpec {
                        key: key(&pk, WAITING),
                        update: "ADD #waiting :one",
                        condition: Some("attribute_not_exists(#waiting) OR #waiting < :cap"),
                        names: names(&["waiting"]),
                        values: values([(":one", n(1)), (":cap", n(max_waiters))]),
                    },
                )?,
            ])
            .await?;
        if matches!(outcome, TxOutcome::Committed) {
            return Ok(Some(waiter));
        }
        if outcome.failed(0) {
            return Ok(None);
        }
        Err(PortError::QuotaExceeded { quota: HOLD_QUEUE_QUOTA, limit: u64::from(max_waiters) })
    }
}

#[async_trait]
impl HoldQueue for DynamoHoldQueue {
    async fn line(&self, org: &OrgId, now: Timestamp, stale_after_ms: i64) -> Result<Vec<Waiter>> {
        let (mut line, _) = self.live(org, now, stale_after_ms).await?;
        sort_line(&mut line);
        Ok(line)
    }

    async fn hold(
        &self,
        request: &HoldRequest,
        now: Timestamp,
        stale_after_ms: i64,
        max_waiters: u32,
    ) -> Result<Waiter> {
        if max_waiters == 0 {
            // `attribute_not_exists(waiting)` would let a first waiter past a zero cap.
            return Err(PortError::QuotaExceeded { quota: HOLD_QUEUE_QUOTA, limit: 0 });
        }
        for _ in 0..ATTEMPTS {
            if let Some(waiter) = self.refresh(request, now, stale_after_ms).await? {
                return Ok(waiter);
            }
            // Absent, or stale: a stale place is forgotten first, so the call goes to the back.
            if let Some(item) = self.0.get(org_pk(&request.org_id), waiter_sk(&request.call_id)).await? {
                let stored = waiter_from(&item)?;
                if stored.is_stale(now, stale_after_ms) {
                    self.delete(&request.org_id, &request.call_id, Some(stored.last_seen)).await?;
                }
                continue;
            }
            match self.join(request, now, max_waiters).await {
                Ok(Some(waiter)) => return Ok(waiter),
                Ok(None) => {}
                Err(full @ PortError::QuotaExceeded { .. }) => {
                    // Waiters that stopped asking still count until forgotten: forget them
                    // and try again, or the line really is full.
                    if self.live(&request.org_id, now, stale_after_ms).await?.1 == 0 {
                        return Err(full);
                    }
                }
                Err(other) => return Err(other),
            }
        }
        Err(PortError::unavailable("hold queue join kept racing other writes of the call"))
    }

    async fn leave(&self, org: &OrgId, call: &CallId) -> Result<bool> {
        // Most calls never waited: a read spares them a transaction.
        if self.0.get(org_pk(org), waiter_sk(call)).await?.is_none() {
            return Ok(false);
        }
        self.delete(org, call, None).await
    }
}
