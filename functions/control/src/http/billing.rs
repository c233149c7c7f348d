//! `/v1/balance`, `/v1/ledger`, `/v1/usage` of the caller's organisation.

use super::error::ApiResult;
use super::extract::Authed;
use super::extract::{ListQuery, QueryParams};
use crate::billing;
use axum::Json;
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
pub async fn balance(Authed { state, caller, .. }: Authed) -> ApiResult<Json<BalanceView>> {
    let org = caller.member(Action::ReadBilling)?;
    let balance = billing::balance(&state, &org.id).await?;
    Ok(Json(BalanceView { balance_kopecks: balance.get(), currency: "RUB", display: balance.to_string() }))
}

/// Billing history, newest first (admin).
#[utoipa::path(get, path = "/v1/ledger", tag = "billing", params(ListQuery), responses((status = 200, body = LedgerList)))]
pub async fn ledger(
    Authed { state, caller, .. }: Authed,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<Json<LedgerList>> {
    let org = caller.member(Action::ReadBilling)?;
    let page = billing::ledger(&state, &org.id, &query.page()?).await?;
    Ok(Json(LedgerList { items: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}

/// Call minutes used in a month against the plan.
#[utoipa::path(get, path = "/v1/usage", tag = "billing", params(UsageQuery), responses((status = 200, body = UsageView)))]
pub async fn usage(
    Authed { state, caller, .. }: Authed,
    QueryParams(query): QueryParams<UsageQuery>,
) -> ApiResult<Json<UsageView>> {
    let org = caller.member(Action::ReadUsage)?;
    let usage = billing::usage(&state, org, query.month).await?;
    Ok(Json(UsageView {
        month: usage.month,
        minutes_used: usage.minutes_used,
        minutes_included: usage.minutes_included,
        minutes_remaining: usage.minutes_included.saturating_sub(usage.minutes_used),
        rate_per_minute_kopecks: usage.rate_per_minute.get(),
    }))
}
