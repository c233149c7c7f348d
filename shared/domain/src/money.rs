//! Money is an integer number of kopecks (1/100 rouble). There are no floats anywhere on the
//! money path, and every operation is checked: an overflow is an error, never a wrap.

use crate::DomainError;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Kopecks(i64);

impl Kopecks {
    pub const ZERO: Self = Self(0);

    pub const fn new(kopecks: i64) -> Self {
        Self(kopecks)
    }

    /// Whole roubles; fails instead of overflowing.
    pub fn from_roubles(roubles: i64) -> Result<Self, DomainError> {
        roubles.checked_mul(100).map(Self).ok_or(DomainError::MoneyOverflow)
    }

    /// A decimal rouble amount as payment providers write it (`"100.00"`, `"5"`, `"0.5"`),
    /// parsed exactly: at most two decimals, no sign, no exponent, no floats involved.
    pub fn parse_roubles(text: &str) -> Result<Self, DomainError> {
        let invalid = || DomainError::Invalid(format!("amount {text:?} is not a decimal rouble value like 100.00"));
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || (text.contains('.') && !digits(fraction)) || fraction.len() > 2 {
            return Err(invalid());
        }
        let roubles: i64 = whole.parse().map_err(|_| DomainError::MoneyOverflow)?;
        let kopecks =
            if fraction.is_empty() { 0 } else { format!("{fraction:0<2}").parse::<i64>().map_err(|_| invalid())? };
        Self::from_roubles(roubles)?.checked_add(Self(kopecks))
    }

    pub const fn get(self) -> i64 {
        self.0
    }

    pub fn checked_add(self, other: Self) -> Result<Self, DomainError> {
        self.0.checked_add(other.0).map(Self).ok_or(DomainError::MoneyOverflow)
    }

    pub fn checked_sub(self, other: Self) -> Result<Self, DomainError> {
        self.0.checked_sub(other.0).map(Self).ok_or(DomainError::MoneyOverflow)
    }

    pub fn checked_mul(self, factor: i64) -> Result<Self, DomainError> {
        self.0.checked_mul(factor).map(Self).ok_or(DomainError::MoneyOverflow)
    }

    pub fn checked_neg(self) -> Result<Self, DomainError> {
        self.0.checked_neg().map(Self).ok_or(DomainError::MoneyOverflow)
    }

    pub const fn is_positive(self) -> bool {
        self.0 > 0
    }

    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// Sums a sequence, failing on the first overflow.
    pub fn checked_sum(items: impl IntoIterator<Item = Self>) -> Result<Self, DomainError> {
        items.into_iter().try_fold(Self::ZERO, Self::checked_add)
    }
}

impl fmt::Display for Kopecks {
    /// `1234.56 RUB`, `-0.05 RUB`: exact, from integers only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02} RUB", abs / 100, abs % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn provider_amounts_parse_exactly() {
        assert_eq!(Kopecks::parse_roubles("100.00").unwrap(), Kopecks::new(10_000));
        assert_eq!(Kopecks::parse_roubles("0.5").unwrap(), Kopecks::new(50));
        assert_eq!(Kopecks::parse_roubles("7").unwrap(), Kopecks::new(700));
        assert_eq!(Kopecks::parse_roubles("0.01").unwrap(), Kopecks::new(1));
        for bad in ["", ".", "1.", ".5", "1.005", "-1.00", "+1", "1e3", "1,00", " 1", "NaN"] {
            assert!(Kopecks::parse_roubles(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(Kopecks::parse_roubles("99999999999999999999.00").is_err());
    }

    proptest! {
        #[test]
        fn rouble_text_round_trips(kopecks in 0i64..1_000_000_000_000) {
            let text = format!("{}.{:02}", kopecks / 100, kopecks % 100);
            prop_assert_eq!(Kopecks::parse_roubles(&text).unwrap(), Kopecks::new(kopecks));
        }
    }

    #[test]
    fn display_is_exact() {
        assert_eq!(Kopecks::new(123_456).to_string(), "1234.56 RUB");
        assert_eq!(Kopecks::new(-5).to_string(), "-0.05 RUB");
        assert_eq!(Kopecks::new(i64::MIN).to_string(), "-92233720368547758.08 RUB");
    }

    #[test]
    fn overflow_is_an_error() {
        assert_eq!(Kopecks::new(i64::MAX).checked_add(Kopecks::new(1)), Err(DomainError::MoneyOverflow));
        assert_eq!(Kopecks::new(i64::MIN).checked_neg(), Err(DomainError::MoneyOverflow));
        assert!(Kopecks::from_roubles(i64::MAX / 10).is_err());
    }

    proptest! {
        #[test]
        fn add_then_sub_round_trips(a in any::<i64>(), b in any::<i64>()) {
            let (a, b) = (Kopecks::new(a), Kopecks::new(b));
            match a.checked_add(b) {
                Ok(sum) => prop_assert_eq!(sum.checked_sub(b), Ok(a)),
                Err(_) => prop_assert!(i128::from(a.get()) + i128::from(b.get()) > i128::from(i64::MAX)
                    || i128::from(a.get()) + i128::from(b.get()) < i128::from(i64::MIN)),
            }
        }

        #[test]
        fn sum_is_order_independent(mut items in proptest::collection::vec(-1_000_000_000i64..1_000_000_000, 0..200), seed in any::<u64>()) {
            let forward = Kopecks::checked_sum(items.iter().copied().map(Kopecks::new)).unwrap();
            // A deterministic shuffle: rotate by a seed-derived amount and reverse.
            if !items.is_empty() { let n = (seed as usize) % items.len(); items.rotate_left(n); }
            items.reverse();
            let shuffled = Kopecks::checked_sum(items.iter().copied().map(Kopecks::new)).unwrap();
            prop_assert_eq!(forward, shuffled);
            prop_assert_eq!(i128::from(forward.get()), items.iter().map(|&k| i128::from(k)).sum::<i128>());
        }

        #[test]
        fn display_parses_back_to_the_same_integer(k in any::<i64>()) {
            let text = Kopecks::new(k).to_string();
            let number = text.trim_end_matches(" RUB");
            let (negative, digits) = number.strip_prefix('-').map_or((false, number), |d| (true, d));
            let (whole, frac) = digits.split_once('.').unwrap();
            let magnitude: i128 = whole.parse::<i128>().unwrap() * 100 + frac.parse::<i128>().unwrap();
            prop_assert_eq!(if negative { -magnitude } else { magnitude }, i128::from(k));
        }
    }
}
