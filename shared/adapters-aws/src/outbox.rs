//! The outbox: `OUTBOX#<id> / OUTBOX`, listed oldest first through gsi1 (`OUTBOX`, by
//! zero-padded creation time). One conditional put per entry, so a retried write keeps one.

use crate::dynamo::{get_n, get_s, key, n, padded, s, values, Item, Table, GSI1};
use crate::error::sdk_error;
use async_trait::async_trait;
use golos_domain::Timestamp;
use golos_ports::{Outbox, OutboxEntry, Result};
use std::collections::HashMap;

const OUTBOX_INDEX: &str = "OUTBOX";

#[derive(Debug, Clone)]
pub(crate) struct DynamoOutbox(pub Table);

fn entry_key(id: &str) -> Item {
    key(format!("OUTBOX#{id}"), OUTBOX_INDEX)
}

fn entry_from(item: &Item) -> Result<OutboxEntry> {
    Ok(OutboxEntry {
        id: get_s(item, "id")?.to_owned(),
        body: get_s(item, "body")?.to_owned(),
        created_at: Timestamp::from_millis(get_n(item, "created_at")?),
    })
}

#[async_trait]
impl Outbox for DynamoOutbox {
    async fn put(&self, entry: &OutboxEntry) -> Result<bool> {
        let mut item = entry_key(&entry.id);
        item.extend([
            ("gsi1pk".to_owned(), s(OUTBOX_INDEX)),
            ("gsi1sk".to_owned(), s(format!("{}#{}", padded(entry.created_at.as_millis()), entry.id))),
            ("id".to_owned(), s(&entry.id)),
            ("body".to_owned(), s(&entry.body)),
            ("created_at".to_owned(), n(entry.created_at.as_millis())),
        ]);
        self.0.put_if(item, "attribute_not_exists(pk)", HashMap::new(), HashMap::new()).await
    }

    async fn pending(&self, before: Timestamp, max: usize) -> Result<Vec<OutboxEntry>> {
        let mut entries = Vec::new();
        let mut start = None;
        while entries.len() < max {
            let out = self
                .0
                .client
                .query()
                .table_name(&*self.0.name)
                .index_name(GSI1)
                .key_condition_expression("#g = :p AND #gs < :before")
                .expression_attribute_names("#g", "gsi1pk")
                .expression_attribute_names("#gs", "gsi1sk")
                .set_expression_attribute_values(Some(values([
                    (":p", s(OUTBOX_INDEX)),
                    (":before", s(padded(before.as_millis()))),
                ])))
                .limit(100)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query", &e))?;
            for item in out.items.unwrap_or_default() {
                if entries.len() < max {
                    entries.push(entry_from(&item)?);
                }
            }
            match out.last_evaluated_key {
                Some(next) => start = Some(next),
                None => break,
            }
        }
        Ok(entries)
    }

    async fn delete(&self, id: &str) -> Result<()> {
        self.0.delete(format!("OUTBOX#{id}"), OUTBOX_INDEX).await
    }
}
