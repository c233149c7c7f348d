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

/// Where an org-scoped listing reads from: `SELECT {columns} FROM {table}`, paged in the
/// order of `key`, a column unique within the org (the cursor is the last key shown).
pub(crate) struct OrgListing<R, T> {
    pub(crate) table: &'static str,
    pub(crate) columns: &'static str,
    pub(crate) key: &'static str,
    pub(crate) row: fn(&Row<'_>) -> rusqlite::Result<R>,
    pub(crate) decode: fn(R) -> Result<T>,
    pub(crate) cursor_of: fn(&T) -> String,
}

impl<R: Send + 'static, T: Send + 'static> OrgListing<R, T> {
    /// One page of `org`'s rows after `page.cursor`.
    pub(crate) async fn page(self, db: &Arc<Db>, org: &OrgId, page: &PageRequest) -> Result<Page<T>> {
        let limit = page.clamped_limit();
        let after = page.cursor.clone().unwrap_or_default();
        let org = org.clone();
        db.read(move |c| {
            let (table, columns, key) = (self.table, self.columns, self.key);
            let sql_text =
                format!("SELECT {columns} FROM {table} WHERE org_id = ?1 AND {key} > ?2 ORDER BY {key} LIMIT ?3");
            let rows = collect(c, &sql_text, params![org.as_str(), after, limit + 1], self.row)?;
            let items = rows.into_iter().map(self.decode).collect::<Result<Vec<_>>>()?;
            Ok(page_of(items, limit, self.cursor_of))
        })
        .await
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

// Each store sits in the module of its contract suite (golos-testkit), as in golos-aws; the
// row helpers above are shared.
#[allow(clippy::wildcard_imports)]
mod directory;
#[allow(clippy::wildcard_imports)]
mod leases;
#[allow(clippy::wildcard_imports)]
mod ledger;
#[allow(clippy::wildcard_imports)]
mod records;
#[allow(clippy::wildcard_imports)]
mod trunks;
#[allow(clippy::wildcard_imports)]
mod webhooks;
