//! The segment index (sans-IO): which HLS segments a rewind buffer holds, derived from content
//! time alone so that every replica holding the same chunks derives the same index.
//!
//! * A segment is a slot of content time: slot `k` covers `[k·L, (k+1)·L)` for the segment length
//!   `L`, and its media sequence number is `k`. Frames (not chunks) are assigned to the slot their
//!   first sample falls in, so a chunk that straddles a boundary is split on a frame boundary and
//!   a segment is never longer than `L` plus one frame.
//! * A slot without audio (a source gap) is an `EXT-X-GAP` segment, which keeps media sequence
//!   numbers consecutive and aligned across the variants of a group.
//! * A source change (a discontinuity) inside slot `k` ends segment `k` there, so the old source's
//!   tail is kept; the new source's audio in the rest of slot `k` starts segment `k + 1`, which
//!   then runs to the end of slot `k + 1` (up to two slots long, which the target duration allows
//!   for). A discontinuity within `SLIVER_US` of a slot start begins that slot's segment instead.
//!   Only when a source lasts less than the rest of its slot do two discontinuities compete for
//!   one segment: the newer source owns it and the short one's frames are not in HLS.
//! * Gap segments tile the time no audio covers: the first starts where the audio before it ends,
//!   the last ends where the audio after it begins, so `PROGRAM-DATE-TIME` plus `EXTINF` is the
//!   next segment's `PROGRAM-DATE-TIME` across an outage.
//! * A segment's timestamp is its first sample, exact (see [`crate::time`]).
//! * A slot is listed only once it is complete: the buffer holds audio reaching its end (later
//!   audio can then only land in later slots, as content time never runs backwards) and nothing of
//!   it has been evicted. A slot whose audio stopped (station off air) waits for the next audio.
//! * A segment's discontinuity sequence number is the epoch its audio was ingested in (every chunk
//!   carries the count of discontinuities since its stream began), so replicas agree and the
//!   numbers never go back when old segments leave the buffer. A segment starts with
//!   `EXT-X-DISCONTINUITY` when its epoch differs from the previous segment's; gap segments
//!   belong to the epoch that follows them.
//! * Missing chunks inside an epoch (a slave still repairing) make the slots they touch gap
//!   segments until the audio arrives: a listed segment is always complete.

use std::sync::Arc;
use std::time::Duration;

use crate::core::chunk::{Chunk, Meta};
use crate::core::codec::{AdtsHeader, Format, MpegHeader};
use crate::core::rewind::RewindBuffer;
use crate::time::{micros_of_sample, pts90k_of_sample, sample_of_micros};

/// The longest frame of any codec we parse (ADTS with four raw blocks at 7350 Hz: 557 ms),
/// rounded up. A segment never exceeds `L` plus one frame.
const MAX_FRAME_US: i64 = 600_000;
/// A discontinuity this close after a slot start begins that slot's segment (the gap before it
/// absorbs the sliver) rather than a two-slot segment after a sliver of a gap.
const SLIVER_US: i64 = MAX_FRAME_US;
/// When the buffer is evicting, this many complete segments after the (partial) head slot stay
/// out of the playlist, so a client can still fetch every segment it was shown for that long.
pub const HEAD_MARGIN_SEGMENTS: i64 = 2;
/// A gap longer than this (a clock jump, a station off air for days) ends the index: what came
/// before it is not listed, instead of millions of gap segments.
const MAX_GAP_US: i64 = 24 * 3600 * 1_000_000;

/// `EXT-X-TARGETDURATION` for a segment length: whole seconds, at least the longest segment (two
/// slots plus a frame, after a source change mid-slot; a gap before a sliver), and derived from
/// the setting alone so it never changes with the audio.
pub fn target_duration(segment_len_us: i64) -> u64 {
    ((2 * segment_len_us.max(1) + MAX_FRAME_US.max(SLIVER_US) + 999_999) / 1_000_000) as u64
}

pub fn segment_len_us(d: Duration) -> i64 {
    (d.as_micros() as i64).max(1)
}

/// Where a media segment's audio lies in the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub first_seq: u64,
    /// Byte offset of the segment's first frame in the first chunk.
    pub first_offset: usize,
    pub last_seq: u64,
    /// Byte offset just past the segment's last frame in the last chunk.
    pub last_end: usize,
    /// Chunks touched (so a reader can tell the buffer changed under it).
    pub chunks: u32,
    /// Audio bytes.
    pub bytes: usize,
    /// Now-playing metadata at the segment's first frame.
    pub meta: Arc<Meta>,
    pub codec: Arc<str>,
    /// The first sample, counted since the epoch at `rate` (0 if the codec's rate is unknown).
    pub first_sample: i64,
    pub rate: u32,
}

