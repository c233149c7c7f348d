//! Call cost and the billing events of the ledger.
//!
//! Every event that moves money carries an idempotency key derived from the outside fact it
//! records (a provider's payment id, a call id), so that the same fact can be delivered any
//! number of times and is applied exactly once.

use crate::{CallId, DomainError, Kopecks};
use serde::{Deserialize, Serialize};

/// Billable minutes of a call: every started minute counts, `ceil(duration_s / 60)`.
pub const fn billable_minutes(duration_secs: u64) -> u64 {
    duration_secs.div_ceil(60)
}

/// `ceil(duration_s / 60) * rate_kopecks_per_min`, in integer kopecks.
pub fn call_cost(duration_secs: u64, rate_per_minute: Kopecks) -> Result<Kopecks, DomainError> {
    if rate_per_minute.is_negative() {
        return Err(DomainError::Invalid(format!("negative rate {rate_per_minute}")));
    }
    let minutes = i64::try_from(billable_minutes(duration_secs)).map_err(|_| DomainError::MoneyOverflow)?;
    rate_per_minute.checked_mul(minutes)
}

/// Which prepaid limit a call ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpendingLimit {
    /// The balance, less what live calls have run up, went below the org's credit limit.
    Balance,
    /// The month's included minutes are used up.
    MonthlyMinutes,
}

/// An org's money and minutes as admission and heartbeats see them.
///
/// The bound it enforces: live calls are billed by started minutes, each heartbeat (at least
/// once a minute) counts every live call's started minutes against the balance, and a call
/// ends once that drops below the credit limit. So an org goes at most one billing minute
/// per live call below its limit (the minute each call was in when the check saw it), as long
/// as a heartbeat plus the goodbye takes less than a minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spending {
    pub balance: Kopecks,
    /// How far below zero the org may go (an org setting, 0 by default): the floor is `-credit_limit`.
    pub credit_limit: Kopecks,
    pub rate_per_minute: Kopecks,
    /// Minutes already billed this month.
    pub used_minutes: u64,
    pub monthly_minutes: u64,
    /// Started minutes of every live call of the org, summed.
    pub live_minutes: u64,
}

impl Spending {
    /// What the org's live calls have run up so far.
    pub fn live_cost(&self) -> Kopecks {
        let minutes = i64::try_from(self.live_minutes).unwrap_or(i64::MAX);
        self.rate_per_minute.checked_mul(minutes).unwrap_or(Kopecks::new(i64::MAX))
    }

    /// The balance less what live calls have run up, saturating.
    pub fn available(&self) -> Kopecks {
        Kopecks::new(self.balance.get().saturating_sub(self.live_cost().get()))
    }

    fn floor(&self) -> i64 {
        self.credit_limit.get().saturating_neg()
    }

    /// Whether a new call may start: some money above the floor and some minutes left, after
    /// what the live calls have run up.
    pub fn admits(&self) -> Result<(), SpendingLimit> {
        if self.available().get() <= self.floor() {
            return Err(SpendingLimit::Balance);
        }
        if self.used_minutes.saturating_add(self.live_minutes) >= self.monthly_minutes {
            return Err(SpendingLimit::MonthlyMinutes);
        }
        Ok(())
    }

    /// Whether the live calls may go on: each is in a minute it will be billed for; they end
    /// once that puts the org below its floor, or past its month's minutes.
    pub fn sustains(&self) -> Result<(), SpendingLimit> {
        if self.available().get() < self.floor() {
            return Err(SpendingLimit::Balance);
        }
        if self.used_minutes.saturating_add(self.live_minutes) > self.monthly_minutes {
            return Err(SpendingLimit::MonthlyMinutes);
        }
        Ok(())
    }
}

/// Started minutes of a call that has been live for `elapsed_ms` (at least one: a call that
/// was answered is billed its first minute).
pub fn started_minutes(elapsed_ms: i64) -> u64 {
    let secs = u64::try_from(elapsed_ms.max(0)).unwrap_or(0).div_ceil(1000);
    billable_minutes(secs).max(1)
}

/// A payment provider whose notifications credit balances.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentProvider {
    Yookassa,
    /// A provider that signs its webhooks with HMAC-SHA256; the name distinguishes several.
    Signed(String),
}

impl PaymentProvider {
    fn key_part(&self) -> String {
        match self {
            Self::Yookassa => "yookassa".to_owned(),
            Self::Signed(name) => format!("signed-{name}"),
        }
    }
}

