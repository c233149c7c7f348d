//! The per-frame path does not allocate. Counted with a counting global allocator in this
//! test binary only (allocation-counter), over a replay of the engine's exact inputs.

mod support;

use golos_call::{CallConfig, CallEngine, Event, Frame, Output};
use std::sync::Arc;
use support::{input_of, Ev, Sim};

#[test]
fn steady_state_frames_and_ticks_do_not_allocate() {
    // Two WORKLOAD turns; the first warms the engine's reusable buffers up.
    let mut sim = Sim::new(CallConfig { greeting: None, ..CallConfig::english() });
    sim.utterance(1_000, "what are your opening hours");
    sim.run_until(10_080);
    let second = 10_080;
    sim.utterance(second, "and on holidays");
    sim.run_until(20_000);
    assert_eq!(sim.play_times().len(), 600);

    let t0 = std::time::Instant::now();
    let frame: Frame = Arc::from(vec![3_000i16; 320]);
    let mut engine = CallEngine::new(Arc::new(CallConfig { greeting: None, ..CallConfig::english() }), t0);
    let (mut frame_allocs, mut frame_steps, mut other_allocs) = (0, 0, 0);
    for (at, ev) in &sim.trace {
        let per_frame = matches!(ev, None | Some(Ev::Audio(_)));
        let mut turn_ended = false;
        let info = allocation_counter::measure(|| {
            match ev {
                Some(ev) => engine.handle(input_of(ev, t0, &frame), t0 + *at),
                None => engine.handle_timeout(t0 + *at),
            }
            while let Some(output) = engine.poll_output() {
                turn_ended |= matches!(output, Output::Event(Event::AgentDone { .. } | Event::Turn(_)));
                drop(output);
            }
        });
        if at.as_millis() >= u128::from(second) {
            if per_frame {
                assert!(
                    info.count_total == 0 || turn_ended,
                    "a frame step at {at:?} ({ev:?}) allocated {} times",
                    info.count_total
                );
                frame_allocs += info.count_total;
                frame_steps += 1;
            } else {
                other_allocs += info.count_total;
            }
        }
    }
    println!("second turn: {frame_steps} frame/tick steps, {frame_allocs} allocations; other inputs: {other_allocs}");
    assert!(frame_steps >= 590, "{frame_steps}");
    // Two allocations per turn, none per frame: the boxed turn metrics and the assistant's
    // transcript, both when the turn's last frame plays.
    assert_eq!(frame_allocs, 2);
}

#[test]
fn heap_per_call_after_a_turn() {
    // The engine's own heap after one WORKLOAD turn (context, reusable buffers), with the
    // provider frames it no longer holds excluded: what a worker keeps per idle call.
    let mut sim = Sim::workload();
    sim.utterance(1_000, "what are your opening hours");
    sim.run_until(10_000);
    let t0 = std::time::Instant::now();
    let frame: Frame = Arc::from(vec![3_000i16; 320]);
    let config = Arc::new(CallConfig { greeting: None, ..CallConfig::english() });
    let mut engine = None;
    let info = allocation_counter::measure(|| {
        let mut call = CallEngine::new(Arc::clone(&config), t0);
        for (at, ev) in &sim.trace {
            match ev {
                Some(ev) => call.handle(input_of(ev, t0, &frame), t0 + *at),
                None => call.handle_timeout(t0 + *at),
            }
            while let Some(output) = call.poll_output() {
                drop(output);
            }
        }
        engine = Some(call);
    });
    let inline = std::mem::size_of::<CallEngine>();
    println!("size_of Output {}", std::mem::size_of::<Output>());
    println!(
        "after one turn: {} heap bytes live, {inline} inline, peak {} heap bytes",
        info.bytes_current, info.bytes_max
    );
    assert!(info.bytes_current < 16 * 1024, "{}", info.bytes_current);
    drop(engine);
}