impl Span {
    /// The 90 kHz timestamp of the first sample.
    pub fn pts90k(&self, start: i64) -> u64 {
        if self.rate == 0 {
            super::id3::pts90k(start)
        } else {
            pts90k_of_sample(self.first_sample, self.rate)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Media sequence number: the slot, `floor(start / L)`.
    pub msn: u64,
    /// Content time of the first sample (the slot start for a gap), µs since the epoch.
    pub start: i64,
    /// Sum of the frames' durations (`L` for a gap), µs.
    pub duration: i64,
    /// Preceded by `EXT-X-DISCONTINUITY`.
    pub discontinuity: bool,
    /// Discontinuity sequence number of this segment.
    pub dsn: u64,
    /// `None` for a gap (`EXT-X-GAP`).
    pub media: Option<Span>,
}

impl Segment {
    pub fn end(&self) -> i64 {
        self.start + self.duration
    }
}

/// The title changed at `at` (content time) to `meta`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TitleChange {
    pub at: i64,
    pub meta: Arc<Meta>,
}

/// The complete segments of a buffer, oldest first, with consecutive sequence numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Index {
    pub segment_len: i64,
    pub segments: Vec<Segment>,
    /// Title changes whose start is in the buffer, in time order.
    pub titles: Vec<TitleChange>,
    /// Index of the first segment a playlist may list (the rest of the head is about to leave).
    pub advertised_from: usize,
}

/// What an index depends on, read from a buffer in O(1): the index (and so the cached playlist)
/// is rebuilt only when this changes, i.e. at segment boundaries, not for every chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexKey {
    pub segment_len: i64,
    head_slot: i64,
    head_whole: bool,
    tail_slot: i64,
    /// A discontinuity ends the segment it falls in, before that slot's end.
    tail_epoch: u32,
    evicting: bool,
}

impl IndexKey {
    pub fn of(buffer: &RewindBuffer, segment_len: i64) -> Option<IndexKey> {
        let first = buffer.first()?;
        let last = buffer.last()?;
        let l = segment_len.max(1);
        Some(IndexKey {
            segment_len: l,
            head_slot: first.ts.div_euclid(l),
            head_whole: first.is_discontinuity(),
            tail_slot: last.end().div_euclid(l),
            tail_epoch: last.epoch,
            evicting: evicting(buffer, l),
        })
    }
}

fn evicting(buffer: &RewindBuffer, l: i64) -> bool {
    let room = (buffer.max().as_micros() as u64).saturating_sub(buffer.held());
    room < ((HEAD_MARGIN_SEGMENTS + 1) * l) as u64
}

impl Index {
    pub fn build(buffer: &RewindBuffer, segment_len: i64) -> Index {
        let l = segment_len.max(1);
        let mut b = Builder {
            l,
            segments: vec![],
            titles: vec![],
            acc: None,
            last_title: None,
            run_msn: i64::MIN,
        };
        let mut prev: Option<&Chunk> = None;
        let mut pieces = Vec::new();
        for c in buffer.iter() {
            let (disc, hole) = match prev {
                None => (c.is_discontinuity(), false),
                // The chunker never makes overlapping chunks; ignore one rather than go back in time.
                Some(p) if c.ts < p.end() => continue,
                Some(p) if c.epoch != p.epoch => (true, false),
                Some(p) => (false, c.ts != p.end() || c.seq != p.seq.wrapping_add(1)),
            };
            pieces.clear();
            split(c, disc, hole, l, &mut pieces);
            for p in pieces.drain(..) {
                b.piece(p);
            }
            prev = Some(c);
        }
        if let (Some(acc), Some(last)) = (b.acc.take(), buffer.last()) {
            // The newest slot is complete once audio reaches its end.
            if last.end() >= (acc.msn + 1) * l {
                b.finish(acc);
            }
        }
        let mut index = Index {
            segment_len: l,
            segments: b.segments,
            titles: b.titles,
            advertised_from: 0,
        };
        if let Some(first) = buffer.first()
            && evicting(buffer, l)
        {
            let keep_from = first.ts.div_euclid(l) + 1 + HEAD_MARGIN_SEGMENTS;
            index.advertised_from = index
                .segments
                .partition_point(|s| (s.msn as i64) < keep_from);
        }
        index
    }

    /// The listable segments.
    pub fn advertised(&self) -> &[Segment] {
        self.segments.get(self.advertised_from..).unwrap_or(&[])
    }

