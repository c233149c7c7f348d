//! The WORKLOAD's caller (`bench/WORKLOAD.md` §2.1) as seen from outside the worker, for
//! `golos-load ws` and `golos-load sip`: which frame each 20 ms slot carries, and the per-turn
//! measurements from what comes back over the socket (bot audio counted as 16 kHz PCM16 bytes;
//! the SIP mode converts its A-law). Sans-IO: the driver passes the time in, so the arithmetic
//! is tested on made-up instants.
//!
//! The caller cannot see the STT's T_final, so it is reconstructed from the audio it sent. The
//! simulated Deepgram decides in audio time: it emits the final once it has received
//! `endpointing` (300 ms) of silence after the last speech sample. A frame sent at its slot
//! carries the 20 ms that ended then, so speech ends when the last speech frame is sent, and
//! the 300 ms of silence are complete when the 15th silence frame after it is sent. That send
//! is this side's T_final ([`TurnProbe::endpoint_at`]): the earliest instant a provider with
//! zero processing time could have emitted the final. Then, as WORKLOAD §3 defines it,
//!
//! ```text
//! added = (first agent audio received − endpoint_at) − 200 ms (LLM TTFT) − 100 ms (TTS TTFB)
//! ```
//!
//! which is `(first audio − end of utterance) − 600 ms` when the caller is on schedule. It
//! charges everything between the caller's socket and back to golos: both loopback hops, the
//! worker's input path, the Deepgram, OpenAI and ElevenLabs adapters and the simulator's own
//! processing (whose fixed waits are taken out). Using the actual send time of that 15th
//! silence frame (not its slot) keeps the load generator's own lateness out of the number; it
//! is reported separately as input lag.

use std::time::{Duration, Instant};

/// 20 ms per frame (§1).
pub const FRAME: Duration = Duration::from_millis(20);
/// 320 samples of PCM16.
pub const FRAME_BYTES: usize = 640;
/// Utterance length: 75 speech frames, 1.5 s (§2.1).
pub const SPEECH_FRAMES: u64 = 75;
/// The STT's endpointing, 300 ms of silence = 15 frames (§2.2).
pub const ENDPOINT_FRAMES: u64 = 15;
/// LLM TTFT + TTS TTFB, the fixed provider waits taken out of the added latency (§3).
pub const PROVIDER_WAITS: Duration = Duration::from_millis(300);
/// One bot turn: 6 s of audio (§2.4).
pub const TURN_AUDIO_BYTES: u64 = 192_000;
/// Next utterance 1 s after the bot's audio ends; the first 1 s after ready (§2.1).
pub const PAUSE: Duration = Duration::from_secs(1);
/// No bot audio this long after the final (or, without a final, after the endpoint): lost (§3).
pub const LOST_AFTER: Duration = Duration::from_secs(10);
/// If a turn's audio stops short of 192,000 bytes, it is taken as ended after this much quiet.
pub const AUDIO_IDLE_END: Duration = Duration::from_secs(1);
/// Late turn: added latency above this (§3).
pub const LATE: Duration = Duration::from_millis(200);

/// What one turn measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TurnResult {
    /// Client-side added latency (module docs), ms; `None` for a lost turn.
    pub added_ms: Option<f64>,
    /// From the user's final transcript arriving to the first audio, minus the LLM TTFT and TTS
    /// TTFB (a diagnostic: it leaves out the STT side and the first loopback hop), ms.
    pub final_to_audio_ms: Option<f64>,
    /// Bot audio received in the turn.
    pub audio_bytes: u64,
    /// The user final transcript arrived.
    pub saw_final: bool,
}

