//! Control-plane stores beyond the foundation: phone numbers granted to orgs and their routing
//! (`NUMBER#<e164> / META`, listed per org through gsi1 `ORG#o#NUMBERS`), call records (`ORG#o / CALLREC#c`, newest first
//! through gsi1 `ORG#o#CALLS` by padded `started_at`) and the audit log
//! (`ORG#o / AUDIT#<padded at>#<padded write time>#<random>`, newest first) and provider
//! credentials (`ORG#o / CRED#<name>`, the value as a KMS envelope).

use crate::directory::org_pk;
use crate::dynamo::{
    get_b, get_json, get_n, get_n_opt, get_s, key, n, names, padded, s, to_json, values, Item, Table, GSI1,
};
use crate::error::sdk_error;
use async_trait::async_trait;
use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use golos_domain::{AgentId, CallId, OrgId, PhoneNumber, Timestamp};
use golos_ports::{
    AuditEntry, AuditLog, CallRecord, CallStatus, CallStore, CallWrite, CredentialStore, NumberAssignment, NumberStore,
    Page, PageRequest, PortError, ProviderCredential, Result,
};
use std::collections::HashMap;

fn number_pk(number: &PhoneNumber) -> String {
    format!("NUMBER#{}", number.expose_e164())
}

fn assignment_from(item: &Item) -> Result<NumberAssignment> {
    // Items written before grants existed carry `assigned_at` and a routed agent: they count
    // as granted to their org since then, so no data migration is needed.
    let granted_at = match get_n_opt(item, "granted_at")? {
        Some(at) => at,
        None => get_n(item, "assigned_at")?,
    };
    let agent_id = match item.get("agent_id") {
        Some(AttributeValue::S(agent)) => Some(AgentId::parse(agent)?),
        _ => None,
    };
    Ok(NumberAssignment {
        number: PhoneNumber::parse(get_s(item, "number")?)
            .map_err(|e| PortError::corrupt(format!("stored number: {e}")))?,
        org_id: OrgId::parse(get_s(item, "org_id")?)?,
        agent_id,
        granted_at: Timestamp::from_millis(granted_at),
    })
}

fn returned_assignment(attributes: Option<&Item>) -> Result<NumberAssignment> {
    assignment_from(attributes.ok_or_else(|| PortError::corrupt("UpdateItem returned no attributes"))?)
}

/// `NUMBER#<e164> / META` holds the grant and the routing together, so every write is one
/// conditional write on the number with the holding org as the condition.
#[derive(Debug, Clone)]
pub(crate) struct DynamoNumbers(pub Table);

