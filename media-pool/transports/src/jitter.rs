//! Input jitter buffer: the caller's audio arrives in chunks of any size, sometimes in bursts,
//! and (on providers that do not guarantee order) out of order; the engine wants consecutive
//! 20 ms frames. Sans-IO: chunks in, frames out, no clock — the engine timestamps audio by its
//! sample count, so absorbing a burst only means framing it.

use golos_audio::frame::Framer;
use std::collections::{BTreeMap, VecDeque};

/// How many out-of-order chunks are held while waiting for a missing one. At 20 ms chunks
/// that is 60 ms of added delay at worst, and only while a chunk is missing.
pub const DEFAULT_MAX_HELD: usize = 3;
/// The most missing chunks replaced by silence for one gap. A longer gap (a provider that
/// skipped numbers, or a hostile `chunk`) resynchronises without filling: filling it would
/// let one message allocate without bound.
pub const MAX_GAP_FILL: u64 = 25;

/// Counters for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Chunks that arrived after a later one and were put back in order.
    pub reordered: u64,
    /// Chunks given up on; each was replaced by silence of the previous chunk's length so
    /// the stream's timeline (VAD, durations) stays right.
    pub lost: u64,
    /// Chunks that arrived after their place had been played or filled, or twice.
    pub late_or_duplicate: u64,
}

#[derive(Debug, Clone)]
pub struct InputJitter {
    framer: Framer,
    max_held: usize,
    /// The sequence number expected next; `None` before the first chunk. Wider than the
    /// wire's `u64` so the one after `u64::MAX` exists and a repeated `u64::MAX` is late.
    next_seq: Option<u128>,
    held: BTreeMap<u128, Vec<i16>>,
    frames: VecDeque<Vec<i16>>,
    last_chunk_len: usize,
    stats: JitterStats,
}

impl InputJitter {
    pub fn new(sample_rate: u32) -> Self {
        Self::with_max_held(sample_rate, DEFAULT_MAX_HELD)
    }

    pub fn with_max_held(sample_rate: u32, max_held: usize) -> Self {
        Self {
            framer: Framer::new(sample_rate),
            max_held,
            next_seq: None,
            held: BTreeMap::new(),
            frames: VecDeque::new(),
            last_chunk_len: 0,
            stats: JitterStats::default(),
        }
    }

    /// A chunk from an ordered stream (a WebSocket carrying golos binary frames).
    pub fn push_in_order(&mut self, samples: &[i16]) {
        self.emit(samples);
    }

    /// A chunk with a sequence number (Twilio's `chunk`).
    pub fn push(&mut self, seq: u64, samples: &[i16]) {
        let seq = u128::from(seq);
        let expected = *self.next_seq.get_or_insert(seq);
        if seq < expected || self.held.contains_key(&seq) {
            self.stats.late_or_duplicate += 1;
            return;
        }
        if seq > expected {
            self.held.insert(seq, samples.to_vec());
            // Counted when it arrives, not when the gap is given up on: the hole is `lost`.
            if self.held.len() > self.max_held {
                self.give_up_on_gap();
            }
            self.drain_held();
            return;
        }
        if !self.held.is_empty() {
            self.stats.reordered += 1;
        }
        self.emit(samples);
        self.next_seq = Some(seq + 1);
        self.drain_held();
    }

    /// Fills the missing chunks before the earliest held one with silence.
    fn give_up_on_gap(&mut self) {
        let (Some(&first_held), Some(expected)) = (self.held.keys().next(), self.next_seq) else { return };
        let silence = vec![0; self.last_chunk_len];
        let missing = first_held - expected;
        self.stats.lost = self.stats.lost.saturating_add(u64::try_from(missing).unwrap_or(u64::MAX));
        for _ in 0..missing.min(u128::from(MAX_GAP_FILL)) {
            self.emit(&silence);
        }
        self.next_seq = Some(first_held);
    }

    fn drain_held(&mut self) {
        while let Some(next) = self.next_seq {
            let Some(samples) = self.held.remove(&next) else { break };
            self.emit(&samples);
            self.next_seq = Some(next + 1);
        }
    }

    fn emit(&mut self, samples: &[i16]) {
        if !samples.is_empty() {
            self.last_chunk_len = samples.len();
        }
        self.frames.extend(self.framer.push(samples));
    }

    /// The next complete 20 ms frame.
    pub fn pop_frame(&mut self) -> Option<Vec<i16>> {
        self.frames.pop_front()
    }

    /// Frames ready to pop.
    pub fn ready(&self) -> usize {
        self.frames.len()
    }

    /// End of stream: releases held chunks (gaps filled with silence) and the last partial
    /// frame padded with silence.
    pub fn finish(&mut self) {
        while !self.held.is_empty() {
            self.give_up_on_gap();
            self.drain_held();
        }
        if let Some(last) = self.framer.flush() {
            self.frames.push_back(last);
        }
    }

