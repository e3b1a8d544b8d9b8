//! Playlist rules over long synthetic buffers (hours of audio with gaps, source changes and title
//! changes), checked across many reloads, and segment bodies byte for byte.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::index::{Index, IndexKey, Segment, Span, target_duration};
use super::playlist::{PlaylistQuery, Rendered, render};
use super::segment;
use crate::core::chunk::{Chunk, Meta};
use crate::core::chunker::Chunker;
use crate::core::codec::{Format, Frame, frames_of};
use crate::core::rewind::RewindBuffer;
use crate::time::{pts90k_of_sample, sample_of_micros};

const L: i64 = 6_000_000;

/// Deterministic pseudo-random numbers (xorshift), so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// MPEG-1 layer III 128 kbps 44.1 kHz frames; every frame's bytes differ (its index is written
/// into it) so misplaced bytes show.
fn mp3_frames(n: usize, first: usize) -> Vec<Frame> {
    let mut data = vec![];
    for i in first..first + n {
        let padded = i % 3 == 0;
        let mut f = vec![0xFF, 0xFB, if padded { 0x92 } else { 0x90 }, 0x64];
        f.extend_from_slice(&(i as u64).to_be_bytes());
        f.resize(if padded { 418 } else { 417 }, (i % 251) as u8);
        data.extend(f);
    }
    frames_of(Format::Mp3, &data)
}

fn meta(title: &str) -> Arc<Meta> {
    Arc::new(Meta {
        title: title.into(),
        url: String::new(),
    })
}

/// What happened while the synthetic station was on air.
#[derive(Default)]
struct Script {
    chunks: Vec<Chunk>,
}

/// `hours` of a station starting at `t0`: titles change every few minutes (at any point of a
/// segment), the encoder reconnects after gaps of seconds to minutes, sometimes a new source takes
/// over without a gap, and once the station is off the air for longer than a segment.
fn station(hours: u64, seed: u64) -> Script {
    let t0: i64 = 1_764_000_000_000_000 + 1_234_567;
    let mut rng = Rng(seed);
    let mut chunker = Chunker::new(Duration::from_millis(500), 1000, None, meta("Station ID"));
    let mut out = vec![];
    let mut now = t0;
    let frame_us = 1152.0 * 1e6 / 44100.0;
    let total = (hours * 3600) as f64 * 1e6 / frame_us;
    let mut i = 0usize;
    let mut next_title = rng.below(300) as usize * 38;
    let mut next_break = 5000 + rng.below(60_000) as usize;
    let mut title_n = 0;
    while (i as f64) < total {
        if i == next_title {
            title_n += 1;
            let title = if title_n % 2 == 0 {
                format!("Artist {title_n} - Song \"{title_n}\"")
            } else {
                format!("Programme {title_n}")
            };
            chunker.set_meta(meta(&title), &mut out);
            next_title = i + 1 + rng.below(12_000) as usize;
        }
        if i == next_break {
            chunker.new_source(&mut out);
            // Wall clock moves on while the source is away; a quick reconnect continues
            // seamlessly (content time may be ahead of the wall clock).
            let last_end = out.last().map_or(now, Chunk::end);
            now = match rng.below(4) {
                0 => last_end,
                1 => last_end + 3_000_000 + rng.below(20_000_000) as i64,
                2 => last_end + L / 3,
                _ => last_end + 30_000_000 + rng.below(120_000_000) as i64,
            };
            next_break = i + 5000 + rng.below(60_000) as usize;
        }
        for f in mp3_frames(1, i) {
            chunker.push(&f, now, &mut out);
        }
        i += 1;
    }
    chunker.flush(&mut out);
    Script { chunks: out }
}

/// A playlist as a client reads it.
#[derive(Debug, Clone, PartialEq)]
struct Parsed {
    version: u64,
    target: u64,
    msn: u64,
    dsn: u64,
    skipped: usize,
    start: Option<f64>,
    dateranges: Vec<String>,
    segments: Vec<Seg>,
}

#[derive(Debug, Clone, PartialEq)]
struct Seg {
    msn: u64,
    dsn: u64,
    discontinuity: bool,
    gap: bool,
    pdt: String,
    extinf: f64,
    uri: String,
}

