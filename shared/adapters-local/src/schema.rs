//! Versioned schema. `PRAGMA user_version` records how many migrations ran; each migration
//! runs once, in its own transaction, so a crash mid-upgrade leaves the previous version.

use crate::LocalError;
use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: the control plane, the ledger, admission and the queue.
    r"
CREATE TABLE orgs (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    plan          TEXT NOT NULL,
    quotas_json   TEXT NOT NULL,
    settings_json TEXT NOT NULL,
    disabled      INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE TABLE agents (
    org_id      TEXT NOT NULL,
    id          TEXT NOT NULL,
    config_json TEXT NOT NULL,
    version     INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (org_id, id)
) WITHOUT ROWID;
CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER
);
CREATE INDEX api_keys_by_org ON api_keys (org_id, id);
CREATE TABLE ledger_entries (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id     TEXT NOT NULL,
    key        TEXT NOT NULL,
    kind       TEXT NOT NULL,
    delta      INTEGER NOT NULL,
    event_json TEXT NOT NULL,
    applied_at INTEGER NOT NULL,
    UNIQUE (org_id, key)
);
CREATE INDEX ledger_by_org ON ledger_entries (org_id, seq);
CREATE TABLE balances (
    org_id  TEXT PRIMARY KEY,
    balance INTEGER NOT NULL
);
CREATE TABLE usage (
    org_id     TEXT NOT NULL,
    year_month INTEGER NOT NULL,
    minutes    INTEGER NOT NULL,
    PRIMARY KEY (org_id, year_month)
) WITHOUT ROWID;
CREATE TABLE leases (
    org_id      TEXT NOT NULL,
    call_id     TEXT NOT NULL,
    agent_id    TEXT NOT NULL,
    acquired_at INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (org_id, call_id)
) WITHOUT ROWID;
CREATE INDEX leases_by_agent ON leases (org_id, agent_id);
CREATE INDEX leases_by_expiry ON leases (expires_at);
CREATE TABLE idempotency (
    scope         TEXT NOT NULL,
    key           TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    completed     INTEGER NOT NULL,
    status        INTEGER,
    content_type  TEXT,
    body          BLOB,
    expires_at    INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
CREATE TABLE contexts (
    call_id    TEXT PRIMARY KEY,
    snapshot   BLOB NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE counters (
    key          TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    count        INTEGER NOT NULL,
    PRIMARY KEY (key, window_start)
) WITHOUT ROWID;
CREATE TABLE queue_messages (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    queue         TEXT NOT NULL,
    body          TEXT NOT NULL,
    visible_at    INTEGER NOT NULL,
    receive_count INTEGER NOT NULL,
    receipt       TEXT,
    sent_at       INTEGER NOT NULL
);
CREATE INDEX queue_visible ON queue_messages (queue, visible_at, seq);
CREATE INDEX queue_receipt ON queue_messages (receipt) WHERE receipt IS NOT NULL;
CREATE TABLE numbers (
    number      TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL,
    agent_id    TEXT NOT NULL,
    assigned_at INTEGER NOT NULL
);
CREATE INDEX numbers_by_org ON numbers (org_id, number);
CREATE TABLE calls (
    org_id      TEXT NOT NULL,
    id          TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    record_json TEXT NOT NULL,
    transcript  BLOB,
    PRIMARY KEY (org_id, id)
);
CREATE INDEX calls_by_start ON calls (org_id, started_at, id);
CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id     TEXT NOT NULL,
    at         INTEGER NOT NULL,
    entry_json TEXT NOT NULL
);
CREATE INDEX audit_by_org ON audit_log (org_id, seq);
",
    // 2: organisations' provider credentials (envelope-encrypted values).
    r"
CREATE TABLE provider_credentials (
    org_id      TEXT NOT NULL,
    name        TEXT NOT NULL,
    envelope    BLOB NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (org_id, name)
) WITHOUT ROWID;
",
    // 3: organisations carry a version, so concurrent edits cannot undo each other.
    r"
ALTER TABLE orgs ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
",
];

pub(crate) fn migrate(conn: &Connection) -> Result<(), LocalError> {
    let current: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = MIGRATIONS.len() as u32;
    if current > known {
        return Err(LocalError::Invalid(format!(
            "database schema version {current} is newer than this build ({known})"
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as u32 + 1;
        conn.execute_batch(&format!("BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version = {version};\nCOMMIT;"))
            .inspect_err(|_| {
                let _ = conn.execute_batch("ROLLBACK");
            })?;
        tracing::info!(version, "sqlite schema migrated");
    }
    Ok(())
}
