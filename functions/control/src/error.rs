//! The use-cases' error: what went wrong in the terms of the control plane. The HTTP layer
//! (`http::error`) turns it into a problem document; the queue consumers into a retry or a
//! dead letter.

use golos_domain::agent::ValidationIssue;
use golos_ports::PortError;

/// Everything a use-case can fail with besides success. `code`s are stable, documented and
/// never reworded: API clients branch on them.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ControlError {
    /// A store, queue, key service or secret store failed or refused.
    #[error(transparent)]
    Port(#[from] PortError),
    /// The input breaks a rule.
    #[error("{code}: {detail}")]
    Invalid { code: &'static str, detail: String },
    /// Field-by-field problems with a document (an agent).
    #[error("{} field(s) are invalid", .0.len())]
    Validation(Vec<ValidationIssue>),
    /// Absent, or not the caller's to see (the same answer either way).
    #[error("{code}: {detail}")]
    NotFound { code: &'static str, detail: String },
    /// The caller's role allows the operation but not this use of it.
    #[error("{code}: {detail}")]
    Forbidden { code: &'static str, detail: String },
    /// The request contradicts the resource's current state.
    #[error("{code}: {detail}")]
    Conflict { code: &'static str, detail: String },
    /// Well-formed, but it names something golos will not act on (an unknown org in a
    /// payment, an event it does not know).
    #[error("{code}: {detail}")]
    Unprocessable { code: &'static str, detail: String },
    /// Not possible now, possible later.
    #[error("{code}: {detail}")]
    Unavailable { code: &'static str, detail: String },
    /// A bug or an impossible state; the detail goes to the log, not to the client.
    #[error("internal: {0}")]
    Internal(String),
}

impl ControlError {
    pub fn invalid(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Invalid { code, detail: detail.into() }
    }

    /// `what` not found, with the generic `not_found` code.
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::NotFound { code: "not_found", detail: format!("{what} not found") }
    }

    pub fn forbidden(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Forbidden { code, detail: detail.into() }
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Conflict { code, detail: detail.into() }
    }

    pub fn unprocessable(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Unprocessable { code, detail: detail.into() }
    }

    pub fn unavailable(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Unavailable { code, detail: detail.into() }
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::Internal(detail.to_string())
    }
}

pub type ControlResult<T> = Result<T, ControlError>;
