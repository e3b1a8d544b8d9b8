//! The levels a chunk carries (sans-IO): one point per 100 ms window, RMS and peak per channel
//! quantized to half a decibel, so slaves, HLS and players get the level of any part of the
//! buffer without decoding audio.
//!
//! [`ChunkLeveler`] decodes a stream's chunks in order and measures them; it keeps the decoder
//! across chunks (an MP3 frame borrows bits from the previous ones) and starts over at a
//! discontinuity or a codec change.

use std::sync::Arc;

use super::decode::FrameDecoder;
use super::{FLOOR_DBFS, WINDOW_MS, Window};
use crate::core::chunk::Chunk;
use crate::core::codec::{Format, frames_of};

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
    fn from_windows(windows: &[Window], chunk_first_sample: u64) -> Levels {
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

/// Measures a stream's chunks in order.
#[derive(Default)]
pub struct ChunkLeveler {
    decoder: FrameDecoder,
    codec: Option<Arc<str>>,
    /// Samples decoded since the decoder started: the next chunk's first sample.
    next_sample: u64,
}

impl ChunkLeveler {
    pub fn new() -> ChunkLeveler {
        ChunkLeveler::default()
    }

    /// The levels of the windows that end in `chunk` (none if its codec cannot be decoded).
    pub fn measure(&mut self, chunk: &Chunk) -> Levels {
        if chunk.is_discontinuity() || self.codec.as_deref() != Some(&*chunk.codec) {
            self.decoder = FrameDecoder::new();
            self.codec = Some(chunk.codec.clone());
            self.next_sample = 0;
        }
        let first = self.next_sample;
        self.next_sample += u64::from(chunk.samples);
        let Some(format) = format_of(&chunk.codec) else {
            return Levels::default();
        };
        let mut windows = Vec::with_capacity(
            (u64::from(chunk.duration) / (u64::from(WINDOW_MS) * 1000) + 1) as usize,
        );
        for frame in frames_of(format, &chunk.data) {
            match self.decoder.push(&frame) {
                Ok(w) => windows.extend(w),
                // An encoding the decoder refuses: no levels, the audio is served as it is.
                Err(_) => return Levels::default(),
            }
        }
        Levels::from_windows(&windows, first)
    }
}

/// A point placed on the content clock, as the levels API returns it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TimedPoint {
    /// Content time of the window's first sample, microseconds since the Unix epoch.
    #[serde(skip)]
    pub ts: i64,
    /// The same as RFC 3339, for people and scripts.
    pub time: String,
    pub rms_dbfs: Vec<f32>,
    pub peak_dbfs: Vec<f32>,
}

/// The points of `chunks` whose window starts in `[from, to)`, in time order.
pub fn timed_points<'a>(
    chunks: impl IntoIterator<Item = &'a Chunk>,
    from: i64,
    to: i64,
) -> Vec<TimedPoint> {
    let mut out = Vec::new();
    for chunk in chunks {
        let Some(levels) = &chunk.levels else {
            continue;
        };
        if chunk.samples == 0 || chunk.duration == 0 {
            continue;
        }
        // Exact for the whole chunk: its duration is its samples at the codec's rate.
        let us_per_sample = f64::from(chunk.duration) / f64::from(chunk.samples);
        let channels = usize::from(levels.channels);
        for p in &levels.points {
            let ts = chunk.ts + (f64::from(p.offset) * us_per_sample).round() as i64;
            if ts < from || ts >= to {
                continue;
            }
            out.push(TimedPoint {
                ts,
                time: crate::time::rfc3339(ts),
                rms_dbfs: p.rms[..channels].iter().map(|&q| dequantize(q)).collect(),
                peak_dbfs: p.peak[..channels].iter().map(|&q| dequantize(q)).collect(),
            });
        }
    }
    out
}

/// The container format of a codec key (`mp3-44100-128-s` → MP3).
fn format_of(codec: &str) -> Option<Format> {
    codec.split('-').next()?.parse().ok()
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

    #[test]
    fn timed_points_follow_the_chunk_clock_and_the_range() {
        let mut c = crate::core::chunk::test_chunk(1, 1_000_000, "");
        // 22 050 samples in 500 ms: 44.1 kHz.
        c.levels = Some(Arc::new(Levels {
            channels: 1,
            points: vec![
                Point {
                    offset: -441,
                    rms: [40, 0],
                    peak: [20, 0],
                },
                Point {
                    offset: 4410,
                    rms: [240, 0],
                    peak: [240, 0],
                },
            ],
        }));
        let all = timed_points([&c], 0, i64::MAX);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].ts, 1_000_000 - 10_000);
        assert_eq!(all[1].ts, 1_100_000);
        assert_eq!(all[0].rms_dbfs, vec![-20.0]);
        assert_eq!(all[1].peak_dbfs, vec![-120.0]);
        assert_eq!(all[1].time, "1970-01-01T00:00:01.100Z");
        let later = timed_points([&c], 1_000_000, 2_000_000);
        assert_eq!(
            later.len(),
            1,
            "from is inclusive, and the window before it is left out"
        );
        assert!(timed_points([&c], 0, 990_000).is_empty(), "to is exclusive");
    }

    #[test]
    fn undecodable_codecs_have_no_levels() {
        let mut c = crate::core::chunk::test_chunk(1, 0, "");
        c.codec = Arc::from("opus-48000-64-s");
        assert_eq!(ChunkLeveler::new().measure(&c), Levels::default());
        // Garbage audio under a known codec key: no panic, and silence where frames fail.
        let c = crate::core::chunk::test_chunk(2, 0, "");
        let _ = ChunkLeveler::new().measure(&c);
    }
}
