//! The outbound queue between a call's session and its socket: what the session handed over
//! and the socket has not taken yet, in order.
//!
//! It does not pace. The call engine already emits one 20 ms frame per 20 ms (and must be
//! the one to: barge-in cuts the reply to the frames it has played, see golos-call's
//! `Output::PlayAudio`), so a second clock here would only add delay and drift against the
//! engine's. The transport sends a frame as soon as the socket takes it; the queue exists for
//! the moments it does not (a peer reading slowly, a full TCP window): marks keep their place
//! after the audio they follow, a barge-in `clear` drops what is still here, and the cap
//! bounds what one call can hold.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// One frame's worth of audio.
pub const PACKET: Duration = Duration::from_millis(20);

/// The most audio one call's queue holds: 10 s (500 frames, 320 KB at 16 kHz). A peer that
/// keeps up leaves at most a frame or two here; only one that reads slower than real time
/// fills it. Past the cap the *oldest* frame is shed: the caller loses a moment of what is
/// already late, what it hears stays within 10 s of the engine's playout clock (which
/// barge-in's "cut the reply to what was played" relies on), and memory per call stays
/// bounded. The transport gives up on a peer that takes nothing for its send timeout.
pub const MAX_QUEUED_FRAMES: usize = 500;

/// A 20 ms frame of PCM16 (the same type as golos-call's `Frame`).
pub type Frame = Arc<[i16]>;

/// What the transport sends next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Audio(Frame),
    /// Everything pushed before the mark has been sent.
    Mark(String),
}

/// What [`Playout::clear`] dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cleared {
    pub frames: usize,
    /// Marks whose audio was dropped, in order: a transport may still answer them (Twilio
    /// echoes marks on `clear`) so a client waiting on a mark is not left hanging.
    pub marks: Vec<String>,
}

#[derive(Debug)]
pub struct Playout {
    queue: VecDeque<Packet>,
    frames_queued: usize,
    max_frames: usize,
}

impl Default for Playout {
    fn default() -> Self {
        Self::new()
    }
}

impl Playout {
    pub fn new() -> Self {
        Self::with_max_frames(MAX_QUEUED_FRAMES)
    }

    /// A queue that holds at most `max_frames` (at least one) frames of audio.
    pub fn with_max_frames(max_frames: usize) -> Self {
        Self { queue: VecDeque::new(), frames_queued: 0, max_frames: max_frames.max(1) }
    }

    /// Queues a frame. `true`: the queue was full and its oldest frame was shed to make room
    /// (marks are never shed; one behind the shed frame is answered when its turn comes).
    pub fn push(&mut self, frame: Frame) -> bool {
        let shed = self.frames_queued >= self.max_frames;
        if shed {
            // Marks sit between frames, so the oldest frame is near the front.
            if let Some(oldest) = self.queue.iter().position(|packet| matches!(packet, Packet::Audio(_))) {
                self.queue.remove(oldest);
                self.frames_queued -= 1;
            }
        }
        self.frames_queued += 1;
        self.queue.push_back(Packet::Audio(frame));
        shed
    }

    /// A mark after everything pushed so far.
    pub fn push_mark(&mut self, name: impl Into<String>) {
        self.queue.push_back(Packet::Mark(name.into()));
    }

    /// The next packet to send, once the socket can take it.
    pub fn pop(&mut self) -> Option<Packet> {
        let packet = self.queue.pop_front()?;
        if matches!(packet, Packet::Audio(_)) {
            self.frames_queued -= 1;
        }
        Some(packet)
    }

    /// Barge-in: drops every queued frame and the marks behind them. The transport answers
    /// with its clear message. Marks at the front stay: their audio was already sent.
    pub fn clear(&mut self) -> Cleared {
        let mut cleared = Cleared::default();
        let sent_marks = self.queue.iter().take_while(|packet| matches!(packet, Packet::Mark(_))).count();
        for packet in self.queue.drain(sent_marks..) {
            match packet {
                Packet::Audio(_) => cleared.frames += 1,
                Packet::Mark(name) => cleared.marks.push(name),
            }
        }
        self.frames_queued = 0;
        cleared
    }

    /// Frames waiting to be sent.
    pub const fn queued_frames(&self) -> usize {
        self.frames_queued
    }

    /// Audio waiting to be sent.
    pub fn queued_duration(&self) -> Duration {
        PACKET * self.frames_queued as u32
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}