fn parse(text: &str) -> Parsed {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("#EXTM3U"));
    let mut p = Parsed {
        version: 0,
        target: 0,
        msn: 0,
        dsn: 0,
        skipped: 0,
        start: None,
        dateranges: vec![],
        segments: vec![],
    };
    let (mut disc, mut gap, mut pdt, mut extinf) = (false, false, None, None);
    let mut dsn = None;
    for line in lines {
        if let Some(v) = line.strip_prefix("#EXT-X-VERSION:") {
            p.version = v.parse().unwrap();
        } else if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            p.target = v.parse().unwrap();
        } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            p.msn = v.parse().unwrap();
        } else if let Some(v) = line.strip_prefix("#EXT-X-DISCONTINUITY-SEQUENCE:") {
            p.dsn = v.parse().unwrap();
        } else if let Some(v) = line.strip_prefix("#EXT-X-SKIP:SKIPPED-SEGMENTS=") {
            p.skipped = v.parse().unwrap();
        } else if let Some(v) = line.strip_prefix("#EXT-X-START:TIME-OFFSET=") {
            p.start = Some(v.split(',').next().unwrap().parse().unwrap());
        } else if line.starts_with("#EXT-X-DATERANGE:") {
            p.dateranges.push(line.to_string());
        } else if line == "#EXT-X-DISCONTINUITY" {
            disc = true;
        } else if line == "#EXT-X-GAP" {
            gap = true;
        } else if let Some(v) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            pdt = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            extinf = Some(v.trim_end_matches(',').parse::<f64>().unwrap());
        } else if !line.starts_with('#') && !line.is_empty() {
            let d = dsn.unwrap_or(p.dsn) + u64::from(disc);
            dsn = Some(d);
            p.segments.push(Seg {
                msn: p.msn + p.skipped as u64 + p.segments.len() as u64,
                dsn: d,
                discontinuity: disc,
                gap,
                pdt: pdt.take().expect("PDT on every segment"),
                extinf: extinf.take().expect("EXTINF"),
                uri: line.to_string(),
            });
            (disc, gap) = (false, false);
        } else {
            assert!(
                line.starts_with("#EXT-X-SERVER-CONTROL:") || line == "#EXT-X-INDEPENDENT-SEGMENTS",
                "unexpected line {line}"
            );
        }
    }
    p
}

fn playlist(r: &Rendered, q: &PlaylistQuery) -> Parsed {
    let v = r.view(q).expect("segments to list");
    let text = r.assemble(&v, None);
    parse(std::str::from_utf8(&text).unwrap())
}

fn pdt_micros(pdt: &str) -> i64 {
    pdt.parse::<jiff::Timestamp>().unwrap().as_microsecond()
}

