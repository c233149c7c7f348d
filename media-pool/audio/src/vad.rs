//! Voice activity detection. The pipeline needs *events* (speech started, speech ended)
//! with their times, not per-frame booleans; the detector is pluggable behind [`Vad`].

/// What a detector reports, at a time given in milliseconds of audio fed so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEvent {
    /// Speech began; `at_ms` is the start of the first speech frame (onset, not detection).
    SpeechStart { at_ms: u64 },
    /// Speech ended; `at_ms` is the end of the last speech frame.
    SpeechEnd { at_ms: u64 },
}

pub trait Vad: Send {
    /// Feeds one 20 ms frame; returns an event when the state changes.
    fn process(&mut self, frame: &[i16]) -> Option<VadEvent>;
    fn is_speaking(&self) -> bool;
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EnergyVadConfig {
    /// Speech must exceed the noise floor by this many dB.
    pub margin_db: f32,
    /// Absolute floor below which nothing is speech (dBFS).
    pub min_speech_dbfs: f32,
    /// Consecutive speech frames needed to start (3 × 20 ms = 60 ms).
    pub start_frames: u32,
    /// Consecutive quiet frames needed to end (hangover; 15 × 20 ms = 300 ms).
    pub end_frames: u32,
}

impl Default for EnergyVadConfig {
    fn default() -> Self {
        Self { margin_db: 12.0, min_speech_dbfs: -45.0, start_frames: 3, end_frames: 15 }
    }
}

/// Energy detector with an adaptive noise floor: cheap (one pass over the frame), robust
/// enough for telephony, and replaceable by a model-based detector behind the same trait.
#[derive(Debug, Clone)]
pub struct EnergyVad {
    config: EnergyVadConfig,
    noise_floor_dbfs: f32,
    speaking: bool,
    run: u32,
    frames_seen: u64,
}

const FRAME_MS: u64 = 20;

impl EnergyVad {
    pub fn new(config: EnergyVadConfig) -> Self {
        Self { config, noise_floor_dbfs: -60.0, speaking: false, run: 0, frames_seen: 0 }
    }

    fn is_loud(&self, level: f32) -> bool {
        level >= self.config.min_speech_dbfs && level >= self.noise_floor_dbfs + self.config.margin_db
    }
}

impl Default for EnergyVad {
    fn default() -> Self {
        Self::new(EnergyVadConfig::default())
    }
}

/// RMS level of a frame in dB relative to full scale (-96 for digital silence).
pub fn level_dbfs(frame: &[i16]) -> f32 {
    if frame.is_empty() {
        return -96.0;
    }
    let energy: f64 = frame.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / frame.len() as f64;
    let rms = energy.sqrt() / 32_768.0;
    if rms <= 1e-5 {
        -96.0
    } else {
        (20.0 * rms.log10()) as f32
    }
}

impl Vad for EnergyVad {
    fn process(&mut self, frame: &[i16]) -> Option<VadEvent> {
        let level = level_dbfs(frame);
        self.frames_seen += 1;
        let now_ms = self.frames_seen * FRAME_MS;
        let loud = self.is_loud(level);
        if !loud {
            // Track the floor quickly downwards and slowly upwards, only outside speech.
            let rate = if level < self.noise_floor_dbfs { 0.5 } else { 0.05 };
            if !self.speaking {
                self.noise_floor_dbfs += (level - self.noise_floor_dbfs) * rate;
            }
        }
        if loud == self.speaking {
            self.run = 0;
            return None;
        }
        self.run += 1;
        if !self.speaking && self.run >= self.config.start_frames {
            self.speaking = true;
            self.run = 0;
            return Some(VadEvent::SpeechStart { at_ms: now_ms - u64::from(self.config.start_frames) * FRAME_MS });
        }
        if self.speaking && self.run >= self.config.end_frames {
            self.speaking = false;
            self.run = 0;
            return Some(VadEvent::SpeechEnd { at_ms: now_ms - u64::from(self.config.end_frames) * FRAME_MS });
        }
        None
    }

    fn is_speaking(&self) -> bool {
        self.speaking
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(amplitude: f64, frames: usize) -> Vec<Vec<i16>> {
        (0..frames)
            .map(|f| {
                (0..160)
                    .map(|i| {
                        let t = (f * 160 + i) as f64 / 8_000.0;
                        (amplitude * (2.0 * std::f64::consts::PI * 300.0 * t).sin()) as i16
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn detects_onset_and_end_with_exact_times() {
        let mut vad = EnergyVad::default();
        let mut events = Vec::new();
        let audio: Vec<Vec<i16>> = tone(30.0, 25).into_iter().chain(tone(8_000.0, 40)).chain(tone(30.0, 30)).collect();
        for frame in &audio {
            events.extend(vad.process(frame));
        }
        // Speech occupies frames 25..65, i.e. 500 ms to 1300 ms of audio.
        assert_eq!(events, vec![VadEvent::SpeechStart { at_ms: 500 }, VadEvent::SpeechEnd { at_ms: 1_300 }]);
    }

    #[test]
    fn a_short_click_is_not_speech() {
        let mut vad = EnergyVad::default();
        let audio: Vec<Vec<i16>> = tone(30.0, 10).into_iter().chain(tone(8_000.0, 2)).chain(tone(30.0, 10)).collect();
        assert!(audio.iter().all(|f| vad.process(f).is_none()));
    }

    #[test]
    fn levels() {
        assert!((level_dbfs(&[i16::MAX; 160]) - 0.0).abs() < 0.01);
        assert!((level_dbfs(&[0; 160]) + 96.0).abs() < f32::EPSILON);
    }
}
