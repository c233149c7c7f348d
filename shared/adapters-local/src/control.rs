//! Phone numbers, call records, the audit log and provider credentials over SQLite.

use crate::sql;
use crate::stores::{collect, from_json, page_of, parse_id, to_json, OrgListing, SqliteStores};
use async_trait::async_trait;
use golos_domain::{AgentId, CallId, OrgId, PhoneNumber, Timestamp};
use golos_ports::{
    AuditEntry, AuditLog, CallRecord, CallStatus, CallStore, CallWrite, CredentialStore, NumberAssignment, NumberStore,
    Page, PageRequest, PortError, ProviderCredential, Result,
};
use rusqlite::{params, Connection, OptionalExtension, Row};

type NumberRow = (String, String, Option<String>, i64);

const NUMBER_COLUMNS: &str = "number, org_id, agent_id, granted_at";

fn number_row(r: &Row<'_>) -> rusqlite::Result<NumberRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn decode_number((number, org, agent, at): NumberRow) -> Result<NumberAssignment> {
    Ok(NumberAssignment {
        number: PhoneNumber::parse(&number).map_err(|e| PortError::corrupt(format!("stored number: {e}")))?,
        org_id: parse_id(&org, OrgId::parse)?,
        agent_id: agent.map(|a| parse_id(&a, AgentId::parse)).transpose()?,
        granted_at: Timestamp::from_millis(at),
    })
}

fn number_by_e164(c: &Connection, number: &str) -> Result<Option<NumberAssignment>> {
    let row = c
        .prepare_cached(&format!("SELECT {NUMBER_COLUMNS} FROM numbers WHERE number = ?1"))
        .and_then(|mut s| s.query_row([number], number_row).optional())
        .map_err(sql)?;
    row.map(decode_number).transpose()
}

// Every write runs on the single writer connection inside its transaction, so the check of
// the holding org and the write that follows cannot interleave with another org's write.
#[async_trait]
impl NumberStore for SqliteStores {
    async fn grant(&self, org: &OrgId, number: &PhoneNumber, at: Timestamp) -> Result<NumberAssignment> {
        let (org, number) = (org.clone(), number.clone());
        self.db
            .write(move |c| {
                let e164 = number.expose_e164();
                c.prepare_cached(
                    "INSERT INTO numbers (number, org_id, agent_id, granted_at) VALUES (?1, ?2, NULL, ?3)
                     ON CONFLICT (number) DO NOTHING",
                )
                .and_then(|mut s| s.execute(params![e164, org.as_str(), at.as_millis()]))
                .map_err(sql)?;
                match number_by_e164(c, &e164)? {
                    Some(held) if held.org_id == org => Ok(held),
                    _ => Err(PortError::AlreadyExists { what: format!("number {number}") }),
                }
            })
            .await
    }

    async fn revoke(&self, org: &OrgId, number: &PhoneNumber) -> Result<()> {
        let (org, number) = (org.clone(), number.clone());
        self.db
            .write(move |c| {
                let removed = c
                    .prepare_cached("DELETE FROM numbers WHERE number = ?1 AND org_id = ?2")
                    .and_then(|mut s| s.execute([number.expose_e164().as_str(), org.as_str()]))
                    .map_err(sql)?;
                if removed == 0 {
                    return Err(PortError::not_found(format!("number {number}")));
                }
                Ok(())
            })
            .await
    }

    async fn assign(&self, org: &OrgId, number: &PhoneNumber, agent: Option<&AgentId>) -> Result<NumberAssignment> {
        let (org, number, agent) = (org.clone(), number.clone(), agent.cloned());
        self.db
            .write(move |c| {
                let e164 = number.expose_e164();
                let changed = c
                    .prepare_cached("UPDATE numbers SET agent_id = ?3 WHERE number = ?1 AND org_id = ?2")
                    .and_then(|mut s| s.execute(params![e164, org.as_str(), agent.as_ref().map(AgentId::as_str)]))
                    .map_err(sql)?;
                if changed == 0 {
                    return Err(PortError::not_found(format!("number {number}")));
                }
                number_by_e164(c, &e164)?.ok_or_else(|| PortError::not_found(format!("number {number}")))
            })
            .await
    }

    async fn route(&self, number: &PhoneNumber) -> Result<Option<NumberAssignment>> {
        let number = number.expose_e164();
        self.db.read(move |c| Ok(number_by_e164(c, &number)?.filter(|n| n.agent_id.is_some()))).await
    }

    async fn list(&self, org: &OrgId, page: &PageRequest) -> Result<Page<NumberAssignment>> {
        let listing = OrgListing {
            table: "numbers",
            columns: NUMBER_COLUMNS,
            key: "number",
            row: number_row,
            decode: decode_number,
            cursor_of: |n| n.number.expose_e164(),
        };
        listing.page(&self.db, org, page).await
    }
}

