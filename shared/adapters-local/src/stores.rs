//! The store ports over SQLite tables. Every conditional write (create-if-absent, version
//! check, quota, ledger key) runs inside one writer job, so its check and its write are in
//! the same transaction and no other write can interleave.

use crate::db::Db;
use crate::sql;
use async_trait::async_trait;
use golos_domain::agent::AgentConfig;
use golos_domain::billing::{billable_minutes, LedgerEventKind};
use golos_domain::{AgentId, ApiKeyId, CallId, Kopecks, OrgId, Timestamp};
use golos_ports::{
    AcquireOutcome, AgentRecord, AgentStore, ApiKeyRecord, ApiKeyStore, ApplyOutcome, ContextStore, Counters,
    IdempotencyBegin, IdempotencyStore, Lease, LeaseRequest, Leases, Ledger, LedgerEntry, Org, OrgStore, Page,
    PageRequest, PortError, ReleaseOutcome, Result, StoredResponse,
};
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;

/// One implementation of every store, sharing the database.
#[derive(Debug, Clone)]
pub(crate) struct SqliteStores {
    pub(crate) db: Arc<Db>,
}

impl SqliteStores {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        Self { db }
    }
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| PortError::invalid(format!("encoding: {e}")))
}

pub(crate) fn from_json<T: DeserializeOwned>(raw: &str) -> Result<T> {
    serde_json::from_str(raw).map_err(|e| PortError::corrupt(format!("stored json: {e}")))
}

pub(crate) fn parse_id<T>(raw: &str, parse: impl FnOnce(String) -> Result<T, golos_domain::DomainError>) -> Result<T> {
    parse(raw.to_owned()).map_err(|e| PortError::corrupt(format!("stored id: {e}")))
}

/// Fetches `limit + 1` rows so the page knows whether another follows without a count.
pub(crate) fn page_of<T>(mut items: Vec<T>, limit: u32, cursor_of: impl Fn(&T) -> String) -> Page<T> {
    let limit = limit as usize;
    if items.len() > limit {
        items.truncate(limit);
        let next_cursor = items.last().map(cursor_of);
        Page { items, next_cursor }
    } else {
        Page { items, next_cursor: None }
    }
}

/// Runs a prepared query and collects raw rows, leaving decoding (which may fail with a
/// `PortError`) to the caller.
pub(crate) fn collect<T>(
    conn: &Connection,
    sql_text: &str,
    params: impl rusqlite::Params,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql_text).map_err(sql)?;
    let rows = stmt.query_map(params, map).map_err(sql)?;
    rows.collect::<rusqlite::Result<Vec<T>>>().map_err(sql)
}

// ---------------------------------------------------------------- orgs

type OrgRow = (String, String, String, String, String, bool, i64, i64);

fn org_row(r: &Row<'_>) -> rusqlite::Result<OrgRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
}

fn decode_org((id, name, plan, quotas, settings, disabled, created_at, version): OrgRow) -> Result<Org> {
    Ok(Org {
        id: parse_id(&id, OrgId::parse)?,
        name,
        plan: plan.parse().map_err(|e| PortError::corrupt(format!("stored plan: {e}")))?,
        quotas: from_json(&quotas)?,
        settings: from_json(&settings)?,
        disabled,
        created_at: Timestamp::from_millis(created_at),
        version: u64::try_from(version).map_err(|_| PortError::corrupt("negative org version"))?,
    })
}

const ORG_COLUMNS: &str = "id, name, plan, quotas_json, settings_json, disabled, created_at, version";