    pub const fn stats(&self) -> JitterStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A 20 ms chunk at 8 kHz whose samples all carry its number.
    fn chunk(n: u64) -> Vec<i16> {
        vec![n as i16; 160]
    }

    fn drain(jitter: &mut InputJitter) -> Vec<i16> {
        std::iter::from_fn(|| jitter.pop_frame()).map(|f| f[0]).collect()
    }

    #[test]
    fn in_order_chunks_of_any_size_become_20ms_frames() {
        let mut jitter = InputJitter::new(16_000);
        jitter.push_in_order(&[1; 100]);
        assert_eq!(jitter.ready(), 0);
        jitter.push_in_order(&[1; 700]); // a burst: 800 samples = 2.5 frames
        assert_eq!(jitter.ready(), 2);
        jitter.finish();
        let frames: Vec<_> = std::iter::from_fn(|| jitter.pop_frame()).collect();
        assert_eq!(frames.iter().map(Vec::len).collect::<Vec<_>>(), vec![320, 320, 320]);
        assert_eq!(&frames[2][150..170], &[[1; 10], [0; 10]].concat()[..], "the tail is padded with silence");
    }

    #[test]
    fn reorders_within_the_window() {
        let mut jitter = InputJitter::new(8_000);
        for n in [1, 3, 4, 2, 5] {
            jitter.push(n, &chunk(n));
        }
        assert_eq!(drain(&mut jitter), vec![1, 2, 3, 4, 5]);
        assert_eq!(jitter.stats(), JitterStats { reordered: 1, lost: 0, late_or_duplicate: 0 });
    }

    #[test]
    fn a_lost_chunk_becomes_silence_once_the_window_is_full_and_late_ones_are_dropped() {
        let mut jitter = InputJitter::new(8_000);
        jitter.push(1, &chunk(1));
        for n in 3..=5 {
            jitter.push(n, &chunk(n));
        }
        assert_eq!(drain(&mut jitter), vec![1], "3 held chunks still wait for 2");
        jitter.push(6, &chunk(6));
        assert_eq!(drain(&mut jitter), vec![0, 3, 4, 5, 6]);
        jitter.push(2, &chunk(2));
        jitter.push(6, &chunk(6));
        assert_eq!(drain(&mut jitter), Vec::<i16>::new());
        assert_eq!(jitter.stats(), JitterStats { reordered: 0, lost: 1, late_or_duplicate: 2 });
    }

    #[test]
    fn finish_releases_held_chunks() {
        let mut jitter = InputJitter::new(8_000);
        jitter.push(1, &chunk(1));
        jitter.push(3, &chunk(3));
        jitter.finish();
        assert_eq!(drain(&mut jitter), vec![1, 0, 3]);
    }

    #[test]
    fn a_huge_gap_resynchronises_without_filling_it() {
        let mut jitter = InputJitter::with_max_held(8_000, 0);
        jitter.push(1, &chunk(1));
        jitter.push(u64::MAX - 1, &chunk(2));
        jitter.push(u64::MAX, &chunk(3));
        jitter.push(u64::MAX, &chunk(3));
        let out = drain(&mut jitter);
        assert_eq!(out.len(), 1 + 25 + 2);
        assert_eq!((out[0], out[26], out[27]), (1, 2, 3));
        assert_eq!(jitter.stats().lost, u64::MAX - 3);
    }

    proptest! {
        #[test]
        fn no_chunk_sequence_panics_or_grows_without_bound(
            chunks in prop::collection::vec((any::<u64>(), 0usize..2_000), 0..40),
            max_held in 0usize..5,
        ) {
            let mut jitter = InputJitter::with_max_held(16_000, max_held);
            for (seq, len) in chunks {
                jitter.push(seq, &vec![1; len]);
                prop_assert!(jitter.held.len() <= max_held);
                // At most the held chunks plus one gap's fill per push.
                prop_assert!(jitter.ready() <= 40 * (1 + 26 * 2_000 / 320));
                while jitter.pop_frame().is_some() {}
            }
            jitter.finish();
        }

        #[test]
        fn any_arrival_order_within_the_window_is_undone(swaps in prop::collection::vec(1usize..19, 0..10)) {
            // Adjacent swaps after the first chunk (the first one received sets where the stream
            // starts, as Twilio's chunks count from 1).
            let mut order: Vec<u64> = (1..=20).collect();
            for &i in &swaps {
                order.swap(i, i + 1);
            }
            let displacement = order.iter().enumerate().map(|(i, &n)| (n as i64 - 1 - i as i64).unsigned_abs()).max().unwrap();
            let mut jitter = InputJitter::new(8_000);
            for &n in &order {
                jitter.push(n, &chunk(n));
            }
            jitter.finish();
            let out = drain(&mut jitter);
            if displacement <= DEFAULT_MAX_HELD as u64 {
                prop_assert_eq!(out, (1..=20).collect::<Vec<i16>>());
            } else {
                prop_assert!(out.len() >= 20 - usize::try_from(jitter.stats().late_or_duplicate).unwrap());
            }
        }
    }
}
