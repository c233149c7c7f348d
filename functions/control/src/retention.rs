//! Per-organisation retention of call records (personal data: numbers, transcripts).
//!
//! Each record carries its expiry, set when it is written: the call's start (then its end)
//! plus the org's `retention_days` setting (default [`DEFAULT_RETENTION_DAYS`]). DynamoDB
//! deletes expired records and transcript blobs itself (the table's TTL attribute, within
//! about two days); locally [`sweep`] deletes them, from the local sweeper loop, and a
//! scheduled function may call it too (against DynamoDB it finds nothing to do). A change of
//! the setting applies to calls recorded after it.

use crate::state::ControlState;
use golos_domain::Timestamp;
use golos_ports::{Org, PortError};

/// The org setting: whole days a call record is kept after the call.
pub const RETENTION_SETTING: &str = "retention_days";
pub const DEFAULT_RETENTION_DAYS: u64 = 90;
/// At most ten years; at least one day.
pub const MAX_RETENTION_DAYS: u64 = 3_650;
/// How often the local sweeper loop runs [`sweep`] (its lease sweeps run more often).
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
/// Records deleted per store call of a sweep.
const SWEEP_BATCH: usize = 500;
const DAY_MS: i64 = 86_400_000;

/// Why a `retention_days` setting is refused, if it is.
pub fn validate(settings: &serde_json::Value) -> Result<(), String> {
    match settings.get(RETENTION_SETTING) {
        None => Ok(()),
        Some(value) => match value.as_u64() {
            Some(days) if (1..=MAX_RETENTION_DAYS).contains(&days) => Ok(()),
            _ => Err(format!("{RETENTION_SETTING} must be a whole number of days from 1 to {MAX_RETENTION_DAYS}")),
        },
    }
}

/// The org's retention in days (the default when unset or invalid).
pub fn retention_days(org: &Org) -> u64 {
    org.settings
        .get(RETENTION_SETTING)
        .and_then(serde_json::Value::as_u64)
        .filter(|days| (1..=MAX_RETENTION_DAYS).contains(days))
        .unwrap_or(DEFAULT_RETENTION_DAYS)
}

/// When a record of the org written about a call at `from` expires.
pub fn expiry(org: &Org, from: Timestamp) -> Timestamp {
    let days = i64::try_from(retention_days(org)).unwrap_or(i64::MAX);
    from.plus_millis(days.saturating_mul(DAY_MS))
}

/// Deletes every call record whose retention has passed, with its transcript blob and its
/// conversation snapshot. Returns how many records were deleted.
pub async fn sweep(state: &ControlState) -> Result<usize, PortError> {
    let now = state.clock.now();
    let mut total = 0;
    loop {
        let deleted = state.calls.delete_expired(now, SWEEP_BATCH).await?;
        for (_, call) in &deleted {
            state.stores.contexts.delete(call).await?;
        }
        total += deleted.len();
        if deleted.len() < SWEEP_BATCH {
            break;
        }
    }
    if total > 0 {
        tracing::info!(deleted = total, "call records past their retention deleted");
    }
    Ok(total)
}
