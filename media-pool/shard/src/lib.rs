//! The per-core call driver (DESIGN.md §6) and the in-process WORKLOAD simulation.
//!
//! A [`Shard`] owns many calls as plain state: each a [`golos_call::CallEngine`] plus the
//! [`CallSink`] that carries out its outputs. It keeps one deadline heap for all of them (the
//! engines' deadlines and the sinks' own, as absolute `Instant`s), wakes once for the earliest,
//! and handles everything due in one batch. Stages hand data on by direct call: a sink feeds
//! the engine through [`Feed`], the engine's outputs go straight back to the sink. Network
//! edges (provider streams, transports) live elsewhere and reach the shard through its one
//! inbound channel ([`Inbound`], via a [`CallHandle`]). [`ShardPool`] runs one shard per core.
//!
//! [`sim`] is the WORKLOAD of `bench/WORKLOAD.md` as a [`CallSink`]: the caller, STT, LLM and
//! TTS are deadlines in the same heap. [`load`] runs it at N calls and measures; the
//! `golos-load` binary is its command line. docs/performance.md has the numbers.
//!
//! [`ws_load`] drives the same WORKLOAD's [`caller`] against a running worker over the golos
//! WebSocket protocol (`golos-load ws`), with the provider simulator behind it.

pub mod caller;
pub mod load;
mod shard;
pub mod sim;
pub mod ws_load;

pub use shard::{
    AudioQueue, CallHandle, CallId, CallSink, Clock, Feed, Inbound, OwnedInput, Shard, ShardCounters, ShardPool,
    ShardStats, AUDIO_QUEUE_FRAMES,
};