    /// Any complete segment still in the buffer, listed or not (a client may fetch a segment a
    /// little after it left the playlist).
    pub fn get(&self, msn: u64) -> Option<&Segment> {
        let i = self.segments.binary_search_by_key(&msn, |s| s.msn).ok()?;
        self.segments.get(i)
    }
}

/// A run of frames of one chunk inside one slot.
struct Piece<'a> {
    slot: i64,
    start: i64,
    /// The first sample (see [`Span::first_sample`]).
    sample: i64,
    end: i64,
    from: usize,
    to: usize,
    disc: bool,
    /// Chunks are missing right before this piece (same epoch).
    hole: bool,
    chunk: &'a Chunk,
}

/// The sample rate in a codec key such as `mp3-44100-128-s`.
fn rate_of(codec: &str) -> Option<u32> {
    codec.split('-').nth(1)?.parse().ok().filter(|&r| r > 0)
}

fn format_of(codec: &str) -> Option<Format> {
    match codec.split('-').next()? {
        "mp3" => Some(Format::Mp3),
        "aac" => Some(Format::Aac),
        _ => None,
    }
}

struct FrameSize {
    len: usize,
    samples: u32,
    rate: u32,
}

/// The frames of a chunk's data, read from their headers without copying; `None` unless the
/// data is whole frames.
fn frame_sizes(format: Format, data: &[u8]) -> Option<Vec<FrameSize>> {
    let mut out = Vec::with_capacity(32);
    let mut at = 0;
    while at < data.len() {
        let rest = data.get(at..)?;
        let f = match format {
            Format::Mp3 => MpegHeader::parse(rest).map(|h| FrameSize {
                len: h.frame_len,
                samples: h.samples,
                rate: h.sample_rate,
            }),
            Format::Aac => AdtsHeader::parse(rest).map(|h| FrameSize {
                len: h.frame_len,
                samples: h.samples,
                rate: h.sample_rate,
            }),
        }?;
        if f.len == 0 || at + f.len > data.len() {
            return None;
        }
        at += f.len;
        out.push(f);
    }
    Some(out)
}

/// Cut a chunk at the slot boundaries it straddles, on frame boundaries.
fn split<'a>(c: &'a Chunk, disc: bool, hole: bool, l: i64, out: &mut Vec<Piece<'a>>) {
    let rate = rate_of(&c.codec).unwrap_or(0);
    let first = if rate == 0 {
        0
    } else {
        sample_of_micros(c.ts, rate)
    };
    let whole = |out: &mut Vec<Piece<'a>>| {
        out.push(Piece {
            slot: c.ts.div_euclid(l),
            start: c.ts,
            sample: first,
            end: c.end(),
            from: 0,
            to: c.data.len(),
            disc,
            hole,
            chunk: c,
        })
    };
    if c.duration == 0 || c.ts.div_euclid(l) == (c.end() - 1).div_euclid(l) {
        return whole(out);
    }
    // Walk the frame headers in place (chunks hold whole frames); anything unexpected keeps the
    // chunk in one piece rather than cut mid-frame.
    let Some(frames) = format_of(&c.codec).and_then(|f| frame_sizes(f, &c.data)) else {
        return whole(out);
    };
    if frames.first().is_none_or(|f| f.rate != rate) {
        return whole(out);
    }
    let (mut offset, mut samples) = (0usize, 0i64);
    let mut cur = Piece {
        slot: c.ts.div_euclid(l),
        start: c.ts,
        sample: first,
        end: c.ts,
        from: 0,
        to: 0,
        disc,
        hole,
        chunk: c,
    };
    for f in &frames {
        let t = micros_of_sample(first + samples, rate).min(c.end());
        let slot = t.div_euclid(l);
        if slot > cur.slot {
            cur.end = t;
            cur.to = offset;
            let next = Piece {
                slot,
                start: t,
                sample: first + samples,
                end: t,
                from: offset,
                to: offset,
                disc: false,
                hole: false,
                chunk: c,
            };
            out.push(std::mem::replace(&mut cur, next));
        }
        offset += f.len;
        samples += i64::from(f.samples);
    }
    cur.end = c.end();
    cur.to = offset;
    out.push(cur);
}

struct Acc {
    msn: i64,
    start: i64,
    end: i64,
    /// Nothing of this slot's segment is missing (from the buffer's head, or in a hole).
    whole: bool,
    epoch: u32,
    span: Span,
}