fn decode_call((json, transcript): (String, Option<Vec<u8>>)) -> Result<CallRecord> {
    let mut call: CallRecord = from_json(&json)?;
    call.transcript = transcript;
    Ok(call)
}

const CALL_COLUMNS: &str = "record_json, transcript";

fn call_row(r: &Row<'_>) -> rusqlite::Result<(String, Option<Vec<u8>>)> {
    Ok((r.get(0)?, r.get(1)?))
}

fn call_by_id(c: &Connection, org: &OrgId, call: &CallId) -> Result<Option<CallRecord>> {
    let row = c
        .prepare_cached(&format!("SELECT {CALL_COLUMNS} FROM calls WHERE org_id = ?1 AND id = ?2"))
        .and_then(|mut s| s.query_row([org.as_str(), call.as_str()], call_row).optional())
        .map_err(sql)?;
    row.map(decode_call).transpose()
}

/// Inserts or replaces the row; only ever called inside a write job, after the state
/// machine decided that this write is allowed.
fn write_call(c: &Connection, call: &CallRecord) -> Result<()> {
    let mut record = call.clone();
    // The transcript is an encrypted blob: stored as bytes, not as a JSON number array.
    let transcript = record.transcript.take();
    let json = to_json(&record)?;
    c.prepare_cached(
        "INSERT OR REPLACE INTO calls
           (org_id, id, started_at, record_json, transcript, from_number, to_number, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut s| {
        s.execute(params![
            call.org_id.as_str(),
            call.id.as_str(),
            call.started_at.as_millis(),
            json,
            transcript,
            call.from.as_ref().map(PhoneNumber::expose_e164),
            call.to.as_ref().map(PhoneNumber::expose_e164),
            call.expires_at.map(Timestamp::as_millis),
        ])
    })
    .map_err(sql)?;
    Ok(())
}

fn delete_blob(c: &Connection, org: &str, call: &str) -> Result<()> {
    c.prepare_cached("DELETE FROM call_transcript_blobs WHERE org_id = ?1 AND call_id = ?2")
        .and_then(|mut s| s.execute([org, call]))
        .map_err(sql)?;
    Ok(())
}

// Each method's read-decide-write runs as one job of the single writer, inside its own
// savepoint: no other write can come between the read and the write.
#[async_trait]
impl CallStore for SqliteStores {
    async fn record_start(&self, call: &CallRecord) -> Result<CallWrite> {
        if call.status != CallStatus::InProgress {
            return Err(PortError::invalid("a call's start must be in_progress"));
        }
        let call = call.clone();
        self.db
            .write(move |c| {
                if let Some(stored) = call_by_id(c, &call.org_id, &call.id)? {
                    return Ok(CallWrite::Unchanged(stored));
                }
                write_call(c, &call)?;
                Ok(CallWrite::Written(call))
            })
            .await
    }

    async fn record_end(&self, call: &CallRecord) -> Result<CallWrite> {
        if !call.is_final() {
            return Err(PortError::invalid("a call's end must be ended or failed"));
        }
        let call = call.clone();
        self.db
            .write(move |c| {
                let stored = call_by_id(c, &call.org_id, &call.id)?;
                match CallRecord::merge_end(stored.as_ref(), &call) {
                    Some(merged) => {
                        write_call(c, &merged)?;
                        Ok(CallWrite::Written(merged))
                    }
                    None => Ok(CallWrite::Unchanged(stored.ok_or_else(|| PortError::corrupt("call vanished"))?)),
                }
            })
            .await
    }

    async fn get(&self, org: &OrgId, call: &CallId) -> Result<Option<CallRecord>> {
        let (org, call) = (org.clone(), call.clone());
        self.db.read(move |c| call_by_id(c, &org, &call)).await
    }

    async fn list(&self, org: &OrgId, page: &PageRequest) -> Result<Page<CallRecord>> {
        let limit = page.clamped_limit();
        // Cursor `<started_at>:<id>` of the last call shown; ties on time break by id.
        let (before_at, before_id) = match &page.cursor {
            None => (i64::MAX, String::new()),
            Some(cursor) => {
                let (at, id) = cursor.split_once(':').ok_or_else(|| PortError::bad_cursor("calls"))?;
                let at = at.parse::<i64>().map_err(|_| PortError::bad_cursor("calls"))?;
                (at, id.to_owned())
            }
        };
        let org = org.clone();
        self.db
            .read(move |c| {
                let rows = collect(
                    c,
                    &format!(
                        "SELECT {CALL_COLUMNS} FROM calls WHERE org_id = ?1
                         AND (started_at < ?2 OR (started_at = ?2 AND id < ?3))
                         ORDER BY started_at DESC, id DESC LIMIT ?4"
                    ),
                    params![
                        org.as_str(),
                        before_at,
                        if before_at == i64::MAX { "\u{10ffff}" } else { before_id.as_str() },
                        limit + 1
                    ],
                    call_row,
                )?;
                let items = rows.into_iter().map(decode_call).collect::<Result<Vec<_>>>()?;
                Ok(page_of(items, limit, |call| format!("{}:{}", call.started_at.as_millis(), call.id)))
            })
            .await
    }

    async fn erase(&self, org: &OrgId, call: &CallId, at: Timestamp) -> Result<CallRecord> {
        let (org, call) = (org.clone(), call.clone());
        self.db
            .write(move |c| {
                let stored = call_by_id(c, &org, &call)?.ok_or_else(|| PortError::not_found(format!("call {call}")))?;
                delete_blob(c, org.as_str(), call.as_str())?;
                if stored.erased.is_some() {
                    return Ok(stored);
                }
                let erased = stored.erased_at(at);
                write_call(c, &erased)?;
                Ok(erased)
            })
            .await
    }

    async fn find_by_number(&self, org: &OrgId, number: &PhoneNumber, page: &PageRequest) -> Result<Page<CallRecord>> {
        let limit = page.clamped_limit();
        let after = page.cursor.clone().unwrap_or_default();
        let (org, e164) = (org.clone(), number.expose_e164());
        self.db
            .read(move |c| {
                let rows = collect(
                    c,
                    &format!(
                        "SELECT {CALL_COLUMNS} FROM calls WHERE org_id = ?1 AND id > ?2
                         AND (from_number = ?3 OR to_number = ?3) ORDER BY id LIMIT ?4"
                    ),
                    params![org.as_str(), after, e164, limit + 1],
                    call_row,
                )?;
                let items = rows.into_iter().map(decode_call).collect::<Result<Vec<_>>>()?;
                Ok(page_of(items, limit, |call| call.id.to_string()))
            })
            .await
    }

    async fn delete_expired(&self, now: Timestamp, max: usize) -> Result<Vec<(OrgId, CallId)>> {
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        self.db
            .write(move |c| {
                let expired = collect(
                    c,
                    "SELECT org_id, id FROM calls WHERE expires_at IS NOT NULL AND expires_at <= ?1
                     ORDER BY expires_at LIMIT ?2",
                    params![now.as_millis(), max],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
                )?;
                let mut deleted = Vec::with_capacity(expired.len());
                for (org, call) in expired {
                    c.prepare_cached("DELETE FROM calls WHERE org_id = ?1 AND id = ?2")
                        .and_then(|mut s| s.execute([org.as_str(), call.as_str()]))
                        .map_err(sql)?;
                    delete_blob(c, &org, &call)?;
                    deleted.push((parse_id(&org, OrgId::parse)?, parse_id(&call, CallId::parse)?));
                }
                c.prepare_cached("DELETE FROM call_transcript_blobs WHERE expires_at <= ?1")
                    .and_then(|mut s| s.execute([now.as_millis()]))
                    .map_err(sql)?;
                Ok(deleted)
            })
            .await
    }

    async fn put_transcript_blob(
        &self,
        org: &OrgId,
        call: &CallId,
        envelope: &[u8],
        expires_at: Timestamp,
    ) -> Result<()> {
        let (org, call, envelope) = (org.clone(), call.clone(), envelope.to_vec());
        self.db
            .write(move |c| {
                c.prepare_cached(
                    "INSERT OR REPLACE INTO call_transcript_blobs (org_id, call_id, envelope, expires_at)
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .and_then(|mut s| s.execute(params![org.as_str(), call.as_str(), envelope, expires_at.as_millis()]))
                .map_err(sql)?;
                Ok(())
            })
            .await
    }

    async fn transcript_blob(&self, org: &OrgId, call: &CallId, now: Timestamp) -> Result<Option<Vec<u8>>> {
        let (org, call) = (org.clone(), call.clone());
        self.db
            .read(move |c| {
                c.prepare_cached(
                    "SELECT envelope FROM call_transcript_blobs WHERE org_id = ?1 AND call_id = ?2 AND expires_at > ?3",
                )
                .and_then(|mut s| {
                    s.query_row(params![org.as_str(), call.as_str(), now.as_millis()], |r| r.get(0)).optional()
                })
                .map_err(sql)
            })
            .await
    }

    async fn delete_transcript_blob(&self, org: &OrgId, call: &CallId) -> Result<()> {
        let (org, call) = (org.clone(), call.clone());
        self.db.write(move |c| delete_blob(c, org.as_str(), call.as_str())).await
    }
}

#[async_trait]
impl AuditLog for SqliteStores {
    async fn append(&self, entry: &AuditEntry) -> Result<()> {
        let json = to_json(entry)?;
        let (org, at) = (entry.org_id.clone(), entry.at);
        self.db
            .write(move |c| {
                c.prepare_cached("INSERT INTO audit_log (org_id, at, entry_json) VALUES (?1, ?2, ?3)")
                    .and_then(|mut s| s.execute(params![org.as_str(), at.as_millis(), json]))
                    .map_err(sql)?;
                Ok(())
            })
            .await
    }

    async fn list(&self, org: &OrgId, page: &PageRequest) -> Result<Page<AuditEntry>> {
        let limit = page.clamped_limit();
        let before = match &page.cursor {
            None => i64::MAX,
            Some(cursor) => cursor.parse::<i64>().map_err(|_| PortError::bad_cursor("audit"))?,
        };
        let org = org.clone();
        self.db
            .read(move |c| {
                let rows = collect(
                    c,
                    "SELECT seq, entry_json FROM audit_log WHERE org_id = ?1 AND seq < ?2
                     ORDER BY seq DESC LIMIT ?3",
                    params![org.as_str(), before, limit + 1],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
                )?;
                let items = rows
                    .into_iter()
                    .map(|(seq, json)| Ok((seq, from_json::<AuditEntry>(&json)?)))
                    .collect::<Result<Vec<_>>>()?;
                let page = page_of(items, limit, |(seq, _)| seq.to_string());
                Ok(Page { items: page.items.into_iter().map(|(_, e)| e).collect(), next_cursor: page.next_cursor })
            })
            .await
    }
}

type CredentialRow = (String, String, Vec<u8>, String, i64, i64);

fn credential_row(r: &Row<'_>) -> rusqlite::Result<CredentialRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
}

fn decode_credential(
    (org, name, envelope, fingerprint, created, updated): CredentialRow,
) -> Result<ProviderCredential> {
    Ok(ProviderCredential {
        org_id: parse_id(&org, OrgId::parse)?,
        name,
        envelope,
        fingerprint,
        created_at: Timestamp::from_millis(created),
        updated_at: Timestamp::from_millis(updated),
    })
}

const CREDENTIAL_COLUMNS: &str = "org_id, name, envelope, fingerprint, created_at, updated_at";

#[async_trait]
impl CredentialStore for SqliteStores {
    async fn put(&self, credential: &ProviderCredential) -> Result<bool> {
        let cred = credential.clone();
        self.db
            .write(move |c| {
                let existed = c
                    .prepare_cached("SELECT 1 FROM provider_credentials WHERE org_id = ?1 AND name = ?2")
                    .and_then(|mut s| s.exists(params![cred.org_id.as_str(), cred.name]))
                    .map_err(sql)?;
                c.prepare_cached(
                    "INSERT INTO provider_credentials (org_id, name, envelope, fingerprint, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (org_id, name) DO UPDATE SET envelope = excluded.envelope,
                       fingerprint = excluded.fingerprint, updated_at = excluded.updated_at",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        cred.org_id.as_str(),
                        cred.name,
                        cred.envelope,
                        cred.fingerprint,
                        cred.created_at.as_millis(),
                        cred.updated_at.as_millis()
                    ])
                })
                .map_err(sql)?;
                Ok(!existed)
            })
            .await
    }

    async fn get(&self, org: &OrgId, name: &str) -> Result<Option<ProviderCredential>> {
        let (org, name) = (org.clone(), name.to_owned());
        self.db
            .read(move |c| {
                let row = c
                    .prepare_cached(&format!(
                        "SELECT {CREDENTIAL_COLUMNS} FROM provider_credentials WHERE org_id = ?1 AND name = ?2"
                    ))
                    .and_then(|mut s| s.query_row(params![org.as_str(), name], credential_row).optional())
                    .map_err(sql)?;
                row.map(decode_credential).transpose()
            })
            .await
    }

    async fn list(&self, org: &OrgId, page: &PageRequest) -> Result<Page<ProviderCredential>> {
        let listing = OrgListing {
            table: "provider_credentials",
            columns: CREDENTIAL_COLUMNS,
            key: "name",
            row: credential_row,
            decode: decode_credential,
            cursor_of: |c| c.name.clone(),
        };
        listing.page(&self.db, org, page).await
    }

    async fn delete(&self, org: &OrgId, name: &str) -> Result<()> {
        let (org, name) = (org.clone(), name.to_owned());
        self.db
            .write(move |c| {
                let removed = c
                    .prepare_cached("DELETE FROM provider_credentials WHERE org_id = ?1 AND name = ?2")
                    .and_then(|mut s| s.execute(params![org.as_str(), name]))
                    .map_err(sql)?;
                if removed == 0 {
                    return Err(PortError::not_found(format!("provider credential {name}")));
                }
                Ok(())
            })
            .await
    }
}
