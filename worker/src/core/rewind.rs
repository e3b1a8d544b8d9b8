//! The rewind buffer (sans-IO): a stream's chunks in `seq` order, capped by audio duration, and
//! the arithmetic that places a listener in it (live, `offset`, `at`, pump ranges).

use std::collections::VecDeque;
use std::time::Duration;

use crate::core::chunk::Chunk;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Appended after the newest chunk (the live case).
    Appended,
    /// Inserted between or before existing chunks (a gap being filled).
    Filled,
    /// Already held; ignored.
    Duplicate,
}

#[derive(Debug, Clone, Default)]
pub struct RewindBuffer {
    chunks: VecDeque<Chunk>,
    max: u64,
    held: u64,
    bytes: usize,
}

impl RewindBuffer {
    pub fn new(max: Duration) -> Self {
        RewindBuffer {
            chunks: VecDeque::new(),
            max: max.as_micros() as u64,
            held: 0,
            bytes: 0,
        }
    }

    pub fn max(&self) -> Duration {
        Duration::from_micros(self.max)
    }

    /// Change the length; a shorter buffer drops its oldest chunks at once.
    pub fn set_max(&mut self, max: Duration) -> usize {
        self.max = max.as_micros() as u64;
        self.trim()
    }

    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Audio held, in microseconds.
    pub fn held(&self) -> u64 {
        self.held
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn first(&self) -> Option<&Chunk> {
        self.chunks.front()
    }

    pub fn last(&self) -> Option<&Chunk> {
        self.chunks.back()
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Chunk> + ExactSizeIterator {
        self.chunks.iter()
    }

    /// Insert a chunk in `seq` order; returns what happened and how many old chunks were evicted.
    pub fn push(&mut self, chunk: Chunk) -> (Inserted, usize) {
        let inserted = match self.chunks.back() {
            None => Inserted::Appended,
            Some(last) if chunk.seq > last.seq => Inserted::Appended,
            Some(_) => match self.chunks.binary_search_by_key(&chunk.seq, |c| c.seq) {
                Ok(_) => return (Inserted::Duplicate, 0),
                Err(_) => Inserted::Filled,
            },
        };
        self.held += u64::from(chunk.duration);
        self.bytes += chunk.data.len();
        match inserted {
            Inserted::Appended => self.chunks.push_back(chunk),
            _ => {
                let at = self.chunks.partition_point(|c| c.seq < chunk.seq);
                self.chunks.insert(at, chunk);
            }
        }
        (inserted, self.trim())
    }

    fn trim(&mut self) -> usize {
        let mut evicted = 0;
        while self.held > self.max {
            let Some(c) = self.chunks.pop_front() else {
                break;
            };
            self.held -= u64::from(c.duration);
            self.bytes -= c.data.len();
            evicted += 1;
        }
        evicted
    }

    pub fn clear(&mut self) {
        self.chunks.clear();
        self.held = 0;
        self.bytes = 0;
    }

    /// The first chunk with `seq >= seq`.
    pub fn get_from(&self, seq: u64) -> Option<&Chunk> {
        let i = self.chunks.partition_point(|c| c.seq < seq);
        self.chunks.get(i)
    }

    /// Chunks with `from <= seq <= to`.
    pub fn range(&self, from: u64, to: u64) -> impl Iterator<Item = &Chunk> {
        let i = self.chunks.partition_point(|c| c.seq < from);
        self.chunks.range(i..).take_while(move |c| c.seq <= to)
    }

    /// Index of the first chunk that starts at or after `ts`.
    fn index_at_or_after(&self, ts: i64) -> usize {
        self.chunks.partition_point(|c| c.ts < ts)
    }

    /// Chunks whose start lies in `[from, to)`.
    pub fn time_range(&self, from: i64, to: i64) -> impl Iterator<Item = &Chunk> {
        let i = self.index_at_or_after(from);
        self.chunks.range(i..).take_while(move |c| c.ts < to)
    }

    /// Sequence numbers missing between the oldest and newest chunk, as inclusive ranges.
    pub fn gaps(&self) -> Vec<(u64, u64)> {
        let mut gaps = vec![];
        let mut iter = self.chunks.iter();
        let Some(mut prev) = iter.next() else {
            return gaps;
        };
        for c in iter {
            if c.seq > prev.seq + 1 {
                gaps.push((prev.seq + 1, c.seq - 1));
            }
            prev = c;
        }
        gaps
    }

    /// Place a listener; `None` when there is no audio yet.
    pub fn land(&self, position: Position, burst: Duration) -> Option<Landing> {
        let first = self.first()?;
        let last = self.last()?;
        let live_end = last.end();
        let burst = burst.as_micros() as i64;
        let target = match position {
            Position::Live => live_end - burst,
            Position::Offset(o) => live_end.saturating_sub(o.as_micros() as i64),
            Position::At(t) => t,
        };
        let clamped =
            !matches!(position, Position::Live) && (target < first.ts || target > live_end);
        let target = target.clamp(first.ts, live_end);
        // Never start before the requested position: the first chunk at or after it.
        let (start_seq, start_ts) = match self.chunks.get(self.index_at_or_after(target)) {
            Some(c) => (c.seq, c.ts),
            None => (last.seq + 1, live_end),
        };
        let behind = live_end - start_ts;
        let delay = match position {
            Position::Live => 0,
            _ => (behind - burst).max(0),
        };
        Some(Landing {
            start_seq,
            start_ts,
            behind: Duration::from_micros(behind as u64),
            delay,
            clamped,
        })
    }

    /// The chunks of a pump request: `length` of audio starting `from` behind live.
    pub fn pump(&self, from: Duration, length: Duration) -> Vec<Chunk> {
        let Some(last) = self.last() else {
            return vec![];
        };
        let start = last.end() - from.as_micros() as i64;
        let end = start + length.as_micros() as i64;
        self.time_range(start, end).cloned().collect()
    }

    /// Like [`RewindBuffer::pump`] from an absolute time.
    pub fn pump_at(&self, at: i64, length: Duration) -> Vec<Chunk> {
        self.time_range(at, at + length.as_micros() as i64)
            .cloned()
            .collect()
    }
}

/// Where a listener asks to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    Live,
    /// This far behind the live edge.
    Offset(Duration),
    /// Content time, microseconds since the epoch.
    At(i64),
}

/// Where a listener landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Landing {
    /// First chunk to send (may be one past the newest: wait for live audio).
    pub start_seq: u64,
    pub start_ts: i64,
    /// How far behind live the start is.
    pub behind: Duration,
    /// Pacing: chunk `c` may be sent once the live edge reaches `c.ts + delay` (microseconds);
    /// everything up to `burst` after the start goes out at once.
    pub delay: i64,
    /// The request pointed outside the buffer and was moved to its edge.
    pub clamped: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::chunk::test_chunk;