#[async_trait]
impl OrgStore for SqliteStores {
    async fn create(&self, org: &Org) -> Result<()> {
        let org = org.clone();
        let (quotas, settings) = (to_json(&org.quotas)?, to_json(&org.settings)?);
        self.db
            .write(move |c| {
                let inserted = c
                    .prepare_cached(
                        "INSERT INTO orgs (id, name, plan, quotas_json, settings_json, disabled, created_at, version)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1) ON CONFLICT (id) DO NOTHING",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            org.id.as_str(),
                            org.name,
                            org.plan.as_str(),
                            quotas,
                            settings,
                            org.disabled,
                            org.created_at.as_millis()
                        ])
                    })
                    .map_err(sql)?;
                if inserted == 0 {
                    return Err(PortError::AlreadyExists { what: format!("org {}", org.id) });
                }
                Ok(())
            })
            .await
    }

    async fn get(&self, id: &OrgId) -> Result<Option<Org>> {
        let id = id.clone();
        self.db
            .read(move |c| {
                let row = c
                    .prepare_cached(&format!("SELECT {ORG_COLUMNS} FROM orgs WHERE id = ?1"))
                    .and_then(|mut s| s.query_row([id.as_str()], org_row).optional())
                    .map_err(sql)?;
                row.map(decode_org).transpose()
            })
            .await
    }

    async fn update(&self, org: &Org) -> Result<u64> {
        let org = org.clone();
        let (quotas, settings) = (to_json(&org.quotas)?, to_json(&org.settings)?);
        let expected = i64::try_from(org.version).map_err(|_| PortError::invalid("org version out of range"))?;
        self.db
            .write(move |c| {
                let changed = c
                    .prepare_cached(
                        "UPDATE orgs SET name = ?2, plan = ?3, quotas_json = ?4, settings_json = ?5,
                         disabled = ?6, version = version + 1 WHERE id = ?1 AND version = ?7",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            org.id.as_str(),
                            org.name,
                            org.plan.as_str(),
                            quotas,
                            settings,
                            org.disabled,
                            expected
                        ])
                    })
                    .map_err(sql)?;
                if changed == 1 {
                    return Ok(org.version + 1);
                }
                let stored: Option<i64> = c
                    .prepare_cached("SELECT version FROM orgs WHERE id = ?1")
                    .and_then(|mut s| s.query_row([org.id.as_str()], |r| r.get(0)).optional())
                    .map_err(sql)?;
                match stored {
                    None => Err(PortError::not_found(format!("org {}", org.id))),
                    Some(actual) => {
                        Err(PortError::Conflict { expected: org.version, actual: actual.try_into().unwrap_or(0) })
                    }
                }
            })
            .await
    }

    async fn list(&self, page: &PageRequest) -> Result<Page<Org>> {
        let limit = page.clamped_limit();
        let after = page.cursor.clone().unwrap_or_default();
        self.db
            .read(move |c| {
                let rows = collect(
                    c,
                    &format!("SELECT {ORG_COLUMNS} FROM orgs WHERE id > ?1 ORDER BY id LIMIT ?2"),
                    params![after, limit + 1],
                    org_row,
                )?;
                let orgs = rows.into_iter().map(decode_org).collect::<Result<Vec<_>>>()?;
                Ok(page_of(orgs, limit, |o| o.id.to_string()))
            })
            .await
    }
}

// ---------------------------------------------------------------- agents

type AgentRow = (String, String, String, i64, i64, i64);

const AGENT_COLUMNS: &str = "org_id, id, config_json, version, created_at, updated_at";

fn agent_row(r: &Row<'_>) -> rusqlite::Result<AgentRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
}

fn decode_agent((org, id, config, version, created, updated): AgentRow) -> Result<AgentRecord> {
    Ok(AgentRecord {
        org_id: parse_id(&org, OrgId::parse)?,
        id: parse_id(&id, AgentId::parse)?,
        config: from_json(&config)?,
        version: version as u64,
        created_at: Timestamp::from_millis(created),
        updated_at: Timestamp::from_millis(updated),
    })
}

fn load_agent(c: &Connection, org: &OrgId, id: &AgentId) -> Result<Option<AgentRecord>> {
    let row = c
        .prepare_cached(&format!("SELECT {AGENT_COLUMNS} FROM agents WHERE org_id = ?1 AND id = ?2"))
        .and_then(|mut s| s.query_row([org.as_str(), id.as_str()], agent_row).optional())
        .map_err(sql)?;
    row.map(decode_agent).transpose()
}

fn count_agents(c: &Connection, org: &OrgId) -> Result<u32> {
    c.prepare_cached("SELECT COUNT(*) FROM agents WHERE org_id = ?1")
        .and_then(|mut s| s.query_row([org.as_str()], |r| r.get::<_, u32>(0)))
        .map_err(sql)
}

