//! SIP signalling for the media worker (issue #17): a `SipEndpoint` that listens on UDP (and
//! TCP), turns inbound INVITEs into typed `SipEvent`s and carries out the worker's typed
//! answers. The SIP stack (rsipstack, pinned) does the parsing, RFC 3261 transactions and
//! timers and dialog matching; nothing of its API crosses this crate's boundary.
//!
//! - `policy`: golos's own decisions, sans-IO (statuses per admission reason, draining,
//!   number normalisation, headers the agent sees).
//! - `endpoint`: the adapter over the stack; `SipEndpoint::probe` sends a trunk its OPTIONS
//!   health check and reports a `breaker::TrunkOutcome`.
//! - `parse`: the stack's parser behind golos's extraction, for fuzzing and diagnostics.
//!
//! Logging: rsipstack logs whole SIP messages (phone numbers included) at `info`; every
//! golos binary caps its target at `warn` (`golos_telemetry`), and this crate logs calls by
//! `CallRef` and source address only.

pub mod breaker;
pub mod digest;
mod endpoint;
mod error;
mod event;
pub mod parse;
pub mod policy;
pub mod reinvite;

pub use endpoint::{SipConfig, SipEndpoint, SipEvents, MAX_PROBE_TIMEOUT};
pub use error::SipError;
pub use event::{CallRef, IncomingCall, SipEvent, SipTransport, TransferOutcome};
pub use policy::{NumberPlan, RejectReason, RejectStatus, Rejection};
