//! Audio primitives of the call pipeline. Pure and sans-IO: samples in, samples or events
//! out, time passed in as a sample count — so the call engine and its tests drive them on a
//! virtual clock.

pub mod dtmf;
pub mod frame;
pub mod g711;
pub mod resample;
pub mod vad;

pub use resample::{AudioError, Resampler, SUPPORTED_RATES};

/// Samples per 20 ms frame at `sample_rate` Hz.
pub const fn samples_per_frame(sample_rate: u32) -> usize {
    (sample_rate / 50) as usize
}