#[async_trait]
impl NumberStore for DynamoNumbers {
    async fn grant(&self, org: &OrgId, number: &PhoneNumber, at: Timestamp) -> Result<NumberAssignment> {
        let e164 = number.expose_e164();
        let result = self
            .0
            .client
            .update_item()
            .table_name(&*self.0.name)
            .set_key(Some(key(number_pk(number), "META")))
            .update_expression(
                "SET #number = :number, #org_id = :org, #gsi1pk = :gsi1pk, #gsi1sk = :number, \
                 #granted_at = if_not_exists(#granted_at, :at)",
            )
            .condition_expression("attribute_not_exists(#pk) OR #org_id = :org")
            .set_expression_attribute_names(Some(names(&["pk", "number", "org_id", "gsi1pk", "gsi1sk", "granted_at"])))
            .set_expression_attribute_values(Some(values([
                (":number", s(&e164)),
                (":org", s(org.as_str())),
                (":gsi1pk", s(format!("{}#NUMBERS", org_pk(org)))),
                (":at", n(at.as_millis())),
            ])))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => returned_assignment(out.attributes()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                Err(PortError::AlreadyExists { what: format!("number {number}") })
            }
            Err(e) => Err(sdk_error("UpdateItem", &e)),
        }
    }

    async fn revoke(&self, org: &OrgId, number: &PhoneNumber) -> Result<()> {
        let result = self
            .0
            .client
            .delete_item()
            .table_name(&*self.0.name)
            .set_key(Some(key(number_pk(number), "META")))
            .condition_expression("#org_id = :org")
            .set_expression_attribute_names(Some(names(&["org_id"])))
            .set_expression_attribute_values(Some(values([(":org", s(org.as_str()))])))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                Err(PortError::not_found(format!("number {number}")))
            }
            Err(e) => Err(sdk_error("DeleteItem", &e)),
        }
    }

    async fn assign(&self, org: &OrgId, number: &PhoneNumber, agent: Option<&AgentId>) -> Result<NumberAssignment> {
        let mut request = self
            .0
            .client
            .update_item()
            .table_name(&*self.0.name)
            .set_key(Some(key(number_pk(number), "META")))
            .condition_expression("#org_id = :org")
            .return_values(ReturnValue::AllNew);
        request = match agent {
            Some(agent) => request
                .update_expression("SET #agent_id = :agent")
                .set_expression_attribute_names(Some(names(&["org_id", "agent_id"])))
                .set_expression_attribute_values(Some(values([
                    (":org", s(org.as_str())),
                    (":agent", s(agent.as_str())),
                ]))),
            None => request
                .update_expression("REMOVE #agent_id")
                .set_expression_attribute_names(Some(names(&["org_id", "agent_id"])))
                .set_expression_attribute_values(Some(values([(":org", s(org.as_str()))]))),
        };
        match request.send().await {
            Ok(out) => returned_assignment(out.attributes()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                Err(PortError::not_found(format!("number {number}")))
            }
            Err(e) => Err(sdk_error("UpdateItem", &e)),
        }
    }

    async fn route(&self, number: &PhoneNumber) -> Result<Option<NumberAssignment>> {
        let found = self.0.get(number_pk(number), "META").await?.map(|item| assignment_from(&item)).transpose()?;
        Ok(found.filter(|n| n.agent_id.is_some()))
    }

    async fn list(&self, org: &OrgId, page: &PageRequest) -> Result<Page<NumberAssignment>> {
        let partition = format!("{}#NUMBERS", org_pk(org));
        let raw = self.0.page(Some(GSI1), &partition, None, true, page).await?;
        Ok(Page { items: raw.items.iter().map(assignment_from).collect::<Result<_>>()?, next_cursor: raw.next_cursor })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct DynamoCalls(pub Table);

const CALL_PREFIX: &str = "CALLREC#";
const BLOB_PREFIX: &str = "CALLBLOB#";
/// Conditional writes of one record that lost to another writer are retried this often.
const CALL_WRITE_ATTEMPTS: usize = 8;

fn call_from(item: &Item) -> Result<CallRecord> {
    let mut record: CallRecord = get_json(item, "data")?;
    record.transcript = match item.get("transcript") {
        Some(AttributeValue::B(_)) => Some(get_b(item, "transcript")?),
        _ => None,
    };
    Ok(record)
}

fn status_name(status: CallStatus) -> &'static str {
    match status {
        CallStatus::InProgress => "in_progress",
        CallStatus::Ended => "ended",
        CallStatus::Failed => "failed",
    }
}

/// Seconds for the DynamoDB TTL attribute: DynamoDB deletes the item within about two days
/// after this (reads of the record before then still find it).
fn ttl_secs(at: Timestamp) -> i64 {
    at.as_secs() + 1
}

/// The item of a record. `status` and `erased_at` are attributes of their own, so
/// conditions can test them; the rest is the JSON `data` and the encrypted `transcript`.
fn call_item(call: &CallRecord) -> Result<Item> {
    let pk = org_pk(&call.org_id);
    let mut item = key(&pk, format!("{CALL_PREFIX}{}", call.id));
    let mut data = call.clone();
    let transcript = data.transcript.take();
    item.extend([
        ("gsi1pk".to_owned(), s(format!("{pk}#CALLS"))),
        ("gsi1sk".to_owned(), s(format!("{}#{}", padded(call.started_at.as_millis()), call.id))),
        ("data".to_owned(), s(to_json(&data)?)),
        ("status".to_owned(), s(status_name(call.status))),
    ]);
    if let Some(transcript) = transcript {
        item.insert("transcript".to_owned(), AttributeValue::B(Blob::new(transcript)));
    }
    if let Some(erasure) = &call.erased {
        item.insert("erased_at".to_owned(), n(erasure.at.as_millis()));
    }
    if let Some(expires_at) = call.expires_at {
        item.insert("ttl".to_owned(), n(ttl_secs(expires_at)));
    }
    Ok(item)
}

