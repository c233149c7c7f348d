//! One error type for every provider, classified by what the fallback chain and the call
//! engine do about it. Messages never carry credentials: adapters build them from status
//! codes and response bodies only, and strip URLs from transport errors.

use golos_egress::EgressError;
use std::time::Duration;

/// How much of an error answer is read for its message; the rest is never downloaded.
pub const MAX_ERROR_BODY_BYTES: usize = 4 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// HTTP 429 or the provider's own rate-limit signal.
    #[error("rate limited{}", retry_after.map(|d| format!(" (retry after {} s)", d.as_secs())).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
    /// HTTP 5xx, including Anthropic's 529 "overloaded" and errors sent inside a stream.
    #[error("server error {status}: {message}")]
    Server { status: u16, message: String },
    #[error("timed out: {0}")]
    Timeout(String),
    /// The provider answered something that does not follow its protocol (malformed JSON,
    /// an unknown event, a truncated stream, a 4xx other than auth and rate limits).
    #[error("bad response: {0}")]
    BadResponse(String),
    #[error("authentication failed (HTTP {status})")]
    Auth { status: u16 },
    /// The connection failed or was reset, before or during a stream.
    #[error("connection failed: {0}")]
    Connection(String),
    /// A local tier that cannot run on this machine (binary or model missing) or a tier
    /// that is not configured (no credentials); the chain skips it.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The egress policy refused the tier's endpoint (a forbidden address, plain text to a
    /// destination the operator does not allow): configuration, not an outage, so the chain
    /// moves on without a breaker mark.
    #[error("refused by the egress policy: {0}")]
    Forbidden(String),
}

impl ProviderError {
    /// Classifies an HTTP error status; `body` is the response text, cut to keep logs short.
    pub fn from_status(status: u16, body: &str, retry_after: Option<Duration>) -> Self {
        let message: String = body.chars().take(300).collect();
        match status {
            429 => Self::RateLimited { retry_after },
            401 | 403 => Self::Auth { status },
            408 | 504 => Self::Timeout(format!("HTTP {status}: {message}")),
            500..=599 => Self::Server { status, message },
            _ => Self::BadResponse(format!("HTTP {status}: {message}")),
        }
    }

    /// A failure worth a breaker mark. Everything is, except a local tier missing from this
    /// machine, which no amount of waiting repairs.
    pub fn counts_against_provider(&self) -> bool {
        !matches!(self, Self::Unavailable(_) | Self::Forbidden(_))
    }
}

impl From<EgressError> for ProviderError {
    fn from(err: EgressError) -> Self {
        match err {
            refused if refused.is_refusal() => Self::Forbidden(refused.to_string()),
            EgressError::TooLarge { .. } => Self::BadResponse(err.to_string()),
            EgressError::Timeout(what) => Self::Timeout(what),
            other => Self::Connection(other.to_string()),
        }
    }
}

impl From<reqwest::Error> for ProviderError {
    fn from(err: reqwest::Error) -> Self {
        // The URL may hold a key in some APIs' query strings; it never reaches a message.
        if let Some(policy) = golos_egress::net::egress_error_of(&err) {
            return policy.clone().into();
        }
        let err = err.without_url();
        // Adapters parse bodies themselves, so a reqwest "decode" error is always a body that
        // could not be read: a connection reset or a truncated chunked encoding.
        if err.is_timeout() {
            Self::Timeout(err.to_string())
        } else if let Some(status) = err.status() {
            Self::from_status(status.as_u16(), "", None)
        } else {
            Self::Connection(error_chain(&err))
        }
    }
}

/// The error and its sources on one line: reqwest's own message ("error decoding response
/// body") hides the cause ("connection reset").
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Reads `Retry-After` in seconds (the form the AI providers send).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// Turns a non-success response into the classified error, reading its body for the message.
pub(crate) async fn check_status(response: reqwest::Response) -> Result<reqwest::Response, ProviderError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry = retry_after(response.headers());
    let body = golos_egress::net::read_prefix(response, MAX_ERROR_BODY_BYTES).await;
    Err(ProviderError::from_status(status.as_u16(), &String::from_utf8_lossy(&body), retry))
}