#[async_trait]
impl AgentStore for SqliteStores {
    async fn create(
        &self,
        org: &OrgId,
        id: &AgentId,
        config: &AgentConfig,
        max_agents: u32,
        now: Timestamp,
    ) -> Result<AgentRecord> {
        let record = AgentRecord {
            org_id: org.clone(),
            id: id.clone(),
            config: config.clone(),
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let config_json = to_json(config)?;
        self.db
            .write(move |c| {
                if load_agent(c, &record.org_id, &record.id)?.is_some() {
                    return Err(PortError::AlreadyExists { what: format!("agent {}", record.id) });
                }
                if count_agents(c, &record.org_id)? >= max_agents {
                    return Err(PortError::QuotaExceeded { quota: "max_agents", limit: u64::from(max_agents) });
                }
                c.prepare_cached(
                    "INSERT INTO agents (org_id, id, config_json, version, created_at, updated_at)
                     VALUES (?1, ?2, ?3, 1, ?4, ?4)",
                )
                .and_then(|mut s| {
                    s.execute(params![record.org_id.as_str(), record.id.as_str(), config_json, now.as_millis()])
                })
                .map_err(sql)?;
                Ok(record)
            })
            .await
    }

    async fn get(&self, org: &OrgId, id: &AgentId) -> Result<Option<AgentRecord>> {
        let (org, id) = (org.clone(), id.clone());
        self.db.read(move |c| load_agent(c, &org, &id)).await
    }

    async fn list(&self, org: &OrgId, page: &PageRequest) -> Result<Page<AgentRecord>> {
        let limit = page.clamped_limit();
        let after = page.cursor.clone().unwrap_or_default();
        let org = org.clone();
        self.db
            .read(move |c| {
                let rows = collect(
                    c,
                    &format!(
                        "SELECT {AGENT_COLUMNS} FROM agents WHERE org_id = ?1 AND id > ?2
                         ORDER BY id LIMIT ?3"
                    ),
                    params![org.as_str(), after, limit + 1],
                    agent_row,
                )?;
                let agents = rows.into_iter().map(decode_agent).collect::<Result<Vec<_>>>()?;
                Ok(page_of(agents, limit, |a| a.id.to_string()))
            })
            .await
    }

    async fn update(
        &self,
        org: &OrgId,
        id: &AgentId,
        config: &AgentConfig,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<AgentRecord> {
        let (org, id, config) = (org.clone(), id.clone(), config.clone());
        let config_json = to_json(&config)?;
        self.db
            .write(move |c| {
                let Some(mut stored) = load_agent(c, &org, &id)? else {
                    return Err(PortError::not_found(format!("agent {id}")));
                };
                if stored.version != expected_version {
                    return Err(PortError::Conflict { expected: expected_version, actual: stored.version });
                }
                stored.version += 1;
                stored.config = config;
                stored.updated_at = now;
                c.prepare_cached(
                    "UPDATE agents SET config_json = ?3, version = ?4, updated_at = ?5
                     WHERE org_id = ?1 AND id = ?2",
                )
                .and_then(|mut s| {
                    s.execute(params![org.as_str(), id.as_str(), config_json, stored.version as i64, now.as_millis()])
                })
                .map_err(sql)?;
                Ok(stored)
            })
            .await
    }

    async fn delete(&self, org: &OrgId, id: &AgentId, expected_version: Option<u64>) -> Result<()> {
        let (org, id) = (org.clone(), id.clone());
        self.db
            .write(move |c| {
                let Some(stored) = load_agent(c, &org, &id)? else {
                    return Err(PortError::not_found(format!("agent {id}")));
                };
                if let Some(expected) = expected_version {
                    if stored.version != expected {
                        return Err(PortError::Conflict { expected, actual: stored.version });
                    }
                }
                c.prepare_cached("DELETE FROM agents WHERE org_id = ?1 AND id = ?2")
                    .and_then(|mut s| s.execute([org.as_str(), id.as_str()]))
                    .map_err(sql)?;
                Ok(())
            })
            .await
    }

    async fn count(&self, org: &OrgId) -> Result<u32> {
        let org = org.clone();
        self.db.read(move |c| count_agents(c, &org)).await
    }
}

// ---------------------------------------------------------------- api keys

type KeyRow = (String, String, String, String, String, i64, Option<i64>, Option<i64>);

const KEY_COLUMNS: &str = "id, org_id, name, role, secret_hash, created_at, expires_at, revoked_at";

fn key_row(r: &Row<'_>) -> rusqlite::Result<KeyRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
}

fn decode_key((id, org, name, role, secret_hash, created, expires, revoked): KeyRow) -> Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: parse_id(&id, ApiKeyId::parse)?,
        org_id: parse_id(&org, OrgId::parse)?,
        name,
        role: role.parse().map_err(|e| PortError::corrupt(format!("stored role: {e}")))?,
        secret_hash,
        created_at: Timestamp::from_millis(created),
        expires_at: expires.map(Timestamp::from_millis),
        revoked_at: revoked.map(Timestamp::from_millis),
    })
}

fn load_key(c: &Connection, id: &ApiKeyId) -> Result<Option<ApiKeyRecord>> {
    let row = c
        .prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1"))
        .and_then(|mut s| s.query_row([id.as_str()], key_row).optional())
        .map_err(sql)?;
    row.map(decode_key).transpose()
}

