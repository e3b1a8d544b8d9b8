//! Frames in, chunks out (sans-IO).
//!
//! Timestamps are content time: a source's first chunk starts at wall-clock "now" (or right after
//! the previous chunk if that is later, so time never runs backwards), and every later chunk starts
//! exactly where the samples before it end. A source that pushes faster than real time therefore
//! produces future timestamps, which is what lets tests feed audio fast and still be honest.
//!
//! A clock counts samples since the Unix epoch at the source's rate and starts on a whole sample,
//! so a chunk's microsecond timestamp is its first sample's time rounded down and the exact sample
//! is recoverable from it (see [`crate::time`]); HLS timestamps depend on that.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::core::chunk::{Chunk, FLAG_DISCONTINUITY, Meta};
use crate::core::codec::{Frame, Header};
use crate::time::{micros_of_sample, sample_of_micros};

struct Clock {
    header: Header,
    codec: Arc<str>,
    /// The first sample, counted since the epoch at `rate`.
    start: i64,
    rate: u32,
    /// Samples emitted since `start`.
    samples: u64,
}

impl Clock {
    fn at(&self, samples: u64) -> i64 {
        let n = i64::try_from(samples).unwrap_or(i64::MAX);
        micros_of_sample(self.start.saturating_add(n), self.rate)
    }
}

pub struct Chunker {
    target: u64,
    next_seq: u64,
    last_end: Option<i64>,
    epoch: u32,
    meta: Arc<Meta>,
    clock: Option<Clock>,
    /// Frames of the chunk being built; reused, so its capacity is allocated once.
    pending: Vec<u8>,
    pending_samples: u64,
    pending_frames: u32,
    /// The next chunk starts a new clock after earlier audio.
    discontinuity: bool,
}

impl Chunker {
    /// `next_seq` and `last` (the newest chunk's end and epoch) continue a buffer restored from a
    /// dump or another node.
    pub fn new(target: Duration, next_seq: u64, last: Option<(i64, u32)>, meta: Arc<Meta>) -> Self {
        Chunker {
            target: (target.as_micros() as u64).max(1),
            next_seq,
            last_end: last.map(|(end, _)| end),
            epoch: last.map_or(0, |(_, epoch)| epoch),
            meta,
            clock: None,
            pending: Vec::new(),
            pending_samples: 0,
            pending_frames: 0,
            discontinuity: false,
        }
    }

