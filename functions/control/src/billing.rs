//! An organisation's money as its members read it: balance, ledger history, monthly usage.

use crate::state::ControlState;
use crate::{ControlError, ControlResult};
use golos_domain::{Kopecks, OrgId};
use golos_ports::{LedgerEntry, Org, Page, PageRequest};

/// Call minutes of one month against the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// `yyyymm`.
    pub month: u32,
    pub minutes_used: u64,
    pub minutes_included: u64,
    pub rate_per_minute: Kopecks,
}

pub async fn balance(state: &ControlState, org: &OrgId) -> ControlResult<Kopecks> {
    Ok(state.stores.ledger.balance(org).await?)
}

pub async fn ledger(state: &ControlState, org: &OrgId, page: &PageRequest) -> ControlResult<Page<LedgerEntry>> {
    Ok(state.stores.ledger.list(org, page).await?)
}

/// Usage of `month` (`yyyymm`; default the current month, UTC).
pub async fn usage(state: &ControlState, org: &Org, month: Option<u32>) -> ControlResult<Usage> {
    let month = month.unwrap_or_else(|| state.clock.now().year_month());
    if !(197_001..=999_912).contains(&month) || !(1..=12).contains(&(month % 100)) {
        return Err(ControlError::invalid("invalid_month", "month must be yyyymm"));
    }
    let minutes_used = state.stores.ledger.usage_minutes(&org.id, month).await?;
    Ok(Usage {
        month,
        minutes_used,
        minutes_included: org.quotas.monthly_minutes,
        rate_per_minute: org.quotas.rate_per_minute,
    })
}
