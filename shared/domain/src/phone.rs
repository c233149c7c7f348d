//! Phone numbers in E.164. A `PhoneNumber` prints masked (`+7*****4567`) through both
//! `Display` and `Debug`, so logging one by accident never leaks it; the raw number is
//! reachable only through `expose_e164`, which reads as what it is at the call site.

use crate::DomainError;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber {
    /// Digits only, without the leading `+`; 8 to 15 of them, the first not zero.
    digits: String,
}

impl PhoneNumber {
    /// Parses an E.164 number such as `+7 916 123-45-67`, with or without spaces, dashes,
    /// dots or parentheses.
    /// A national form without `+` is refused: the country would be a guess.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let trimmed = raw.trim();
        let rest =
            trimmed.strip_prefix('+').ok_or(DomainError::InvalidPhoneNumber("must start with + and a country code"))?;
        let mut digits = String::with_capacity(15);
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err(DomainError::InvalidPhoneNumber("only digits and separators are allowed")),
            }
        }
        if !(8..=15).contains(&digits.len()) {
            return Err(DomainError::InvalidPhoneNumber("E.164 numbers have 8 to 15 digits"));
        }
        if digits.starts_with('0') {
            return Err(DomainError::InvalidPhoneNumber("country codes do not start with 0"));
        }
        Ok(Self { digits })
    }

    /// The full number, for the SIP trunk or storage. Never log this.
    pub fn expose_e164(&self) -> String {
        format!("+{}", self.digits)
    }

    /// `+` + the first digit, five stars whatever the length, and the last four digits.
    pub fn masked(&self) -> String {
        let (first, last4) = (&self.digits[..1], &self.digits[self.digits.len() - 4..]);
        format!("+{first}*****{last4}")
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.masked())
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = DomainError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<PhoneNumber> for String {
    /// Serialised form is the raw E.164 number (storage and provider APIs need it).
    fn from(number: PhoneNumber) -> Self {
        number.expose_e164()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn masks_a_russian_mobile() {
        let n = PhoneNumber::parse("+7 (916) 123-45-67").unwrap();
        assert_eq!(n.to_string(), "+7*****4567");
        assert_eq!(format!("{n:?}"), "PhoneNumber(+7*****4567)");
        assert_eq!(n.expose_e164(), "+79161234567");
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"+79161234567\"");
    }

    #[test]
    fn refuses_what_is_not_e164() {
        for bad in ["89161234567", "+0123456789", "+7916", "+7916123456789012", "+7916abc4567", ""] {
            assert!(PhoneNumber::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn masked_output_never_shows_more_than_the_last_four(digits in "[1-9][0-9]{7,14}") {
            let number = PhoneNumber::parse(&format!("+{digits}")).unwrap();
            for shown in [number.to_string(), format!("{number:?}"), format!("{number:#?}")] {
                let visible: String = shown.chars().filter(char::is_ascii_digit).collect();
                // Only the leading country digit and the last four digits may be visible.
                prop_assert_eq!(visible.len(), 5, "{}", shown);
                prop_assert_eq!(&visible[1..], &digits[digits.len() - 4..]);
            }
        }

        #[test]
        fn parse_round_trips(digits in "[1-9][0-9]{7,14}") {
            let number = PhoneNumber::parse(&format!("+{digits}")).unwrap();
            let json = serde_json::to_string(&number).unwrap();
            prop_assert_eq!(serde_json::from_str::<PhoneNumber>(&json).unwrap(), number);
        }
    }
}
