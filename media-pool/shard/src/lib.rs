//! The per-core call driver (DESIGN.md §6).
//!
//! A [`Shard`] owns many calls as plain state: each a [`golos_call::CallEngine`] plus the
//! [`CallSink`] that carries out its outputs. It keeps one deadline heap for all of them (the
//! engines' deadlines and the sinks' own, as absolute `Instant`s), wakes once for the earliest,
//! and handles everything due in one batch. Stages hand data on by direct call: a sink feeds
//! the engine through [`Feed`], the engine's outputs go straight back to the sink. Network
//! edges (provider streams, transports) live elsewhere and reach the shard through its one
//! inbound channel ([`Inbound`], via a [`CallHandle`]). [`ShardPool`] runs one shard per core.
//!
//! The WORKLOAD simulation and the `golos-load` benchmark that drive it live in `golos-load`
//! (`media-pool/load`), which no production crate depends on.

mod shard;

pub use shard::{
    AudioQueue, CallHandle, CallSink, Feed, Inbound, OwnedInput, Shard, ShardCallId, ShardCounters, ShardPool,
    ShardStats, TimeSource, AUDIO_QUEUE_FRAMES,
};
