use crate::CallRef;
use std::net::SocketAddr;

/// What can go wrong at golos-sip's boundary. The stack's own error type stops here: it is
/// flattened into `Stack` so its churn never reaches the worker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SipError {
    #[error("cannot listen for SIP on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error("unknown or finished call {0}")]
    UnknownCall(CallRef),
    #[error("call {call} cannot {action} now: {state}")]
    InvalidState { call: CallRef, action: &'static str, state: &'static str },
    #[error("SIP message does not parse: {0}")]
    Parse(String),
    #[error("SIP stack: {0}")]
    Stack(String),
    #[error("the SIP endpoint has stopped")]
    Closed,
}

impl From<rsipstack::Error> for SipError {
    fn from(e: rsipstack::Error) -> Self {
        Self::Stack(e.to_string())
    }
}