/// What happened to an organisation's money. Amounts are positive; the kind gives the sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LedgerEventKind {
    /// A confirmed payment credits the balance.
    PaymentCredit { provider: PaymentProvider, payment_id: String, amount: Kopecks },
    /// A refund of an earlier payment debits the balance.
    Refund { provider: PaymentProvider, refund_id: String, amount: Kopecks },
    /// The cost of one finished call debits the balance, once per call id.
    CallDebit { call_id: CallId, duration_secs: u64, rate_per_minute: Kopecks, amount: Kopecks },
    /// A manual correction by an operator; positive credits, negative debits.
    Adjustment { adjustment_id: String, amount: Kopecks, reason: String },
}

impl LedgerEventKind {
    /// A call debit with its cost computed by the one rule of `call_cost`.
    pub fn call_debit(call_id: CallId, duration_secs: u64, rate_per_minute: Kopecks) -> Result<Self, DomainError> {
        Ok(Self::CallDebit {
            amount: call_cost(duration_secs, rate_per_minute)?,
            call_id,
            duration_secs,
            rate_per_minute,
        })
    }

    /// The key under which this event may be applied once: provider + external id, or call id.
    pub fn idempotency_key(&self) -> String {
        match self {
            Self::PaymentCredit { provider, payment_id, .. } => format!("payment:{}:{payment_id}", provider.key_part()),
            Self::Refund { provider, refund_id, .. } => format!("refund:{}:{refund_id}", provider.key_part()),
            Self::CallDebit { call_id, .. } => format!("call:{call_id}"),
            Self::Adjustment { adjustment_id, .. } => format!("adjustment:{adjustment_id}"),
        }
    }

    /// The change to the balance this event makes.
    pub fn balance_delta(&self) -> Result<Kopecks, DomainError> {
        match self {
            Self::PaymentCredit { amount, .. } | Self::Adjustment { amount, .. } => Ok(*amount),
            Self::Refund { amount, .. } | Self::CallDebit { amount, .. } => amount.checked_neg(),
        }
    }

    /// Structural checks: positive amounts where the kind gives the sign, non-empty ids.
    pub fn validate(&self) -> Result<(), DomainError> {
        let invalid = |reason: &str| Err(DomainError::Invalid(format!("ledger event: {reason}")));
        match self {
            Self::PaymentCredit { payment_id: id, amount, .. } | Self::Refund { refund_id: id, amount, .. } => {
                if id.is_empty() || id.len() > 128 {
                    return invalid("external id must be 1..=128 characters");
                }
                if !amount.is_positive() {
                    return invalid("amount must be positive");
                }
            }
            Self::CallDebit { amount, duration_secs, rate_per_minute, .. } => {
                if call_cost(*duration_secs, *rate_per_minute)? != *amount {
                    return invalid("call debit amount differs from ceil(duration/60)*rate");
                }
            }
            Self::Adjustment { adjustment_id, amount, .. } => {
                if adjustment_id.is_empty() || adjustment_id.len() > 128 || *amount == Kopecks::ZERO {
                    return invalid("adjustment needs an id and a non-zero amount");
                }
            }
        }
        Ok(())
    }

    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::PaymentCredit { .. } => "payment_credit",
            Self::Refund { .. } => "refund",
            Self::CallDebit { .. } => "call_debit",
            Self::Adjustment { .. } => "adjustment",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spending(balance: i64, live_minutes: u64) -> Spending {
        Spending {
            balance: Kopecks::new(balance),
            credit_limit: Kopecks::ZERO,
            rate_per_minute: Kopecks::new(100),
            used_minutes: 0,
            monthly_minutes: 1_000,
            live_minutes,
        }
    }

    #[test]
    fn admission_counts_what_live_calls_have_run_up() {
        assert_eq!(spending(0, 0).admits(), Err(SpendingLimit::Balance), "nothing to spend");
        assert_eq!(spending(1, 0).admits(), Ok(()), "a kopeck admits one call");
        assert_eq!(spending(1, 1).admits(), Err(SpendingLimit::Balance), "not a second while the first runs");
        assert_eq!(spending(201, 2).admits(), Ok(()));
        let owing = Spending { credit_limit: Kopecks::new(500), ..spending(-400, 0) };
        assert_eq!(owing.admits(), Ok(()), "a credit limit lets the balance go below zero");
        assert_eq!(Spending { live_minutes: 1, ..owing }.admits(), Err(SpendingLimit::Balance));
        let month = Spending { used_minutes: 999, ..spending(10_000, 0) };
        assert_eq!(month.admits(), Ok(()));
        assert_eq!(Spending { live_minutes: 1, ..month }.admits(), Err(SpendingLimit::MonthlyMinutes));
    }