#[async_trait]
impl ApiKeyStore for SqliteStores {
    async fn create(&self, key: &ApiKeyRecord) -> Result<()> {
        let key = key.clone();
        self.db
            .write(move |c| {
                let inserted = c
                    .prepare_cached(
                        "INSERT INTO api_keys (id, org_id, name, role, secret_hash, created_at,
                         expires_at, revoked_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                         ON CONFLICT (id) DO NOTHING",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            key.id.as_str(),
                            key.org_id.as_str(),
                            key.name,
                            key.role.as_str(),
                            key.secret_hash,
                            key.created_at.as_millis(),
                            key.expires_at.map(Timestamp::as_millis),
                            key.revoked_at.map(Timestamp::as_millis)
                        ])
                    })
                    .map_err(sql)?;
                if inserted == 0 {
                    return Err(PortError::AlreadyExists { what: format!("api key {}", key.id) });
                }
                Ok(())
            })
            .await
    }

    async fn get(&self, id: &ApiKeyId) -> Result<Option<ApiKeyRecord>> {
        let id = id.clone();
        self.db.read(move |c| load_key(c, &id)).await
    }

    async fn list(&self, org: &OrgId, page: &PageRequest) -> Result<Page<ApiKeyRecord>> {
        let limit = page.clamped_limit();
        let after = page.cursor.clone().unwrap_or_default();
        let org = org.clone();
        self.db
            .read(move |c| {
                let rows = collect(
                    c,
                    &format!(
                        "SELECT {KEY_COLUMNS} FROM api_keys WHERE org_id = ?1 AND id > ?2
                         ORDER BY id LIMIT ?3"
                    ),
                    params![org.as_str(), after, limit + 1],
                    key_row,
                )?;
                let keys = rows.into_iter().map(decode_key).collect::<Result<Vec<_>>>()?;
                Ok(page_of(keys, limit, |k| k.id.to_string()))
            })
            .await
    }

    async fn revoke(&self, id: &ApiKeyId, at: Timestamp) -> Result<ApiKeyRecord> {
        let id = id.clone();
        self.db
            .write(move |c| {
                let Some(mut key) = load_key(c, &id)? else {
                    return Err(PortError::not_found(format!("api key {id}")));
                };
                let revoked_at = key.revoked_at.map_or(at, |earlier| earlier.min(at));
                key.revoked_at = Some(revoked_at);
                c.prepare_cached("UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1")
                    .and_then(|mut s| s.execute(params![id.as_str(), revoked_at.as_millis()]))
                    .map_err(sql)?;
                Ok(key)
            })
            .await
    }
}

// ---------------------------------------------------------------- ledger

type LedgerRow = (i64, String, String, i64, String, i64);

const LEDGER_COLUMNS: &str = "seq, org_id, key, delta, event_json, applied_at";

fn ledger_row(r: &Row<'_>) -> rusqlite::Result<LedgerRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
}

fn decode_entry((_, org, key, delta, event, applied_at): LedgerRow) -> Result<LedgerEntry> {
    Ok(LedgerEntry {
        org_id: parse_id(&org, OrgId::parse)?,
        key,
        event: from_json(&event)?,
        delta: Kopecks::new(delta),
        applied_at: Timestamp::from_millis(applied_at),
    })
}

fn load_entry(c: &Connection, org: &OrgId, key: &str) -> Result<Option<LedgerEntry>> {
    let row = c
        .prepare_cached(&format!("SELECT {LEDGER_COLUMNS} FROM ledger_entries WHERE org_id = ?1 AND key = ?2"))
        .and_then(|mut s| s.query_row([org.as_str(), key], ledger_row).optional())
        .map_err(sql)?;
    row.map(decode_entry).transpose()
}

