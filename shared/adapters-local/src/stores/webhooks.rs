//! Webhook endpoints: one row per endpoint, the record as JSON, the version as a column so
//! updates are conditional in SQL; the per-org limit is counted inside the inserting write.

use super::*;
use golos_domain::WebhookEndpointId;
use golos_ports::{WebhookEndpoint, WebhookEndpointStore};

fn endpoint_version(endpoint: &WebhookEndpoint) -> Result<i64> {
    i64::try_from(endpoint.version).map_err(|_| PortError::invalid("webhook endpoint version out of range"))
}

#[async_trait]
impl WebhookEndpointStore for SqliteStores {
    async fn create(&self, endpoint: &WebhookEndpoint, max_per_org: u32) -> Result<()> {
        let (org, id) = (endpoint.org_id.clone(), endpoint.id.clone());
        let (body, version) = (to_json(endpoint)?, endpoint_version(endpoint)?);
        self.db
            .write(move |c| {
                let taken: bool = c
                    .prepare_cached("SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE org_id = ?1 AND id = ?2)")
                    .and_then(|mut s| s.query_row(params![org.as_str(), id.as_str()], |r| r.get(0)))
                    .map_err(sql)?;
                if taken {
                    return Err(PortError::AlreadyExists { what: format!("webhook endpoint {id}") });
                }
                let held: i64 = c
                    .prepare_cached("SELECT COUNT(*) FROM webhook_endpoints WHERE org_id = ?1")
                    .and_then(|mut s| s.query_row([org.as_str()], |r| r.get(0)))
                    .map_err(sql)?;
                if held >= i64::from(max_per_org) {
                    return Err(PortError::QuotaExceeded {
                        quota: "max_webhook_endpoints",
                        limit: u64::from(max_per_org),
                    });
                }
                c.prepare_cached(
                    "INSERT INTO webhook_endpoints (org_id, id, version, body_json) VALUES (?1, ?2, ?3, ?4)",
                )
                .and_then(|mut s| s.execute(params![org.as_str(), id.as_str(), version, body]))
                .map_err(sql)?;
                Ok(())
            })
            .await
    }

    async fn get(&self, org: &OrgId, id: &WebhookEndpointId) -> Result<Option<WebhookEndpoint>> {
        let (org, id) = (org.clone(), id.clone());
        self.db
            .read(move |c| {
                let body: Option<String> = c
                    .prepare_cached("SELECT body_json FROM webhook_endpoints WHERE org_id = ?1 AND id = ?2")
                    .and_then(|mut s| s.query_row(params![org.as_str(), id.as_str()], |r| r.get(0)).optional())
                    .map_err(sql)?;
                body.map(|b| from_json(&b)).transpose()
            })
            .await
    }

    async fn update(&self, endpoint: &WebhookEndpoint) -> Result<u64> {
        let expected = endpoint_version(endpoint)?;
        let next = WebhookEndpoint { version: endpoint.version + 1, ..endpoint.clone() };
        let body = to_json(&next)?;
        let (org, id) = (endpoint.org_id.clone(), endpoint.id.clone());
        self.db
            .write(move |c| {
                let changed = c
                    .prepare_cached(
                        "UPDATE webhook_endpoints SET version = version + 1, body_json = ?3 \
                         WHERE org_id = ?1 AND id = ?2 AND version = ?4",
                    )
                    .and_then(|mut s| s.execute(params![org.as_str(), id.as_str(), body, expected]))
                    .map_err(sql)?;
                if changed == 1 {
                    return Ok(next.version);
                }
                let stored: Option<i64> = c
                    .prepare_cached("SELECT version FROM webhook_endpoints WHERE org_id = ?1 AND id = ?2")
                    .and_then(|mut s| s.query_row(params![org.as_str(), id.as_str()], |r| r.get(0)).optional())
                    .map_err(sql)?;
                match stored {
                    None => Err(PortError::not_found(format!("webhook endpoint {id}"))),
                    Some(actual) => Err(PortError::Conflict {
                        expected: u64::try_from(expected).unwrap_or(0),
                        actual: u64::try_from(actual).unwrap_or(0),
                    }),
                }
            })
            .await
    }

    async fn delete(&self, org: &OrgId, id: &WebhookEndpointId) -> Result<()> {
        let (org, id) = (org.clone(), id.clone());
        self.db
            .write(move |c| {
                let deleted = c
                    .prepare_cached("DELETE FROM webhook_endpoints WHERE org_id = ?1 AND id = ?2")
                    .and_then(|mut s| s.execute(params![org.as_str(), id.as_str()]))
                    .map_err(sql)?;
                if deleted == 0 {
                    return Err(PortError::not_found(format!("webhook endpoint {id}")));
                }
                Ok(())
            })
            .await
    }

    async fn list(&self, org: &OrgId) -> Result<Vec<WebhookEndpoint>> {
        let org = org.clone();
        self.db
            .read(move |c| {
                let bodies = collect(
                    c,
                    "SELECT body_json FROM webhook_endpoints WHERE org_id = ?1 ORDER BY id",
                    [org.as_str()],
                    |r| r.get::<_, String>(0),
                )?;
                bodies.iter().map(|b| from_json(b)).collect()
            })
            .await
    }
}