/// The condition under which a write over `stored` (as it was read) still holds: the item
/// is absent, or still in the status and erasure state that was read.
/// (DynamoDB refuses expression names or values that the expression does not use.)
fn unchanged_since(
    stored: Option<&CallRecord>,
) -> (String, HashMap<String, String>, Option<HashMap<String, AttributeValue>>) {
    match stored {
        None => ("attribute_not_exists(#pk)".to_owned(), names(&["pk"]), None),
        Some(stored) => {
            let erased = if stored.erased.is_some() { "attribute_exists" } else { "attribute_not_exists" };
            // Items written before `status` was an attribute of its own have none: the first
            // conditional write gives them one.
            (
                format!(
                    "attribute_exists(#pk) AND (#status = :status OR attribute_not_exists(#status)) \
                     AND {erased}(#erased_at)"
                ),
                names(&["pk", "status", "erased_at"]),
                Some(values([(":status", s(status_name(stored.status)))])),
            )
        }
    }
}

impl DynamoCalls {
    async fn read(&self, org: &OrgId, call: &CallId) -> Result<Option<CallRecord>> {
        self.0.get(org_pk(org), format!("{CALL_PREFIX}{call}")).await?.map(|item| call_from(&item)).transpose()
    }

    /// Writes `call` if the stored record is still as `stored`; `false` if it changed.
    async fn put_if_unchanged(&self, call: &CallRecord, stored: Option<&CallRecord>) -> Result<bool> {
        let (condition, names_, values_) = unchanged_since(stored);
        self.0.put_if(call_item(call)?, &condition, names_, values_.unwrap_or_default()).await
    }
}

#[async_trait]
impl CallStore for DynamoCalls {
    async fn record_start(&self, call: &CallRecord) -> Result<CallWrite> {
        if call.status != CallStatus::InProgress {
            return Err(PortError::invalid("a call's start must be in_progress"));
        }
        for _ in 0..CALL_WRITE_ATTEMPTS {
            if self.put_if_unchanged(call, None).await? {
                return Ok(CallWrite::Written(call.clone()));
            }
            // Deleted again between the failed condition and this read (retention): retry.
            if let Some(stored) = self.read(&call.org_id, &call.id).await? {
                return Ok(CallWrite::Unchanged(stored));
            }
        }
        Err(PortError::unavailable(format!("call record {} kept changing", call.id)))
    }

    async fn record_end(&self, call: &CallRecord) -> Result<CallWrite> {
        if !call.is_final() {
            return Err(PortError::invalid("a call's end must be ended or failed"));
        }
        for _ in 0..CALL_WRITE_ATTEMPTS {
            let stored = self.read(&call.org_id, &call.id).await?;
            let Some(merged) = CallRecord::merge_end(stored.as_ref(), call) else {
                return Ok(CallWrite::Unchanged(stored.ok_or_else(|| PortError::corrupt("call vanished"))?));
            };
            if self.put_if_unchanged(&merged, stored.as_ref()).await? {
                return Ok(CallWrite::Written(merged));
            }
        }
        Err(PortError::unavailable(format!("call record {} kept changing", call.id)))
    }

    async fn get(&self, org: &OrgId, call: &CallId) -> Result<Option<CallRecord>> {
        self.read(org, call).await
    }

    async fn list(&self, org: &OrgId, page: &PageRequest) -> Result<Page<CallRecord>> {
        let partition = format!("{}#CALLS", org_pk(org));
        let raw = self.0.page(Some(GSI1), &partition, None, false, page).await?;
        Ok(Page { items: raw.items.iter().map(call_from).collect::<Result<_>>()?, next_cursor: raw.next_cursor })
    }

    async fn erase(&self, org: &OrgId, call: &CallId, at: Timestamp) -> Result<CallRecord> {
        self.delete_transcript_blob(org, call).await?;
        for _ in 0..CALL_WRITE_ATTEMPTS {
            let stored = self.read(org, call).await?.ok_or_else(|| PortError::not_found(format!("call {call}")))?;
            if stored.erased.is_some() {
                return Ok(stored);
            }
            let erased = stored.clone().erased_at(at);
            if self.put_if_unchanged(&erased, Some(&stored)).await? {
                return Ok(erased);
            }
        }
        Err(PortError::unavailable(format!("call record {call} kept changing")))
    }

