//! Call admission leases.

use super::*;

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
