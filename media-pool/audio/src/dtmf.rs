//! In-band DTMF detection (Goertzel), for transports that carry key presses as audio rather
//! than RFC 4733 events: browsers, some SIP trunks, recorded calls.

const ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
const COLUMNS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYS: [[char; 4]; 4] = [['1', '2', '3', 'A'], ['4', '5', '6', 'B'], ['7', '8', '9', 'C'], ['*', '0', '#', 'D']];

/// Power of one frequency in a block of samples (Goertzel's algorithm), normalised by the
/// block's length so thresholds do not depend on the frame size.
fn goertzel_power(samples: &[i16], frequency: f64, sample_rate: f64) -> f64 {
    let coefficient = 2.0 * (2.0 * std::f64::consts::PI * frequency / sample_rate).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &sample in samples {
        let s0 = f64::from(sample) / 32_768.0 + coefficient * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coefficient * s1 * s2;
    power / (samples.len() as f64 * samples.len() as f64)
}

/// Detects key presses frame by frame. A key is reported once, when its tone pair has been
/// present for two consecutive frames (40 ms, the ITU minimum), and again only after it was
/// released.
#[derive(Debug, Clone)]
pub struct DtmfDetector {
    sample_rate: f64,
    candidate: Option<char>,
    reported: Option<char>,
}

impl DtmfDetector {
    pub fn new(sample_rate: u32) -> Self {
        Self { sample_rate: f64::from(sample_rate), candidate: None, reported: None }
    }

    /// Feeds one 20 ms frame; returns a newly pressed key.
    pub fn process(&mut self, frame: &[i16]) -> Option<char> {
        let key = self.classify(frame);
        let confirmed = key.is_some() && key == self.candidate;
        self.candidate = key;
        if key.is_none() {
            self.reported = None;
            return None;
        }
        if confirmed && self.reported != key {
            self.reported = key;
            return key;
        }
        None
    }

    /// The key whose tone pair dominates this frame, if any.
    fn classify(&self, frame: &[i16]) -> Option<char> {
        let total: f64 =
            frame.iter().map(|&s| (f64::from(s) / 32_768.0).powi(2)).sum::<f64>() / frame.len().max(1) as f64;
        if total < 1e-5 {
            return None; // about -50 dBFS: silence or line noise
        }
        let rows: Vec<f64> = ROWS.iter().map(|&f| goertzel_power(frame, f, self.sample_rate)).collect();
        let columns: Vec<f64> = COLUMNS.iter().map(|&f| goertzel_power(frame, f, self.sample_rate)).collect();
        let (row, row_power) = strongest(&rows)?;
        let (column, column_power) = strongest(&columns)?;
        // The other tones of each group must be clearly weaker (rules out speech and chords).
        let row_clear = rows.iter().enumerate().all(|(i, &p)| i == row || p * 6.0 < row_power);
        let column_clear = columns.iter().enumerate().all(|(i, &p)| i == column || p * 6.0 < column_power);
        // Twist: the two tones within 8 dB of each other.
        let twist_ok = row_power < column_power * 6.3 && column_power < row_power * 6.3;
        // The pair must carry a good share of the frame's energy (for a clean pair the two
        // Goertzel powers add up to half the mean square).
        let pair_dominates = (row_power + column_power) * 4.0 > total * 0.5;
        (row_clear && column_clear && twist_ok && pair_dominates).then(|| KEYS[row][column])
    }
}

fn strongest(powers: &[f64]) -> Option<(usize, f64)> {
    powers.iter().copied().enumerate().max_by(|a, b| a.1.total_cmp(&b.1))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `frames` 20 ms frames of the key's two tones at 8 kHz, each at -10 dBFS.
    pub(crate) fn key_tone(key: char, start_frame: usize, frames: usize) -> Vec<Vec<i16>> {
        let (row, column) =
            (0..4).flat_map(|r| (0..4).map(move |c| (r, c))).find(|&(r, c)| KEYS[r][c] == key).expect("a DTMF key");
        (start_frame..start_frame + frames)
            .map(|f| {
                (0..160)
                    .map(|i| {
                        let t = (f * 160 + i) as f64 / 8_000.0;
                        let v = (2.0 * std::f64::consts::PI * ROWS[row] * t).sin()
                            + (2.0 * std::f64::consts::PI * COLUMNS[column] * t).sin();
                        (v * 0.3 * 32_767.0 / 2.0) as i16
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn every_key_is_detected_once_per_press() {
        let mut detector = DtmfDetector::new(8_000);
        for key in "123A456B789C*0#D".chars() {
            let mut pressed = Vec::new();
            for frame in key_tone(key, 0, 5).into_iter().chain(std::iter::repeat_n(vec![0i16; 160], 2)) {
                pressed.extend(detector.process(&frame));
            }
            assert_eq!(pressed, vec![key]);
        }
    }

    #[test]
    fn a_press_shorter_than_40_ms_or_a_single_tone_is_ignored() {
        let mut detector = DtmfDetector::new(8_000);
        let short: Vec<Vec<i16>> = key_tone('5', 0, 1).into_iter().chain([vec![0; 160]]).collect();
        assert!(short.iter().all(|f| detector.process(f).is_none()));
        let single: Vec<i16> = (0..160)
            .map(|i| ((2.0 * std::f64::consts::PI * 770.0 * f64::from(i) / 8_000.0).sin() * 10_000.0) as i16)
            .collect();
        assert!((0..5).all(|_| detector.process(&single).is_none()));
    }

    #[test]
    fn survives_g711_and_noise() {
        let mut detector = DtmfDetector::new(8_000);
        let mut seed = 7u32;
        let mut pressed = Vec::new();
        for frame in key_tone('9', 0, 4) {
            let noisy: Vec<i16> = frame
                .iter()
                .map(|&s| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    let noise = ((seed >> 16) as i16 % 600) - 300;
                    crate::g711::alaw_decode(crate::g711::alaw_encode(s.saturating_add(noise)))
                })
                .collect();
            pressed.extend(detector.process(&noisy));
        }
        assert_eq!(pressed, vec!['9']);
    }
}
