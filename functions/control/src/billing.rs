//! Balance, ledger history and monthly usage of the caller's organisation.

use crate::common::{ListQuery, QueryParams};
use crate::error::{ApiError, ApiResult};
use crate::middleware::Caller;
use crate::state::ControlState;
use axum::extract::State;
use axum::{Extension, Json};
use golos_domain::rbac::Action;
use golos_ports::LedgerEntry;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceView {
    /// Integer kopecks; may be negative after calls outran the prepaid balance.
    pub balance_kopecks: i64,
    pub currency: &'static str,
    /// Human-readable, e.g. `1234.56 RUB`.
    pub display: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerEntryView {
    /// The event's idempotency key (`payment:yookassa:<id>`, `call:<id>`, …).
    pub key: String,
    /// `payment_credit`, `refund`, `call_debit` or `adjustment`.
    #[serde(rename = "type")]
    pub kind: String,
    pub delta_kopecks: i64,
    pub applied_at: String,
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
}

impl From<LedgerEntry> for LedgerEntryView {
    fn from(entry: LedgerEntry) -> Self {
        Self {
            key: entry.key,
            kind: entry.event.kind_name().into(),
            delta_kopecks: entry.delta.get(),
            applied_at: entry.applied_at.to_string(),
            event: serde_json::to_value(&entry.event).unwrap_or_default(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerList {
    pub items: Vec<LedgerEntryView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageView {
    /// `yyyymm`.
    pub month: u32,
    pub minutes_used: u64,
    pub minutes_included: u64,
    pub minutes_remaining: u64,
    pub rate_per_minute_kopecks: i64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// `yyyymm`; default the current month (UTC).
    pub month: Option<u32>,
}

/// The organisation's balance (admin).
#[utoipa::path(get, path = "/v1/balance", tag = "billing", responses((status = 200, body = BalanceView)))]
pub async fn balance(
    State(state): State<ControlState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<BalanceView>> {
    let org = caller.member(Action::ReadBilling)?;
    let balance = state.stores.ledger.balance(&org.id).await?;
    Ok(Json(BalanceView { balance_kopecks: balance.get(), currency: "RUB", display: balance.to_string() }))
}

/// Billing history, newest first (admin).
#[utoipa::path(get, path = "/v1/ledger", tag = "billing", params(ListQuery), responses((status = 200, body = LedgerList)))]
pub async fn ledger(
    State(state): State<ControlState>,
    Extension(caller): Extension<Caller>,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<Json<LedgerList>> {
    let org = caller.member(Action::ReadBilling)?;
    let page = state.stores.ledger.list(&org.id, &query.page()?).await?;
    Ok(Json(LedgerList { items: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}

/// Call minutes used in a month against the plan.
#[utoipa::path(get, path = "/v1/usage", tag = "billing", params(UsageQuery), responses((status = 200, body = UsageView)))]
pub async fn usage(
    State(state): State<ControlState>,
    Extension(caller): Extension<Caller>,
    QueryParams(query): QueryParams<UsageQuery>,
) -> ApiResult<Json<UsageView>> {
    let org = caller.member(Action::ReadUsage)?;
    let month = query.month.unwrap_or_else(|| state.clock.now().year_month());
    if !(197_001..=999_912).contains(&month) || !(1..=12).contains(&(month % 100)) {
        return Err(ApiError::bad_request("invalid_month", "month must be yyyymm"));
    }
    let used = state.stores.ledger.usage_minutes(&org.id, month).await?;
    Ok(Json(UsageView {
        month,
        minutes_used: used,
        minutes_included: org.quotas.monthly_minutes,
        minutes_remaining: org.quotas.monthly_minutes.saturating_sub(used),
        rate_per_minute_kopecks: org.quotas.rate_per_minute.get(),
    }))
}