#[async_trait]
impl Ledger for SqliteStores {
    async fn apply(&self, org: &OrgId, event: &LedgerEventKind, now: Timestamp) -> Result<ApplyOutcome> {
        event.validate()?;
        let entry = LedgerEntry {
            org_id: org.clone(),
            key: event.idempotency_key(),
            event: event.clone(),
            delta: event.balance_delta()?,
            applied_at: now,
        };
        let event_json = to_json(event)?;
        let minutes = match event {
            LedgerEventKind::CallDebit { duration_secs, .. } => Some(billable_minutes(*duration_secs)),
            _ => None,
        };
        self.db
            .write(move |c| {
                let inserted = c
                    .prepare_cached(
                        "INSERT INTO ledger_entries (org_id, key, kind, delta, event_json, applied_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (org_id, key) DO NOTHING",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            entry.org_id.as_str(),
                            entry.key,
                            entry.event.kind_name(),
                            entry.delta.get(),
                            event_json,
                            now.as_millis()
                        ])
                    })
                    .map_err(sql)?;
                if inserted == 0 {
                    let original = load_entry(c, &entry.org_id, &entry.key)?
                        .ok_or_else(|| PortError::unavailable("ledger entry vanished inside its transaction"))?;
                    return Ok(ApplyOutcome::Duplicate(original));
                }
                let balance = c
                    .prepare_cached("SELECT balance FROM balances WHERE org_id = ?1")
                    .and_then(|mut s| s.query_row([entry.org_id.as_str()], |r| r.get::<_, i64>(0)).optional())
                    .map_err(sql)?
                    .unwrap_or(0);
                // Checked here, not in SQL: SQLite turns an integer overflow into a float.
                let balance = Kopecks::new(balance).checked_add(entry.delta)?;
                c.prepare_cached(
                    "INSERT INTO balances (org_id, balance) VALUES (?1, ?2)
                     ON CONFLICT (org_id) DO UPDATE SET balance = excluded.balance",
                )
                .and_then(|mut s| s.execute(params![entry.org_id.as_str(), balance.get()]))
                .map_err(sql)?;
                if let Some(minutes) = minutes {
                    c.prepare_cached(
                        "INSERT INTO usage (org_id, year_month, minutes) VALUES (?1, ?2, ?3)
                         ON CONFLICT (org_id, year_month) DO UPDATE
                         SET minutes = minutes + excluded.minutes",
                    )
                    .and_then(|mut s| s.execute(params![entry.org_id.as_str(), now.year_month(), minutes as i64]))
                    .map_err(sql)?;
                }
                Ok(ApplyOutcome::Applied(entry))
            })
            .await
    }

    async fn balance(&self, org: &OrgId) -> Result<Kopecks> {
        let org = org.clone();
        self.db
            .read(move |c| {
                let balance = c
                    .prepare_cached("SELECT balance FROM balances WHERE org_id = ?1")
                    .and_then(|mut s| s.query_row([org.as_str()], |r| r.get::<_, i64>(0)).optional())
                    .map_err(sql)?;
                Ok(Kopecks::new(balance.unwrap_or(0)))
            })
            .await
    }

    async fn usage_minutes(&self, org: &OrgId, year_month: u32) -> Result<u64> {
        let org = org.clone();
        self.db
            .read(move |c| {
                let minutes = c
                    .prepare_cached("SELECT minutes FROM usage WHERE org_id = ?1 AND year_month = ?2")
                    .and_then(|mut s| s.query_row(params![org.as_str(), year_month], |r| r.get::<_, i64>(0)).optional())
                    .map_err(sql)?;
                Ok(minutes.unwrap_or(0) as u64)
            })
            .await
    }

    async fn list(&self, org: &OrgId, page: &PageRequest) -> Result<Page<LedgerEntry>> {
        let limit = page.clamped_limit();
        let before = match &page.cursor {
            None => i64::MAX,
            Some(cursor) => cursor.parse::<i64>().map_err(|_| PortError::bad_cursor("ledger"))?,
        };
        let org = org.clone();
        self.db
            .read(move |c| {
                let rows = collect(
                    c,
                    &format!(
                        "SELECT {LEDGER_COLUMNS} FROM ledger_entries WHERE org_id = ?1 AND seq < ?2
                         ORDER BY seq DESC LIMIT ?3"
                    ),
                    params![org.as_str(), before, limit + 1],
                    ledger_row,
                )?;
                let entries =
                    rows.into_iter().map(|row| Ok((row.0, decode_entry(row)?))).collect::<Result<Vec<_>>>()?;
                let page = page_of(entries, limit, |(seq, _)| seq.to_string());
                Ok(Page { items: page.items.into_iter().map(|(_, e)| e).collect(), next_cursor: page.next_cursor })
            })
            .await
    }

    async fn get(&self, org: &OrgId, key: &str) -> Result<Option<LedgerEntry>> {
        let (org, key) = (org.clone(), key.to_owned());
        self.db.read(move |c| load_entry(c, &org, &key)).await
    }

    async fn recompute_balance(&self, org: &OrgId) -> Result<Kopecks> {
        let org = org.clone();
        self.db
            .read(move |c| {
                let sum = c
                    .prepare_cached("SELECT COALESCE(SUM(delta), 0) FROM ledger_entries WHERE org_id = ?1")
                    .and_then(|mut s| s.query_row([org.as_str()], |r| r.get::<_, i64>(0)))
                    .map_err(sql)?;
                Ok(Kopecks::new(sum))
            })
            .await
    }
}

// ---------------------------------------------------------------- leases

type LeaseRow = (String, String, String, i64, i64);

const LEASE_COLUMNS: &str = "org_id, agent_id, call_id, acquired_at, expires_at";

fn lease_row(r: &Row<'_>) -> rusqlite::Result<LeaseRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn decode_lease((org, agent, call, acquired, expires): LeaseRow) -> Result<Lease> {
    Ok(Lease {
        org_id: parse_id(&org, OrgId::parse)?,
        agent_id: parse_id(&agent, AgentId::parse)?,
        call_id: parse_id(&call, CallId::parse)?,
        acquired_at: Timestamp::from_millis(acquired),
        expires_at: Timestamp::from_millis(expires),
    })
}

