//! One shard: calls as plain state, one deadline heap, one inbound channel, one thread.

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use golos_call::{CallConfig, CallEngine, Frame, Input, Output, RequestId, Snapshot};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Identifies a call across the pool; chosen when the call is added, so edges can address it
/// before the shard has even seen it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardCallId(pub u64);

/// Where a call's outputs go, and any timed work of its own edges.
///
/// The worker's implementation forwards `Command`s to golos-providers chains running as tasks
/// on its I/O runtime (their events come back as [`Inbound::Input`]), writes `PlayAudio` to
/// the call's transport, and publishes events; it usually has no deadlines. The WORKLOAD
/// simulation (`golos_load::sim::SimCall`) is a sink whose providers and caller are deadlines.
///
/// Every method runs on the shard's thread, inside its batch: it must not block. Anything slow
/// goes to another thread or task and comes back through the inbound channel.
pub trait CallSink: Send {
    /// The call's engine was created at `now`: its pipeline is ready.
    fn started(&mut self, now: Instant) {
        let _ = now;
    }

    /// Carry out one engine output. Runs in the instant the engine produced it.
    fn output(&mut self, output: Output, call: &mut Feed<'_>);

    /// Caller audio from the transport (see [`CallHandle::audio`]): forward it to the STT.
    fn caller_audio(&mut self, frame: Frame, call: &mut Feed<'_>) {
        let _ = (frame, call);
    }

    /// The sink's own next deadline (a simulated provider, a jitter buffer). `None`: only
    /// inputs and the engine's deadlines wake this call.
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// Run the sink's work due at `call.now()`, feeding the engine as it goes. May be called
    /// when nothing is due any more (an engine output in the same step moved the deadline).
    fn handle_timeout(&mut self, call: &mut Feed<'_>) {
        let _ = call;
    }

    /// The call is gone: its engine ended, or the shard shut down. Release the edges.
    fn closed(&mut self, now: Instant) {
        let _ = now;
    }
}

/// A sink's handle on its call's engine during one step: inputs go in by direct call, at the
/// step's time. The outputs they cause reach the sink right after the sink returns.
#[derive(Debug)]
pub struct Feed<'a> {
    engine: &'a mut CallEngine,
    now: Instant,
}

impl Feed<'_> {
    pub fn now(&self) -> Instant {
        self.now
    }

    pub fn input(&mut self, input: Input<'_>) {
        self.engine.handle(input, self.now);
    }

    pub fn engine(&self) -> &CallEngine {
        self.engine
    }
}

/// An [`Input`] that owns its text, to cross from an edge's thread into the shard.
#[derive(Debug, Clone)]
pub enum OwnedInput {
    SpeechStarted { at: Instant },
    SpeechStopped { at: Instant },
    SttInterim { text: String, confidence: f32 },
    SttFinal { text: String, confidence: f32 },
    LlmToken { request: RequestId, text: String },
    LlmToolCall { request: RequestId, call_id: String, name: String, arguments: String },
    LlmEnd { request: RequestId },
    LlmError { request: RequestId, error: String },
    TtsAudio { request: RequestId, frame: Frame },
    TtsEnd { request: RequestId },
    TtsError { request: RequestId, error: String },
    Dtmf { digit: char },
    ToolResult { call_id: String, result: Result<String, String> },
    Hangup,
    EndPolitely { reason: golos_call::EndReason },
    SayPrompt { text: String },
    ClipAudio { frame: Frame },
    ClipEnd,
    TransferResult { result: Result<(), String> },
    SttUnavailable { dtmf_menu: bool },
}