#[test]
fn playlist_rules_hold_over_hours_of_reloads() {
    let script = station(5, 0x5eed_1234_5678_9abc);
    let mut buffer = RewindBuffer::new(Duration::from_secs(3 * 3600));
    let mut prev: Option<Parsed> = None;
    let (mut reloads, mut gaps, mut discs, mut titles, mut skipped) = (0, 0, 0, 0, 0);
    for (n, c) in script.chunks.iter().enumerate() {
        buffer.push(c.clone());
        // Reload about every 30 s of audio, and at the end.
        if n % 60 != 59 && n + 1 != script.chunks.len() {
            continue;
        }
        let index = Index::build(&buffer, L);
        let r = render(&index, "live/seg/", "mp3", false);
        if r.is_empty() {
            continue;
        }
        reloads += 1;
        let full = playlist(&r, &PlaylistQuery::default());
        assert_eq!(full.version, 3);
        assert_eq!(full.target, target_duration(L));
        for (i, s) in full.segments.iter().enumerate() {
            assert!(
                s.extinf <= full.target as f64,
                "EXTINF {} > target",
                s.extinf
            );
            assert!(s.extinf > 0.0);
            assert_eq!(s.uri, format!("live/seg/{}.mp3", s.msn));
            if let Some(next) = full.segments.get(i + 1) {
                let (a, b) = (pdt_micros(&s.pdt), pdt_micros(&next.pdt));
                assert!(
                    b > a,
                    "PROGRAM-DATE-TIME not increasing: {} then {}",
                    s.pdt,
                    next.pdt
                );
                if !next.discontinuity {
                    // Without a discontinuity the timeline continues exactly, also through gap
                    // segments (PDT has milliseconds, EXTINF microseconds).
                    assert!(
                        (a + (s.extinf * 1e6).round() as i64 - b).abs() <= 1000,
                        "{} + {} is not {}",
                        s.pdt,
                        s.extinf,
                        next.pdt
                    );
                }
            }
            // Identity from content time: the sequence number is the slot of the start, or the
            // slot after it for a source that began mid-slot (and a gap after an outage).
            let slot = pdt_micros(&s.pdt).div_euclid(L) as u64;
            assert!(
                slot == s.msn || slot + 1 == s.msn,
                "msn {} at {}",
                s.msn,
                s.pdt
            );
            gaps += usize::from(s.gap);
            discs += usize::from(s.discontinuity);
        }
        // Sequence numbers are consecutive by construction; media and discontinuity sequence
        // numbers never go back between reloads, and a segment keeps its lines and its
        // discontinuity sequence number as older segments leave.
        if let Some(p) = &prev {
            assert!(full.msn >= p.msn, "media sequence went back");
            assert!(full.dsn >= p.dsn, "discontinuity sequence went back");
            for s in &full.segments {
                if let Some(old) = p.segments.iter().find(|o| o.msn == s.msn) {
                    assert_eq!(
                        (&old.pdt, old.extinf, old.gap, &old.uri, old.dsn),
                        (&s.pdt, s.extinf, s.gap, &s.uri, s.dsn)
                    );
                }
            }
            let common: Vec<_> = full
                .segments
                .iter()
                .filter_map(|s| p.segments.iter().find(|o| o.msn == s.msn).map(|o| (o, s)))
                .collect();
            for w in common.windows(2) {
                assert_eq!(w[1].0.dsn - w[0].0.dsn, w[1].1.dsn - w[0].1.dsn);
                assert_eq!(w[1].1.discontinuity, w[1].0.discontinuity);
            }
        }
        // Every title on air in the listed span has its DATERANGE, with a stable ID.
        titles = titles.max(full.dateranges.len());
        let first = pdt_micros(&full.segments[0].pdt);
        let last = full.segments.last().unwrap();
        let end = pdt_micros(&last.pdt) + (last.extinf * 1e6) as i64;
        for t in index.titles.iter().filter(|t| t.at < end - 1000) {
            let on_air_later = index.titles.iter().any(|n| n.at > t.at && n.at <= first);
            let listed = full
                .dateranges
                .iter()
                .any(|d| d.contains(&format!("ID=\"title-{}\"", t.at)));
            assert_eq!(listed, !on_air_later || t.at >= first, "title at {}", t.at);
        }
        // A delta update is the full playlist once its skipped segments are put back.
        let delta = playlist(
            &r,
            &PlaylistQuery {
                skip: true,
                ..Default::default()
            },
        );
        assert_eq!(
            (delta.msn, delta.dsn, delta.target),
            (full.msn, full.dsn, full.target)
        );
        assert_eq!(delta.dateranges, full.dateranges);
        let mut expanded = full.segments[..delta.skipped].to_vec();
        expanded.extend(delta.segments.iter().cloned());
        // The client numbers discontinuities with the skipped segments put back.
        let mut dsn = delta.dsn;
        for s in &mut expanded {
            dsn += u64::from(s.discontinuity);
            s.dsn = dsn;
        }
        assert!(
            expanded == full.segments,
            "delta update differs from the full playlist"
        );
        if delta.skipped > 0 {
            assert_eq!(delta.version, 9);
            skipped += 1;
            let total: f64 = full.segments.iter().map(|s| s.extinf).sum();
            let kept: f64 = delta.segments.iter().map(|s| s.extinf).sum();
            // Kept: the segments starting within CAN-SKIP-UNTIL of the end, no more.
            let until = 6.0 * full.target as f64;
            assert!(
                kept <= until + 0.001 && kept > until - L as f64 / 1e6 - 1.0,
                "kept {kept} of {total}"
            );
        }
        prev = Some(full);
    }
    assert!(reloads > 300, "{reloads} reloads");
    assert!(
        gaps > 0 && discs > 3 && titles > 3 && skipped > 300,
        "gaps {gaps} discontinuities {discs} titles {titles}"
    );
}

