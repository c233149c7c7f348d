//! Errors as RFC 9457 `application/problem+json` with a stable machine-readable `code`.

use crate::ControlError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use golos_domain::agent::ValidationIssue;
use golos_ports::PortError;
use serde_json::json;

/// Everything a handler can answer with besides success: a use-case's [`ControlError`] or a
/// refusal of the HTTP layer itself (authentication, roles, rate limits, malformed input).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {code}: {detail}")]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable, documented, never reworded: clients branch on it.
    pub code: &'static str,
    pub detail: String,
    pub errors: Vec<ValidationIssue>,
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self { status, code, detail: detail.into(), errors: Vec::new(), retry_after_secs: None }
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn forbidden(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, detail)
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }

    pub fn validation(errors: Vec<ValidationIssue>) -> Self {
        let detail = format!("{} field(s) are invalid", errors.len());
        Self { errors, ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", detail) }
    }

    pub fn rate_limited(retry_after_secs: u64, detail: impl Into<String>) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs.max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", detail)
        }
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "an internal error occurred; it has been logged")
    }

    fn title(&self) -> &'static str {
        self.status.canonical_reason().unwrap_or("Error")
    }
}

impl From<PortError> for ApiError {
    fn from(err: PortError) -> Self {
        match err {
            PortError::NotFound { what } => Self::not_found(what),
            PortError::AlreadyExists { what } => {
                Self::new(StatusCode::CONFLICT, "already_exists", format!("{what} already exists"))
            }
            PortError::Conflict { expected, actual } => Self::new(
                StatusCode::PRECONDITION_FAILED,
                "version_mismatch",
                format!("If-Match was version {expected}, the current version is {actual}"),
            ),
            // Adapters' reasons carry store internals (AWS or SQLite text): they go to the log,
            // under the request's id, and the client gets a stable code and plain words.
            PortError::ConditionFailed { reason } => {
                tracing::warn!(%reason, "a conditional write failed");
                Self::new(
                    StatusCode::CONFLICT,
                    "condition_failed",
                    "the request conflicts with the resource's current state",
                )
            }
            PortError::QuotaExceeded { quota, limit } => {
                Self::new(StatusCode::FORBIDDEN, "quota_exceeded", format!("quota {quota} reached (limit {limit})"))
            }
            PortError::Throttled { reason } | PortError::Unavailable { reason } => {
                tracing::warn!(%reason, "store unavailable");
                Self {
                    retry_after_secs: Some(1),
                    ..Self::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        "a dependency is unavailable; retry shortly",
                    )
                }
            }
            PortError::BadCursor { .. } => {
                Self::bad_request("invalid_cursor", "cursor must be a next_cursor this API returned")
            }
            PortError::Invalid { reason } => {
                tracing::warn!(%reason, "the store refused a request");
                Self::bad_request("invalid_request", "the request could not be stored as sent")
            }
            other => Self::internal(other),
        }
    }
}

impl From<ControlError> for ApiError {
    fn from(err: ControlError) -> Self {
        match err {
            ControlError::Port(port) => port.into(),
            ControlError::Invalid { code, detail } => Self::bad_request(code, detail),
            ControlError::Validation(issues) => Self::validation(issues),
            ControlError::NotFound { code, detail } => Self::new(StatusCode::NOT_FOUND, code, detail),
            ControlError::Forbidden { code, detail } => Self::forbidden(code, detail),
            ControlError::Conflict { code, detail } => Self::new(StatusCode::CONFLICT, code, detail),
            ControlError::Unprocessable { code, detail } => Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail),
            ControlError::Unavailable { code, detail } => {
                Self { retry_after_secs: Some(1), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, code, detail) }
            }
            ControlError::Internal(detail) => Self::internal(detail),
        }
    }
}

impl ApiError {
    /// The problem document this error is answered with.
    pub fn body(&self) -> serde_json::Value {
        let mut body = json!({
            "type": format!("https://docs.golos.dev/problems/{}", self.code),
            "title": self.title(),
            "status": self.status.as_u16(),
            "detail": self.detail,
            "code": self.code,
        });
        if !self.errors.is_empty() {
            body["errors"] = json!(self.errors);
        }
        body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body();
        let mut response = (self.status, body.to_string()).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(secs) = self.retry_after_secs {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
