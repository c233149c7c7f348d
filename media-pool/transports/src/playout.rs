//! Paced playout: the engine hands over 20 ms frames in bursts (TTS is faster than real
//! time); the transport must send one 20 ms packet per 20 ms, or the client's buffer grows
//! without bound and a barge-in `clear` has seconds of audio to throw away.
//!
//! Sans-IO and exact: packets go out on an absolute schedule `t0 + k·20 ms`, so a late poll
//! does not shift later packets (no drift). The schedule restarts at the poll that finds new
//! audio after the buffer ran empty and the slot already passed — the same rule as a network
//! transport simulating a playback clock (WORKLOAD.md §2.5). Time is passed in; tests drive it
//! on a virtual clock.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One packet's worth of audio.
pub const PACKET: Duration = Duration::from_millis(20);

/// The most audio one call's playout holds: 10 s (500 frames, 320 KB at 16 kHz). The engine
/// paces its speech in real time, so the queue normally holds a frame or two; only bursts
/// pushed unpaced (the hold prompt, the apology clip) or a peer that stops reading fill it.
/// Past the cap the *oldest* frame is shed: the caller loses a moment of what is already
/// late, the transport stays within 10 s of the engine's playout clock (which barge-in's
/// "cut the reply to what was played" relies on), and memory per call stays bounded.
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
enum Item {
    Audio(Frame),
    Mark(String),
}

#[derive(Debug)]
pub struct Playout {
    queue: VecDeque<Item>,
    /// When the next audio packet is due; `None` before the first one.
    next_send: Option<Instant>,
    /// The buffer ran empty since the last packet: the next one may restart the schedule.
    idle: bool,
    /// The latest `now` seen, so a mark already due can report a deadline in the past.
    last_now: Instant,
    frames_queued: usize,
    max_frames: usize,
}

impl Playout {
    /// `now` is any instant at or before the first `poll`.
    pub fn new(now: Instant) -> Self {
        Self::with_max_frames(now, MAX_QUEUED_FRAMES)
    }

    /// A playout that holds at most `max_frames` (at least one) frames of audio.
    pub fn with_max_frames(now: Instant, max_frames: usize) -> Self {
        Self {
            queue: VecDeque::new(),
            next_send: None,
            idle: true,
            last_now: now,
            frames_queued: 0,
            max_frames: max_frames.max(1),
        }
    }

    /// Queues a frame. `true`: the queue was full and its oldest frame was shed to make room
    /// (marks are never shed; one behind the shed frame is answered when its turn comes).
    pub fn push(&mut self, frame: Frame) -> bool {
        if self.frames_queued == 0 {
            self.idle = true;
        }
        let shed = self.frames_queued >= self.max_frames;
        if shed {
            // Marks sit between frames, so the oldest frame is near the front.
            if let Some(oldest) = self.queue.iter().position(|item| matches!(item, Item::Audio(_))) {
                self.queue.remove(oldest);
                self.frames_queued -= 1;
            }
        }
        self.frames_queued += 1;
        self.queue.push_back(Item::Audio(frame));
        shed
    }

    /// A mark after everything pushed so far.
    pub fn push_mark(&mut self, name: impl Into<String>) {
        self.queue.push_back(Item::Mark(name.into()));
    }

    /// The next packet due at `now`, if any. Call until it returns `None`, then again at
    /// [`Playout::next_deadline`].
    pub fn poll(&mut self, now: Instant) -> Option<Packet> {
        self.last_now = self.last_now.max(now);
        match self.queue.front()? {
            Item::Mark(_) => {
                let Some(Item::Mark(name)) = self.queue.pop_front() else { unreachable!("front is a mark") };
                Some(Packet::Mark(name))
            }
            Item::Audio(_) => {
                let due = match self.next_send {
                    // After an underrun whose slot has passed, start a new schedule now rather
                    // than sending the backlog of missed slots at once.
                    Some(at) if self.idle && at < now => now,
                    Some(at) => at,
                    None => now,
                };
                if now < due {
                    return None;
                }
                self.next_send = Some(due + PACKET);
                self.idle = false;
                self.frames_queued -= 1;
                let Some(Item::Audio(frame)) = self.queue.pop_front() else { unreachable!("front is audio") };
                Some(Packet::Audio(frame))
            }
        }
    }

    /// When `poll` next has something; a time in the past means now. `None` when empty.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.queue.front()? {
            Item::Mark(_) => Some(self.last_now),
            // After an underrun a past slot means "now" too: poll restarts the schedule.
            Item::Audio(_) => Some(self.next_send.unwrap_or(self.last_now)),
        }
    }

    /// Barge-in: drops every queued frame and the marks behind them. The transport answers
    /// with its clear message. Marks at the front stay: their audio was already sent.
    pub fn clear(&mut self) -> Cleared {
        let mut cleared = Cleared::default();
        let sent_marks = self.queue.iter().take_while(|item| matches!(item, Item::Mark(_))).count();
        for item in self.queue.drain(sent_marks..) {
            match item {
                Item::Audio(_) => cleared.frames += 1,
                Item::Mark(name) => cleared.marks.push(name),
            }
        }
        self.frames_queued = 0;
        self.idle = true;
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