/// The server rebuilds an index only when its key changes: an unchanged key must mean an
/// unchanged list of segments, chunk after chunk, also while the buffer evicts.
#[test]
fn index_key_changes_whenever_the_listed_segments_do() {
    let script = station(1, 99);
    let mut buffer = RewindBuffer::new(Duration::from_secs(15 * 60));
    let mut prev: Option<(IndexKey, Index)> = None;
    let (mut same, mut rebuilt) = (0, 0);
    for c in &script.chunks {
        buffer.push(c.clone());
        let key = IndexKey::of(&buffer, L).unwrap();
        let index = Index::build(&buffer, L);
        if let Some((k, i)) = &prev
            && *k == key
        {
            assert_eq!(i.advertised(), index.advertised());
            same += 1;
        } else {
            rebuilt += 1;
        }
        prev = Some((key, index));
    }
    // About two rebuilds per segment (one at each end of the buffer), not one per chunk.
    assert!(same > rebuilt * 4, "{same} unchanged, {rebuilt} rebuilt");
}

#[test]
fn window_and_start_time() {
    let script = station(1, 7);
    let mut buffer = RewindBuffer::new(Duration::from_secs(4 * 3600));
    for c in &script.chunks {
        buffer.push(c.clone());
    }
    let index = Index::build(&buffer, L);
    let r = render(&index, "x/seg/", "mp3", false);
    let full = playlist(&r, &PlaylistQuery::default());
    let last = full.segments.last().unwrap();
    let w = playlist(
        &r,
        &PlaylistQuery {
            window: Some(Duration::from_secs(60)),
            ..Default::default()
        },
    );
    let listed: f64 = w.segments.iter().map(|s| s.extinf).sum();
    assert!((50.0..=66.0).contains(&listed), "{listed}");
    assert_eq!(
        w.segments.last().map(|s| (&s.uri, &s.pdt)),
        full.segments.last().map(|s| (&s.uri, &s.pdt))
    );
    assert_eq!(w.msn, last.msn + 1 - w.segments.len() as u64);
    // A window is never shorter than three target durations.
    let tiny = playlist(
        &r,
        &PlaylistQuery {
            window: Some(Duration::from_secs(1)),
            ..Default::default()
        },
    );
    assert!(
        tiny.segments.iter().map(|s| s.extinf).sum::<f64>() >= 3.0 * (tiny.target as f64) - 7.0
    );

    // `at` becomes EXT-X-START at that point of the playlist timeline.
    let pick = &full.segments[full.segments.len() / 2];
    let at = pdt_micros(&pick.pdt) + 2_500_000;
    let p = playlist(
        &r,
        &PlaylistQuery {
            at: Some(at),
            ..Default::default()
        },
    );
    let before: f64 = full
        .segments
        .iter()
        .take_while(|s| s.msn < pick.msn)
        .map(|s| s.extinf)
        .sum();
    assert!(
        (p.start.unwrap() - (before + 2.5)).abs() < 0.001,
        "{:?} vs {}",
        p.start,
        before + 2.5
    );
    let v = r
        .view(&PlaylistQuery {
            at: Some(0),
            ..Default::default()
        })
        .unwrap();
    assert!(v.clamped);
    assert_eq!(v.start_offset, Some(0));
}

