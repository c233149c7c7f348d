//! Playout pacing on a virtual clock: every packet's send time is asserted exactly.

use golos_transports::playout::{Cleared, Frame, Packet, Playout, PACKET};
use std::time::{Duration, Instant};

fn frame(n: i16) -> Frame {
    vec![n; 320].into()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Drives the buffer like a transport task: sleeps to each deadline (virtually), sends what is
/// due, and records `(time since t0 in ms, what)`, until `until` or the buffer is empty.
fn run(playout: &mut Playout, t0: Instant, from: Instant, until: Instant) -> Vec<(u64, String)> {
    let mut sent = Vec::new();
    let mut now = from;
    loop {
        while let Some(packet) = playout.poll(now) {
            let what = match packet {
                Packet::Audio(f) => format!("a{}", f[0]),
                Packet::Mark(name) => format!("m:{name}"),
            };
            sent.push(((now - t0).as_millis() as u64, what));
        }
        match playout.next_deadline() {
            Some(at) if at <= until => now = now.max(at),
            _ => return sent,
        }
    }
}

fn at(list: &[(u64, &str)]) -> Vec<(u64, String)> {
    list.iter().map(|&(t, w)| (t, w.to_owned())).collect()
}

#[test]
fn a_burst_goes_out_one_packet_per_20ms() {
    let t0 = Instant::now();
    let mut playout = Playout::new(t0);
    for n in 0..5 {
        playout.push(frame(n));
    }
    assert_eq!(playout.queued_duration(), ms(100));
    assert_eq!(playout.next_deadline(), Some(t0));
    let sent = run(&mut playout, t0, t0, t0 + ms(1_000));
    assert_eq!(sent, at(&[(0, "a0"), (20, "a1"), (40, "a2"), (60, "a3"), (80, "a4")]));
    assert_eq!(playout.next_deadline(), None);
    assert!(playout.is_empty());
}

#[test]
fn late_polls_do_not_drift_the_schedule() {
    let t0 = Instant::now();
    let mut playout = Playout::new(t0);
    for n in 0..4 {
        playout.push(frame(n));
    }
    assert!(matches!(playout.poll(t0), Some(Packet::Audio(_))));
    assert_eq!(playout.poll(t0 + ms(19)), None, "not before its slot");
    // The driver wakes 7 ms late: the packet goes out, the next slot stays at t0 + 40.
    assert!(matches!(playout.poll(t0 + ms(27)), Some(Packet::Audio(_))));
    assert_eq!(playout.next_deadline(), Some(t0 + ms(40)));
    // A 45 ms stall with audio still queued: the missed slot is caught up at once.
    assert!(matches!(playout.poll(t0 + ms(65)), Some(Packet::Audio(_))));
    assert!(matches!(playout.poll(t0 + ms(65)), Some(Packet::Audio(_))));
    assert_eq!(playout.poll(t0 + ms(65)), None);
}

#[test]
fn the_clock_resets_after_an_underrun_but_not_inside_a_slot() {
    let t0 = Instant::now();
    let mut playout = Playout::new(t0);
    playout.push(frame(0));
    playout.push(frame(1));
    let mut sent = run(&mut playout, t0, t0, t0 + ms(1_000));
    // The next frame arrives inside the slot of the last packet: it keeps the schedule, so the
    // client never gets two packets closer than 20 ms.
    playout.push(frame(2));
    assert_eq!(playout.next_deadline(), Some(t0 + ms(40)));
    sent.extend(run(&mut playout, t0, t0 + ms(30), t0 + ms(1_000)));
    // A frame after a real underrun (its slot at 60 ms passed) starts a new schedule at 97 ms.
    playout.push(frame(3));
    playout.push(frame(4));
    sent.extend(run(&mut playout, t0, t0 + ms(97), t0 + ms(1_000)));
    assert_eq!(sent, at(&[(0, "a0"), (20, "a1"), (40, "a2"), (97, "a3"), (117, "a4")]));
}

#[test]
fn marks_follow_the_frame_they_were_pushed_after() {
    let t0 = Instant::now();
    let mut playout = Playout::new(t0);
    playout.push_mark("before-anything");
    playout.push(frame(0));
    playout.push(frame(1));
    playout.push_mark("sentence-1");
    playout.push(frame(2));
    playout.push_mark("turn-end");
    let sent = run(&mut playout, t0, t0, t0 + ms(1_000));
    assert_eq!(
        sent,
        at(&[(0, "m:before-anything"), (0, "a0"), (20, "a1"), (20, "m:sentence-1"), (40, "a2"), (40, "m:turn-end")])
    );
}

#[test]
fn clear_drops_queued_audio_and_its_marks_and_new_audio_follows_the_schedule() {
    let t0 = Instant::now();
    let mut playout = Playout::new(t0);
    for n in 0..3 {
        playout.push(frame(n));
    }
    playout.push_mark("m1");
    for n in 3..10 {
        playout.push(frame(n));
    }
    playout.push_mark("m2");
    let mut sent = run(&mut playout, t0, t0, t0 + ms(50));
    // Barge-in at 50 ms: a0..a2 and m1 went out; the rest is dropped within this poll.
    assert_eq!(playout.clear(), Cleared { frames: 7, marks: vec!["m2".into()] });
    assert_eq!(playout.queued_frames(), 0);
    assert_eq!(playout.poll(t0 + ms(50)), None);
    assert_eq!(playout.next_deadline(), None);
    // The next answer starts at its first poll after the last slot (60 ms) has passed.
    playout.push(frame(20));
    sent.extend(run(&mut playout, t0, t0 + ms(300), t0 + ms(1_000)));
    assert_eq!(sent, at(&[(0, "a0"), (20, "a1"), (40, "a2"), (40, "m:m1"), (300, "a20")]));
}

#[test]
fn clear_keeps_marks_whose_audio_was_already_sent() {
    let t0 = Instant::now();
    let mut playout = Playout::new(t0);
    playout.push(frame(0));
    playout.push_mark("done");
    playout.push(frame(1));
    assert!(matches!(playout.poll(t0), Some(Packet::Audio(_))));
    // The mark is due but not polled yet when the barge-in comes.
    assert_eq!(playout.clear(), Cleared { frames: 1, marks: vec![] });
    assert_eq!(playout.poll(t0), Some(Packet::Mark("done".into())));
    assert_eq!(playout.poll(t0 + PACKET * 10), None);
}

#[test]
fn long_run_stays_on_the_absolute_grid() {
    let t0 = Instant::now();
    let mut playout = Playout::new(t0);
    // 10 s of audio pushed in irregular bursts ahead of time; every packet exactly on t0 + k·20.
    let mut sent = Vec::new();
    let mut pushed = 0;
    let mut now = t0;
    while pushed < 500 || !playout.is_empty() {
        if pushed < 500 && playout.queued_frames() < 3 {
            for _ in 0..(7.min(500 - pushed)) {
                playout.push(frame(0));
                pushed += 1;
            }
        }
        while let Some(Packet::Audio(_)) = playout.poll(now) {
            sent.push((now - t0).as_millis());
        }
        now = playout.next_deadline().unwrap_or(now + ms(1)).max(now + ms(3));
    }
    assert_eq!(sent.len(), 500);
    for (k, &t) in sent.iter().enumerate() {
        // Polls come at least 3 ms apart, so a packet may leave up to 3 ms after its slot,
        // never before it, and the slots never drift.
        let slot = k as u128 * 20;
        assert!(t >= slot && t < slot + 3, "packet {k} at {t} ms");
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Push(u8),
        Mark,
        Clear,
        Advance(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1u8..8).prop_map(Op::Push),
            1 => Just(Op::Mark),
            1 => Just(Op::Clear),
            4 => (0u16..120).prop_map(Op::Advance),
        ]
    }

    proptest! {
        // An integration test has no lib.rs next to it for proptest's regression files.
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        /// With a driver that polls at every deadline, audio packets are never closer than
        /// 20 ms, come out in push order (minus what `clear` dropped), and every mark comes
        /// right after the frame pushed before it.
        #[test]
        fn pacing_order_and_marks_hold_for_any_schedule(ops in prop::collection::vec(op(), 0..60)) {
            let t0 = Instant::now();
            let mut playout = Playout::new(t0);
            let mut now = t0;
            let mut next_id: i16 = 0;
            let mut expected: Vec<String> = Vec::new(); // what is queued, in order
            let mut sent: Vec<(Instant, String)> = Vec::new();
            let mut mark_pushed: Vec<(String, Instant)> = Vec::new();
            let drive = |playout: &mut Playout, now: Instant, sent: &mut Vec<(Instant, String)>| {
                while let Some(packet) = playout.poll(now) {
                    sent.push((now, match packet {
                        Packet::Audio(f) => format!("a{}", f[0]),
                        Packet::Mark(name) => name,
                    }));
                }
            };
            for op in ops {
                match op {
                    Op::Push(n) => for _ in 0..n {
                        playout.push(frame(next_id));
                        expected.push(format!("a{next_id}"));
                        next_id += 1;
                    },
                    Op::Mark => {
                        let name = format!("m{}", mark_pushed.len());
                        mark_pushed.push((name.clone(), now));
                        playout.push_mark(name.clone());
                        expected.push(name);
                    }
                    Op::Clear => {
                        let cleared = playout.clear();
                        // Leading marks (their audio already sent) survive a clear.
                        let kept = expected.iter().take_while(|e| e.starts_with('m')).count();
                        let dropped: Vec<String> = expected.drain(kept..).collect();
                        prop_assert_eq!(cleared.frames, dropped.iter().filter(|e| e.starts_with('a')).count());
                        prop_assert_eq!(cleared.marks, dropped.into_iter().filter(|e| e.starts_with('m')).collect::<Vec<_>>());
                    }
                    Op::Advance(ms) => {
                        let until = now + Duration::from_millis(u64::from(ms));
                        loop {
                            let before = sent.len();
                            drive(&mut playout, now, &mut sent);
                            for (_, what) in &sent[before..] {
                                prop_assert_eq!(Some(what), expected.first());
                                expected.remove(0);
                            }
                            match playout.next_deadline() {
                                Some(at) if at <= until => now = now.max(at),
                                _ => break,
                            }
                        }
                        now = until;
                    }
                }
            }
            let audio: Vec<Instant> = sent.iter().filter(|(_, w)| w.starts_with('a')).map(|(t, _)| *t).collect();
            for pair in audio.windows(2) {
                prop_assert!(pair[1] - pair[0] >= PACKET, "packets {:?} apart", pair[1] - pair[0]);
            }
            // A mark leaves at the first poll after both its frame was sent and it was pushed.
            let mut last_audio = t0;
            for (at, what) in &sent {
                if what.starts_with('a') {
                    last_audio = *at;
                } else {
                    let pushed = mark_pushed.iter().find(|(name, _)| name == what).unwrap().1;
                    prop_assert_eq!(*at, last_audio.max(pushed), "mark {}", what);
                }
            }
        }
    }
}

#[test]
fn a_full_queue_sheds_its_oldest_frames_and_keeps_every_mark() {
    let t0 = Instant::now();
    let mut playout = Playout::with_max_frames(t0, 3);
    assert!(!playout.push(frame(0)));
    playout.push_mark("after-0");
    assert!(!playout.push(frame(1)));
    assert!(!playout.push(frame(2)));
    // Full: each new frame sheds the oldest one, never a mark.
    assert!(playout.push(frame(3)));
    assert!(playout.push(frame(4)));
    assert_eq!(playout.queued_frames(), 3);
    let sent = run(&mut playout, t0, t0, t0 + ms(1_000));
    assert_eq!(sent, at(&[(0, "m:after-0"), (0, "a2"), (20, "a3"), (40, "a4")]));
    // The default holds 10 s.
    let mut playout = Playout::new(t0);
    let shed = (0..600).filter(|&n| playout.push(frame(n))).count();
    assert_eq!((shed, playout.queued_duration()), (100, Duration::from_secs(10)));
}