    fn buffer(n: u64, max_secs: u64) -> RewindBuffer {
        let mut b = RewindBuffer::new(Duration::from_secs(max_secs));
        for i in 0..n {
            b.push(test_chunk(i, i as i64 * 500_000, "t"));
        }
        b
    }

    #[test]
    fn caps_by_duration_and_counts_bytes() {
        let b = buffer(100, 10);
        assert_eq!(b.len(), 20);
        assert_eq!(b.held(), 10_000_000);
        assert_eq!(b.first().unwrap().seq, 80);
        assert_eq!(b.bytes(), 20 * 8000);
        let mut b = b;
        assert_eq!(b.set_max(Duration::from_secs(5)), 10);
        assert_eq!(b.first().unwrap().seq, 90);
    }

    #[test]
    fn fills_gaps_and_ignores_duplicates() {
        let mut b = RewindBuffer::new(Duration::from_secs(100));
        for i in [0u64, 1, 2, 5, 6, 9] {
            b.push(test_chunk(i, i as i64 * 500_000, "t"));
        }
        assert_eq!(b.gaps(), vec![(3, 4), (7, 8)]);
        assert_eq!(b.push(test_chunk(3, 1_500_000, "t")).0, Inserted::Filled);
        assert_eq!(b.push(test_chunk(3, 1_500_000, "t")).0, Inserted::Duplicate);
        assert_eq!(b.push(test_chunk(10, 5_000_000, "t")).0, Inserted::Appended);
        assert_eq!(b.gaps(), vec![(4, 4), (7, 8)]);
        let seqs: Vec<u64> = b.iter().map(|c| c.seq).collect();
        assert_eq!(seqs, vec![0, 1, 2, 3, 5, 6, 9, 10]);
        assert_eq!(b.get_from(7).unwrap().seq, 9);
        assert_eq!(b.range(2, 6).count(), 4);
    }

    #[test]
    fn landing_live_offset_and_at() {
        // 100 chunks of 0.5 s: content from 0 to 50 s.
        let b = buffer(100, 3600);
        let burst = Duration::from_secs(10);
        let live = b.land(Position::Live, burst).unwrap();
        assert_eq!(live.start_ts, 40_000_000);
        assert_eq!(live.delay, 0);
        assert!(!live.clamped);

        let off = b
            .land(Position::Offset(Duration::from_secs(30)), burst)
            .unwrap();
        assert_eq!(off.start_ts, 20_000_000);
        assert_eq!(off.behind, Duration::from_secs(30));
        assert_eq!(off.delay, 20_000_000);

        // Between chunk starts: the next chunk, never an earlier one.
        let off = b
            .land(Position::Offset(Duration::from_millis(30_200)), burst)
            .unwrap();
        assert_eq!(off.start_ts, 20_000_000);
        let at = b.land(Position::At(12_300_000), burst).unwrap();
        assert_eq!(at.start_ts, 12_500_000);

        let clamped = b
            .land(Position::Offset(Duration::from_secs(3600)), burst)
            .unwrap();
        assert!(clamped.clamped);
        assert_eq!(clamped.start_seq, 0);
        let future = b.land(Position::At(99_000_000), burst).unwrap();
        assert!(future.clamped);
        assert_eq!(future.start_seq, 100);
        assert!(
            RewindBuffer::new(Duration::from_secs(1))
                .land(Position::Live, burst)
                .is_none()
        );
    }

    #[test]
    fn pump_ranges() {
        let b = buffer(100, 3600);
        let p = b.pump(Duration::from_secs(20), Duration::from_secs(5));
        assert_eq!(p.len(), 10);
        assert_eq!(p[0].ts, 30_000_000);
        let p = b.pump_at(10_000_000, Duration::from_secs(1));
        assert_eq!(p.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![20, 21]);
    }
}