/// The turn in flight, from the first speech frame on.
#[derive(Debug, Clone, Copy, Default)]
pub struct TurnProbe {
    /// Slot of the first speech frame.
    pub speech_slot: u64,
    /// When the last speech frame was sent.
    pub last_speech_at: Option<Instant>,
    /// When the frame completing 300 ms of silence was sent.
    pub endpoint_at: Option<Instant>,
    pub final_at: Option<Instant>,
    pub first_audio_at: Option<Instant>,
    pub last_audio_at: Option<Instant>,
    pub audio_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Silence until the utterance that starts at this slot.
    Waiting { speech_slot: u64 },
    /// Speaking or waiting for the bot's answer to finish.
    InTurn,
    /// All turns done: hang up.
    Done,
}

/// One simulated caller. Slot `k` is due at `ready + k·20 ms`.
#[derive(Debug)]
pub struct SimulatedCaller {
    ready: Instant,
    turns: u32,
    phase: Phase,
    probe: TurnProbe,
    results: Vec<TurnResult>,
}

impl SimulatedCaller {
    pub fn new(ready: Instant, turns: u32) -> Self {
        let first = slot_at_or_after(ready, ready + PAUSE);
        Self {
            ready,
            turns,
            phase: if turns == 0 { Phase::Done } else { Phase::Waiting { speech_slot: first } },
            probe: TurnProbe::default(),
            results: Vec::with_capacity(turns as usize),
        }
    }

    /// When slot `k` is due.
    pub fn slot_time(&self, slot: u64) -> Instant {
        self.ready + FRAME * u32::try_from(slot).unwrap_or(u32::MAX)
    }

    /// The frame of slot `slot`, sent at `now`: `true` for speech. Slots must come in order.
    pub fn frame(&mut self, slot: u64, now: Instant) -> bool {
        if let Phase::Waiting { speech_slot } = self.phase {
            if slot >= speech_slot {
                self.phase = Phase::InTurn;
                self.probe = TurnProbe { speech_slot: slot, ..TurnProbe::default() };
            }
        }
        if self.phase != Phase::InTurn {
            return false;
        }
        let offset = slot - self.probe.speech_slot;
        if offset == SPEECH_FRAMES + ENDPOINT_FRAMES - 1 {
            self.probe.endpoint_at = Some(now);
        }
        if offset == SPEECH_FRAMES - 1 {
            self.probe.last_speech_at = Some(now);
        }
        offset < SPEECH_FRAMES
    }

    /// A binary message of `bytes` bot audio arrived at `now`.
    pub fn on_audio(&mut self, bytes: usize, now: Instant) {
        if self.phase != Phase::InTurn || self.probe.endpoint_at.is_none() {
            return; // audio nobody asked for (a greeting, a late tail): not a turn's
        }
        self.probe.first_audio_at.get_or_insert(now);
        self.probe.last_audio_at = Some(now);
        self.probe.audio_bytes += bytes as u64;
        if self.probe.audio_bytes >= TURN_AUDIO_BYTES {
            self.end_turn(now);
        }
    }

    /// The turn's endpoint is past and no answer has come yet.
    pub fn awaiting_audio(&self) -> bool {
        self.phase == Phase::InTurn && self.probe.endpoint_at.is_some() && self.probe.first_audio_at.is_none()
    }

    /// The user's final transcript arrived.
    pub fn on_final(&mut self, now: Instant) {
        if self.phase == Phase::InTurn && self.probe.final_at.is_none() {
            self.probe.final_at = Some(now);
        }
    }

    /// Time-outs: a turn with no audio 10 s after its final is lost; audio that stops short of
    /// a whole turn ends it after a second of quiet.
    pub fn poll(&mut self, now: Instant) {
        if self.phase != Phase::InTurn {
            return;
        }
        let p = self.probe;
        match (p.last_audio_at, p.final_at.or(p.endpoint_at)) {
            (Some(last), _) if now >= last + AUDIO_IDLE_END => self.end_turn(last),
            (None, Some(since)) if now >= since + LOST_AFTER => self.end_turn(now),
            _ => {}
        }
    }

    fn end_turn(&mut self, bot_end: Instant) {
        self.results.push(measure(&self.probe));
        self.phase = if self.results.len() >= self.turns as usize {
            Phase::Done
        } else {
            Phase::Waiting { speech_slot: slot_at_or_after(self.ready, bot_end + PAUSE) }
        };
    }

