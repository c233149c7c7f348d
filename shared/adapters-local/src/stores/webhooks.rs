//! Webhook endpoints: one row per endpoint, the record as JSON, the version as a column so
//! updates are conditional in SQL; the per-org limit is counted inside the inserting write.
//!
//! The deliveries log: one row per attempt in `webhook_deliveries`, clustered by endpoint and
//! time (newest-first pages are one index range), the record as JSON with the columns the
//! queries filter on; every `record` also sweeps a bounded number of expired rows.

use super::*;
use golos_domain::WebhookEndpointId;
use golos_ports::{WebhookDelivery, WebhookDeliveryStore, WebhookEndpoint, WebhookEndpointStore};

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

/// Expired rows deleted per `record`, on top of twice the rows written: the sweep outpaces
/// the writes, so the table stays at about its unexpired size without a sweeper of its own.
const DELIVERY_SWEEP_EXTRA: usize = 32;

/// Cursor `<created_at>:<id>` of the last delivery shown.
fn delivery_cursor(delivery: &WebhookDelivery) -> String {
    format!("{}:{}", delivery.created_at.as_millis(), delivery.id)
}

#[async_trait]
impl WebhookDeliveryStore for SqliteStores {
    async fn record(&self, deliveries: &[WebhookDelivery]) -> Result<()> {
        let Some(now) = deliveries.iter().map(|d| d.created_at).max() else {
            return Ok(());
        };
        let rows = deliveries
            .iter()
            .map(|d| {
                Ok((
                    d.endpoint_id.as_str().to_owned(),
                    d.created_at.as_millis(),
                    d.id.as_str().to_owned(),
                    d.org_id.as_str().to_owned(),
                    d.outcome.as_str(),
                    d.expires_at.as_millis(),
                    to_json(d)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let sweep = i64::try_from(rows.len() * 2 + DELIVERY_SWEEP_EXTRA).unwrap_or(i64::MAX);
        self.db
            .write(move |c| {
                // A put by id: REPLACE drops the row holding the id (by the unique index)
                // before inserting, so a second record keeps one row, at its new key.
                let mut put = c
                    .prepare_cached(
                        "INSERT OR REPLACE INTO webhook_deliveries
                         (endpoint_id, created_at, id, org_id, outcome, expires_at, body_json)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )
                    .map_err(sql)?;
                for (endpoint, created_at, id, org, outcome, expires_at, body) in &rows {
                    put.execute(params![endpoint, created_at, id, org, outcome, expires_at, body]).map_err(sql)?;
                }
                // The newest attempt's time stands for now (the log is written as it happens).
                c.prepare_cached(
                    "DELETE FROM webhook_deliveries WHERE id IN
                     (SELECT id FROM webhook_deliveries WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2)",
                )
                .and_then(|mut s| s.execute(params![now.as_millis(), sweep]))
                .map_err(sql)?;
                Ok(())
            })
            .await
    }

    async fn list(
        &self,
        org: &OrgId,
        endpoint: &WebhookEndpointId,
        page: &PageRequest,
        now: Timestamp,
    ) -> Result<Page<WebhookDelivery>> {
        let limit = page.clamped_limit();
        let bad = || PortError::bad_cursor("webhook deliveries");
        let (before_at, before_id) = match &page.cursor {
            None => (i64::MAX, "\u{10ffff}".to_owned()),
            Some(cursor) => {
                let (at, id) = cursor.split_once(':').ok_or_else(bad)?;
                (at.parse::<i64>().map_err(|_| bad())?, id.to_owned())
            }
        };
        let (org, endpoint) = (org.clone(), endpoint.clone());
        self.db
            .read(move |c| {
                let bodies = collect(
                    c,
                    "SELECT body_json FROM webhook_deliveries
                     WHERE endpoint_id = ?1 AND org_id = ?2 AND expires_at > ?3
                     AND (created_at < ?4 OR (created_at = ?4 AND id < ?5))
                     ORDER BY created_at DESC, id DESC LIMIT ?6",
                    params![endpoint.as_str(), org.as_str(), now.as_millis(), before_at, before_id, limit + 1],
                    |r| r.get::<_, String>(0),
                )?;
                let items = bodies.iter().map(|b| from_json(b)).collect::<Result<Vec<WebhookDelivery>>>()?;
                Ok(page_of(items, limit, delivery_cursor))
            })
            .await
    }

    async fn count_failures_since(
        &self,
        org: &OrgId,
        endpoint: &WebhookEndpointId,
        since: Timestamp,
        cap: u32,
    ) -> Result<u32> {
        if cap == 0 {
            return Ok(0);
        }
        let (org, endpoint) = (org.clone(), endpoint.clone());
        self.db
            .read(move |c| {
                let counted: i64 = c
                    .prepare_cached(
                        "SELECT COUNT(*) FROM (SELECT 1 FROM webhook_deliveries
                         WHERE endpoint_id = ?1 AND created_at >= ?2 AND org_id = ?3
                         AND outcome IN ('retrying', 'dead_lettered') LIMIT ?4)",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![endpoint.as_str(), since.as_millis(), org.as_str(), i64::from(cap)], |r| {
                            r.get(0)
                        })
                    })
                    .map_err(sql)?;
                Ok(u32::try_from(counted).unwrap_or(cap).min(cap))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Durability;
    use golos_domain::events::WebhookEventType;
    use golos_domain::WebhookDeliveryId;

    const T0: Timestamp = Timestamp::from_millis(1_795_305_600_000);
    const DAY_MS: i64 = 86_400_000;

    fn delivery(n: usize, endpoint: &WebhookEndpointId, at: Timestamp, keep_ms: i64) -> WebhookDelivery {
        WebhookDelivery {
            id: WebhookDeliveryId::with_suffix(&format!("d{n}")).unwrap(),
            org_id: OrgId::with_suffix("o1").unwrap(),
            endpoint_id: endpoint.clone(),
            event_id: format!("evt_{n}"),
            event_type: WebhookEventType::CallEnded,
            attempt: 1,
            outcome: golos_ports::DeliveryOutcome::Delivered,
            status_code: Some(200),
            latency_ms: 3,
            error: None,
            next_attempt_at: None,
            created_at: at,
            expires_at: at.plus_millis(keep_ms),
        }
    }

    async fn rows(store: &SqliteStores) -> i64 {
        store
            .db
            .read(|c| c.query_row("SELECT COUNT(*) FROM webhook_deliveries", [], |r| r.get(0)).map_err(sql))
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn recording_sweeps_expired_rows_a_bounded_number_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStores::new(crate::db::Db::open(&dir.path().join("t.db"), Durability::Full).unwrap());
        let endpoint = WebhookEndpointId::with_suffix("e1").unwrap();
        let old: Vec<_> = (0..50).map(|n| delivery(n, &endpoint, T0, DAY_MS)).collect();
        store.record(&old).await.unwrap();
        assert_eq!(rows(&store).await, 50, "nothing expired yet");

        // Each later record deletes up to 2 × its rows + 32 expired ones.
        store.record(&[delivery(100, &endpoint, T0.plus_millis(2 * DAY_MS), DAY_MS)]).await.unwrap();
        assert_eq!(rows(&store).await, 50 - 34 + 1);
        store.record(&[delivery(101, &endpoint, T0.plus_millis(2 * DAY_MS), DAY_MS)]).await.unwrap();
        assert_eq!(rows(&store).await, 2, "only the unexpired rows are left");
    }
}
