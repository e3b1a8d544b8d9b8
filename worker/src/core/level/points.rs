//! The levels a chunk carries (sans-IO): one point per 100 ms window, RMS and peak per channel
//! quantized to half a decibel, so slaves, HLS and players get the level of any part of the
//! buffer without decoding audio. Measuring chunks is [`super::chunks`]'s.

use super::{FLOOR_DBFS, Window};

/// Quantization step of the stored levels.
pub const STEP_DB: f32 = 0.5;
/// Channels stored per point: a meter needs left and right; the first two of a surround stream.
pub const MAX_CHANNELS: usize = 2;

/// The level of one 100 ms window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    /// The window's first sample, counted from the chunk's first sample (negative: the window
    /// began in the previous chunk and ended in this one).
    pub offset: i32,
    /// Per channel, in [`STEP_DB`] steps below full scale (0 = 0 dBFS, 240 = −120 dBFS).
    pub rms: [u8; MAX_CHANNELS],
    pub peak: [u8; MAX_CHANNELS],
}

/// The points of the windows that ended in one chunk.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Levels {
    /// 1 or 2; the unused entries of a mono point are 0.
    pub channels: u8,
    pub points: Vec<Point>,
}

/// A level in dBFS to its stored step.
pub fn quantize(dbfs: f32) -> u8 {
    let steps = (-dbfs / STEP_DB).round();
    steps.clamp(0.0, -FLOOR_DBFS / STEP_DB) as u8
}

/// A stored step back to dBFS.
pub fn dequantize(step: u8) -> f32 {
    -f32::from(step) * STEP_DB
}

impl Levels {
    pub(crate) fn from_windows(windows: &[Window], chunk_first_sample: u64) -> Levels {
        let channels = windows
            .iter()
            .map(|w| w.channels.len().min(MAX_CHANNELS))
            .max()
            .unwrap_or(0);
        let points = windows
            .iter()
            .map(|w| {
                let mut p = Point {
                    offset: (w.first_sample as i64 - chunk_first_sample as i64)
                        .clamp(i64::from(i32::MIN), i64::from(i32::MAX))
                        as i32,
                    rms: [0; MAX_CHANNELS],
                    peak: [0; MAX_CHANNELS],
                };
                for (i, c) in w.channels.iter().take(MAX_CHANNELS).enumerate() {
                    p.rms[i] = quantize(c.rms_dbfs);
                    p.peak[i] = quantize(c.peak_dbfs);
                }
                p
            })
            .collect();
        Levels {
            channels: channels as u8,
            points,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantization_round_trips_within_half_a_step() {
        for db in [0.0, -0.2, -6.0, -20.26, -50.0, -119.9, -120.0] {
            let back = dequantize(quantize(db));
            assert!((back - db).abs() <= STEP_DB / 2.0 + 1e-4, "{db} -> {back}");
        }
        assert_eq!(quantize(3.0), 0, "above full scale is full scale");
        assert_eq!(quantize(-500.0), 240);
        assert_eq!(quantize(f32::NAN), 0);
    }

    #[test]
    fn points_are_placed_relative_to_the_chunk() {
        use super::super::ChannelLevel;
        let w = |first_sample, rms_dbfs| Window {
            first_sample,
            channels: vec![
                ChannelLevel {
                    rms_dbfs,
                    peak_dbfs: rms_dbfs + 3.0,
                },
                ChannelLevel {
                    rms_dbfs: FLOOR_DBFS,
                    peak_dbfs: FLOOR_DBFS,
                },
            ],
        };
        let l = Levels::from_windows(&[w(4000, -20.0), w(8410, -30.0)], 4410);
        assert_eq!(l.channels, 2);
        assert_eq!(l.points[0].offset, -410);
        assert_eq!(l.points[1].offset, 4000);
        assert_eq!(l.points[0].rms, [40, 240]);
        assert_eq!(l.points[0].peak, [34, 240]);
    }
}