    pub fn meta(&self) -> Arc<Meta> {
        self.meta.clone()
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Never number epochs below `floor`, the newest epoch an earlier run of this stream
    /// ingested (kept in the cluster's store): without a restored buffer, the next audio starts
    /// the epoch after it, so `EXT-X-DISCONTINUITY-SEQUENCE` never goes back.
    pub fn raise_epoch(&mut self, floor: u32) {
        let next = if self.last_end.is_some() {
            floor
        } else {
            floor.saturating_add(1)
        };
        self.epoch = self.epoch.max(next);
    }

    /// The epoch the next chunk gets (unless a new clock starts first).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Add one frame; `now` is wall-clock microseconds, used only when a new clock starts.
    pub fn push(&mut self, frame: &Frame, now: i64, out: &mut Vec<Chunk>) {
        let restart = match &self.clock {
            Some(c) => !c.header.same_stream(&frame.header),
            None => true,
        };
        if restart {
            self.flush(out);
            let start = self.last_end.map_or(now, |end| end.max(now));
            let rate = frame.header.sample_rate().max(1);
            self.discontinuity = self.last_end.is_some();
            if self.discontinuity {
                self.epoch = self.epoch.wrapping_add(1);
            }
            self.clock = Some(Clock {
                header: frame.header,
                codec: Arc::from(frame.header.codec_key()),
                start: sample_of_micros(start, rate),
                rate,
                samples: 0,
            });
        }
        self.append(&frame.data);
        self.pending_samples += u64::from(frame.header.samples());
        self.pending_frames += 1;
        if let Some(clock) = &self.clock {
            let elapsed = clock.at(clock.samples + self.pending_samples) - clock.at(clock.samples);
            if elapsed as u64 >= self.target {
                self.flush(out);
            }
        }
    }

    /// New metadata applies from the next frame: close the current chunk so the change lands on
    /// a frame boundary, not up to a chunk later.
    pub fn set_meta(&mut self, meta: Arc<Meta>, out: &mut Vec<Chunk>) {
        self.flush(out);
        self.meta = meta;
    }

    /// The live source changed (failover, reconnect): the next frame starts a new clock and the
    /// next chunk is marked as a discontinuity.
    pub fn new_source(&mut self, out: &mut Vec<Chunk>) {
        self.flush(out);
        self.clock = None;
    }

    /// Emit whatever is pending as a (possibly short) chunk.
    pub fn flush(&mut self, out: &mut Vec<Chunk>) {
        let Some(clock) = &mut self.clock else {
            return;
        };
        if self.pending_frames == 0 {
            return;
        }
        let ts = clock.at(clock.samples);
        let end = clock.at(clock.samples + self.pending_samples);
        clock.samples += self.pending_samples;
        // An exact-size allocation per chunk: the rewind buffer holds hours of these, so spare
        // capacity would cost more than the copy (see benches/rewind_memory.rs).
        let data = Bytes::from(self.pending.as_slice().to_vec());
        let chunk = Chunk {
            seq: self.next_seq,
            ts,
            duration: u32::try_from(end - ts).unwrap_or(u32::MAX),
            samples: u32::try_from(self.pending_samples).unwrap_or(u32::MAX),
            frames: self.pending_frames,
            flags: if self.discontinuity {
                FLAG_DISCONTINUITY
            } else {
                0
            },
            epoch: self.epoch,
            codec: clock.codec.clone(),
            meta: self.meta.clone(),
            data,
            // Measured after the cut, off the ingest path (see `stream::Leveler`).
            levels: None,
        };
        self.next_seq += 1;
        self.last_end = Some(end);
        self.discontinuity = false;
        self.pending.clear();
        self.pending_samples = 0;
        self.pending_frames = 0;
        out.push(chunk);
    }

    fn append(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::codec::{Format, frames_of};

    fn mp3_frames(n: usize) -> Vec<Frame> {
        let mut data = vec![];
        for _ in 0..n {
            let mut f = vec![0xFF, 0xFB, 0x90, 0x64];
            f.resize(417, 0);
            data.extend(f);
        }
        frames_of(Format::Mp3, &data)
    }

    fn meta(t: &str) -> Arc<Meta> {
        Arc::new(Meta {
            title: t.into(),
            url: String::new(),
        })
    }

    #[test]
    fn chunks_are_half_a_second_and_tile_exactly() {
        let mut c = Chunker::new(Duration::from_millis(500), 100, None, meta("a"));
        let mut out = vec![];
        for f in mp3_frames(1000) {
            c.push(&f, 1_000_000, &mut out);
        }
        c.flush(&mut out);
        assert_eq!(out.len(), 50);
        for w in out.windows(2) {
            assert_eq!(w[0].end(), w[1].ts, "chunks must tile without gaps");
            assert_eq!(w[0].seq + 1, w[1].seq);
        }
        for ch in &out[..out.len() - 1] {
            // 20 frames of 26.12 ms = 522 ms: the first frame count at or past 500 ms.
            assert!((500_000..530_000).contains(&ch.duration), "{}", ch.duration);
            assert_eq!(ch.data.len(), ch.frames as usize * 417);
        }
        assert_eq!(out[0].ts, 1_000_000);
        assert_eq!(out[0].seq, 100);
        // Every chunk starts on a whole sample of the epoch's grid, recoverable from its µs.
        let first = sample_of_micros(out[0].ts, 44100);
        let mut at = first;
        for ch in &out {
            assert_eq!(sample_of_micros(ch.ts, 44100), at);
            at += i64::from(ch.samples);
        }
        let total: u64 = out.iter().map(|c| u64::from(c.samples)).sum();
        assert_eq!(total, 1000 * 1152);
        // Exact end time: 1000 frames * 1152 samples at 44.1 kHz.
        assert_eq!(
            out.last().unwrap().end(),
            micros_of_sample(first + 1152 * 1000, 44100)
        );
        assert!(out.iter().all(|c| !c.is_discontinuity()));
    }

    #[test]
    fn metadata_change_closes_the_chunk_on_a_frame_boundary() {
        let mut c = Chunker::new(Duration::from_millis(500), 0, None, meta("a"));
        let mut out = vec![];
        let frames = mp3_frames(30);
        for f in &frames[..5] {
            c.push(f, 0, &mut out);
        }
        c.set_meta(meta("b"), &mut out);
        for f in &frames[5..] {
            c.push(f, 0, &mut out);
        }
        c.flush(&mut out);
        assert_eq!(out[0].frames, 5);
        assert_eq!(out[0].meta.title, "a");
        assert!(out[1..].iter().all(|ch| ch.meta.title == "b"));
    }

    #[test]
    fn new_source_continues_at_wall_clock_and_marks_discontinuity() {
        let mut c = Chunker::new(Duration::from_millis(500), 0, None, meta("a"));
        let mut out = vec![];
        for f in mp3_frames(40) {
            c.push(&f, 0, &mut out);
        }
        c.new_source(&mut out);
        let end = out.last().unwrap().end();
        let n = out.len();
        // The new source connects 10 s later in wall-clock time.
        for f in mp3_frames(40) {
            c.push(&f, end + 10_000_000, &mut out);
        }
        // On the first whole sample from then.
        assert_eq!(
            out[n].ts,
            micros_of_sample(sample_of_micros(end + 10_000_000, 44100), 44100)
        );
        assert!((0..23).contains(&(out[n].ts - end - 10_000_000)));
        assert!(out[n].is_discontinuity());
        assert!(!out[n + 1].is_discontinuity());
        assert_eq!(
            (out[n - 1].epoch, out[n].epoch, out[n + 1].epoch),
            (0, 1, 1)
        );

        // A new source whose wall clock is behind content time never goes backwards.
        c.new_source(&mut out);
        let end = out.last().unwrap().end();
        let n = out.len();
        for f in mp3_frames(40) {
            c.push(&f, 0, &mut out);
        }
        assert_eq!(out[n].ts, end);
        assert!(out[n].is_discontinuity());
    }

    #[test]
    fn restored_buffer_continues_sequence_numbers() {
        let mut c = Chunker::new(
            Duration::from_millis(500),
            42,
            Some((5_000_000, 3)),
            meta("a"),
        );
        let mut out = vec![];
        for f in mp3_frames(40) {
            c.push(&f, 1_000_000, &mut out);
        }
        assert_eq!(out[0].seq, 42);
        assert_eq!(out[0].ts, 5_000_000);
        assert!(out[0].is_discontinuity());
        assert_eq!(out[0].epoch, 4);
    }
}