impl Acc {
    fn new(p: &Piece<'_>, msn: i64, whole: bool) -> Acc {
        Acc {
            msn,
            start: p.start,
            end: p.end,
            whole,
            epoch: p.chunk.epoch,
            span: Span {
                first_seq: p.chunk.seq,
                first_offset: p.from,
                last_seq: p.chunk.seq,
                last_end: p.to,
                chunks: 1,
                bytes: p.to - p.from,
                meta: p.chunk.meta.clone(),
                codec: p.chunk.codec.clone(),
                first_sample: p.sample,
                rate: rate_of(&p.chunk.codec).unwrap_or(0),
            },
        }
    }
}

struct Builder {
    l: i64,
    segments: Vec<Segment>,
    titles: Vec<TitleChange>,
    acc: Option<Acc>,
    last_title: Option<Arc<Meta>>,
    /// The first segment of the current run of audio (since its discontinuity): its pieces in an
    /// earlier slot belong to this segment.
    run_msn: i64,
}

impl Builder {
    /// The segment a run beginning at `d` (a discontinuity) starts: the next one after the audio
    /// before it if that audio reaches `d`'s slot, else `d`'s slot if `d` is within a sliver of
    /// its start, else the slot after.
    fn run_start(&self, d: i64) -> i64 {
        let slot = d.div_euclid(self.l);
        let prev = match &self.acc {
            Some(a) => Some((a.msn, a.end)),
            None => self.segments.last().map(|s| (s.msn as i64, s.end())),
        };
        match prev {
            Some((msn, end)) if end >= slot * self.l => msn + 1,
            _ if d - slot * self.l < SLIVER_US => slot,
            _ => slot + 1,
        }
    }

    fn piece(&mut self, p: Piece<'_>) {
        if p.from == 0 {
            let meta = &p.chunk.meta;
            match &self.last_title {
                Some(last) if last.title != meta.title => self.titles.push(TitleChange {
                    at: p.start,
                    meta: meta.clone(),
                }),
                _ => {}
            }
            self.last_title = Some(meta.clone());
        }
        if p.disc {
            self.run_msn = self.run_start(p.start);
        }
        let msn = p.slot.max(self.run_msn);
        match self.acc.take() {
            None => {
                // The buffer's oldest segment is whole only if its start is in the buffer, which
                // only a discontinuity proves: the run before may have begun in the slot before.
                self.acc = Some(Acc::new(&p, msn, p.disc));
            }
            Some(a) if msn < a.msn => self.acc = Some(a),
            Some(a) if msn == a.msn && p.disc => {
                // A source that lasted less than the rest of its slot: the newer source owns the
                // segment (a segment cannot carry a discontinuity inside it).
                self.acc = Some(Acc::new(&p, msn, true));
            }
            Some(mut a) if msn == a.msn => {
                a.whole &= !p.hole;
                a.end = p.end;
                if a.span.last_seq != p.chunk.seq {
                    a.span.chunks += 1;
                }
                a.span.last_seq = p.chunk.seq;
                a.span.last_end = p.to;
                a.span.bytes += p.to - p.from;
                self.acc = Some(a);
            }
            Some(mut a) => {
                let gap_from = a.msn + 1;
                // Missing chunks right after `a` leave its slot short of its end.
                if p.hole && a.end < (a.msn + 1) * self.l {
                    a.whole = false;
                }
                self.finish(a);
                if (msn - gap_from).saturating_mul(self.l) > MAX_GAP_US {
                    self.segments.clear();
                } else {
                    // Gaps tile the time from the audio before to the audio after.
                    let mut from = self.segments.last().map_or(gap_from * self.l, Segment::end);
                    for slot in gap_from..msn {
                        let to = if slot + 1 == msn {
                            p.start
                        } else {
                            (slot + 1) * self.l
                        };
                        self.push(slot, from, to - from, p.chunk.epoch, None);
                        from = to;
                    }
                }
                self.acc = Some(Acc::new(&p, msn, true));
            }
        }
    }

    fn finish(&mut self, a: Acc) {
        if a.whole {
            self.push(a.msn, a.start, a.end - a.start, a.epoch, Some(a.span));
        } else if !self.segments.is_empty() {
            // Incomplete inside the buffer (chunks still being repaired): a gap for now, so the
            // sequence numbers stay consecutive.
            let from = self.segments.last().map_or(a.msn * self.l, Segment::end);
            self.push(a.msn, from, (a.msn + 1) * self.l - from, a.epoch, None);
        }
    }

    fn push(&mut self, slot: i64, start: i64, duration: i64, epoch: u32, media: Option<Span>) {
        let Ok(msn) = u64::try_from(slot) else {
            return;
        };
        let dsn = u64::from(epoch);
        let discontinuity = self.segments.last().is_some_and(|s| s.dsn != dsn);
        self.segments.push(Segment {
            msn,
            start,
            duration,
            discontinuity,
            dsn,
            media,
        });
    }
}
