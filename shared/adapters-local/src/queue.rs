//! A durable queue with SQS semantics in the `queue_messages` table. A queue and its
//! dead-letter queue (`<name>-dlq`) share the table; moving a message is one column update.
//! Time comes from the injected clock so tests drive visibility with a manual clock.

use crate::db::Db;
use crate::sql;
use crate::stores::collect;
use crate::LocalError;
use async_trait::async_trait;
use golos_ports::{Clock, DeadLetter, PortError, Queue, QueueConfig, QueueMessage, Result};
use rusqlite::params;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// SQS limits, kept so a consumer written against the local queue behaves the same on AWS.
const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);
const MAX_BODY: usize = 256 * 1024;

#[derive(Debug)]
pub(crate) struct SqliteQueue {
    db: Arc<Db>,
    clock: Arc<dyn Clock>,
    config: QueueConfig,
    dlq: String,
    /// Sends (of visible messages) and redrives in this process wake one idle consumer.
    sent: tokio::sync::Notify,
}

impl SqliteQueue {
    pub(crate) fn new(db: Arc<Db>, clock: Arc<dyn Clock>, config: QueueConfig) -> Result<Self, LocalError> {
        if config.name.is_empty() || config.name.len() > 76 {
            return Err(LocalError::Invalid("queue name must be 1..=76 characters".into()));
        }
        if config.max_receives == 0 {
            return Err(LocalError::Invalid("max_receives must be at least 1".into()));
        }
        if config.default_visibility > MAX_VISIBILITY {
            return Err(LocalError::Invalid("default visibility over 12 hours".into()));
        }
        let dlq = format!("{}-dlq", config.name);
        Ok(Self { db, clock, config, dlq, sent: tokio::sync::Notify::new() })
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn check_visibility(visibility: Duration) -> Result<i64> {
    if visibility > MAX_VISIBILITY {
        return Err(PortError::invalid("visibility timeout over 12 hours"));
    }
    Ok(millis(visibility))
}

#[async_trait]
impl Queue for SqliteQueue {
    fn config(&self) -> &QueueConfig {
        &self.config
    }

    async fn send(&self, body: &str, delay: Duration) -> Result<String> {
        if delay > MAX_DELAY {
            return Err(PortError::invalid("delay over 15 minutes"));
        }
        if body.len() > MAX_BODY {
            return Err(PortError::invalid("message body over 256 KiB"));
        }
        let now = self.clock.now();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (queue, body, visible_at) =
            (self.config.name.clone(), body.to_owned(), now.plus_millis(millis(delay)).as_millis());
        let answer = id.clone();
        self.db
            .write(move |c| {
                c.prepare_cached(
                    "INSERT INTO queue_messages (id, queue, body, visible_at, receive_count,
                     receipt, sent_at) VALUES (?1, ?2, ?3, ?4, 0, NULL, ?5)",
                )
                .and_then(|mut s| s.execute(params![id, queue, body, visible_at, now.as_millis()]))
                .map_err(sql)?;
                Ok(())
            })
            .await?;
        if delay.is_zero() {
            self.sent.notify_one();
        }
        Ok(answer)
    }

    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<QueueMessage>> {
        let max = max.clamp(1, 10);
        let hide_for = check_visibility(visibility)?;
        let now = self.clock.now().as_millis();
        let (queue, dlq, max_receives) = (self.config.name.clone(), self.dlq.clone(), self.config.max_receives);
        self.db
            .write(move |c| {
                let mut got = Vec::new();
                // Rows already answered or dead-lettered in this call; with a visibility of
                // zero a received row would otherwise match the next query again.
                let mut handled: HashSet<i64> = HashSet::new();
                loop {
                    let want = max - got.len();
                    let candidates = collect(
                        c,
                        "SELECT seq, id, body, receive_count FROM queue_messages
                         WHERE queue = ?1 AND visible_at <= ?2
                         ORDER BY visible_at, seq LIMIT ?3",
                        params![queue, now, (want + handled.len()) as i64],
                        |r| {
                            Ok((
                                r.get::<_, i64>(0)?,
                                r.get::<_, String>(1)?,
                                r.get::<_, String>(2)?,
                                r.get::<_, u32>(3)?,
                            ))
                        },
                    )?;
                    let fresh: Vec<_> = candidates
                        .into_iter()
                        .filter(|(seq, ..)| !handled.contains(seq))
                        .collect();
                    if fresh.is_empty() {
                        break;
                    }
                    for (seq, id, body, count) in fresh {
                        handled.insert(seq);
                        if count >= max_receives {
                            c.prepare_cached(
                                "UPDATE queue_messages SET queue = ?2, receipt = NULL WHERE seq = ?1",
                            )
                            .and_then(|mut s| s.execute(params![seq, dlq]))
                            .map_err(sql)?;
                            tracing::warn!(queue = %queue, message = %id, receives = count, "message moved to the dead-letter queue");
                            continue;
                        }
                        let receive_count = count + 1;
                        let receipt = format!(
                            "{id}:{receive_count}:{}",
                            uuid::Uuid::new_v4().simple()
                        );
                        c.prepare_cached(
                            "UPDATE queue_messages SET receive_count = ?2, visible_at = ?3,
                             receipt = ?4 WHERE seq = ?1",
                        )
                        .and_then(|mut s| {
                            s.execute(params![seq, receive_count, now + hide_for, receipt])
                        })
                        .map_err(sql)?;
                        got.push(QueueMessage {
                            id,
                            receipt,
                            body,
                            receive_count,
                        });
                        if got.len() == max {
                            return Ok(got);
                        }
                    }
                }
                Ok(got)
            })
            .await
    }

    async fn delete(&self, receipt: &str) -> Result<()> {
        let (queue, receipt) = (self.config.name.clone(), receipt.to_owned());
        self.db
            .write(move |c| {
                // Only the latest receipt matches: a consumer that lost its visibility window
                // must not delete the redelivery another consumer is working on.
                c.prepare_cached("DELETE FROM queue_messages WHERE receipt = ?1 AND queue = ?2")
                    .and_then(|mut s| s.execute(params![receipt, queue]))
                    .map_err(sql)?;
                Ok(())
            })
            .await
    }

    async fn change_visibility(&self, receipt: &str, visibility: Duration) -> Result<()> {
        let hide_for = check_visibility(visibility)?;
        let now = self.clock.now().as_millis();
        let (queue, receipt) = (self.config.name.clone(), receipt.to_owned());
        self.db
            .write(move |c| {
                let changed = c
                    .prepare_cached("UPDATE queue_messages SET visible_at = ?3 WHERE receipt = ?1 AND queue = ?2")
                    .and_then(|mut s| s.execute(params![receipt, queue, now + hide_for]))
                    .map_err(sql)?;
                if changed == 0 {
                    return Err(PortError::not_found("message in flight under this receipt"));
                }
                Ok(())
            })
            .await
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>> {
        let max = max.clamp(1, 1_000) as i64;
        let dlq = self.dlq.clone();
        self.db
            .read(move |c| {
                collect(
                    c,
                    "SELECT id, body, receive_count FROM queue_messages WHERE queue = ?1
                     ORDER BY seq LIMIT ?2",
                    params![dlq, max],
                    |r| Ok(DeadLetter { id: r.get(0)?, body: r.get(1)?, receive_count: r.get(2)? }),
                )
            })
            .await
    }

    async fn redrive(&self, max: usize) -> Result<usize> {
        let max = max.min(100_000) as i64;
        let now = self.clock.now().as_millis();
        let (queue, dlq) = (self.config.name.clone(), self.dlq.clone());
        self.db
            .write(move |c| {
                c.prepare_cached(
                    "UPDATE queue_messages SET queue = ?1, receive_count = 0, receipt = NULL,
                     visible_at = ?3
                     WHERE seq IN (SELECT seq FROM queue_messages WHERE queue = ?2
                                   ORDER BY seq LIMIT ?4)",
                )
                .and_then(|mut s| s.execute(params![queue, dlq, now, max]))
                .map_err(sql)
            })
            .await
            .inspect(|_| self.sent.notify_one())
    }

    async fn dead_letter(&self, body: &str) -> Result<String> {
        if body.len() > MAX_BODY {
            return Err(PortError::invalid("message body over 256 KiB"));
        }
        let now = self.clock.now().as_millis();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (dlq, body) = (self.dlq.clone(), body.to_owned());
        let answer = id.clone();
        self.db
            .write(move |c| {
                c.prepare_cached(
                    "INSERT INTO queue_messages (id, queue, body, visible_at, receive_count,
                     receipt, sent_at) VALUES (?1, ?2, ?3, ?4, 0, NULL, ?4)",
                )
                .and_then(|mut s| s.execute(params![id, dlq, body, now]))
                .map_err(sql)?;
                Ok(())
            })
            .await?;
        Ok(answer)
    }

    async fn redrive_ids(&self, ids: &[String]) -> Result<usize> {
        if ids.is_empty() {
            return Ok(0);
        }
        let now = self.clock.now().as_millis();
        let (queue, dlq) = (self.config.name.clone(), self.dlq.clone());
        // Each id once: a repeated id must not count twice.
        let ids: Vec<String> = ids.iter().cloned().collect::<HashSet<_>>().into_iter().collect();
        self.db
            .write(move |c| {
                let mut update = c
                    .prepare_cached(
                        "UPDATE queue_messages SET queue = ?1, receive_count = 0, receipt = NULL,
                         visible_at = ?3 WHERE id = ?4 AND queue = ?2",
                    )
                    .map_err(sql)?;
                let mut moved = 0;
                for id in &ids {
                    moved += update.execute(params![queue, dlq, now, id]).map_err(sql)?;
                }
                Ok(moved)
            })
            .await
            .inspect(|_| self.sent.notify_one())
    }

    async fn wait_for_send(&self, max: Duration) -> bool {
        let _ = tokio::time::timeout(max, self.sent.notified()).await;
        true
    }

    async fn depth(&self) -> Result<u64> {
        let queue = self.config.name.clone();
        self.db
            .read(move |c| {
                c.prepare_cached("SELECT COUNT(*) FROM queue_messages WHERE queue = ?1")
                    .and_then(|mut s| s.query_row([queue], |r| r.get::<_, i64>(0)))
                    .map(|n| n as u64)
                    .map_err(sql)
            })
            .await
    }
}
