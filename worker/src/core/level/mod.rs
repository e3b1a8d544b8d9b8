//! Audio levels (sans-IO): RMS and peak per channel over 100 ms windows, and the dead-air
//! detector that reads them.
//!
//! [`decode::FrameDecoder`] turns the codec frames a source sends into PCM (symphonia, pure Rust);
//! [`Meter`] folds the PCM into [`Window`]s aligned on the sample clock, so a window is exactly
//! 100 ms of content whatever the frame size; [`silence::Detector`] decides dead air from them.

pub mod chunks;
pub mod decode;
pub mod points;
pub mod silence;

/// Length of one level window.
pub const WINDOW_MS: u32 = 100;

/// The level reported for digital silence: `20·log10(0)` is minus infinity, and a finite floor
/// keeps gauges, JSON and comparisons simple. Quieter than any real encoder's noise floor.
pub const FLOOR_DBFS: f32 = -120.0;

/// Full-scale-relative level of a linear amplitude (1.0 = full scale).
pub fn dbfs(amplitude: f32) -> f32 {
    if amplitude > 0.0 && amplitude.is_finite() {
        (20.0 * amplitude.log10()).max(FLOOR_DBFS)
    } else {
        FLOOR_DBFS
    }
}

/// One channel's level over a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChannelLevel {
    pub rms_dbfs: f32,
    pub peak_dbfs: f32,
}

/// The levels of 100 ms of audio.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Index of the window's first sample since the meter started (at the source's rate).
    pub first_sample: u64,
    /// One entry per channel.
    pub channels: Vec<ChannelLevel>,
}

impl Window {
    /// The loudest channel's RMS: "audio on any channel counts as audio".
    pub fn loudest_rms_dbfs(&self) -> f32 {
        self.channels
            .iter()
            .map(|c| c.rms_dbfs)
            .fold(FLOOR_DBFS, f32::max)
    }

    /// The loudest channel's peak.
    pub fn loudest_peak_dbfs(&self) -> f32 {
        self.channels
            .iter()
            .map(|c| c.peak_dbfs)
            .fold(FLOOR_DBFS, f32::max)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Accumulator {
    sum_squares: f64,
    peak: f32,
}

/// Folds planar PCM into 100 ms windows. The window length is counted in samples at the
/// source's rate, so windows stay exact over hours (44 100 Hz: 4 410 samples each).
#[derive(Debug)]
pub struct Meter {
    sample_rate: u32,
    window_len: u32,
    filled: u32,
    next_first_sample: u64,
    acc: Vec<Accumulator>,
}

impl Meter {
    pub fn new(sample_rate: u32, channels: usize) -> Meter {
        Meter {
            sample_rate,
            window_len: (sample_rate * WINDOW_MS / 1000).max(1),
            filled: 0,
            next_first_sample: 0,
            acc: vec![Accumulator::default(); channels.max(1)],
        }
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    pub fn channels(&self) -> usize {
        self.acc.len()
    }

    /// Adds one block of planar samples (`planes[channel][frame]`, full scale ±1.0) and returns
    /// the windows it completed. Planes beyond the meter's channel count are ignored; a short
    /// plane counts as silence for its missing frames.
    pub fn push_planar(&mut self, planes: &[&[f32]]) -> Vec<Window> {
        let frames = planes.iter().map(|p| p.len()).max().unwrap_or(0);
        let mut done = Vec::new();
        let mut offset = 0;
        while offset < frames {
            let take = ((self.window_len - self.filled) as usize).min(frames - offset);
            for (acc, plane) in self.acc.iter_mut().zip(planes) {
                let end = (offset + take).min(plane.len());
                for &s in plane.get(offset..end).unwrap_or_default() {
                    let s = if s.is_finite() { s } else { 0.0 };
                    acc.sum_squares += f64::from(s) * f64::from(s);
                    acc.peak = acc.peak.max(s.abs());
                }
            }
            self.filled += take as u32;
            offset += take;
            if self.filled == self.window_len {
                done.push(self.finish_window());
            }
        }
        done
    }

    fn finish_window(&mut self) -> Window {
        let n = f64::from(self.window_len);
        let channels = self
            .acc
            .iter_mut()
            .map(|acc| {
                let level = ChannelLevel {
                    rms_dbfs: dbfs((acc.sum_squares / n).sqrt() as f32),
                    peak_dbfs: dbfs(acc.peak),
                };
                *acc = Accumulator::default();
                level
            })
            .collect();
        let window = Window {
            first_sample: self.next_first_sample,
            channels,
        };
        self.next_first_sample += u64::from(self.window_len);
        self.filled = 0;
        window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, freq: f32, amplitude: f32, frames: usize) -> Vec<f32> {
        (0..frames)
            .map(|i| amplitude * (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin())
            .collect()
    }

    #[test]
    fn dbfs_of_full_scale_half_and_silence() {
        assert_eq!(dbfs(1.0), 0.0);
        assert!((dbfs(0.5) + 6.0206).abs() < 1e-3);
        assert_eq!(dbfs(0.0), FLOOR_DBFS);
        assert_eq!(dbfs(f32::NAN), FLOOR_DBFS);
        assert_eq!(dbfs(1e-30), FLOOR_DBFS);
    }

    #[test]
    fn windows_are_100ms_of_samples_across_uneven_blocks() {
        let mut meter = Meter::new(44_100, 2);
        let left = sine(44_100, 1000.0, 0.5, 44_100);
        let right = vec![0.0; 44_100];
        let mut windows = Vec::new();
        // MP3-sized blocks that do not divide a window.
        for start in (0..44_100).step_by(1152) {
            let end = (start + 1152).min(44_100);
            windows.extend(meter.push_planar(&[&left[start..end], &right[start..end]]));
        }
        assert_eq!(windows.len(), 10);
        for (i, w) in windows.iter().enumerate() {
            assert_eq!(w.first_sample, i as u64 * 4410);
            // A sine's RMS is its amplitude over √2: 0.5/√2 ≈ -9.03 dBFS; its peak ≈ -6.02.
            assert!((w.channels[0].rms_dbfs + 9.03).abs() < 0.1, "{w:?}");
            assert!((w.channels[0].peak_dbfs + 6.02).abs() < 0.1, "{w:?}");
            assert_eq!(w.channels[1].rms_dbfs, FLOOR_DBFS);
            assert_eq!(w.loudest_rms_dbfs(), w.channels[0].rms_dbfs);
        }
    }

    #[test]
    fn non_finite_and_missing_samples_count_as_silence() {
        let mut meter = Meter::new(8_000, 2);
        let left = vec![f32::NAN; 800];
        let right = vec![f32::INFINITY; 400];
        let w = meter.push_planar(&[&left, &right]);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].loudest_rms_dbfs(), FLOOR_DBFS);
        assert_eq!(w[0].loudest_peak_dbfs(), FLOOR_DBFS);
        assert!(meter.push_planar(&[]).is_empty());
    }
}
