//! Streaming PCM16 resampling between the rates the pipeline meets: 8 kHz (G.711 telephony),
//! 16 kHz (most STT, the workload), 24 kHz (many TTS voices) and 48 kHz (WebRTC/Opus).
//!
//! Built on rubato's synchronous FFT resampler: every pair of these rates has a GCD of at least
//! 8000, so a 20 ms frame maps to exactly one 20 ms frame on the other side (`FixedSync::Both`),
//! and the resampler carries its overlap across calls, so frame borders are seamless. The
//! working buffers are allocated once per stream; [`Resampler::process_into`] does not allocate.

use crate::samples_per_frame;
use rubato::audioadapter_buffers::direct::SequentialSlice;
use rubato::{Fft, FixedSync, Resampler as _};

/// The sample rates the pipeline converts between.
pub const SUPPORTED_RATES: [u32; 4] = [8_000, 16_000, 24_000, 48_000];

/// Errors at golos-audio's boundary.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    #[error("unsupported sample rate {0} Hz (supported: 8000, 16000, 24000, 48000)")]
    UnsupportedRate(u32),
    #[error("frame of {got} samples where a 20 ms frame has {expected}")]
    FrameLength { expected: usize, got: usize },
    #[error("resampler: {0}")]
    Resampler(String),
}

/// One direction of one stream (e.g. a caller's 8 kHz audio up to 16 kHz). Stateful: feed
/// consecutive 20 ms frames of the same stream; use one instance per stream and direction.
pub struct Resampler {
    from: u32,
    to: u32,
    /// `None` when both rates are equal: frames are copied through unchanged.
    inner: Option<Fft<f32>>,
    input: Vec<f32>,
    output: Vec<f32>,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler").field("from", &self.from).field("to", &self.to).finish_non_exhaustive()
    }
}

impl Resampler {
    /// A resampler from `from` Hz to `to` Hz for mono 20 ms frames.
    pub fn new(from: u32, to: u32) -> Result<Self, AudioError> {
        for rate in [from, to] {
            if !SUPPORTED_RATES.contains(&rate) {
                return Err(AudioError::UnsupportedRate(rate));
            }
        }
        let (frame_in, frame_out) = (samples_per_frame(from), samples_per_frame(to));
        let inner = if from == to {
            None
        } else {
            // One sub-chunk: the FFT block then spans one frame, which keeps the delay at
            // half a frame while the anti-aliasing filter stays steep enough for speech.
            let fft = Fft::<f32>::new(from as usize, to as usize, frame_in, 1, FixedSync::Both)
                .map_err(|e| AudioError::Resampler(e.to_string()))?;
            if fft.input_frames_next() != frame_in || fft.output_frames_next() != frame_out {
                return Err(AudioError::Resampler(format!(
                    "chunking {}→{} is not one 20 ms frame each way",
                    fft.input_frames_next(),
                    fft.output_frames_next()
                )));
            }
            Some(fft)
        };
        Ok(Self { from, to, inner, input: vec![0.0; frame_in], output: vec![0.0; frame_out] })
    }

    pub const fn input_rate(&self) -> u32 {
        self.from
    }

    pub const fn output_rate(&self) -> u32 {
        self.to
    }

    /// Samples of one input frame (20 ms at the input rate).
    pub const fn input_frame_len(&self) -> usize {
        samples_per_frame(self.from)
    }

    /// Samples of one output frame (20 ms at the output rate).
    pub const fn output_frame_len(&self) -> usize {
        samples_per_frame(self.to)
    }

    /// How many output samples the stream lags behind its input (the FFT overlap). The
    /// first output frame starts with this much silence.
    pub fn delay(&self) -> usize {
        self.inner.as_ref().map_or(0, rubato::Resampler::output_delay)
    }