    #[test]
    fn live_calls_end_once_their_started_minutes_pass_the_floor() {
        // Three calls on 2 minutes and a kopeck: they are in their first minute, 300 owed.
        assert_eq!(spending(201, 3).sustains(), Err(SpendingLimit::Balance));
        assert_eq!(spending(300, 3).sustains(), Ok(()), "exactly paid for: the minute goes on");
        assert_eq!(Spending { used_minutes: 999, ..spending(10_000, 1) }.sustains(), Ok(()), "the last minute");
        assert_eq!(
            Spending { used_minutes: 999, ..spending(10_000, 2) }.sustains(),
            Err(SpendingLimit::MonthlyMinutes)
        );
        assert_eq!(started_minutes(0), 1);
        assert_eq!(started_minutes(60_000), 1);
        assert_eq!(started_minutes(60_001), 2);
        assert_eq!(started_minutes(-5), 1, "a clock that went back still bills the minute");
    }

    proptest! {
        /// However calls are admitted and checked, an org ends at most one minute per live
        /// call below its floor when every call is checked once per minute.
        #[test]
        fn the_overdraft_is_at_most_a_minute_per_live_call(
            balance in 0i64..5_000, credit in 0i64..2_000, rate in 1i64..500, calls in 1u64..20,
        ) {
            let base = Spending {
                balance: Kopecks::new(balance),
                credit_limit: Kopecks::new(credit),
                rate_per_minute: Kopecks::new(rate),
                used_minutes: 0,
                monthly_minutes: u64::MAX,
                live_minutes: 0,
            };
            // Admit as many as the org allows (at most `calls`), then run minute by minute.
            let mut live = 0u64;
            while live < calls && (Spending { live_minutes: live, ..base }).admits().is_ok() {
                live += 1;
            }
            let mut minutes = live; // each admitted call is in its first minute
            while live > 0 && (Spending { live_minutes: minutes, ..base }).sustains().is_ok() {
                minutes += live;
            }
            let billed = i64::try_from(minutes).unwrap() * rate;
            prop_assert!(balance - billed >= -credit - i64::try_from(live).unwrap() * rate);
        }
    }

    #[test]
    fn every_started_minute_is_billed() {
        let rate = Kopecks::new(250);
        assert_eq!(call_cost(0, rate).unwrap(), Kopecks::ZERO);
        assert_eq!(call_cost(1, rate).unwrap(), Kopecks::new(250));
        assert_eq!(call_cost(60, rate).unwrap(), Kopecks::new(250));
        assert_eq!(call_cost(61, rate).unwrap(), Kopecks::new(500));
        assert!(call_cost(u64::MAX, Kopecks::new(i64::MAX)).is_err());
        assert!(call_cost(10, Kopecks::new(-1)).is_err());
    }

    #[test]
    fn keys_are_provider_and_external_id() {
        let credit = LedgerEventKind::PaymentCredit {
            provider: PaymentProvider::Yookassa,
            payment_id: "2a1".into(),
            amount: Kopecks::new(10),
        };
        assert_eq!(credit.idempotency_key(), "payment:yookassa:2a1");
        let debit = LedgerEventKind::call_debit(CallId::parse("call_1").unwrap(), 61, Kopecks::new(100)).unwrap();
        assert_eq!(debit.idempotency_key(), "call:call_1");
        assert_eq!(debit.balance_delta().unwrap(), Kopecks::new(-200));
        assert!(debit.validate().is_ok());
    }

    proptest! {
        #[test]
        fn cost_is_ceil_minutes_times_rate(duration in 0u64..10_000_000, rate in 0i64..1_000_000) {
            let cost = call_cost(duration, Kopecks::new(rate)).unwrap().get();
            let minutes = i64::try_from(duration.div_ceil(60)).unwrap();
            prop_assert_eq!(cost, minutes * rate);
            // Never undercharges a started minute and never charges a whole extra one.
            prop_assert!(i128::from(cost) * 60 >= i128::from(duration) * i128::from(rate));
            prop_assert!(i128::from(cost) * 60 < (i128::from(duration) + 60) * i128::from(rate) || rate == 0);
        }

        #[test]
        fn cost_is_monotonic_in_duration(a in 0u64..1_000_000, b in 0u64..1_000_000, rate in 0i64..100_000) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(call_cost(lo, Kopecks::new(rate)).unwrap() <= call_cost(hi, Kopecks::new(rate)).unwrap());
        }
    }
}
