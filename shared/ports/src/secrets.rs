use crate::Result;
use async_trait::async_trait;
use std::fmt;

/// A secret value. It prints as `[redacted]`, so it cannot reach a log by `{:?}` or `{}`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; the name says what the call site is doing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString([redacted])")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Named secrets: the API-key pepper, payment-provider credentials, customers' provider keys.
#[async_trait]
pub trait Secrets: Send + Sync + fmt::Debug {
    /// `NotFound` when no secret has that name.
    async fn get(&self, name: &str) -> Result<SecretString>;
}