fn load_lease(c: &Connection, org: &OrgId, call: &CallId) -> Result<Option<Lease>> {
    let row = c
        .prepare_cached(&format!("SELECT {LEASE_COLUMNS} FROM leases WHERE org_id = ?1 AND call_id = ?2"))
        .and_then(|mut s| s.query_row([org.as_str(), call.as_str()], lease_row).optional())
        .map_err(sql)?;
    row.map(decode_lease).transpose()
}

fn count_leases(c: &Connection, org: &OrgId, agent: Option<&AgentId>) -> Result<u32> {
    match agent {
        None => c
            .prepare_cached("SELECT COUNT(*) FROM leases WHERE org_id = ?1")
            .and_then(|mut s| s.query_row([org.as_str()], |r| r.get::<_, u32>(0))),
        Some(agent) => c
            .prepare_cached("SELECT COUNT(*) FROM leases WHERE org_id = ?1 AND agent_id = ?2")
            .and_then(|mut s| s.query_row([org.as_str(), agent.as_str()], |r| r.get::<_, u32>(0))),
    }
    .map_err(sql)
}

#[async_trait]
impl Leases for SqliteStores {
    async fn acquire(&self, request: &LeaseRequest, now: Timestamp) -> Result<AcquireOutcome> {
        if request.ttl_ms <= 0 {
            return Err(PortError::invalid("lease ttl must be positive"));
        }
        let request = request.clone();
        self.db
            .write(move |c| {
                if let Some(held) = load_lease(c, &request.org_id, &request.call_id)? {
                    return Ok(AcquireOutcome::AlreadyHeld(held));
                }
                // The narrower limit is reported first: it is the one the caller can route around.
                if count_leases(c, &request.org_id, Some(&request.agent_id))? >= request.agent_limit {
                    return Ok(AcquireOutcome::AgentLimitReached { limit: request.agent_limit });
                }
                if count_leases(c, &request.org_id, None)? >= request.org_limit {
                    return Ok(AcquireOutcome::OrgLimitReached { limit: request.org_limit });
                }
                let lease = Lease {
                    org_id: request.org_id,
                    agent_id: request.agent_id,
                    call_id: request.call_id,
                    acquired_at: now,
                    expires_at: now.plus_millis(request.ttl_ms),
                };
                c.prepare_cached(
                    "INSERT INTO leases (org_id, agent_id, call_id, acquired_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        lease.org_id.as_str(),
                        lease.agent_id.as_str(),
                        lease.call_id.as_str(),
                        lease.acquired_at.as_millis(),
                        lease.expires_at.as_millis()
                    ])
                })
                .map_err(sql)?;
                Ok(AcquireOutcome::Granted(lease))
            })
            .await
    }

    async fn heartbeat(&self, org: &OrgId, call: &CallId, ttl_ms: i64, now: Timestamp) -> Result<Lease> {
        if ttl_ms <= 0 {
            return Err(PortError::invalid("lease ttl must be positive"));
        }
        let (org, call) = (org.clone(), call.clone());
        self.db
            .write(move |c| {
                let Some(mut lease) = load_lease(c, &org, &call)? else {
                    return Err(PortError::not_found(format!("lease of {call}")));
                };
                lease.expires_at = now.plus_millis(ttl_ms);
                c.prepare_cached("UPDATE leases SET expires_at = ?3 WHERE org_id = ?1 AND call_id = ?2")
                    .and_then(|mut s| s.execute(params![org.as_str(), call.as_str(), lease.expires_at.as_millis()]))
                    .map_err(sql)?;
                Ok(lease)
            })
            .await
    }

    async fn release(&self, org: &OrgId, call: &CallId) -> Result<ReleaseOutcome> {
        let (org, call) = (org.clone(), call.clone());
        self.db
            .write(move |c| {
                let Some(lease) = load_lease(c, &org, &call)? else {
                    return Ok(ReleaseOutcome::NotHeld);
                };
                c.prepare_cached("DELETE FROM leases WHERE org_id = ?1 AND call_id = ?2")
                    .and_then(|mut s| s.execute([org.as_str(), call.as_str()]))
                    .map_err(sql)?;
                Ok(ReleaseOutcome::Released(lease))
            })
            .await
    }

    async fn expired(&self, now: Timestamp, max: usize) -> Result<Vec<Lease>> {
        let max = max.min(10_000) as i64;
        self.db
            .read(move |c| {
                let rows = collect(
                    c,
                    &format!(
                        "SELECT {LEASE_COLUMNS} FROM leases WHERE expires_at < ?1
                         ORDER BY expires_at LIMIT ?2"
                    ),
                    params![now.as_millis(), max],
                    lease_row,
                )?;
                rows.into_iter().map(decode_lease).collect::<Result<Vec<_>>>()
            })
            .await
    }

    async fn list(&self, org: &OrgId) -> Result<Vec<Lease>> {
        let org = org.clone();
        self.db
            .read(move |c| {
                let rows = collect(
                    c,
                    &format!("SELECT {LEASE_COLUMNS} FROM leases WHERE org_id = ?1 ORDER BY call_id"),
                    params![org.as_str()],
                    lease_row,
                )?;
                rows.into_iter().map(decode_lease).collect::<Result<Vec<_>>>()
            })
            .await
    }

    async fn active(&self, org: &OrgId, agent: Option<&AgentId>) -> Result<u32> {
        let (org, agent) = (org.clone(), agent.cloned());
        self.db.read(move |c| count_leases(c, &org, agent.as_ref())).await
    }
}