/// Chunks that straddle a boundary are split on frames; the segment lists exactly its frames.
#[test]
fn segment_bodies_are_frames_of_their_slot_with_timestamp_and_titles() {
    let mut chunker = Chunker::new(Duration::from_millis(500), 1, None, meta("First"));
    let t0 = 1_764_000_000_000_000i64;
    let mut out = vec![];
    let frames = mp3_frames(2000, 0);
    for (i, f) in frames.iter().enumerate() {
        if i == 700 {
            chunker.set_meta(meta("Artist - Second"), &mut out);
        }
        chunker.push(f, t0, &mut out);
    }
    chunker.flush(&mut out);
    let mut buffer = RewindBuffer::new(Duration::from_secs(3600));
    for c in &out {
        buffer.push(c.clone());
    }
    let index = Index::build(&buffer, L);
    let frame_us = 1152.0 * 1e6 / 44100.0;
    let mut seen = 0;
    for s in index.advertised() {
        let span = s.media.as_ref().unwrap();
        let body = segment::build(s, buffer.range(span.first_seq, span.last_seq)).unwrap();
        // The timestamp tag first.
        assert_eq!(&body[..3], b"ID3");
        let first_frame = (0..frames.len())
            .find(|&i| (t0 + (i as f64 * frame_us) as i64).div_euclid(L) as u64 == s.msn)
            .unwrap();
        let exact = sample_of_micros(t0, 44100) + first_frame as i64 * 1152;
        assert_eq!(&body[65..73], &pts90k_of_sample(exact, 44100).to_be_bytes());
        // Then exactly the frames whose first sample lies in the slot.
        let in_slot: Vec<usize> = (0..frames.len())
            .filter(|&i| {
                let t = t0 + (i as f64 * frame_us) as i64;
                t.div_euclid(L) as u64 == s.msn
            })
            .collect();
        let audio = strip_id3(&body);
        let want: Vec<u8> = in_slot
            .iter()
            .flat_map(|&i| frames[i].data.to_vec())
            .collect();
        assert_eq!(audio, want, "segment {}", s.msn);
        let title_change_inside = in_slot.contains(&700) && in_slot[0] != 700;
        let tags = count_tags(&body);
        assert_eq!(
            tags,
            1 + usize::from(title_change_inside),
            "segment {}",
            s.msn
        );
        if title_change_inside {
            // The timed tag sits right before the first frame of the new title.
            let lead = tag_len(&body);
            let pos = find(&body[lead..], b"ID3").unwrap() + lead;
            assert!(
                find(&body[pos..], b"Second").is_some() && find(&body[pos..], b"TPE1").is_some()
            );
            let frames_before = in_slot.iter().filter(|&&i| i < 700).count();
            let bytes_before: usize = in_slot[..frames_before]
                .iter()
                .map(|&i| frames[i].data.len())
                .sum();
            assert_eq!(pos, lead + bytes_before);
            seen += 1;
        }
        // Two builds are byte-identical.
        assert_eq!(
            body,
            segment::build(s, buffer.range(span.first_seq, span.last_seq)).unwrap()
        );
    }
    assert_eq!(seen, 1);
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn tag_len(b: &[u8]) -> usize {
    10 + ((b[6] as usize) << 21 | (b[7] as usize) << 14 | (b[8] as usize) << 7 | b[9] as usize)
}

fn strip_id3(body: &Bytes) -> Vec<u8> {
    let mut out = vec![];
    let mut i = 0;
    while i < body.len() {
        if body[i..].starts_with(b"ID3") {
            i += tag_len(&body[i..]);
        } else {
            out.push(body[i]);
            i += 1;
        }
    }
    out
}

fn count_tags(body: &Bytes) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < body.len() {
        if body[i..].starts_with(b"ID3") {
            n += 1;
            i += tag_len(&body[i..]);
        } else {
            i += 1;
        }
    }
    n
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Mp3(u32),
    Aac(u32),
}

impl Kind {
    fn rate(self) -> u32 {
        match self {
            Kind::Mp3(r) | Kind::Aac(r) => r,
        }
    }