impl OwnedInput {
    pub fn as_input(&self) -> Input<'_> {
        match self {
            Self::SpeechStarted { at } => Input::SpeechStarted { at: *at },
            Self::SpeechStopped { at } => Input::SpeechStopped { at: *at },
            Self::SttInterim { text, confidence } => Input::SttInterim { text, confidence: *confidence },
            Self::SttFinal { text, confidence } => Input::SttFinal { text, confidence: *confidence },
            Self::LlmToken { request, text } => Input::LlmToken { request: *request, text },
            Self::LlmToolCall { request, call_id, name, arguments } => {
                Input::LlmToolCall { request: *request, call_id, name, arguments }
            }
            Self::LlmEnd { request } => Input::LlmEnd { request: *request },
            Self::LlmError { request, error } => Input::LlmError { request: *request, error },
            Self::TtsAudio { request, frame } => Input::TtsAudio { request: *request, frame: Arc::clone(frame) },
            Self::TtsEnd { request } => Input::TtsEnd { request: *request },
            Self::TtsError { request, error } => Input::TtsError { request: *request, error },
            Self::Dtmf { digit } => Input::Dtmf { digit: *digit },
            Self::ToolResult { call_id, result } => {
                Input::ToolResult { call_id, result: result.as_ref().map(String::as_str).map_err(String::as_str) }
            }
            Self::Hangup => Input::Hangup,
            Self::EndPolitely { reason } => Input::EndPolitely { reason: *reason },
            Self::SayPrompt { text } => Input::SayPrompt { text },
            Self::ClipAudio { frame } => Input::ClipAudio { frame: Arc::clone(frame) },
            Self::ClipEnd => Input::ClipEnd,
            Self::SttUnavailable { dtmf_menu } => Input::SttUnavailable { dtmf_menu: *dtmf_menu },
            Self::TransferResult { result } => Input::TransferResult {
                result: match result {
                    Ok(()) => Ok(()),
                    Err(error) => Err(error.as_str()),
                },
            },
        }
    }
}

/// Caller audio frames one shard holds waiting to be applied: 8,192 frames is ~160 ms of
/// audio for 1,000 calls, or 1.6 s for 100, on a shard that has fallen that far behind.
/// Preallocated (the channel is an array), ~32 B a slot.
pub const AUDIO_QUEUE_FRAMES: usize = 8_192;

/// Counters of a pool's bounded queues, for `/metrics`.
#[derive(Debug, Default)]
pub struct ShardCounters {
    /// Caller audio frames shed (oldest first) because their shard's audio queue was full.
    pub audio_shed: AtomicU64,
}

/// A shard's caller audio, bounded, beside its lossless control channel.
///
/// What is shed and why: caller audio is the one input whose rate a peer sets, and it is
/// only useful fresh: a shard that cannot keep up gains nothing from applying seconds-old
/// frames, and the VAD and STT catch up faster from recent audio. So when the queue is full
/// the *oldest* frame goes (the sender takes it off the front, the channel being MPMC), and
/// the backlog stays at most [`AUDIO_QUEUE_FRAMES`]. Everything else a shard receives (new
/// calls, provider events, key presses, hangups) stays on the control channel, unbounded
/// and lossless: a lost hangup leaks a call, a lost TTS frame is a hole in the agent's
/// speech, and each of those producers is already bounded upstream (the engine's LLM pause
/// and TTS pipeline depth, the transports' rate limits on key presses).
#[derive(Debug)]
pub struct AudioQueue {
    tx: Sender<(ShardCallId, Frame)>,
    rx: Receiver<(ShardCallId, Frame)>,
    /// An `AudioReady` is on its way to the shard (or being handled): senders need not send
    /// another. The shard clears it *before* draining, so a frame queued after the drain
    /// looked always sends a fresh wake-up.
    wake_pending: AtomicBool,
    counters: Arc<ShardCounters>,
}

impl AudioQueue {
    fn new(capacity: usize, counters: Arc<ShardCounters>) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        Self { tx, rx, wake_pending: AtomicBool::new(false), counters }
    }

    /// Queues a frame, shedding the oldest while full. `true`: a wake-up must be sent.
    fn push(&self, id: ShardCallId, frame: Frame) -> bool {
        let mut item = (id, frame);
        // Other senders may refill the slot just freed; after a few rounds the new frame is
        // the one shed, which bounds the loop.
        for _ in 0..4 {
            match self.tx.try_send(item) {
                Ok(()) => return !self.wake_pending.swap(true, Ordering::AcqRel),
                Err(TrySendError::Full(back)) => {
                    if self.rx.try_recv().is_ok() {
                        self.counters.audio_shed.fetch_add(1, Ordering::Relaxed);
                    }
                    item = back;
                }
                // Both ends live here: never disconnected.
                Err(TrySendError::Disconnected(_)) => return false,
            }
        }
        self.counters.audio_shed.fetch_add(1, Ordering::Relaxed);
        false
    }
}