// ---------------------------------------------------------------- idempotency

#[async_trait]
impl IdempotencyStore for SqliteStores {
    async fn begin(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        claim_ttl_ms: i64,
        now: Timestamp,
    ) -> Result<IdempotencyBegin> {
        let (scope, key, fingerprint) = (scope.to_owned(), key.to_owned(), fingerprint.to_owned());
        self.db
            .write(move |c| {
                type Stored = (String, bool, Option<u16>, Option<String>, Option<Vec<u8>>, i64);
                let stored: Option<Stored> = c
                    .prepare_cached(
                        "SELECT fingerprint, completed, status, content_type, body, expires_at
                         FROM idempotency WHERE scope = ?1 AND key = ?2",
                    )
                    .and_then(|mut s| {
                        s.query_row([scope.as_str(), key.as_str()], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
                        })
                        .optional()
                    })
                    .map_err(sql)?;
                match stored {
                    Some((stored_fp, completed, status, content_type, body, expires_at))
                        if expires_at > now.as_millis() =>
                    {
                        if stored_fp != fingerprint {
                            return Ok(IdempotencyBegin::Mismatch);
                        }
                        if !completed {
                            return Ok(IdempotencyBegin::InProgress);
                        }
                        let (Some(status), Some(content_type), Some(body)) = (status, content_type, body) else {
                            return Err(PortError::corrupt("completed record without response"));
                        };
                        Ok(IdempotencyBegin::Completed(StoredResponse { status, content_type, body }))
                    }
                    _ => {
                        c.prepare_cached(
                            "INSERT OR REPLACE INTO idempotency
                             (scope, key, fingerprint, completed, status, content_type, body, expires_at)
                             VALUES (?1, ?2, ?3, 0, NULL, NULL, NULL, ?4)",
                        )
                        .and_then(|mut s| {
                            s.execute(params![scope, key, fingerprint, now.plus_millis(claim_ttl_ms).as_millis()])
                        })
                        .map_err(sql)?;
                        Ok(IdempotencyBegin::Started)
                    }
                }
            })
            .await
    }

    async fn complete(&self, scope: &str, key: &str, response: &StoredResponse, expires_at: Timestamp) -> Result<()> {
        let (scope, key, response) = (scope.to_owned(), key.to_owned(), response.clone());
        self.db
            .write(move |c| {
                let changed = c
                    .prepare_cached(
                        "UPDATE idempotency SET completed = 1, status = ?3, content_type = ?4,
                         body = ?5, expires_at = ?6 WHERE scope = ?1 AND key = ?2",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            scope,
                            key,
                            response.status,
                            response.content_type,
                            response.body,
                            expires_at.as_millis()
                        ])
                    })
                    .map_err(sql)?;
                if changed == 0 {
                    return Err(PortError::not_found(format!("idempotency key {key}")));
                }
                Ok(())
            })
            .await
    }

    async fn abandon(&self, scope: &str, key: &str) -> Result<()> {
        let (scope, key) = (scope.to_owned(), key.to_owned());
        self.db
            .write(move |c| {
                // A completed response stays: only an unfinished claim is given back.
                c.prepare_cached("DELETE FROM idempotency WHERE scope = ?1 AND key = ?2 AND completed = 0")
                    .and_then(|mut s| s.execute([scope, key]))
                    .map_err(sql)?;
                Ok(())
            })
            .await
    }
}

// ---------------------------------------------------------------- contexts

