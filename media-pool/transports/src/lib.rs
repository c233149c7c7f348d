//! The wire side of golos call transports, everything below the call driver:
//!
//! - [`golos`]: the golos WebSocket audio protocol for browsers and SDKs (docs/transports.md);
//! - [`twilio`]: a Twilio Media Streams-compatible endpoint (μ-law 8 kHz in JSON);
//! - [`playout`]: the outbound queue (order, marks, barge-in `clear`, a 10 s cap; the engine
//!   paces, the transport sends at once);
//! - [`jitter`]: inbound reordering and 20 ms reframing;
//! - [`limits`]: what a peer may make a transport hold or do (rate, connection caps);
//! - [`ws`]: an axum WebSocket loop that runs a [`ws::CallSession`] over either dialect.
//!
//! Codecs and buffers are sans-IO: bytes and instants in, messages and packets out.

pub mod error;
pub mod golos;
pub mod jitter;
pub mod limits;
pub mod playout;
pub mod twilio;
pub mod ws;

pub use error::TransportError;
pub use jitter::{InputJitter, JitterStats};
pub use playout::{Cleared, Frame, Packet, Playout, MAX_QUEUED_FRAMES, PACKET};
