//! Sans-IO call engine: turn taking, chunking, barge-in, fillers, timeouts, tools; time is an
//! input.
//!
//! One [`CallEngine`] per call. The driver feeds it [`Input`]s and the deadlines it asks for,
//! and carries out its [`Output`]s; the engine never reads a clock, a socket or a timer, so a
//! shard can drive thousands of calls from one deadline heap, and tests drive it on a virtual
//! clock with exact timings. docs/pipeline.md has the rules and a timing diagram.
//!
//! ```
//! use golos_call::{CallConfig, CallEngine, Command, Input, Output};
//! use std::{sync::Arc, time::Instant};
//!
//! let t0 = Instant::now(); // any instant: the engine only compares the ones it is given
//! let mut call = CallEngine::new(Arc::new(CallConfig::default()), t0);
//! call.handle(Input::SttFinal { text: "what are your opening hours", confidence: 0.9 }, t0);
//! let mut started = None;
//! while let Some(output) = call.poll_output() {
//!     if let Output::Command(Command::StartLlm { request, .. }) = output {
//!         started = Some(request);
//!     }
//! }
//! assert!(started.is_some());
//! assert!(call.poll_timeout().is_some()); // the filler deadline, among others
//! ```

pub mod chunker;
pub mod config;
mod engine;
pub mod types;
pub mod workload;

pub use chunker::{ChunkRef, Chunker};
pub use config::{CallConfig, ToolConfig, ToolKind};
pub use engine::CallEngine;
pub use types::{
    CallQuality, Clip, Command, ContextMessage, EndReason, Event, Frame, Input, MessageRole, Output, RequestId,
    Snapshot, ToolCall, TransferCause, TurnMetrics,
};
