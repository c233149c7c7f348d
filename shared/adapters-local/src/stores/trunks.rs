//! SIP trunks: one row per trunk, the record as JSON, the version as a column so updates
//! are conditional in SQL.

use super::*;
use golos_domain::TrunkId;
use golos_ports::{SipTrunk, SipTrunkStore};

fn trunk_version(trunk: &SipTrunk) -> Result<i64> {
    i64::try_from(trunk.version).map_err(|_| PortError::invalid("trunk version out of range"))
}

#[async_trait]
impl SipTrunkStore for SqliteStores {
    async fn create(&self, trunk: &SipTrunk) -> Result<()> {
        let (id, body, version) = (trunk.id.clone(), to_json(trunk)?, trunk_version(trunk)?);
        self.db
            .write(move |c| {
                let inserted = c
                    .prepare_cached(
                        "INSERT INTO sip_trunks (id, version, body_json) VALUES (?1, ?2, ?3) ON CONFLICT (id) DO NOTHING",
                    )
                    .and_then(|mut s| s.execute(params![id.as_str(), version, body]))
                    .map_err(sql)?;
                if inserted == 0 {
                    return Err(PortError::AlreadyExists { what: format!("trunk {id}") });
                }
                Ok(())
            })
            .await
    }

    async fn get(&self, id: &TrunkId) -> Result<Option<SipTrunk>> {
        let id = id.clone();
        self.db
            .read(move |c| {
                let body: Option<String> = c
                    .prepare_cached("SELECT body_json FROM sip_trunks WHERE id = ?1")
                    .and_then(|mut s| s.query_row([id.as_str()], |r| r.get(0)).optional())
                    .map_err(sql)?;
                body.map(|b| from_json(&b)).transpose()
            })
            .await
    }

    async fn update(&self, trunk: &SipTrunk) -> Result<u64> {
        let expected = trunk_version(trunk)?;
        let next = SipTrunk { version: trunk.version + 1, ..trunk.clone() };
        let body = to_json(&next)?;
        let id = trunk.id.clone();
        self.db
            .write(move |c| {
                let changed = c
                    .prepare_cached(
                        "UPDATE sip_trunks SET version = version + 1, body_json = ?2 WHERE id = ?1 AND version = ?3",
                    )
                    .and_then(|mut s| s.execute(params![id.as_str(), body, expected]))
                    .map_err(sql)?;
                if changed == 1 {
                    return Ok(next.version);
                }
                let stored: Option<i64> = c
                    .prepare_cached("SELECT version FROM sip_trunks WHERE id = ?1")
                    .and_then(|mut s| s.query_row([id.as_str()], |r| r.get(0)).optional())
                    .map_err(sql)?;
                match stored {
                    None => Err(PortError::not_found(format!("trunk {id}"))),
                    Some(actual) => Err(PortError::Conflict {
                        expected: u64::try_from(expected).unwrap_or(0),
                        actual: u64::try_from(actual).unwrap_or(0),
                    }),
                }
            })
            .await
    }

    async fn delete(&self, id: &TrunkId) -> Result<()> {
        let id = id.clone();
        self.db
            .write(move |c| {
                let deleted = c
                    .prepare_cached("DELETE FROM sip_trunks WHERE id = ?1")
                    .and_then(|mut s| s.execute([id.as_str()]))
                    .map_err(sql)?;
                if deleted == 0 {
                    return Err(PortError::not_found(format!("trunk {id}")));
                }
                Ok(())
            })
            .await
    }

    async fn all(&self) -> Result<Vec<SipTrunk>> {
        self.db
            .read(|c| {
                let bodies = collect(c, "SELECT body_json FROM sip_trunks ORDER BY id", [], |r| r.get::<_, String>(0))?;
                bodies.iter().map(|b| from_json(b)).collect()
            })
            .await
    }
}