#[async_trait]
impl ContextStore for SqliteStores {
    async fn put(&self, call: &CallId, snapshot: &[u8], expires_at: Timestamp) -> Result<()> {
        let (call, snapshot) = (call.clone(), snapshot.to_vec());
        self.db
            .write(move |c| {
                c.prepare_cached(
                    "INSERT OR REPLACE INTO contexts (call_id, snapshot, expires_at)
                     VALUES (?1, ?2, ?3)",
                )
                .and_then(|mut s| s.execute(params![call.as_str(), snapshot, expires_at.as_millis()]))
                .map_err(sql)?;
                Ok(())
            })
            .await
    }

    async fn get(&self, call: &CallId, now: Timestamp) -> Result<Option<Vec<u8>>> {
        let call = call.clone();
        self.db
            .read(move |c| {
                c.prepare_cached("SELECT snapshot FROM contexts WHERE call_id = ?1 AND expires_at > ?2")
                    .and_then(|mut s| s.query_row(params![call.as_str(), now.as_millis()], |r| r.get(0)).optional())
                    .map_err(sql)
            })
            .await
    }

    async fn delete(&self, call: &CallId) -> Result<()> {
        let call = call.clone();
        self.db
            .write(move |c| {
                c.prepare_cached("DELETE FROM contexts WHERE call_id = ?1")
                    .and_then(|mut s| s.execute([call.as_str()]))
                    .map_err(sql)?;
                Ok(())
            })
            .await
    }
}

// ---------------------------------------------------------------- counters

#[async_trait]
impl Counters for SqliteStores {
    async fn hit(&self, key: &str, window_ms: i64, now: Timestamp) -> Result<u64> {
        if window_ms <= 0 {
            return Err(PortError::invalid("counter window must be positive"));
        }
        let key = key.to_owned();
        let window_start = now.as_millis().div_euclid(window_ms) * window_ms;
        self.db
            .write(move |c| {
                // Past windows are never read again; dropping them keeps the table small.
                c.prepare_cached("DELETE FROM counters WHERE key = ?1 AND window_start < ?2")
                    .and_then(|mut s| s.execute(params![key, window_start]))
                    .map_err(sql)?;
                let count = c
                    .prepare_cached(
                        "INSERT INTO counters (key, window_start, count) VALUES (?1, ?2, 1)
                         ON CONFLICT (key, window_start) DO UPDATE SET count = count + 1
                         RETURNING count",
                    )
                    .and_then(|mut s| s.query_row(params![key, window_start], |r| r.get::<_, i64>(0)))
                    .map_err(sql)?;
                Ok(count as u64)
            })
            .await
    }

    async fn count(&self, key: &str, window_ms: i64, now: Timestamp) -> Result<u64> {
        if window_ms <= 0 {
            return Err(PortError::invalid("counter window must be positive"));
        }
        let key = key.to_owned();
        let window_start = now.as_millis().div_euclid(window_ms) * window_ms;
        self.db
            .read(move |c| {
                let count: Option<i64> = c
                    .prepare_cached("SELECT count FROM counters WHERE key = ?1 AND window_start = ?2")
                    .and_then(|mut s| s.query_row(params![key, window_start], |r| r.get(0)).optional())
                    .map_err(sql)?;
                Ok(count.map_or(0, |c| c as u64))
            })
            .await
    }
}

// ---------------------------------------------------------------- outbox

#[async_trait]
impl golos_ports::Outbox for SqliteStores {
    async fn put(&self, entry: &golos_ports::OutboxEntry) -> Result<bool> {
        let entry = entry.clone();
        self.db
            .write(move |c| {
                let written = c
                    .prepare_cached("INSERT OR IGNORE INTO outbox (id, body, created_at) VALUES (?1, ?2, ?3)")
                    .and_then(|mut s| s.execute(params![entry.id, entry.body, entry.created_at.as_millis()]))
                    .map_err(sql)?;
                Ok(written == 1)
            })
            .await
    }

    async fn pending(&self, before: Timestamp, max: usize) -> Result<Vec<golos_ports::OutboxEntry>> {
        let max = max.min(10_000) as i64;
        self.db
            .read(move |c| {
                collect(
                    c,
                    "SELECT id, body, created_at FROM outbox WHERE created_at < ?1 ORDER BY created_at, id LIMIT ?2",
                    params![before.as_millis(), max],
                    |r| {
                        Ok(golos_ports::OutboxEntry {
                            id: r.get(0)?,
                            body: r.get(1)?,
                            created_at: Timestamp::from_millis(r.get(2)?),
                        })
                    },
                )
            })
            .await
    }

    async fn delete(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.db
            .write(move |c| {
                c.prepare_cached("DELETE FROM outbox WHERE id = ?1").and_then(|mut s| s.execute([id])).map_err(sql)?;
                Ok(())
            })
            .await
    }
}
