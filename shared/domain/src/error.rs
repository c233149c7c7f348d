use thiserror::Error;

/// Everything that can be wrong with a value handed to the domain.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DomainError {
    #[error("money arithmetic overflowed")]
    MoneyOverflow,
    #[error("invalid identifier {kind}: {reason}")]
    InvalidId { kind: &'static str, reason: &'static str },
    #[error("invalid phone number: {0}")]
    InvalidPhoneNumber(&'static str),
    #[error("unknown {kind} `{value}`")]
    Unknown { kind: &'static str, value: String },
    #[error("{0}")]
    Invalid(String),
    #[error("invalid agent configuration: {0:?}")]
    InvalidAgentConfig(Vec<crate::agent::ValidationIssue>),
}