    /// Resamples one 20 ms frame into `out` (one 20 ms frame at the output rate). Does not
    /// allocate.
    pub fn process_into(&mut self, frame: &[i16], out: &mut [i16]) -> Result<(), AudioError> {
        let (frame_in, frame_out) = (self.input_frame_len(), self.output_frame_len());
        if frame.len() != frame_in {
            return Err(AudioError::FrameLength { expected: frame_in, got: frame.len() });
        }
        if out.len() != frame_out {
            return Err(AudioError::FrameLength { expected: frame_out, got: out.len() });
        }
        let Some(fft) = self.inner.as_mut() else {
            out.copy_from_slice(frame);
            return Ok(());
        };
        for (dst, &src) in self.input.iter_mut().zip(frame) {
            *dst = f32::from(src) / 32_768.0;
        }
        let input =
            SequentialSlice::new(&self.input[..], 1, frame_in).map_err(|e| AudioError::Resampler(e.to_string()))?;
        let mut output = SequentialSlice::new_mut(&mut self.output[..], 1, frame_out)
            .map_err(|e| AudioError::Resampler(e.to_string()))?;
        let (_, written) =
            fft.process_into_buffer(&input, &mut output, None).map_err(|e| AudioError::Resampler(e.to_string()))?;
        debug_assert_eq!(written, frame_out);
        for (dst, &src) in out.iter_mut().zip(&self.output) {
            // Saturate: the filter's ringing can overshoot a full-scale input slightly.
            *dst = (src * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16;
        }
        Ok(())
    }

    /// Resamples one 20 ms frame into a new buffer.
    pub fn process(&mut self, frame: &[i16]) -> Result<Vec<i16>, AudioError> {
        let mut out = vec![0; self.output_frame_len()];
        self.process_into(frame, &mut out)?;
        Ok(out)
    }

    /// Forgets the stream's history, e.g. after a flush, so stale audio does not bleed into
    /// the next utterance.
    pub fn reset(&mut self) {
        if let Some(fft) = self.inner.as_mut() {
            fft.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sine(rate: u32, frequency: f64, amplitude: f64, samples: usize) -> Vec<i16> {
        (0..samples)
            .map(|i| (amplitude * (2.0 * std::f64::consts::PI * frequency * i as f64 / f64::from(rate)).sin()) as i16)
            .collect()
    }

    fn run(resampler: &mut Resampler, input: &[i16]) -> Vec<i16> {
        input.chunks_exact(resampler.input_frame_len()).flat_map(|frame| resampler.process(frame).unwrap()).collect()
    }

    /// RMS difference between `output[lag..]` and `reference`, relative to the amplitude.
    fn relative_rms_error(reference: &[i16], output: &[i16], lag: usize, amplitude: f64) -> f64 {
        let pairs = output[lag..].iter().zip(reference).skip(64); // skip the filter's start-up
        let (sum, n) = pairs.fold((0.0, 0usize), |(sum, n), (&o, &r)| {
            let d = f64::from(o) - f64::from(r);
            (sum + d * d, n + 1)
        });
        (sum / n as f64).sqrt() / amplitude
    }

    #[test]
    fn a_sine_survives_8k_16k_8k() {
        let input = sine(8_000, 440.0, 10_000.0, 8_000); // one second, 50 frames
        let mut up = Resampler::new(8_000, 16_000).unwrap();
        let mut down = Resampler::new(16_000, 8_000).unwrap();
        let upsampled = run(&mut up, &input);
        assert_eq!(upsampled.len(), 16_000);
        let round_trip = run(&mut down, &upsampled);
        assert_eq!(round_trip.len(), 8_000);
        // Total delay at 8 kHz: the up-sampler's (in 16 kHz samples, halved) plus the
        // down-sampler's.
        let lag = up.delay() / 2 + down.delay();
        let error = relative_rms_error(&input, &round_trip, lag, 10_000.0);
        assert!(error < 0.01, "round-trip RMS error {error:.4} of the amplitude at lag {lag}");
        // And the reported lag is the best alignment, not a neighbour.
        for other in [lag - 1, lag + 1] {
            assert!(relative_rms_error(&input, &round_trip, other, 10_000.0) > error);
        }
    }

    #[test]
    fn frame_borders_do_not_click() {
        // A continuous 1 kHz tone: the largest sample-to-sample step of the output must stay
        // that of a clean sine (2π·f/fs·A), at frame borders as everywhere else.
        for (from, to) in [(8_000, 16_000), (16_000, 8_000), (16_000, 48_000), (48_000, 24_000), (24_000, 8_000)] {
            let mut resampler = Resampler::new(from, to).unwrap();
            let output = run(&mut resampler, &sine(from, 1_000.0, 8_000.0, from as usize / 2));
            let start = resampler.delay() + 64;
            let max_step = output[start..].windows(2).map(|w| (i32::from(w[1]) - i32::from(w[0])).abs()).max().unwrap();
            let clean = 2.0 * std::f64::consts::PI * 1_000.0 / f64::from(to) * 8_000.0;
            assert!(f64::from(max_step) < clean * 1.05 + 2.0, "{from}→{to}: step {max_step} vs {clean:.0}");
        }
    }

    #[test]
    fn twenty_ms_frames_stay_twenty_ms_for_every_pair() {
        for &from in &SUPPORTED_RATES {
            for &to in &SUPPORTED_RATES {
                let mut resampler = Resampler::new(from, to).unwrap();
                assert_eq!(resampler.input_frame_len(), from as usize / 50);
                assert_eq!(resampler.output_frame_len(), to as usize / 50);
                for _ in 0..5 {
                    let out = resampler.process(&vec![1_000; from as usize / 50]).unwrap();
                    assert_eq!(out.len(), to as usize / 50, "{from}→{to}");
                }
            }
        }
    }

    #[test]
    fn same_rate_is_a_copy_and_wrong_inputs_are_errors() {
        let mut same = Resampler::new(16_000, 16_000).unwrap();
        let frame = sine(16_000, 300.0, 5_000.0, 320);
        assert_eq!(same.process(&frame).unwrap(), frame);
        assert!(matches!(Resampler::new(44_100, 16_000), Err(AudioError::UnsupportedRate(44_100))));
        let mut up = Resampler::new(8_000, 16_000).unwrap();
        assert!(matches!(up.process(&[0; 100]), Err(AudioError::FrameLength { expected: 160, got: 100 })));
    }

    proptest! {
        #[test]
        fn output_length_is_frames_times_the_output_frame(
            from in proptest::sample::select(SUPPORTED_RATES.to_vec()),
            to in proptest::sample::select(SUPPORTED_RATES.to_vec()),
            frames in 0usize..20,
            seed in any::<u16>(),
        ) {
            let mut resampler = Resampler::new(from, to).unwrap();
            let input: Vec<i16> = (0..frames * from as usize / 50).map(|i| (i as i16).wrapping_mul(seed as i16)).collect();
            let output = run(&mut resampler, &input);
            prop_assert_eq!(output.len(), frames * to as usize / 50);
        }
    }
}
