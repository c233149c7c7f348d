//! The outbound queue: order, marks after their frame, `clear` with the dropped marks handed
//! back, and the shedding cap. It keeps no time; pacing is the engine's (golos-call's tests).

use golos_transports::playout::{Cleared, Frame, Packet, Playout, MAX_QUEUED_FRAMES, PACKET};
use std::time::Duration;

fn frame(n: i16) -> Frame {
    vec![n; 320].into()
}

fn name(packet: Packet) -> String {
    match packet {
        Packet::Audio(f) => format!("a{}", f[0]),
        Packet::Mark(name) => format!("m:{name}"),
    }
}

/// Everything the socket would take, in order.
fn drain(playout: &mut Playout) -> Vec<String> {
    std::iter::from_fn(|| playout.pop()).map(name).collect()
}

#[test]
fn frames_come_out_in_push_order_at_once() {
    let mut playout = Playout::new();
    for n in 0..5 {
        playout.push(frame(n));
    }
    assert_eq!((playout.queued_frames(), playout.queued_duration()), (5, PACKET * 5));
    // No schedule: a burst is all there to send; the engine is what spaces frames 20 ms apart.
    assert_eq!(drain(&mut playout), ["a0", "a1", "a2", "a3", "a4"]);
    assert!(playout.is_empty());
    assert_eq!((playout.queued_frames(), playout.pop()), (0, None));
}

#[test]
fn marks_follow_the_frame_they_were_pushed_after() {
    let mut playout = Playout::new();
    playout.push_mark("before-anything");
    playout.push(frame(0));
    playout.push(frame(1));
    playout.push_mark("sentence-1");
    playout.push(frame(2));
    playout.push_mark("turn-end");
    assert_eq!(playout.queued_frames(), 3, "marks are not audio");
    assert_eq!(drain(&mut playout), ["m:before-anything", "a0", "a1", "m:sentence-1", "a2", "m:turn-end"]);
}

#[test]
fn clear_drops_queued_audio_and_hands_back_its_marks() {
    let mut playout = Playout::new();
    for n in 0..3 {
        playout.push(frame(n));
    }
    playout.push_mark("m1");
    for n in 3..10 {
        playout.push(frame(n));
    }
    playout.push_mark("m2");
    playout.push(frame(10));
    playout.push_mark("m3");
    // The socket took a0..a2 before the barge-in.
    let sent: Vec<String> = (0..3).filter_map(|_| playout.pop()).map(name).collect();
    assert_eq!(sent, ["a0", "a1", "a2"]);
    // m1's audio went out, so m1 stays; the rest goes, and the marks come back in order so a
    // transport can still answer them.
    assert_eq!(playout.clear(), Cleared { frames: 8, marks: vec!["m2".into(), "m3".into()] });
    assert_eq!((playout.queued_frames(), playout.queued_duration()), (0, Duration::ZERO));
    // What the session hands over next follows at once.
    playout.push(frame(20));
    assert_eq!(drain(&mut playout), ["m:m1", "a20"]);
    assert_eq!(playout.clear(), Cleared::default(), "nothing left to clear");
}

#[test]
fn a_full_queue_sheds_its_oldest_frames_and_keeps_every_mark() {
    let mut playout = Playout::with_max_frames(3);
    assert!(!playout.push(frame(0)));
    playout.push_mark("after-0");
    assert!(!playout.push(frame(1)));
    assert!(!playout.push(frame(2)));
    // Full: each new frame sheds the oldest one, never a mark.
    assert!(playout.push(frame(3)));
    assert!(playout.push(frame(4)));
    assert_eq!(playout.queued_frames(), 3);
    assert_eq!(drain(&mut playout), ["m:after-0", "a2", "a3", "a4"]);
    // A socket that takes frames makes room again.
    assert!(!playout.push(frame(5)));
    assert_eq!(playout.pop(), Some(Packet::Audio(frame(5))));
    // A cap of zero still holds one frame.
    let mut playout = Playout::with_max_frames(0);
    assert!(!playout.push(frame(0)));
    assert!(playout.push(frame(1)));
    assert_eq!(drain(&mut playout), ["a1"]);
    // The default holds 10 s.
    let mut playout = Playout::default();
    let shed = (0..600).filter(|&n| playout.push(frame(n))).count();
    assert_eq!((shed, playout.queued_frames(), playout.queued_duration()), (100, 500, Duration::from_secs(10)));
    assert_eq!(MAX_QUEUED_FRAMES, 500);
    assert_eq!(playout.pop(), Some(Packet::Audio(frame(100))), "the oldest 100 went");
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Push(u8),
        Mark,
        Clear,
        /// The socket takes this many packets.
        Take(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1u8..8).prop_map(Op::Push),
            1 => Just(Op::Mark),
            1 => Just(Op::Clear),
            4 => (0u8..10).prop_map(Op::Take),
        ]
    }

    proptest! {
        // An integration test has no lib.rs next to it for proptest's regression files.
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        /// For any sequence of pushes, marks, clears and sends, with a cap small enough to be
        /// hit: packets come out in push order minus what `clear` dropped and what the cap
        /// shed, only frames are ever shed, every mark comes right after the frame pushed
        /// before it (or that frame's shed), and `clear` hands back exactly the marks behind
        /// the first queued frame.
        #[test]
        fn order_and_marks_hold_for_any_sequence(ops in prop::collection::vec(op(), 0..80), cap in 1usize..12) {
            let mut playout = Playout::with_max_frames(cap);
            let mut next_id: i16 = 0;
            let mut marks = 0;
            // The model: what is queued, in order.
            let mut expected: Vec<String> = Vec::new();
            for op in ops {
                match op {
                    Op::Push(n) => for _ in 0..n {
                        let frames = expected.iter().filter(|e| e.starts_with('a')).count();
                        let shed = playout.push(frame(next_id));
                        prop_assert_eq!(shed, frames >= cap);
                        if shed {
                            let oldest = expected.iter().position(|e| e.starts_with('a')).unwrap();
                            expected.remove(oldest);
                        }
                        expected.push(format!("a{next_id}"));
                        next_id += 1;
                    },
                    Op::Mark => {
                        let mark = format!("m{marks}");
                        marks += 1;
                        playout.push_mark(mark.clone());
                        expected.push(format!("m:{mark}"));
                    }
                    Op::Clear => {
                        let cleared = playout.clear();
                        // Leading marks (their audio already sent) survive a clear.
                        let kept = expected.iter().take_while(|e| e.starts_with('m')).count();
                        let dropped: Vec<String> = expected.drain(kept..).collect();
                        prop_assert_eq!(cleared.frames, dropped.iter().filter(|e| e.starts_with('a')).count());
                        let dropped_marks: Vec<String> =
                            dropped.iter().filter_map(|e| e.strip_prefix("m:")).map(str::to_owned).collect();
                        prop_assert_eq!(cleared.marks, dropped_marks);
                    }
                    Op::Take(n) => for _ in 0..n {
                        prop_assert_eq!(playout.pop().map(name), (!expected.is_empty()).then(|| expected.remove(0)));
                    },
                }
                let frames = expected.iter().filter(|e| e.starts_with('a')).count();
                prop_assert!(frames <= cap);
                prop_assert_eq!(playout.queued_frames(), frames);
                prop_assert_eq!(playout.is_empty(), expected.is_empty());
            }
            prop_assert_eq!(drain(&mut playout), expected);
        }
    }
}