    /// `n` valid frames (128 kbps MPEG-1 layer III, or AAC LC stereo ADTS), numbered from `first`.
    fn frames(self, n: usize, first: usize) -> Vec<Frame> {
        let mut data = vec![];
        for i in first..first + n {
            let mut f = match self {
                Kind::Mp3(44100) => mp3_frames(1, i)[0].data.to_vec(),
                Kind::Mp3(rate) => {
                    let (index, len) = match rate {
                        48000 => (1, 384),
                        _ => (2, 576),
                    };
                    let mut f = vec![0xFF, 0xFB, 0x90 | (index << 2), 0x64];
                    f.resize(len, (i % 251) as u8);
                    f
                }
                Kind::Aac(rate) => {
                    let index = if rate == 48000 { 3 } else { 4 };
                    let len = 300 + i % 7;
                    let mut f = vec![
                        0xFF,
                        0xF1,
                        (1 << 6) | (index << 2),
                        (2 << 6) | ((len >> 11) & 0x3) as u8,
                        ((len >> 3) & 0xFF) as u8,
                        (((len & 0x7) << 5) as u8) | 0x1F,
                        0xFC,
                    ];
                    f.resize(len, (i % 251) as u8);
                    f
                }
            };
            f[4 + usize::from(matches!(self, Kind::Aac(_))) * 3..][..1]
                .copy_from_slice(&[(i % 256) as u8]);
            data.extend(f);
        }
        let format = match self {
            Kind::Mp3(_) => Format::Mp3,
            Kind::Aac(_) => Format::Aac,
        };
        let frames = frames_of(format, &data);
        assert_eq!(frames.len(), n);
        frames
    }
}

fn buffer_of(chunks: &[Chunk]) -> RewindBuffer {
    let mut buffer = RewindBuffer::new(Duration::from_secs(4 * 3600));
    for c in chunks {
        buffer.push(c.clone());
    }
    buffer
}

/// The samples of a segment's audio, counted from its body.
fn samples_in(body: &Bytes, kind: Kind) -> i64 {
    let audio = strip_id3(body);
    let format = match kind {
        Kind::Mp3(_) => Format::Mp3,
        Kind::Aac(_) => Format::Aac,
    };
    frames_of(format, &audio)
        .iter()
        .map(|f| i64::from(f.header.samples()))
        .sum()
}

/// Rounded back to samples as a demuxer does.
fn samples_of_pts(ticks: u64, rate: u32) -> i64 {
    ((i128::from(ticks) * i128::from(rate) * 2 + 90_000).div_euclid(180_000)) as i64
}

/// Regression: the ID3 timestamp was the µs content time truncated to 90 kHz, up to a tick before
/// the previous segment's exact end, which ffmpeg reports as non-monotonic timestamps.
#[test]
fn segment_timestamps_are_contiguous_in_samples() {
    for kind in [
        Kind::Mp3(44100),
        Kind::Mp3(48000),
        Kind::Aac(44100),
        Kind::Aac(48000),
    ] {
        let rate = kind.rate();
        // Small content times, so the 33-bit timestamp does not wrap and compares directly.
        let t0 = 1_234_567;
        let mut chunker = Chunker::new(Duration::from_millis(500), 1, None, meta("x"));
        let mut out = vec![];
        for f in &kind.frames(10_000, 0) {
            chunker.push(f, t0, &mut out);
        }
        chunker.flush(&mut out);
        let buffer = buffer_of(&out);
        let index = Index::build(&buffer, L);
        let segs: Vec<_> = index
            .segments
            .iter()
            .filter(|s| s.media.is_some())
            .collect();
        assert!(segs.len() > 30, "{kind:?}");
        let mut expected = None;
        for s in segs {
            let span = s.media.as_ref().unwrap();
            let body = segment::build(s, buffer.range(span.first_seq, span.last_seq)).unwrap();
            let pts = u64::from_be_bytes(body[65..73].try_into().unwrap());
            let first = samples_of_pts(pts, rate);
            assert_eq!(first, span.first_sample, "{kind:?} segment {}", s.msn);
            if let Some(e) = expected {
                assert_eq!(
                    first, e,
                    "{kind:?}: segment {} is not where the last ended",
                    s.msn
                );
            }
            expected = Some(first + samples_in(&body, kind));
        }
    }
}

