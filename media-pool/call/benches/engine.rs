//! Engine cost per 20 ms frame of a WORKLOAD turn, and chunker cost per token.
//!
//! The turn is recorded once with the virtual-clock harness (the engine's exact sequence of
//! inputs and deadlines) and replayed against fresh engines, so only the engine is measured:
//! no harness, no event queue, no provider simulation.

#[path = "../tests/support/mod.rs"]
mod support;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use golos_call::{CallConfig, CallEngine, Chunker, Frame};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{input_of, Ev, Sim};

fn record_turn() -> (Vec<(Duration, Option<Ev>)>, usize, u64) {
    let mut sim = Sim::workload();
    sim.utterance(1_000, "what are your opening hours");
    sim.run_until(9_999);
    let plays = sim.play_times();
    assert_eq!(plays.len(), 300);
    // 20 ms frames of call time the turn spans: utterance start to the last bot frame.
    let frames = (plays[299] - 1_000) / 20 + 1;
    (sim.trace, sim.log.len(), frames)
}

fn replay(engine: &mut CallEngine, trace: &[(Duration, Option<Ev>)], t0: Instant, frame: &Frame) -> usize {
    let mut outputs = 0;
    for (at, ev) in trace {
        match ev {
            Some(ev) => engine.handle(input_of(ev, t0, frame), t0 + *at),
            None => engine.handle_timeout(t0 + *at),
        }
        while let Some(output) = engine.poll_output() {
            black_box(&output);
            outputs += 1;
        }
    }
    outputs
}

fn engine_turn(c: &mut Criterion) {
    let (trace, expected_outputs, frames) = record_turn();
    let config = Arc::new(CallConfig { greeting: None, ..CallConfig::english() });
    let frame: Frame = Arc::from(vec![3_000i16; 320]);
    let t0 = Instant::now();
    let mut check = CallEngine::new(Arc::clone(&config), t0);
    assert_eq!(replay(&mut check, &trace, t0, &frame), expected_outputs, "the replay diverged from the recording");

    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(frames));
    group.bench_function("workload_turn_per_20ms_frame", |b| {
        b.iter_batched(
            || CallEngine::new(Arc::clone(&config), t0),
            |mut engine| {
                black_box(replay(&mut engine, &trace, t0, &frame));
                engine
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn chunker(c: &mut Criterion) {
    let mut group = c.benchmark_group("chunker");
    group.throughput(Throughput::Elements(support::WORKLOAD_TOKENS.len() as u64));
    let mut chunker = Chunker::new(40);
    group.bench_function("workload_per_token", |b| {
        b.iter(|| {
            chunker.reset();
            let mut chunks = 0usize;
            for token in support::WORKLOAD_TOKENS {
                chunker.push(black_box(token), |chunk| {
                    black_box(chunk);
                    chunks += 1;
                });
            }
            chunker.finish(|chunk| {
                black_box(chunk);
                chunks += 1;
            });
            chunks
        });
    });
    group.finish();
}

criterion_group!(benches, engine_turn, chunker);
criterion_main!(benches);