/// What the network edges send a shard. One channel per shard, drained in its batch loop.
pub enum Inbound {
    /// A new call: its engine is created on arrival, which is when its pipeline is ready.
    /// With `resume`, the engine continues a snapshotted conversation (a reconnect).
    Add { id: ShardCallId, config: Arc<CallConfig>, sink: Box<dyn CallSink>, resume: Option<Snapshot> },
    /// A provider event, a key press, a hangup.
    Input { id: ShardCallId, input: OwnedInput },
    /// A caller audio frame from the transport (applied as is; the pool's edges use the
    /// bounded [`AudioQueue`] and [`Inbound::AudioReady`] instead).
    Audio { id: ShardCallId, frame: Frame },
    /// The shard's [`AudioQueue`] has frames: apply them.
    AudioReady,
    /// End every call (`CallSink::closed`) and stop the thread.
    Shutdown,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Add { id, .. } => f.debug_struct("Add").field("id", id).finish_non_exhaustive(),
            Self::Input { id, input } => f.debug_struct("Input").field("id", id).field("input", input).finish(),
            Self::Audio { id, .. } => f.debug_struct("Audio").field("id", id).finish_non_exhaustive(),
            Self::AudioReady => f.write_str("AudioReady"),
            Self::Shutdown => f.write_str("Shutdown"),
        }
    }
}

/// Where a step's time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSource {
    /// Every step runs at the `now` given to [`Shard::run_due`] and friends: tests.
    Virtual,
    /// The batch takes what is due at the wake-up time, but each call's step reads the clock
    /// again, so the work done before it in the batch shows up as its lateness instead of
    /// being hidden (one `Instant::now()`, ~20 ns, per call step).
    Real,
}

/// Counters of a shard's work, for the benchmark's "where the time goes".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// Batches that handled at least one call (wake-ups with work).
    pub batches: u64,
    /// Call steps run from the heap.
    pub steps: u64,
    /// Inbound messages applied.
    pub inbound: u64,
    /// Heap entries skipped because the call re-armed or ended since.
    pub stale: u64,
    pub calls_added: u64,
    pub calls_ended: u64,
    /// Timed wake-ups of [`Shard::run`] (the sleep ran to its deadline).
    pub timer_wakes: u64,
    /// How late those wake-ups were against the deadline they slept for: the OS's share
    /// (timer slack, waiting for a core), summed, the worst one, and how many by over 1 ms.
    pub wake_late_total: Duration,
    pub wake_late_max: Duration,
    pub wakes_late_over_1ms: u64,
    /// Time spent in batches and applying inbound messages: the shard's own CPU share.
    pub busy: Duration,
    pub batch_max: Duration,
}

struct Live {
    id: ShardCallId,
    engine: CallEngine,
    sink: Box<dyn CallSink>,
    /// The deadline this call has in the heap; other entries for it are stale.
    armed: Option<Instant>,
    /// The engine's and the sink's deadlines as of the last re-arm, so a step asks each for
    /// its deadline once, not twice (`CallEngine::poll_timeout` was the top entry of a profile).
    engine_at: Option<Instant>,
    sink_at: Option<Instant>,
}

struct Slot {
    generation: u32,
    live: Option<Live>,
}

