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

/// Codes by which a service asks us to slow down (DynamoDB, SQS, KMS, Secrets Manager).
const THROTTLING: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "LimitExceededException",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
    "KmsThrottled",
    "KmsThrottlingException",
];

/// Codes of a service fault or of a state that passes (an operator re-enables a key,
/// restores a permission): the same request may succeed later.
const UNAVAILABLE: &[&str] = &[
    "InternalServerError",
    "InternalFailure",
    "InternalServiceError",
    "InternalError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "KMSInternalException",
    "KeyUnavailableException",
    "DependencyTimeoutException",
    "TransactionInProgressException",
    "TransactionConflictException",
    "ReplicatedWriteConflictException",
];

/// The code without the prefixes some protocols add: `com.amazonaws.dynamodb.v20120810#X`
/// and `AWS.SimpleQueueService.X` both become `X`.
fn bare(code: &str) -> &str {
    let code = code.rsplit('#').next().unwrap_or(code);
    code.rsplit('.').next().unwrap_or(code)
}

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
        // The SDK refused to build the request: our own bug, never the store's state.
        SdkError::ConstructionFailure(_) => PortError::invalid(format!("{operation}: {}", DisplayErrorContext(err))),
        // Timeouts, connection failures, unparseable responses.
        _ => PortError::unavailable(format!("{operation}: {}", DisplayErrorContext(err))),
    }
}

/// What a service's answer means for the caller. Only a real conflict (a failed condition),
/// a missing resource and undecryptable data are final; everything else the service says is
/// retryable: throttling, service faults, and also refusals the request should never have
/// met (a `ValidationException`, an access or key-state error) — the API validated the
/// request before it reached the store, so such a refusal is the platform's fault or a
/// passing state, answered 503 and retried by the consumers (then dead-lettered after
/// `maxReceiveCount`), never a 4xx blaming the client nor an immediate dead letter. The
/// local backend does the same with SQLite's errors. Unexpected refusals are logged at
/// error so they are seen.
pub(crate) fn classify(operation: &str, status: u16, code: &str, message: &str) -> PortError {
    let reason = format!("{operation}: {code}: {message}");
    let code = bare(code);
    if THROTTLING.contains(&code) || status == 429 {
        return PortError::Throttled { reason };
    }
    if code.contains("NotFound") || code == "NonExistentQueue" || code == "QueueDoesNotExist" {
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
    if status >= 500 || UNAVAILABLE.contains(&code) {
        return PortError::Unavailable { reason };
    }
    tracing::error!(%reason, status, "AWS refused a request unexpectedly; answering it as retryable");
    PortError::Unavailable { reason }
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
        assert!(matches!(is("InvalidCiphertextException", 400), PortError::Corrupt { .. }));
        assert!(matches!(is("ConditionalCheckFailedException", 400), PortError::ConditionFailed { .. }));
        assert!(is("ThrottlingException", 400).is_retryable());
    }

    /// Nothing the services answer, short of a failed condition, a missing resource or bad
    /// ciphertext, may end as `Invalid` (422 in the API, an immediate dead letter in the
    /// consumers).
    #[test]
    fn service_refusals_are_retryable() {
        let is = |code: &str, status: u16| classify("Op", status, code, "m");
        for (code, status) in [
            // DynamoDB
            ("ProvisionedThroughputExceededException", 400),
            ("RequestLimitExceeded", 400),
            ("ThrottlingException", 400),
            ("com.amazonaws.dynamodb.v20120810#ThrottlingException", 400),
            // SQS (JSON protocol and the query-compatible header)
            ("RequestThrottled", 403),
            ("AWS.SimpleQueueService.RequestThrottled", 403),
            ("KmsThrottled", 400),
            // KMS, Secrets Manager
            ("LimitExceededException", 400),
            ("TooManyRequestsException", 429),
            ("Anything", 429),
        ] {
            assert!(matches!(is(code, status), PortError::Throttled { .. }), "{code}");
        }
        for (code, status) in [
            ("InternalServerError", 500),
            ("InternalFailure", 500),
            ("InternalServiceError", 500),
            ("KMSInternalException", 500),
            ("DependencyTimeoutException", 503),
            ("KeyUnavailableException", 500),
            ("TransactionConflictException", 400),
            ("TransactionInProgressException", 400),
            ("ValidationException", 400),
            ("AccessDeniedException", 400),
            ("KMSInvalidStateException", 400),
            ("DecryptionFailure", 400),
            ("Unknown", 400),
        ] {
            let err = is(code, status);
            assert!(matches!(err, PortError::Unavailable { .. }), "{code}: {err:?}");
        }
        assert!(matches!(is("AWS.SimpleQueueService.NonExistentQueue", 400), PortError::NotFound { .. }));
    }
}
