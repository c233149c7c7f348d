//! 20 ms framing: transports deliver audio in whatever chunk sizes their network produced;
//! the pipeline works on fixed 20 ms frames.

use crate::samples_per_frame;

/// Accumulates samples and hands out complete 20 ms frames; never loses or reorders a
/// sample, and keeps the remainder for the next push.
#[derive(Debug, Clone)]
pub struct Framer {
    frame_len: usize,
    pending: Vec<i16>,
}

impl Framer {
    pub fn new(sample_rate: u32) -> Self {
        let frame_len = samples_per_frame(sample_rate);
        assert!(frame_len > 0, "sample rate below 50 Hz");
        Self { frame_len, pending: Vec::with_capacity(frame_len * 2) }
    }

    pub const fn frame_len(&self) -> usize {
        self.frame_len
    }

    /// Appends `samples` and returns every frame now complete, in order.
    pub fn push(&mut self, samples: &[i16]) -> Vec<Vec<i16>> {
        self.pending.extend_from_slice(samples);
        let complete = self.pending.len() / self.frame_len;
        let frames = self.pending.chunks_exact(self.frame_len).take(complete).map(<[i16]>::to_vec).collect();
        self.pending.drain(..complete * self.frame_len);
        frames
    }

    /// Samples waiting for the rest of their frame.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The last partial frame padded with silence (end of stream), if any.
    pub fn flush(&mut self) -> Option<Vec<i16>> {
        if self.pending.is_empty() {
            return None;
        }
        let mut last = std::mem::take(&mut self.pending);
        last.resize(self.frame_len, 0);
        Some(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frame_sizes_per_rate() {
        assert_eq!(Framer::new(8_000).frame_len(), 160);
        assert_eq!(Framer::new(16_000).frame_len(), 320);
        assert_eq!(Framer::new(24_000).frame_len(), 480);
        assert_eq!(Framer::new(48_000).frame_len(), 960);
    }

    proptest! {
        #[test]
        fn any_chunking_yields_the_same_samples_in_order(chunks in proptest::collection::vec(proptest::collection::vec(any::<i16>(), 0..500), 0..30)) {
            let mut framer = Framer::new(8_000);
            let mut out = Vec::new();
            for chunk in &chunks {
                for frame in framer.push(chunk) {
                    prop_assert_eq!(frame.len(), 160);
                    out.extend(frame);
                }
            }
            let input: Vec<i16> = chunks.concat();
            prop_assert_eq!(out.len() + framer.pending(), input.len());
            prop_assert_eq!(&out[..], &input[..out.len()]);
        }
    }
}
