//! Control-plane stores beyond the foundation: phone numbers (`NUMBER#<e164> / META`, listed
//! per org through gsi1 `ORG#o#NUMBERS`), call records (`ORG#o / CALLREC#c`, newest first
//! through gsi1 `ORG#o#CALLS` by padded `started_at`) and the audit log
//! (`ORG#o / AUDIT#<padded at>#<padded write time>#<random>`, newest first) and provider
//! credentials (`ORG#o / CRED#<name>`, the value as a KMS envelope).

use crate::directory::org_pk;
use crate::dynamo::{get_b, get_json, get_n, get_s, key, n, names, padded, s, to_json, values, Item, Table, GSI1};
use crate::error::sdk_error;
use async_trait::async_trait;
use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use golos_domain::{AgentId, CallId, OrgId, PhoneNumber, Timestamp};
use golos_ports::{
    AuditEntry, AuditLog, CallRecord, CallStore, CredentialStore, NumberAssignment, NumberStore, Page, PageRequest,
    PortError, ProviderCredential, Result,
};

fn number_pk(number: &PhoneNumber) -> String {
    format!("NUMBER#{}", number.expose_e164())
}

fn assignment_from(item: &Item) -> Result<NumberAssignment> {
    Ok(NumberAssignment {
        number: PhoneNumber::parse(get_s(item, "number")?)
            .map_err(|e| PortError::corrupt(format!("stored number: {e}")))?,
        org_id: OrgId::parse(get_s(item, "org_id")?)?,
        agent_id: AgentId::parse(get_s(item, "agent_id")?)?,
        assigned_at: Timestamp::from_millis(get_n(item, "assigned_at")?),
    })
}

#[derive(Debug, Clone)]
pub(crate) struct DynamoNumbers(pub Table);

#[async_trait]
impl NumberStore for DynamoNumbers {
    async fn assign(&self, assignment: &NumberAssignment) -> Result<()> {
        let e164 = assignment.number.expose_e164();
        let mut item = key(number_pk(&assignment.number), "META");
        item.extend([
            ("gsi1pk".to_owned(), s(format!("{}#NUMBERS", org_pk(&assignment.org_id)))),
            ("gsi1sk".to_owned(), s(&e164)),
            ("number".to_owned(), s(e164)),
            ("org_id".to_owned(), s(assignment.org_id.as_str())),
            ("agent_id".to_owned(), s(assignment.agent_id.as_str())),
            ("assigned_at".to_owned(), n(assignment.assigned_at.as_millis())),
        ]);
        let result = self
            .0
            .client
            .put_item()
            .table_name(&*self.0.name)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk) OR #org_id = :org")
            .set_expression_attribute_names(Some(names(&["pk", "org_id"])))
            .set_expression_attribute_values(Some(values([(":org", s(assignment.org_id.as_str()))])))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                Err(PortError::AlreadyExists { what: format!("number {}", assignment.number) })
            }
            Err(e) => Err(sdk_error("PutItem", &e)),
        }
    }

    async fn release(&self, org: &OrgId, number: &PhoneNumber) -> Result<()> {
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

    async fn route(&self, number: &PhoneNumber) -> Result<Option<NumberAssignment>> {
        self.0.get(number_pk(number), "META").await?.map(|item| assignment_from(&item)).transpose()
    }

    async fn list(&self, org: &OrgId, page: &PageRequest) -> Result<Page<NumberAssignment>> {
        let partition = format!("{}#NUMBERS", org_pk(org));
        let raw = self.0.page(Some(GSI1), &partition, None, true, page).await?;
        Ok(Page { items: raw.items.iter().map(assignment_from).collect::<Result<_>>()?, next_cursor: raw.next_cursor })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct DynamoCalls(pub Table);

fn call_from(item: &Item) -> Result<CallRecord> {
    let mut record: CallRecord = get_json(item, "data")?;
    record.transcript = match item.get("transcript") {
        Some(AttributeValue::B(_)) => Some(get_b(item, "transcript")?),
        _ => None,
    };
    Ok(record)
}

#[async_trait]
impl CallStore for DynamoCalls {
    async fn put(&self, call: &CallRecord) -> Result<()> {
        let pk = org_pk(&call.org_id);
        let mut item = key(&pk, format!("CALLREC#{}", call.id));
        let mut data = call.clone();
        let transcript = data.transcript.take();
        item.extend([
            ("gsi1pk".to_owned(), s(format!("{pk}#CALLS"))),
            ("gsi1sk".to_owned(), s(format!("{}#{}", padded(call.started_at.as_millis()), call.id))),
            ("data".to_owned(), s(to_json(&data)?)),
        ]);
        if let Some(transcript) = transcript {
            item.insert("transcript".to_owned(), AttributeValue::B(Blob::new(transcript)));
        }
        self.0
            .client
            .put_item()
            .table_name(&*self.0.name)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| sdk_error("PutItem", &e))?;
        Ok(())
    }

    async fn get(&self, org: &OrgId, call: &CallId) -> Result<Option<CallRecord>> {
        self.0.get(org_pk(org), format!("CALLREC#{call}")).await?.map(|item| call_from(&item)).transpose()
    }

    async fn list(&self, org: &OrgId, page: &PageRequest) -> Result<Page<CallRecord>> {
        let partition = format!("{}#CALLS", org_pk(org));
        let raw = self.0.page(Some(GSI1), &partition, None, false, page).await?;
        Ok(Page { items: raw.items.iter().map(call_from).collect::<Result<_>>()?, next_cursor: raw.next_cursor })
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
        self.0
            .client
            .put_item()
            .table_name(&*self.0.name)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| sdk_error("PutItem", &e))?;
        Ok(())
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