    async fn find_by_number(&self, org: &OrgId, number: &PhoneNumber, page: &PageRequest) -> Result<Page<CallRecord>> {
        // The org's records are read and filtered on the number as it appears in `data`
        // (quoted, so a longer number with the same prefix does not match), then checked
        // exactly here. Erasures are rare; this reads the org's calls once per erasure.
        let limit = page.clamped_limit() as usize;
        let pk = org_pk(org);
        let mut start = match &page.cursor {
            Some(cursor) => {
                let id = CallId::parse(cursor).map_err(|_| PortError::bad_cursor("calls by number"))?;
                Some(key(&pk, format!("{CALL_PREFIX}{id}")))
            }
            None => None,
        };
        let needle = format!("\"{}\"", number.expose_e164());
        let mut items = Vec::new();
        loop {
            let out = self
                .0
                .client
                .query()
                .table_name(&*self.0.name)
                .consistent_read(true)
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                .filter_expression("contains(#data, :number) AND attribute_not_exists(#erased_at)")
                .set_expression_attribute_names(Some(names(&["pk", "sk", "data", "erased_at"])))
                .set_expression_attribute_values(Some(values([
                    (":pk", s(&pk)),
                    (":prefix", s(CALL_PREFIX)),
                    (":number", s(&needle)),
                ])))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query", &e))?;
            for item in out.items.unwrap_or_default() {
                let call = call_from(&item)?;
                if call.involves(number) && call.erased.is_none() {
                    items.push(call);
                }
            }
            match out.last_evaluated_key {
                Some(next) if items.len() <= limit => start = Some(next),
                _ => break,
            }
        }
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|c| c.id.to_string())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    async fn delete_expired(&self, _now: Timestamp, _max: usize) -> Result<Vec<(OrgId, CallId)>> {
        // Records and transcript blobs carry the table's TTL attribute: DynamoDB deletes them.
        Ok(Vec::new())
    }

    async fn put_transcript_blob(
        &self,
        org: &OrgId,
        call: &CallId,
        envelope: &[u8],
        expires_at: Timestamp,
    ) -> Result<()> {
        let mut item = key(org_pk(org), format!("{BLOB_PREFIX}{call}"));
        item.extend([
            ("envelope".to_owned(), AttributeValue::B(Blob::new(envelope.to_vec()))),
            ("expires_at".to_owned(), n(expires_at.as_millis())),
            ("ttl".to_owned(), n(ttl_secs(expires_at))),
        ]);
        self.0.put(item).await
    }

    async fn transcript_blob(&self, org: &OrgId, call: &CallId, now: Timestamp) -> Result<Option<Vec<u8>>> {
        let Some(item) = self.0.get(org_pk(org), format!("{BLOB_PREFIX}{call}")).await? else {
            return Ok(None);
        };
        if get_n::<i64>(&item, "expires_at")? <= now.as_millis() {
            return Ok(None);
        }
        get_b(&item, "envelope").map(Some)
    }

    async fn delete_transcript_blob(&self, org: &OrgId, call: &CallId) -> Result<()> {
        self.0.delete(org_pk(org), format!("{BLOB_PREFIX}{call}")).await
    }
}

#[derive(Debug, Clone)]
pub(crate) struct DynamoAudit(pub Table);

#[async_trait]
impl AuditLog for DynamoAudit {
    async fn append(&self, entry: &AuditEntry) -> Result<()> {
        // Entries of the same instant keep their order of writing (on one host).
        let written = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let random = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let sk = format!("AUDIT#{}#{written:039}#{random}", padded(entry.at.as_millis()));
        let mut item = key(org_pk(&entry.org_id), sk);
        item.insert("data".to_owned(), s(to_json(entry)?));
        self.0.put(item).await
    }

