//! Reconciliation: recompute every organisation's balance from its ledger entries and
//! compare it with the stored balance. The hot path never sums entries (it moves the balance
//! atomically with each entry); this job proves it did so, and its drift must be zero.
//!
//! It also checks calls against the ledger: every ended call record (started within a
//! window, by default the last 7 days) has exactly one debit, the entry `call:<id>`, whose
//! delta is minus the record's cost; and no lease that expired longer than the sweep grace
//! ago is still held (the sweeper bills a lost call before freeing its lease, so one still
//! held is a call nobody billed). [`reconcile`] runs all three; the embedded deployment runs
//! it hourly, AWS from the `golos-reconciliation` Lambda on an hourly EventBridge schedule.

use crate::state::ControlState;
use golos_domain::billing::LedgerEventKind;
use golos_domain::{CallId, Kopecks, OrgId, Timestamp};
use golos_ports::{CallStatus, CallStore, PageRequest, PortError, Stores};
use std::sync::atomic::Ordering;

/// One organisation whose stored balance differs from the sum of its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub org: OrgId,
    pub stored: Kopecks,
    pub recomputed: Kopecks,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconciliationReport {
    pub orgs_checked: u64,
    pub drifts: Vec<Drift>,
    /// Ended call records checked against the ledger (0 when only balances were checked).
    pub calls_checked: u64,
    /// Ended calls without their one debit, or whose debit differs from their cost.
    pub unbilled_calls: Vec<UnbilledCall>,
    /// Leases that expired long enough ago that the sweeper should have billed and freed
    /// them (it is not running, or keeps failing on them): calls nobody has billed yet.
    pub unswept_leases: Vec<golos_ports::Lease>,
}

/// An ended call whose debit is missing or does not match the cost on its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnbilledCall {
    pub org: OrgId,
    pub call: CallId,
    /// The cost on the call record (`None`: an ended record without a cost).
    pub cost: Option<Kopecks>,
    /// What the ledger entry `call:<id>` debited (`None`: no entry).
    pub debited: Option<Kopecks>,
}

/// How far back [`reconcile`] checks calls by default.
pub const DEFAULT_CALL_WINDOW_DAYS: u32 = 7;

/// Balances and calls, as the schedule runs it: every organisation's balance against its
/// ledger, and every call that started in the last `config.reconcile_call_window_days`
/// against its debit. Updates the `ledger_drift_orgs` and `unbilled_calls` gauges.
pub async fn reconcile(state: &ControlState) -> Result<ReconciliationReport, PortError> {
    let window_ms = i64::from(state.config.reconcile_call_window_days) * 86_400_000;
    let since = Timestamp::from_millis(state.clock.now().as_millis().saturating_sub(window_ms));
    let mut report = reconcile_all(&state.stores).await?;
    let calls = reconcile_calls(&state.stores, state.calls.as_ref(), since).await?;
    report.calls_checked = calls.calls_checked;
    report.unbilled_calls = calls.unbilled_calls;
    report.unswept_leases = unswept_leases(state).await?;
    state.metrics.ledger_drift_orgs.store(report.drifts.len() as u64, Ordering::Relaxed);
    let unbilled = report.unbilled_calls.len() + report.unswept_leases.len();
    state.metrics.unbilled_calls.store(unbilled as u64, Ordering::Relaxed);
    Ok(report)
}

/// How long after its expiry a lease must have been billed by the sweeper: three sweeps of
/// `golos serve`, and at least three minutes (the AWS sweeper runs once a minute).
fn sweep_grace_ms(state: &ControlState) -> i64 {
    i64::try_from(state.config.sweep_interval_ms.saturating_mul(3)).unwrap_or(i64::MAX).max(180_000)
}

/// Leases whose call nobody billed: expired longer than the sweep grace ago and still held
/// (the sweeper bills a lost call before it frees its lease). Each is logged at error level
/// with `alert = "unbilled_call"`.
pub async fn unswept_leases(state: &ControlState) -> Result<Vec<golos_ports::Lease>, PortError> {
    let before = Timestamp::from_millis(state.clock.now().as_millis().saturating_sub(sweep_grace_ms(state)));
    let leases = state.stores.leases.expired(before, 1_000).await?;
    for lease in &leases {
        tracing::error!(alert = "unbilled_call", org = %lease.org_id, call = %lease.call_id,
            expired_at = %lease.expires_at, "a lease expired long ago is still held: the sweeper has not billed its call");
    }
    Ok(leases)
}

