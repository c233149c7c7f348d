//! Idempotency records, conversation snapshots, shared counters and the call-event outbox.

use super::*;

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
