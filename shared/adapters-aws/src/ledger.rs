//! The ledger: `ORG#o / LEDGER#<key>` entries, `ORG#o / BALANCE`, `ORG#o / USAGE#yyyymm`.

use crate::directory::org_pk;
use crate::dynamo::{
    get_json, get_n_opt, key, n, names, padded, s, to_json, tx_put, tx_update, values, Table, TxOutcome, UpdateSpec,
    GSI1,
};
use async_trait::async_trait;
use golos_domain::billing::{billable_minutes, LedgerEventKind};
use golos_domain::{Kopecks, OrgId, Timestamp};
use golos_ports::{ApplyOutcome, Ledger, LedgerEntry, Page, PageRequest, PortError, Result};

#[derive(Debug, Clone)]
pub(crate) struct DynamoLedger(pub Table);

fn ledger_sk(key: &str) -> String {
    format!("LEDGER#{key}")
}

#[async_trait]
impl Ledger for DynamoLedger {
    async fn apply(&self, org: &OrgId, event: &LedgerEventKind, now: Timestamp) -> Result<ApplyOutcome> {
        event.validate()?;
        let delta = event.balance_delta()?;
        let idem = event.idempotency_key();
        let entry =
            LedgerEntry { org_id: org.clone(), key: idem.clone(), event: event.clone(), delta, applied_at: now };
        let pk = org_pk(org);
        let table = &*self.0.name;
        let mut item = key(&pk, ledger_sk(&idem));
        item.extend([
            ("gsi1pk".to_owned(), s(format!("{pk}#LEDGER"))),
            ("gsi1sk".to_owned(), s(format!("{}#{idem}", padded(now.as_millis())))),
            ("delta".to_owned(), n(delta.get())),
            ("data".to_owned(), s(to_json(&entry)?)),
        ]);
        let mut items = vec![
            tx_put(table, item, Some("attribute_not_exists(pk)"), None, None)?,
            tx_update(
                table,
                UpdateSpec {
                    key: key(&pk, "BALANCE"),
                    update: "ADD #balance :delta",
                    condition: None,
                    names: names(&["balance"]),
                    values: values([(":delta", n(delta.get()))]),
                },
            )?,
        ];
        if let LedgerEventKind::CallDebit { duration_secs, .. } = event {
            items.push(tx_update(
                table,
                UpdateSpec {
                    key: key(&pk, format!("USAGE#{}", now.year_month())),
                    update: "ADD #minutes :m",
                    condition: None,
                    names: names(&["minutes"]),
                    values: values([(":m", n(billable_minutes(*duration_secs)))]),
                },
            )?);
        }
        match self.0.transact(items).await? {
            TxOutcome::Committed => Ok(ApplyOutcome::Applied(entry)),
            outcome if outcome.failed(0) => match self.get(org, &idem).await? {
                Some(original) => Ok(ApplyOutcome::Duplicate(original)),
                None => {
                    Err(PortError::unavailable(format!("ledger entry {idem} reported as existing but not readable")))
                }
            },
            TxOutcome::Cancelled(reasons) => {
                Err(PortError::ConditionFailed { reason: format!("ledger transaction cancelled: {reasons:?}") })
            }
        }
    }

    async fn balance(&self, org: &OrgId) -> Result<Kopecks> {
        let item = self.0.get(org_pk(org), "BALANCE").await?;
        let value = match item {
            Some(item) => get_n_opt::<i64>(&item, "balance")?.unwrap_or(0),
            None => 0,
        };
        Ok(Kopecks::new(value))
    }

    async fn usage_minutes(&self, org: &OrgId, year_month: u32) -> Result<u64> {
        let item = self.0.get(org_pk(org), format!("USAGE#{year_month}")).await?;
        match item {
            Some(item) => Ok(get_n_opt::<u64>(&item, "minutes")?.unwrap_or(0)),
            None => Ok(0),
        }
    }

    async fn list(&self, org: &OrgId, page: &PageRequest) -> Result<Page<LedgerEntry>> {
        let partition = format!("{}#LEDGER", org_pk(org));
        let raw = self.0.page(Some(GSI1), &partition, None, false, page).await?;
        Ok(Page {
            items: raw.items.iter().map(|item| get_json(item, "data")).collect::<Result<_>>()?,
            next_cursor: raw.next_cursor,
        })
    }

    async fn get(&self, org: &OrgId, key: &str) -> Result<Option<LedgerEntry>> {
        self.0.get(org_pk(org), ledger_sk(key)).await?.map(|item| get_json(&item, "data")).transpose()
    }

    async fn recompute_balance(&self, org: &OrgId) -> Result<Kopecks> {
        let table = &self.0;
        let items = table
            .query_all(|| {
                table
                    .client
                    .query()
                    .table_name(&*table.name)
                    .consistent_read(true)
                    .key_condition_expression("#pk = :p AND begins_with(#sk, :pre)")
                    .projection_expression("#delta")
                    .set_expression_attribute_names(Some(names(&["pk", "sk", "delta"])))
                    .set_expression_attribute_values(Some(values([(":p", s(org_pk(org))), (":pre", s("LEDGER#"))])))
            })
            .await?;
        let mut total = Kopecks::ZERO;
        for item in &items {
            total = total.checked_add(Kopecks::new(get_n_opt::<i64>(item, "delta")?.unwrap_or(0)))?;
        }
        Ok(total)
    }
}
