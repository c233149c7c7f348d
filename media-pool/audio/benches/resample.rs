//! Resampling cost per 20 ms frame, for the pairs a call meets.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use golos_audio::Resampler;
use std::hint::black_box;

fn resample(c: &mut Criterion) {
    let mut group = c.benchmark_group("resample");
    group.throughput(Throughput::Elements(1));
    for (from, to) in [(8_000, 16_000), (16_000, 8_000), (24_000, 16_000), (48_000, 16_000), (16_000, 48_000)] {
        let mut resampler = Resampler::new(from, to).unwrap();
        let input: Vec<i16> = (0..from as usize / 50).map(|i| ((i as f64 * 0.3).sin() * 8_000.0) as i16).collect();
        let mut output = vec![0i16; to as usize / 50];
        group.bench_function(format!("{}k_to_{}k_per_20ms_frame", from / 1_000, to / 1_000), |b| {
            b.iter(|| resampler.process_into(black_box(&input), &mut output).unwrap());
        });
    }
    group.finish();
}

criterion_group!(benches, resample);
criterion_main!(benches);
