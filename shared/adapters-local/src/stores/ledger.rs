//! The ledger: entries, balances and monthly usage, moved together in one transaction.

use super::*;

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
