//! SIP trunks: `TRUNK#<id> / TRUNK`, the record as JSON with its version as a number
//! attribute (so updates are conditional on it), all listed through gsi1 (`TRUNKS`, by id).

use crate::dynamo::{get_json, get_n, key, n, s, to_json, values, Item, Table, GSI1};
use async_trait::async_trait;
use golos_domain::TrunkId;
use golos_ports::{PortError, Result, SipTrunk, SipTrunkStore};
use std::collections::HashMap;

const TRUNK_SK: &str = "TRUNK";
const TRUNKS_INDEX: &str = "TRUNKS";

#[derive(Debug, Clone)]
pub(crate) struct DynamoTrunks(pub Table);

fn trunk_item(trunk: &SipTrunk) -> Result<Item> {
    let mut item = key(format!("TRUNK#{}", trunk.id), TRUNK_SK);
    item.extend([
        ("gsi1pk".to_owned(), s(TRUNKS_INDEX)),
        ("gsi1sk".to_owned(), s(trunk.id.as_str())),
        ("version".to_owned(), n(trunk.version)),
        ("body".to_owned(), s(to_json(trunk)?)),
    ]);
    Ok(item)
}

#[async_trait]
impl SipTrunkStore for DynamoTrunks {
    async fn create(&self, trunk: &SipTrunk) -> Result<()> {
        let written =
            self.0.put_if(trunk_item(trunk)?, "attribute_not_exists(pk)", HashMap::new(), HashMap::new()).await?;
        if written {
            Ok(())
        } else {
            Err(PortError::AlreadyExists { what: format!("trunk {}", trunk.id) })
        }
    }

    async fn get(&self, id: &TrunkId) -> Result<Option<SipTrunk>> {
        self.0.get(format!("TRUNK#{id}"), TRUNK_SK).await?.map(|item| get_json(&item, "body")).transpose()
    }

    async fn update(&self, trunk: &SipTrunk) -> Result<u64> {
        let next = SipTrunk { version: trunk.version + 1, ..trunk.clone() };
        let condition = "attribute_exists(pk) AND #v = :expected";
        let names = HashMap::from([("#v".to_owned(), "version".to_owned())]);
        if self.0.put_if(trunk_item(&next)?, condition, names, values([(":expected", n(trunk.version))])).await? {
            return Ok(next.version);
        }
        match self.0.get(format!("TRUNK#{}", trunk.id), TRUNK_SK).await? {
            None => Err(PortError::not_found(format!("trunk {}", trunk.id))),
            Some(item) => Err(PortError::Conflict { expected: trunk.version, actual: get_n(&item, "version")? }),
        }
    }

    async fn delete(&self, id: &TrunkId) -> Result<()> {
        if self.get(id).await?.is_none() {
            return Err(PortError::not_found(format!("trunk {id}")));
        }
        self.0.delete(format!("TRUNK#{id}"), TRUNK_SK).await
    }

    async fn all(&self) -> Result<Vec<SipTrunk>> {
        let table = &self.0;
        let items = table
            .query_all(|| {
                table
                    .client
                    .query()
                    .table_name(&*table.name)
                    .index_name(GSI1)
                    .key_condition_expression("#g = :p")
                    .expression_attribute_names("#g", "gsi1pk")
                    .expression_attribute_values(":p", s(TRUNKS_INDEX))
            })
            .await?;
        items.iter().map(|item| get_json(item, "body")).collect()
    }
}