/// Regression: after an outage the playlist had one slot-aligned gap segment and then a jump in
/// PROGRAM-DATE-TIME without a discontinuity.
#[test]
fn gap_segments_cover_an_outage() {
    for phase in 0..12 {
        let t0 = 1_764_000_000_000_000i64 - 1_764_000_000_000_000i64 % L + phase * 500_000;
        let mut chunker = Chunker::new(Duration::from_millis(500), 1, None, meta(""));
        let mut out = vec![];
        for f in &mp3_frames(800, 0) {
            chunker.push(f, t0, &mut out);
        }
        chunker.new_source(&mut out);
        let stop = out.last().unwrap().end();
        let back = stop + 14_000_000;
        for f in &mp3_frames(800, 800) {
            chunker.push(f, back, &mut out);
        }
        chunker.flush(&mut out);
        let index = Index::build(&buffer_of(&out), L);
        let s = &index.segments;
        let mut gap_total = 0;
        for w in s.windows(2) {
            assert_eq!(w[1].msn, w[0].msn + 1);
            // Continuous: PDT plus EXTINF is the next PDT (also into the new source's audio).
            assert_eq!(w[0].end(), w[1].start, "phase {phase}: {:?}", w);
            assert!(w[0].duration > 0);
            assert!(w[0].duration <= target_duration(L) as i64 * 1_000_000);
        }
        for g in s.iter().filter(|g| g.media.is_none()) {
            assert!(g.start >= stop && g.end() <= back);
            gap_total += g.duration;
        }
        let after = s.iter().position(|x| x.start >= back).unwrap();
        assert_eq!(s[after].start, back);
        assert!(s[after].media.is_some());
        // The change of source is marked, before the gap.
        let first_gap = s.iter().position(|x| x.media.is_none()).unwrap();
        assert!(s[first_gap].discontinuity);
        assert!(s.iter().filter(|x| x.discontinuity).count() == 1);
        assert_eq!(gap_total, back - stop, "phase {phase}");
    }
}

/// The audio segments' spans tile the buffer: each starts where the one before ends.
fn assert_tiles(buffer: &RewindBuffer, segs: &[Segment]) {
    let mut prev: Option<&Span> = None;
    for s in segs.iter().filter(|s| s.media.is_some()) {
        let span = s.media.as_ref().unwrap();
        if let Some(p) = prev {
            let last = buffer.range(p.last_seq, p.last_seq).next().unwrap();
            let continues = if p.last_end == last.data.len() {
                span.first_seq == p.last_seq + 1 && span.first_offset == 0
            } else {
                span.first_seq == p.last_seq && span.first_offset == p.last_end
            };
            assert!(
                continues,
                "segment {} does not continue the one before: {p:?} {span:?}",
                s.msn
            );
        }
        prev = Some(span);
    }
}

/// Regression: a source switch inside a slot gave the slot to the new source, and the old
/// source's frames in it were in no segment.
#[test]
fn a_source_switch_mid_slot_keeps_every_frame() {
    for kind in [Kind::Mp3(44100), Kind::Aac(48000)] {
        let t0 = 1_764_000_000_000_000i64 - 1_764_000_000_000_000i64 % L;
        let frame_us = 1024 * 1_000_000 / i64::from(kind.rate());
        let frame_us = if matches!(kind, Kind::Mp3(_)) {
            frame_us * 1152 / 1024
        } else {
            frame_us
        };
        let mut chunker = Chunker::new(Duration::from_millis(500), 1, None, meta("A"));
        let mut out = vec![];
        // A runs until 1 s into slot 3, B connects 1.5 s later.
        let a = ((3 * L + 1_000_000) / frame_us) as usize;
        for f in &kind.frames(a, 0) {
            chunker.push(f, t0, &mut out);
        }
        chunker.new_source(&mut out);
        let a_end = out.last().unwrap().end();
        assert!((a_end - t0 - 3 * L - 1_000_000).abs() < frame_us);
        chunker.set_meta(meta("B"), &mut out);
        for f in &kind.frames(1000, a) {
            chunker.push(f, a_end + 1_500_000, &mut out);
        }
        chunker.flush(&mut out);
        let buffer = buffer_of(&out);
        let index = Index::build(&buffer, L);
        let s = &index.segments;
        let base = (t0 / L) as u64;
        // Slot 0 starts the buffer without a discontinuity, so it is not listed.
        let slot3 = s.iter().find(|x| x.msn == base + 3).unwrap();
        assert_eq!(
            slot3.end(),
            a_end,
            "{kind:?}: A's last second is in segment 3"
        );
        assert!(slot3.media.as_ref().unwrap().meta.title == "A");
        let next = s.iter().find(|x| x.msn == base + 4).unwrap();
        assert!(next.discontinuity);
        assert_eq!(next.start, a_end + 1_500_000);
        assert!(next.duration < 2 * L + frame_us);
        assert_tiles(&buffer, s);
        // Every chunk from the first listed segment on is in some segment.
        let first = s
            .iter()
            .find(|x| x.media.is_some())
            .unwrap()
            .media
            .as_ref()
            .unwrap();
        let listed: usize = s
            .iter()
            .filter_map(|x| x.media.as_ref())
            .map(|m| m.bytes)
            .sum();
        let last = s.last().unwrap().media.as_ref().unwrap();
        let held: usize = out
            .iter()
            .filter(|c| c.seq >= first.first_seq && c.seq <= last.last_seq)
            .map(|c| c.data.len())
            .sum();
        let last_chunk = out.iter().find(|c| c.seq == last.last_seq).unwrap();
        assert_eq!(
            listed,
            held - first.first_offset - (last_chunk.data.len() - last.last_end),
            "{kind:?}"
        );

        // A pure function of the chunks: a replica whose buffer starts later cuts the same
        // segments where both hold them.
        let later = buffer_of(&out[5..]);
        let other = Index::build(&later, L);
        assert!(other.segments.len() + 2 >= s.len() - 3);
        for seg in &other.segments {
            assert_eq!(Some(seg), s.iter().find(|x| x.msn == seg.msn), "{kind:?}");
        }
        assert_eq!(Index::build(&buffer_of(&out), L), index);
    }
}