    pub fn probe(&self) -> &TurnProbe {
        &self.probe
    }

    pub fn done(&self) -> bool {
        self.phase == Phase::Done
    }

    pub fn results(&self) -> &[TurnResult] {
        &self.results
    }
}

/// The first slot due at or after `at`.
pub fn slot_at_or_after(ready: Instant, at: Instant) -> u64 {
    let since = at.saturating_duration_since(ready).as_nanos();
    let frame = FRAME.as_nanos();
    u64::try_from(since.div_ceil(frame)).unwrap_or(u64::MAX)
}

fn ms_between(from: Instant, to: Instant) -> f64 {
    // Signed: a negative value would mean the answer came before the fixed waits could pass.
    if to >= from {
        to.duration_since(from).as_secs_f64() * 1e3
    } else {
        -(from.duration_since(to).as_secs_f64() * 1e3)
    }
}

/// The turn's numbers (module docs).
pub fn measure(p: &TurnProbe) -> TurnResult {
    let waits = PROVIDER_WAITS.as_secs_f64() * 1e3;
    let added = match (p.endpoint_at, p.first_audio_at) {
        (Some(endpoint), Some(audio)) => Some(ms_between(endpoint, audio) - waits),
        _ => None,
    };
    let final_to_audio = match (p.final_at, p.first_audio_at) {
        (Some(f), Some(audio)) => Some(ms_between(f, audio) - waits),
        _ => None,
    };
    TurnResult {
        added_ms: added,
        final_to_audio_ms: final_to_audio,
        audio_bytes: p.audio_bytes,
        saw_final: p.final_at.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Sends slots up to and including `until` (at their due times) and returns how many
    /// were speech.
    fn send_until(c: &mut SimulatedCaller, next: &mut u64, until: u64) -> u64 {
        let mut speech = 0;
        while *next <= until {
            let at = c.slot_time(*next);
            speech += u64::from(c.frame(*next, at));
            *next += 1;
        }
        speech
    }

    #[test]
    fn first_utterance_starts_one_second_after_ready_and_lasts_75_frames() {
        let t0 = Instant::now();
        let mut c = SimulatedCaller::new(t0, 1);
        let mut next = 0;
        assert_eq!(send_until(&mut c, &mut next, 49), 0);
        assert!(c.frame(50, c.slot_time(50)));
        next = 51;
        assert_eq!(send_until(&mut c, &mut next, 124), 74);
        assert!(!c.frame(125, c.slot_time(125)));
    }

    #[test]
    fn endpoint_is_the_send_of_the_15th_silence_frame() {
        let t0 = Instant::now();
        let mut c = SimulatedCaller::new(t0, 1);
        let mut next = 0;
        send_until(&mut c, &mut next, 139); // speech 50..=124, silence 125..=139
                                            // Speech ended when slot 124 was sent (t0 + 2.48 s); 300 ms later is slot 139.
        assert_eq!(c.probe.endpoint_at, Some(t0 + ms(2_780)));
        assert_eq!(c.probe.endpoint_at.unwrap() - c.slot_time(124), ms(300));
    }

    #[test]
    fn added_latency_takes_out_ttft_and_ttfb() {
        let t0 = Instant::now();
        let probe = TurnProbe {
            speech_slot: 50,
            last_speech_at: None,
            endpoint_at: Some(t0),
            final_at: Some(t0 + ms(2)),
            first_audio_at: Some(t0 + ms(307)),
            last_audio_at: Some(t0 + ms(307)),
            audio_bytes: 640,
        };
        let r = measure(&probe);
        assert!((r.added_ms.unwrap() - 7.0).abs() < 1e-9);
        assert!((r.final_to_audio_ms.unwrap() - 5.0).abs() < 1e-9);
        assert!(r.saw_final);
        // Faster than the fixed waits would allow shows as negative, not as a huge number.
        let early = TurnProbe { first_audio_at: Some(t0 + ms(299)), ..probe };
        assert!((measure(&early).added_ms.unwrap() + 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_late_send_of_the_endpoint_frame_is_not_charged_to_the_worker() {
        let t0 = Instant::now();
        let mut c = SimulatedCaller::new(t0, 1);
        let mut next = 0;
        send_until(&mut c, &mut next, 138);
        let late = c.slot_time(139) + ms(4);
        c.frame(139, late);
        c.on_final(late + ms(1));
        c.on_audio(640, late + ms(310));
        c.on_audio(191_360, late + ms(320));
        assert!(c.done());
        assert!((c.results()[0].added_ms.unwrap() - 10.0).abs() < 1e-9);
    }

    #[test]
    fn next_utterance_starts_on_the_first_slot_a_second_after_the_bots_audio() {
        let t0 = Instant::now();
        let mut c = SimulatedCaller::new(t0, 2);
        let mut next = 0;
        send_until(&mut c, &mut next, 140);
        let endpoint = c.probe.endpoint_at.unwrap();
        c.on_final(endpoint);
        // 300 frames of 640 bytes, the last at endpoint + 0.31 s + 5.98 s, off the slot grid.
        let first = endpoint + ms(310) + Duration::from_micros(500);
        for k in 0..300u32 {
            c.on_audio(FRAME_BYTES, first + FRAME * k);
        }
        assert_eq!(c.results().len(), 1);
        let bot_end = first + FRAME * 299;
        let start = slot_at_or_after(t0, bot_end + PAUSE);
        assert!(c.slot_time(start) >= bot_end + PAUSE && c.slot_time(start) < bot_end + PAUSE + FRAME);
        // Silence until then (also no audio counted: the bot is not answering anything).
        c.on_audio(640, bot_end + ms(100));
        assert_eq!(send_until(&mut c, &mut next, start - 1), 0);
        assert!(c.frame(start, c.slot_time(start)));
        assert_eq!(c.probe.speech_slot, start);
        assert_eq!(c.probe.audio_bytes, 0);
    }

    #[test]
    fn no_audio_within_ten_seconds_of_the_final_is_a_lost_turn() {
        let t0 = Instant::now();
        let mut c = SimulatedCaller::new(t0, 2);
        let mut next = 0;
        send_until(&mut c, &mut next, 139);
        let fin = c.probe.endpoint_at.unwrap() + ms(1);
        c.on_final(fin);
        c.poll(fin + ms(9_999));
        assert!(c.results().is_empty());
        c.poll(fin + LOST_AFTER);
        assert_eq!(
            c.results(),
            &[TurnResult { added_ms: None, final_to_audio_ms: None, audio_bytes: 0, saw_final: true }]
        );
        // The call goes on: the next utterance a second later.
        assert!(!c.done());
    }

    #[test]
    fn audio_short_of_a_whole_turn_ends_it_after_a_quiet_second() {
        let t0 = Instant::now();
        let mut c = SimulatedCaller::new(t0, 1);
        let mut next = 0;
        send_until(&mut c, &mut next, 139);
        let endpoint = c.probe.endpoint_at.unwrap();
        c.on_audio(64_000, endpoint + ms(305));
        c.poll(endpoint + ms(1_304));
        assert!(!c.done());
        c.poll(endpoint + ms(1_305));
        assert!(c.done());
        let r = c.results()[0];
        assert_eq!(r.audio_bytes, 64_000);
        assert!(!r.saw_final);
        assert!((r.added_ms.unwrap() - 5.0).abs() < 1e-9);
    }

    #[test]
    fn audio_before_the_endpoint_is_not_an_answer() {
        let t0 = Instant::now();
        let mut c = SimulatedCaller::new(t0, 1);
        c.on_audio(640, t0); // a greeting
        let mut next = 0;
        send_until(&mut c, &mut next, 100);
        c.on_audio(640, c.slot_time(100));
        assert_eq!(c.probe.audio_bytes, 0);
        assert!(c.probe.first_audio_at.is_none());
    }
}
