//! The load generator of `bench/WORKLOAD.md`, apart from the production shard.
//!
//! [`sim`] is the WORKLOAD as a [`golos_shard::CallSink`]: the caller, STT, LLM and TTS are
//! deadlines in the shard's heap. [`load`] runs it at N calls in process and measures; the
//! `golos-load` binary is its command line. docs/performance.md has the numbers.
//!
//! [`ws_load`] drives the same WORKLOAD's [`caller`] against a running worker over the golos
//! WebSocket protocol (`golos-load ws`), with the provider simulator behind it; [`sip_load`]
//! drives it over SIP and G.711 RTP as a trunk would (`golos-load sip`).

pub mod caller;
pub mod load;
pub mod measure;
pub mod sim;
pub mod sip_load;
pub mod ws_load;