/// Many calls on one core. See the crate docs.
pub struct Shard {
    clock: TimeSource,
    slots: Vec<Slot>,
    free: Vec<u32>,
    index: HashMap<ShardCallId, u32>,
    heap: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    stats: ShardStats,
    audio: Option<Arc<AudioQueue>>,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("clock", &self.clock)
            .field("calls", &self.index.len())
            .field("heap", &self.heap.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Shard {
    pub fn new(clock: TimeSource) -> Self {
        Self {
            clock,
            slots: Vec::new(),
            free: Vec::new(),
            index: HashMap::new(),
            heap: BinaryHeap::new(),
            stats: ShardStats::default(),
            audio: None,
        }
    }

    /// A shard that takes caller audio from `audio` when told [`Inbound::AudioReady`].
    pub fn with_audio_queue(clock: TimeSource, audio: Arc<AudioQueue>) -> Self {
        Self { audio: Some(audio), ..Self::new(clock) }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn stats(&self) -> ShardStats {
        self.stats
    }

    fn step_time(&self, now: Instant) -> Instant {
        match self.clock {
            TimeSource::Virtual => now,
            TimeSource::Real => Instant::now().max(now),
        }
    }

    /// Starts a call at `now`: its engine is created (a greeting would be requested at once)
    /// and its first deadline armed.
    pub fn add_call(&mut self, id: ShardCallId, config: Arc<CallConfig>, sink: Box<dyn CallSink>, now: Instant) {
        self.add_call_resumed(id, config, sink, None, now);
    }

    /// `add_call`, continuing the conversation of `resume` when given.
    pub fn add_call_resumed(
        &mut self,
        id: ShardCallId,
        config: Arc<CallConfig>,
        sink: Box<dyn CallSink>,
        resume: Option<Snapshot>,
        now: Instant,
    ) {
        let now = self.step_time(now);
        let mut sink = sink;
        sink.started(now);
        let engine = match resume {
            Some(snapshot) => CallEngine::from_snapshot(config, snapshot, now),
            None => CallEngine::new(config, now),
        };
        let live = Live { id, engine, sink, armed: None, engine_at: None, sink_at: None };
        let slot = if let Some(slot) = self.free.pop() {
            self.slots[slot as usize].live = Some(live);
            slot
        } else {
            self.slots.push(Slot { generation: 0, live: Some(live) });
            (self.slots.len() - 1) as u32
        };
        self.index.insert(id, slot);
        self.stats.calls_added += 1;
        self.step(slot, now, |_, _| {});
    }

    /// An input for a call from one of its edges, applied at `now`. Unknown (ended) calls are
    /// ignored: a late provider event for a call that hung up is normal.
    pub fn input(&mut self, id: ShardCallId, input: Input<'_>, now: Instant) {
        if let Some(&slot) = self.index.get(&id) {
            let now = self.step_time(now);
            self.step(slot, now, |live, now| live.engine.handle(input, now));
        }
    }

    /// A caller audio frame for a call, handed to its sink (which forwards it to the STT).
    pub fn audio(&mut self, id: ShardCallId, frame: Frame, now: Instant) {
        if let Some(&slot) = self.index.get(&id) {
            let now = self.step_time(now);
            self.step(slot, now, |live, now| {
                let Live { engine, sink, .. } = live;
                sink.caller_audio(frame, &mut Feed { engine, now });
            });
        }
    }

    /// Applies one message from the inbound channel. `false`: it was `Shutdown`.
    pub fn apply(&mut self, message: Inbound, now: Instant) -> bool {
        self.stats.inbound += 1;
        match message {
            Inbound::Add { id, config, sink, resume } => self.add_call_resumed(id, config, sink, resume, now),
            Inbound::Input { id, input } => self.input(id, input.as_input(), now),
            Inbound::Audio { id, frame } => self.audio(id, frame, now),
            Inbound::AudioReady => self.drain_audio(now),
            Inbound::Shutdown => return false,
        }
        true
    }

    /// Applies the frames in the audio queue: those there now, so a sender that keeps
    /// queueing cannot hold the shard in this loop (its later frames send a new wake-up).
    /// A frame for a call whose `Add` is still behind in the control channel is dropped like
    /// one for an ended call: at most the first frames of a call, which are before its
    /// greeting anyway.
    fn drain_audio(&mut self, now: Instant) {
        let Some(queue) = self.audio.clone() else { return };
        queue.wake_pending.store(false, Ordering::SeqCst);
        for _ in 0..queue.rx.len() {
            let Ok((id, frame)) = queue.rx.try_recv() else { break };
            self.audio(id, frame, now);
        }
    }

    /// The earliest deadline of any call (stale heap entries are dropped on the way).
    pub fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&Reverse((at, slot, generation))) = self.heap.peek() {
            if self.is_current(at, slot, generation) {
                return Some(at);
            }
            self.heap.pop();
            self.stats.stale += 1;
        }
        None
    }

    fn is_current(&self, at: Instant, slot: u32, generation: u32) -> bool {
        let slot = &self.slots[slot as usize];
        slot.generation == generation && slot.live.as_ref().is_some_and(|live| live.armed == Some(at))
    }

    /// One batch: every call whose deadline is at or before `now` is stepped (engine deadlines
    /// and the sink's own), in deadline order. A call whose new deadline is still due runs again
    /// in the same batch. Returns the number of call steps.
    pub fn run_due(&mut self, now: Instant) -> usize {
        let mut steps = 0;
        while let Some(at) = self.next_deadline() {
            if at > now {
                break;
            }
            let Reverse((_, slot, _)) = self.heap.pop().expect("peeked");
            let live = self.slots[slot as usize].live.as_mut().expect("current entries are live");
            live.armed = None;
            let step_now = self.step_time(now);
            self.step(slot, step_now, |live, now| {
                let Live { engine, sink, engine_at, sink_at, .. } = live;
                if engine_at.is_some_and(|t| t <= now) {
                    engine.handle_timeout(now);
                    drain(engine, sink.as_mut(), now);
                }
                if sink_at.is_some_and(|t| t <= now) {
                    sink.handle_timeout(&mut Feed { engine, now });
                }
            });
            steps += 1;
        }
        if steps > 0 {
            self.stats.batches += 1;
            self.stats.steps += steps as u64;
        }
        steps
    }

    /// Ends every call (`CallSink::closed`), as at shutdown.
    pub fn close_all(&mut self, now: Instant) {
        let now = self.step_time(now);
        for slot in 0..self.slots.len() {
            if let Some(mut live) = self.slots[slot].live.take() {
                live.sink.closed(now);
                self.index.remove(&live.id);
                self.stats.calls_ended += 1;
            }
        }
        self.heap.clear();
    }

    /// Runs `what`, hands every output to the sink, then removes the call if it ended or
    /// re-arms it from the engine's and the sink's next deadlines.
    fn step(&mut self, slot: u32, now: Instant, what: impl FnOnce(&mut Live, Instant)) {
        let entry = &mut self.slots[slot as usize];
        let Some(live) = entry.live.as_mut() else { return };
        what(live, now);
        drain(&mut live.engine, live.sink.as_mut(), now);
        if live.engine.is_ended() {
            let mut live = entry.live.take().expect("live");
            live.sink.closed(now);
            entry.generation = entry.generation.wrapping_add(1);
            self.index.remove(&live.id);
            self.free.push(slot);
            self.stats.calls_ended += 1;
            return;
        }
        live.engine_at = live.engine.poll_timeout();
        live.sink_at = live.sink.poll_timeout();
        let next = earliest(live.engine_at, live.sink_at);
        if next != live.armed {
            live.armed = next;
            if let Some(at) = next {
                self.heap.push(Reverse((at, slot, entry.generation)));
            }
        }
    }

    /// The shard's thread: apply inbound messages as they come, run each batch when its
    /// earliest deadline is due, sleep precisely in between (see [`ShardPool`]).
    pub fn run(mut self, inbound: &Receiver<Inbound>) -> ShardStats {
        loop {
            // Everything that arrived while the last batch ran goes in before the next one.
            while let Ok(message) = inbound.try_recv() {
                if !self.apply(message, Instant::now()) {
                    self.close_all(Instant::now());
                    return self.stats;
                }
            }
            let started = Instant::now();
            if self.run_due(started) > 0 {
                let took = started.elapsed();
                self.stats.busy += took;
                self.stats.batch_max = self.stats.batch_max.max(took);
            }
            let message = match self.next_deadline() {
                Some(at) => match inbound.recv_deadline(at) {
                    Ok(message) => message,
                    Err(RecvTimeoutError::Timeout) => {
                        let late = Instant::now().saturating_duration_since(at);
                        self.stats.timer_wakes += 1;
                        self.stats.wake_late_total += late;
                        self.stats.wake_late_max = self.stats.wake_late_max.max(late);
                        self.stats.wakes_late_over_1ms += u64::from(late > Duration::from_millis(1));
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => Inbound::Shutdown,
                },
                None => inbound.recv().unwrap_or(Inbound::Shutdown),
            };
            let started = Instant::now();
            if !self.apply(message, started) {
                self.close_all(Instant::now());
                return self.stats;
            }
            self.stats.busy += started.elapsed();
        }
    }
}

fn drain(engine: &mut CallEngine, sink: &mut dyn CallSink, now: Instant) {
    while let Some(output) = engine.poll_output() {
        sink.output(output, &mut Feed { engine, now });
    }
}

/// How the edges address one call: cheap to clone, `Send`, usable from async tasks (sending
/// never blocks).
#[derive(Debug, Clone)]
pub struct CallHandle {
    id: ShardCallId,
    shard: usize,
    inbound: Sender<Inbound>,
    audio: Arc<AudioQueue>,
}

impl CallHandle {
    pub fn id(&self) -> ShardCallId {
        self.id
    }

    /// Which shard of the pool holds the call.
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// `false`: the shard has stopped.
    pub fn input(&self, input: OwnedInput) -> bool {
        self.inbound.send(Inbound::Input { id: self.id, input }).is_ok()
    }

    /// Queues a caller frame on the shard's bounded audio queue (shedding the oldest frame if
    /// it is full). `false`: the shard has stopped.
    pub fn audio(&self, frame: Frame) -> bool {
        if self.audio.push(self.id, frame) {
            return self.inbound.send(Inbound::AudioReady).is_ok();
        }
        true
    }

    pub fn hangup(&self) -> bool {
        self.input(OwnedInput::Hangup)
    }
}

/// One shard per core, each on its own OS thread.
///
/// Why a plain thread and not a current-thread tokio runtime: the shard does no I/O, only
/// CPU work between deadlines, so it needs no reactor; what it needs is a sleep that ends on
/// time. Tokio's timer wheel has 1 ms resolution, which DESIGN.md §6 measured as ~2 ms of
/// added latency per turn. A thread blocked in `crossbeam_channel::Receiver::recv_deadline`
/// sleeps on a futex with an absolute deadline (Linux hrtimer, ~50 µs slack) and also wakes
/// the moment an edge sends something, so one wait covers both. Edges on the worker's tokio
/// runtime send with a non-blocking `Sender::send`; they never await the shard.
#[derive(Debug)]
pub struct ShardPool {
    shards: Vec<(Sender<Inbound>, Arc<AudioQueue>, JoinHandle<ShardStats>)>,
    next_shard: AtomicUsize,
    next_id: AtomicU64,
}

impl ShardPool {
    /// `n` shards (at least one), normally one per core.
    pub fn new(n: usize) -> Self {
        Self::with_audio_queue(n, AUDIO_QUEUE_FRAMES, &Arc::default())
    }

    /// `n` shards whose caller audio queues hold `audio_frames` each, counting what they shed
    /// in `counters`.
    pub fn with_audio_queue(n: usize, audio_frames: usize, counters: &Arc<ShardCounters>) -> Self {
        let shards = (0..n.max(1))
            .map(|i| {
                let (tx, rx) = crossbeam_channel::unbounded();
                let audio = Arc::new(AudioQueue::new(audio_frames, Arc::clone(counters)));
                let shard = Shard::with_audio_queue(TimeSource::Real, Arc::clone(&audio));
                let thread = std::thread::Builder::new()
                    .name(format!("golos-shard-{i}"))
                    .spawn(move || shard.run(&rx))
                    .expect("spawn a shard thread");
                (tx, audio, thread)
            })
            .collect();
        Self { shards, next_shard: AtomicUsize::new(0), next_id: AtomicU64::new(1) }
    }

    pub fn len(&self) -> usize {
        self.shards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    /// Adds a call to the next shard in turn (calls are alike, so round robin spreads them).
    pub fn add_call(&self, config: Arc<CallConfig>, sink: Box<dyn CallSink>) -> CallHandle {
        let shard = self.next_shard.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        self.add_call_on(shard, config, sink)
    }

    /// Adds a call to a given shard (`shard % len`).
    pub fn add_call_on(&self, shard: usize, config: Arc<CallConfig>, sink: Box<dyn CallSink>) -> CallHandle {
        self.add_call_with_on(shard, config, None, |_| sink)
    }

    /// Adds a call whose sink needs its own handle (edges that feed provider events back),
    /// optionally resuming a snapshotted conversation.
    pub fn add_call_with(
        &self,
        config: Arc<CallConfig>,
        resume: Option<Snapshot>,
        make_sink: impl FnOnce(CallHandle) -> Box<dyn CallSink>,
    ) -> CallHandle {
        let shard = self.next_shard.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        self.add_call_with_on(shard, config, resume, make_sink)
    }

    fn add_call_with_on(
        &self,
        shard: usize,
        config: Arc<CallConfig>,
        resume: Option<Snapshot>,
        make_sink: impl FnOnce(CallHandle) -> Box<dyn CallSink>,
    ) -> CallHandle {
        let shard = shard % self.shards.len();
        let id = ShardCallId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let inbound = self.shards[shard].0.clone();
        let audio = Arc::clone(&self.shards[shard].1);
        let handle = CallHandle { id, shard, inbound, audio };
        let sink = make_sink(handle.clone());
        // A stopped shard drops the call (its sink's `closed` never runs); only at shutdown.
        let _ = handle.inbound.send(Inbound::Add { id, config, sink, resume });
        handle
    }

    /// Ends every call and joins the threads.
    pub fn shutdown(self) -> Vec<ShardStats> {
        for (tx, _, _) in &self.shards {
            let _ = tx.send(Inbound::Shutdown);
        }
        self.shards.into_iter().map(|(_, _, thread)| thread.join().unwrap_or_default()).collect()
    }
}