    async fn list(&self, org: &OrgId, page: &PageRequest) -> Result<Page<AuditEntry>> {
        let raw = self.0.page(None, &org_pk(org), Some("AUDIT#"), false, page).await?;
        Ok(Page {
            items: raw.items.iter().map(|item| get_json(item, "data")).collect::<Result<_>>()?,
            next_cursor: raw.next_cursor,
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct DynamoCredentials(pub Table);

const CREDENTIAL_PREFIX: &str = "CRED#";

fn credential_from(item: &Item) -> Result<ProviderCredential> {
    Ok(ProviderCredential {
        org_id: OrgId::parse(get_s(item, "org_id")?)?,
        name: get_s(item, "name")?.to_owned(),
        envelope: get_b(item, "envelope")?,
        fingerprint: get_s(item, "fingerprint")?.to_owned(),
        created_at: Timestamp::from_millis(get_n(item, "created_at")?),
        updated_at: Timestamp::from_millis(get_n(item, "updated_at")?),
    })
}

#[async_trait]
impl CredentialStore for DynamoCredentials {
    async fn put(&self, credential: &ProviderCredential) -> Result<bool> {
        let result = self
            .0
            .client
            .update_item()
            .table_name(&*self.0.name)
            .set_key(Some(key(org_pk(&credential.org_id), format!("{CREDENTIAL_PREFIX}{}", credential.name))))
            .update_expression(
                "SET #org_id = :org, #name = :name, #envelope = :envelope, #fingerprint = :fingerprint, \
                 #updated_at = :updated, #created_at = if_not_exists(#created_at, :created)",
            )
            .set_expression_attribute_names(Some(names(&[
                "org_id",
                "name",
                "envelope",
                "fingerprint",
                "updated_at",
                "created_at",
            ])))
            .set_expression_attribute_values(Some(values([
                (":org", s(credential.org_id.as_str())),
                (":name", s(&credential.name)),
                (":envelope", AttributeValue::B(Blob::new(credential.envelope.clone()))),
                (":fingerprint", s(&credential.fingerprint)),
                (":updated", n(credential.updated_at.as_millis())),
                (":created", n(credential.created_at.as_millis())),
            ])))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| sdk_error("UpdateItem", &e))?;
        // ALL_OLD is the item as it was: nothing for a new credential.
        Ok(result.attributes().is_none_or(|old| !old.contains_key("envelope")))
    }

    async fn get(&self, org: &OrgId, name: &str) -> Result<Option<ProviderCredential>> {
        let item = self.0.get(org_pk(org), format!("{CREDENTIAL_PREFIX}{name}")).await?;
        item.as_ref().map(credential_from).transpose()
    }

    async fn list(&self, org: &OrgId, page: &PageRequest) -> Result<Page<ProviderCredential>> {
        let raw = self.0.page(None, &org_pk(org), Some(CREDENTIAL_PREFIX), true, page).await?;
        Ok(Page { items: raw.items.iter().map(credential_from).collect::<Result<_>>()?, next_cursor: raw.next_cursor })
    }

    async fn delete(&self, org: &OrgId, name: &str) -> Result<()> {
        let result = self
            .0
            .client
            .delete_item()
            .table_name(&*self.0.name)
            .set_key(Some(key(org_pk(org), format!("{CREDENTIAL_PREFIX}{name}"))))
            .condition_expression("attribute_exists(#pk)")
            .set_expression_attribute_names(Some(names(&["pk"])))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                Err(PortError::not_found(format!("provider credential {name}")))
            }
            Err(e) => Err(sdk_error("DeleteItem", &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(fields: &[(&str, AttributeValue)]) -> Item {
        fields.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
    }

    #[test]
    fn numbers_routed_before_grants_existed_count_as_granted() {
        let legacy = item(&[
            ("number", s("+74951234567")),
            ("org_id", s("org_a")),
            ("agent_id", s("agt_a")),
            ("assigned_at", n(5)),
        ]);
        let decoded = assignment_from(&legacy).unwrap();
        assert_eq!(
            (decoded.org_id.as_str(), decoded.agent_id.as_ref().map(AgentId::as_str), decoded.granted_at),
            ("org_a", Some("agt_a"), Timestamp::from_millis(5))
        );
        let granted = item(&[("number", s("+74951234567")), ("org_id", s("org_a")), ("granted_at", n(7))]);
        assert_eq!(assignment_from(&granted).unwrap().agent_id, None);
    }
}
