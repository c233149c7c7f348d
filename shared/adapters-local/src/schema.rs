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
    // 4: numbers are granted to an org by the operator before the org routes them; the
    // agent becomes optional (granted, not routed). Numbers already routed stay granted to
    // the org that routed them.
    r"
CREATE TABLE numbers_v3 (
    number     TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL,
    agent_id   TEXT,
    granted_at INTEGER NOT NULL
);
INSERT INTO numbers_v3 (number, org_id, agent_id, granted_at)
    SELECT number, org_id, agent_id, assigned_at FROM numbers;
DROP TABLE numbers;
ALTER TABLE numbers_v3 RENAME TO numbers;
CREATE INDEX numbers_by_org ON numbers (org_id, number);
",
    // 5: the outbox of call events (a call's end is written here before anything is released).
    r"
CREATE TABLE outbox (
    id         TEXT PRIMARY KEY,
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX outbox_by_age ON outbox (created_at, id);
",
    // 6: the hold queue, shared by every process on the database (it lived in one process's
    // memory). `arrival` is assigned at a call's first hold from the org's `hold_arrivals`
    // sequence and never changes.
    r"
CREATE TABLE hold_queue (
    org_id    TEXT NOT NULL,
    call_id   TEXT NOT NULL,
    agent_id  TEXT NOT NULL,
    priority  INTEGER NOT NULL,
    arrival   INTEGER NOT NULL,
    reason    TEXT NOT NULL,
    since     INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    PRIMARY KEY (org_id, call_id)
) WITHOUT ROWID;
CREATE TABLE hold_arrivals (
    org_id TEXT PRIMARY KEY,
    seq    INTEGER NOT NULL
);
",
    // 7: call records as a state machine with retention and erasure: the parties' numbers
    // as columns (to find a number's calls), the expiry (for the retention sweeper), and
    // transcripts too large for a queue message kept encrypted until their event is consumed.
    r"
ALTER TABLE calls ADD COLUMN from_number TEXT;
ALTER TABLE calls ADD COLUMN to_number TEXT;
ALTER TABLE calls ADD COLUMN expires_at INTEGER;
UPDATE calls SET from_number = json_extract(record_json, '$.from'), to_number = json_extract(record_json, '$.to');
CREATE INDEX calls_by_from ON calls (org_id, from_number) WHERE from_number IS NOT NULL;
CREATE INDEX calls_by_to ON calls (org_id, to_number) WHERE to_number IS NOT NULL;
CREATE INDEX calls_by_expiry ON calls (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE call_transcript_blobs (
    org_id     TEXT NOT NULL,
    call_id    TEXT NOT NULL,
    envelope   BLOB NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, call_id)
) WITHOUT ROWID;
CREATE INDEX call_transcript_blobs_by_expiry ON call_transcript_blobs (expires_at);
",
    // 8: SIP trunks, each one versioned JSON document (few, read whole by the SIP edge).
    r"
CREATE TABLE sip_trunks (
    id        TEXT PRIMARY KEY,
    version   INTEGER NOT NULL,
    body_json TEXT NOT NULL
) WITHOUT ROWID;
",
    // 9: organisations' webhook endpoints, each one versioned JSON document (at most a few
    // per org, listed whole); the signing secrets inside are envelope-encrypted.
    r"
CREATE TABLE webhook_endpoints (
    org_id    TEXT NOT NULL,
    id        TEXT NOT NULL,
    version   INTEGER NOT NULL,
    body_json TEXT NOT NULL,
    PRIMARY KEY (org_id, id)
) WITHOUT ROWID;
",
    // 10: the webhook deliveries log, clustered by endpoint and time for newest-first keyset
    // pages; a delivery is put by its id (unique), and expired rows are swept by expiry.
    r"
CREATE TABLE webhook_deliveries (
    endpoint_id TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    id          TEXT NOT NULL,
    org_id      TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    body_json   TEXT NOT NULL,
    PRIMARY KEY (endpoint_id, created_at, id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX webhook_deliveries_by_id ON webhook_deliveries (id);
CREATE INDEX webhook_deliveries_by_expiry ON webhook_deliveries (expires_at);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routed_numbers_stay_granted_to_their_org_after_migration_4() {
        let conn = Connection::open_in_memory().unwrap();
        for (index, sql) in MIGRATIONS.iter().take(3).enumerate() {
            conn.execute_batch(&format!("{sql}\nPRAGMA user_version = {};", index + 1)).unwrap();
        }
        conn.execute(
            "INSERT INTO numbers (number, org_id, agent_id, assigned_at) VALUES ('+74951234567', 'org_a', 'agt_a', 5)",
            [],
        )
        .unwrap();
        migrate(&conn).unwrap();
        let row: (String, String, Option<String>, i64) = conn
            .query_row("SELECT number, org_id, agent_id, granted_at FROM numbers", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .unwrap();
        assert_eq!(row, ("+74951234567".into(), "org_a".into(), Some("agt_a".into()), 5));
        // Granted, not routed, is now representable.
        conn.execute(
            "INSERT INTO numbers (number, org_id, agent_id, granted_at) VALUES ('+74950000000', 'org_a', NULL, 6)",
            [],
        )
        .unwrap();
        let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, MIGRATIONS.len() as u32);
    }
}