#[test]
fn the_live_window_applies_to_plain_requests_and_their_deltas_only() {
    let w = Duration::from_secs(600);
    let live = |q: PlaylistQuery| q.with_live_window(w);
    assert_eq!(live(PlaylistQuery::default()).window, Some(w));
    let delta = live(PlaylistQuery {
        skip: true,
        ..Default::default()
    });
    assert_eq!((delta.window, delta.skip), (Some(w), true));
    let sid = live(PlaylistQuery {
        session_id: Some("s1".into()),
        ..Default::default()
    });
    assert_eq!(sid.window, Some(w));
    // An explicit window (longer or shorter) and a start time keep what they ask for.
    for asked in [Duration::from_secs(60), Duration::from_secs(86_400)] {
        let q = live(PlaylistQuery {
            window: Some(asked),
            skip: true,
            ..Default::default()
        });
        assert_eq!(q.window, Some(asked));
    }
    let at = live(PlaylistQuery {
        at: Some(1),
        ..Default::default()
    });
    assert_eq!(at.window, None);

    // Over an hour of audio: the windowed playlist lists the newest ten minutes, its delta
    // update is that playlist with its older segments skipped, and the whole buffer stays
    // reachable with `?window=`.
    let script = station(1, 9);
    let mut buffer = RewindBuffer::new(Duration::from_secs(4 * 3600));
    for c in &script.chunks {
        buffer.push(c.clone());
    }
    let r = render(&Index::build(&buffer, L), "x/seg/", "mp3", false);
    let whole = playlist(&r, &PlaylistQuery::default());
    let windowed = playlist(&r, &live(PlaylistQuery::default()));
    let listed: f64 = windowed.segments.iter().map(|s| s.extinf).sum();
    assert!((594.0..=606.0).contains(&listed), "{listed}");
    assert!(whole.segments.len() > 4 * windowed.segments.len());
    assert_eq!(
        whole.segments.last().map(|s| &s.uri),
        windowed.segments.last().map(|s| &s.uri)
    );
    let delta = playlist(
        &r,
        &live(PlaylistQuery {
            skip: true,
            ..Default::default()
        }),
    );
    assert!(delta.skipped > 0);
    assert_eq!(delta.msn, windowed.msn);
    let mut expanded = windowed.segments[..delta.skipped].to_vec();
    expanded.extend(delta.segments.iter().cloned());
    let mut dsn = delta.dsn;
    for s in &mut expanded {
        dsn += u64::from(s.discontinuity);
        s.dsn = dsn;
    }
    assert!(expanded == windowed.segments);
    let dvr = playlist(
        &r,
        &live(PlaylistQuery {
            window: Some(Duration::from_secs(86_400)),
            ..Default::default()
        }),
    );
    assert_eq!(dvr.segments, whole.segments);
}
