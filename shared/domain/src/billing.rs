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
