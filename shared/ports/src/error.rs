use thiserror::Error;

/// The one error type of every port. Expected answers (a duplicate billing event, a lease
/// refused at the limit) are not errors: they come back as outcomes carrying the stored
/// original. These variants are for what the caller must handle or report.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PortError {
    #[error("{what} not found")]
    NotFound { what: String },
    /// A create whose key is taken (an org id, an agent id, an API key id).
    #[error("{what} already exists")]
    AlreadyExists { what: String },
    /// A conditional write lost: the stored version differs from the expected one.
    #[error("version conflict: expected {expected}, stored {actual}")]
    Conflict { expected: u64, actual: u64 },
    /// A conditional write whose condition did not hold for a reason other than the above.
    #[error("condition failed: {reason}")]
    ConditionFailed { reason: String },
    /// A count limit held atomically by the store (agents per org).
    #[error("quota {quota} reached (limit {limit})")]
    QuotaExceeded { quota: &'static str, limit: u64 },
    /// The backend asked us to slow down; retry with backoff.
    #[error("throttled: {reason}")]
    Throttled { reason: String },
    /// The backend could not be reached or failed; the operation may be retried.
    #[error("unavailable: {reason}")]
    Unavailable { reason: String },
    /// A page cursor the store did not hand out (or one from another listing).
    #[error("malformed {listing} cursor")]
    BadCursor { listing: &'static str },
    /// The request itself is wrong; retrying will not help.
    #[error("invalid: {reason}")]
    Invalid { reason: String },
    /// Stored data could not be decoded or authenticated.
    #[error("corrupt data: {reason}")]
    Corrupt { reason: String },
}

impl PortError {
    /// Whether the same call may succeed if repeated later.
    pub const fn is_retryable(&self) -> bool {
        matches!(self, Self::Throttled { .. } | Self::Unavailable { .. })
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound { what: what.into() }
    }

    pub fn unavailable(reason: impl std::fmt::Display) -> Self {
        Self::Unavailable { reason: reason.to_string() }
    }

    pub fn invalid(reason: impl std::fmt::Display) -> Self {
        Self::Invalid { reason: reason.to_string() }
    }

    pub const fn bad_cursor(listing: &'static str) -> Self {
        Self::BadCursor { listing }
    }

    pub fn corrupt(reason: impl std::fmt::Display) -> Self {
        Self::Corrupt { reason: reason.to_string() }
    }
}

impl From<golos_domain::DomainError> for PortError {
    fn from(err: golos_domain::DomainError) -> Self {
        Self::Invalid { reason: err.to_string() }
    }
}
