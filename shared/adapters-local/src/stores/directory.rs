//! Organisations, agents and API keys.

use super::*;

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
        let listing = OrgListing {
            table: "agents",
            columns: AGENT_COLUMNS,
            key: "id",
            row: agent_row,
            decode: decode_agent,
            cursor_of: |a| a.id.to_string(),
        };
        listing.page(&self.db, org, page).await
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
        let listing = OrgListing {
            table: "api_keys",
            columns: KEY_COLUMNS,
            key: "id",
            row: key_row,
            decode: decode_key,
            cursor_of: |k| k.id.to_string(),
        };
        listing.page(&self.db, org, page).await
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
