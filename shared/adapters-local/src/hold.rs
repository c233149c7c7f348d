//! The hold queue over the `hold_queue` table (migration 5). Every write is one writer job,
//! so a join's cap check, its arrival number and its insert cannot interleave with another.

use crate::sql;
use crate::stores::{collect, parse_id, SqliteStores};
use async_trait::async_trait;
use golos_domain::{AgentId, CallId, OrgId, Timestamp};
use golos_ports::hold::{sort_line, HOLD_QUEUE_QUOTA};
use golos_ports::{HoldQueue, HoldReason, HoldRequest, PortError, Result, Waiter};
use rusqlite::{params, Connection, OptionalExtension, Row};

const COLUMNS: &str = "org_id, agent_id, call_id, priority, arrival, reason, since, last_seen";

type HoldRow = (String, String, String, i64, i64, String, i64, i64);

fn hold_row(r: &Row<'_>) -> rusqlite::Result<HoldRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
}

fn decode((org, agent, call, priority, arrival, reason, since, last_seen): HoldRow) -> Result<Waiter> {
    Ok(Waiter {
        org_id: parse_id(&org, OrgId::parse)?,
        agent_id: parse_id(&agent, AgentId::parse)?,
        call_id: parse_id(&call, CallId::parse)?,
        priority: u8::try_from(priority).map_err(|_| PortError::corrupt("stored hold priority"))?,
        arrival: u64::try_from(arrival).map_err(|_| PortError::corrupt("stored hold arrival"))?,
        reason: HoldReason::parse(&reason).ok_or_else(|| PortError::corrupt("stored hold reason"))?,
        since: Timestamp::from_millis(since),
        last_seen: Timestamp::from_millis(last_seen),
    })
}

/// The last instant at which a waiter counts as stale.
const fn cutoff(now: Timestamp, stale_after_ms: i64) -> i64 {
    now.as_millis().saturating_sub(stale_after_ms)
}

fn forget_stale(c: &Connection, org: &OrgId, now: Timestamp, stale_after_ms: i64) -> Result<usize> {
    c.prepare_cached("DELETE FROM hold_queue WHERE org_id = ?1 AND last_seen <= ?2")
        .and_then(|mut s| s.execute(params![org.as_str(), cutoff(now, stale_after_ms)]))
        .map_err(sql)
}

fn load(c: &Connection, org: &OrgId, call: &CallId) -> Result<Option<Waiter>> {
    let row = c
        .prepare_cached(&format!("SELECT {COLUMNS} FROM hold_queue WHERE org_id = ?1 AND call_id = ?2"))
        .and_then(|mut s| s.query_row([org.as_str(), call.as_str()], hold_row).optional())
        .map_err(sql)?;
    row.map(decode).transpose()
}

#[async_trait]
impl HoldQueue for SqliteStores {
    async fn line(&self, org: &OrgId, now: Timestamp, stale_after_ms: i64) -> Result<Vec<Waiter>> {
        let read_org = org.clone();
        let rows = self
            .db
            .read(move |c| {
                collect(
                    c,
                    &format!("SELECT {COLUMNS} FROM hold_queue WHERE org_id = ?1"),
                    [read_org.as_str()],
                    hold_row,
                )
            })
            .await?;
        let mut line = rows.into_iter().map(decode).collect::<Result<Vec<_>>>()?;
        if line.iter().any(|w| w.is_stale(now, stale_after_ms)) {
            // Only the stale go: a waiter that asked again meanwhile has a newer `last_seen`.
            let org = org.clone();
            self.db.write(move |c| forget_stale(c, &org, now, stale_after_ms)).await?;
            line.retain(|w| !w.is_stale(now, stale_after_ms));
        }
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
        let request = request.clone();
        self.db
            .write(move |c| {
                forget_stale(c, &request.org_id, now, stale_after_ms)?;
                if let Some(mut waiter) = load(c, &request.org_id, &request.call_id)? {
                    c.prepare_cached(
                        "UPDATE hold_queue SET last_seen = ?3, reason = ?4 WHERE org_id = ?1 AND call_id = ?2",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            request.org_id.as_str(),
                            request.call_id.as_str(),
                            now.as_millis(),
                            request.reason.as_str()
                        ])
                    })
                    .map_err(sql)?;
                    waiter.last_seen = now;
                    waiter.reason = request.reason;
                    return Ok(waiter);
                }
                let waiting: u32 = c
                    .prepare_cached("SELECT COUNT(*) FROM hold_queue WHERE org_id = ?1")
                    .and_then(|mut s| s.query_row([request.org_id.as_str()], |r| r.get(0)))
                    .map_err(sql)?;
                if waiting >= max_waiters {
                    return Err(PortError::QuotaExceeded { quota: HOLD_QUEUE_QUOTA, limit: u64::from(max_waiters) });
                }
                let arrival: i64 = c
                    .prepare_cached(
                        "INSERT INTO hold_arrivals (org_id, seq) VALUES (?1, 1)
                         ON CONFLICT (org_id) DO UPDATE SET seq = seq + 1 RETURNING seq",
                    )
                    .and_then(|mut s| s.query_row([request.org_id.as_str()], |r| r.get(0)))
                    .map_err(sql)?;
                let waiter = Waiter {
                    org_id: request.org_id,
                    agent_id: request.agent_id,
                    call_id: request.call_id,
                    priority: request.priority,
                    arrival: u64::try_from(arrival).map_err(|_| PortError::corrupt("stored hold arrival"))?,
                    reason: request.reason,
                    since: now,
                    last_seen: now,
                };
                c.prepare_cached(&format!(
                    "INSERT INTO hold_queue ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                ))
                .and_then(|mut s| {
                    s.execute(params![
                        waiter.org_id.as_str(),
                        waiter.agent_id.as_str(),
                        waiter.call_id.as_str(),
                        i64::from(waiter.priority),
                        i64::try_from(waiter.arrival).unwrap_or(i64::MAX),
                        waiter.reason.as_str(),
                        now.as_millis(),
                        now.as_millis()
                    ])
                })
                .map_err(sql)?;
                Ok(waiter)
            })
            .await
    }

    async fn leave(&self, org: &OrgId, call: &CallId) -> Result<bool> {
        let (org, call) = (org.clone(), call.clone());
        // Most calls never waited: a read spares the writer a job for them.
        let read = (org.clone(), call.clone());
        if self.db.read(move |c| load(c, &read.0, &read.1)).await?.is_none() {
            return Ok(false);
        }
        self.db
            .write(move |c| {
                c.prepare_cached("DELETE FROM hold_queue WHERE org_id = ?1 AND call_id = ?2")
                    .and_then(|mut s| s.execute([org.as_str(), call.as_str()]))
                    .map(|deleted| deleted > 0)
                    .map_err(sql)
            })
            .await
    }
}
