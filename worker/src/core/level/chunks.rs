//! Measuring a stream's chunks (sans-IO): [`ChunkLeveler`] decodes them in order and gives each
//! its [`Levels`]; it keeps the decoder across chunks (an MP3 frame borrows bits from the
//! previous ones) and starts over at a discontinuity or a codec change. [`timed_points`] places
//! the stored points on the content clock for the levels API.

use std::sync::Arc;

use super::WINDOW_MS;
use super::decode::FrameDecoder;
use super::points::{Levels, dequantize};
use crate::core::chunk::Chunk;
use crate::core::codec::{Format, frames_of};

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
    use crate::core::level::points::{Levels, Point};

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