/// Checks every ended call record that started at or after `since`, org by org (records are
/// listed newest first, so each org's listing stops at the first older one). A call is
/// billed when the ledger entry `call:<id>` exists, is a call debit, and its delta is minus
/// the record's cost; the key is unique per org, so "exists" is "exactly one". Each
/// mismatch is logged at error level with `alert = "unbilled_call"`. Live calls are not
/// checked: their debit comes with their end. The report carries only the call fields.
pub async fn reconcile_calls(
    stores: &Stores,
    calls: &dyn CallStore,
    since: Timestamp,
) -> Result<ReconciliationReport, PortError> {
    let mut report = ReconciliationReport::default();
    let mut orgs_page = PageRequest::first(PageRequest::MAX_LIMIT);
    loop {
        let orgs = stores.orgs.list(&orgs_page).await?;
        for org in &orgs.items {
            report.orgs_checked += 1;
            let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
            'calls: loop {
                let listed = calls.list(&org.id, &page).await?;
                for record in &listed.items {
                    if record.started_at < since {
                        break 'calls;
                    }
                    if record.status == CallStatus::InProgress {
                        continue;
                    }
                    report.calls_checked += 1;
                    if let Some(unbilled) = check_call(stores, &org.id, &record.id, record.cost).await? {
                        report.unbilled_calls.push(unbilled);
                    }
                }
                match listed.next_cursor {
                    Some(cursor) => page = PageRequest::after(cursor, PageRequest::MAX_LIMIT),
                    None => break,
                }
            }
        }
        match orgs.next_cursor {
            Some(cursor) => orgs_page = PageRequest::after(cursor, PageRequest::MAX_LIMIT),
            None => break,
        }
    }
    tracing::info!(
        orgs = report.orgs_checked,
        calls = report.calls_checked,
        unbilled = report.unbilled_calls.len(),
        since = %since,
        "call reconciliation finished"
    );
    Ok(report)
}

async fn check_call(
    stores: &Stores,
    org: &OrgId,
    call: &CallId,
    cost: Option<Kopecks>,
) -> Result<Option<UnbilledCall>, PortError> {
    let key = format!("call:{call}");
    let entry = stores.ledger.get(org, &key).await?;
    let debited = entry
        .as_ref()
        .filter(|e| matches!(&e.event, LedgerEventKind::CallDebit { call_id, .. } if call_id == call))
        .and_then(|e| e.delta.checked_neg().ok());
    if debited.is_some() && debited == cost {
        return Ok(None);
    }
    tracing::error!(
        alert = "unbilled_call",
        %org,
        %call,
        cost = cost.map(Kopecks::get),
        debited = debited.map(Kopecks::get),
        "an ended call has no debit, or its debit differs from its cost"
    );
    Ok(Some(UnbilledCall { org: org.clone(), call: call.clone(), cost, debited }))
}

/// Checks every organisation, page by page. Each drift is logged at error level with the
/// field `alert = "ledger_drift"` so an alert rule can fire on it; the report is returned
/// for the caller's metrics.
pub async fn reconcile_all(stores: &Stores) -> Result<ReconciliationReport, PortError> {
    let mut report = ReconciliationReport::default();
    let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
    loop {
        let orgs = stores.orgs.list(&page).await?;
        for org in &orgs.items {
            report.orgs_checked += 1;
            if let Some(drift) = reconcile_org(stores, &org.id).await? {
                report.drifts.push(drift);
            }
        }
        match orgs.next_cursor {
            Some(cursor) => page = PageRequest::after(cursor, PageRequest::MAX_LIMIT),
            None => break,
        }
    }
    tracing::info!(orgs = report.orgs_checked, drifts = report.drifts.len(), "ledger reconciliation finished");
    Ok(report)
}

/// Compares one organisation's stored and recomputed balance.
pub async fn reconcile_org(stores: &Stores, org: &OrgId) -> Result<Option<Drift>, PortError> {
    // Read the entries first: an event applied in between raises both the stored balance and
    // the sum, but only the balance read second could see it, so a concurrent credit can
    // show as a transient drift; re-checking once before reporting filters that out.
    for attempt in 0..2 {
        let recomputed = stores.ledger.recompute_balance(org).await?;
        let stored = stores.ledger.balance(org).await?;
        if stored == recomputed {
            return Ok(None);
        }
        if attempt == 1 {
            tracing::error!(alert = "ledger_drift", %org, stored = stored.get(), recomputed = recomputed.get(), "stored balance differs from the sum of ledger entries");
            return Ok(Some(Drift { org: org.clone(), stored, recomputed }));
        }
    }
    Ok(None)
}
