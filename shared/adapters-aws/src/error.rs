//! Mapping AWS SDK errors onto [`PortError`], and the crate-boundary [`AwsError`].

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use golos_ports::PortError;

/// An error at the boundary of this crate: connecting, provisioning, creating queues.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// The configuration (environment) is unusable.
    #[error("AWS configuration: {0}")]
    Config(String),
    /// An AWS call failed.
    #[error("{operation}: {source}")]
    Call {
        operation: &'static str,
        #[source]
        source: PortError,
    },
    /// A resource did not become ready in time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
}

impl AwsError {
    pub(crate) fn call(operation: &'static str, source: PortError) -> Self {
        Self::Call { operation, source }
    }
}

impl From<AwsError> for PortError {
    fn from(err: AwsError) -> Self {
        match err {
            AwsError::Call { source, .. } => source,
            AwsError::Config(reason) => PortError::Invalid { reason },
            AwsError::Timeout(what) => PortError::unavailable(format!("timed out: {what}")),
        }
    }
}

const THROTTLING: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "LimitExceededException",
    "RequestThrottled",
];

/// Maps any SDK error. `operation` names the call for the message; the message never
/// contains request payloads (no secrets).
pub(crate) fn sdk_error<E>(operation: &str, err: &SdkError<E>) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::ServiceError(_) => {
            let code = err.code().unwrap_or("Unknown");
            let message = err.message().unwrap_or("");
            let status = err.raw_response().map_or(0, |r| r.status().as_u16());
            classify(operation, status, code, message)
        }
        SdkError::ConstructionFailure(_) => PortError::invalid(format!("{operation}: {}", DisplayErrorContext(err))),
        _ => PortError::unavailable(format!("{operation}: {}", DisplayErrorContext(err))),
    }
}

pub(crate) fn classify(operation: &str, status: u16, code: &str, message: &str) -> PortError {
    let reason = format!("{operation}: {code}: {message}");
    if THROTTLING.contains(&code) {
        return PortError::Throttled { reason };
    }
    if code.contains("NotFound") || code == "NonExistentQueue" {
        // `what` reaches API answers ("… not found"): AWS's own message stays in the logs.
        tracing::debug!(%reason, "AWS resource not found");
        return PortError::NotFound { what: format!("the resource of {operation}") };
    }
    if code == "ConditionalCheckFailedException" {
        return PortError::ConditionFailed { reason };
    }
    if code == "InvalidCiphertextException" || code == "IncorrectKeyException" {
        return PortError::Corrupt { reason };
    }
    if status >= 500 || code == "InternalServerError" || code == "ServiceUnavailable" {
        return PortError::Unavailable { reason };
    }
    PortError::Invalid { reason }
}

pub(crate) fn build_error(err: &aws_sdk_dynamodb::error::BuildError) -> PortError {
    PortError::invalid(format!("request construction: {err}"))
}

pub(crate) fn corrupt(what: &str, detail: impl std::fmt::Display) -> PortError {
    PortError::corrupt(format!("{what}: {detail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_service_errors() {
        let is = |code: &str, status: u16| classify("Op", status, code, "m");
        assert!(matches!(is("ProvisionedThroughputExceededException", 400), PortError::Throttled { .. }));
        assert!(matches!(is("ThrottlingException", 400), PortError::Throttled { .. }));
        assert!(matches!(is("RequestLimitExceeded", 400), PortError::Throttled { .. }));
        assert!(matches!(is("ResourceNotFoundException", 400), PortError::NotFound { .. }));
        assert!(matches!(is("InternalServerError", 500), PortError::Unavailable { .. }));
        assert!(matches!(is("Whatever", 503), PortError::Unavailable { .. }));
        assert!(matches!(is("ValidationException", 400), PortError::Invalid { .. }));
        assert!(matches!(is("InvalidCiphertextException", 400), PortError::Corrupt { .. }));
        assert!(is("ThrottlingException", 400).is_retryable());
    }
}
