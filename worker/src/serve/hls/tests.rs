//! Playlist rules over long synthetic buffers (hours of audio with gaps, source changes and title
//! changes), checked across many reloads, and segment bodies byte for byte.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::id3::pts90k;
use super::index::{Index, IndexKey, target_duration};
use super::playlist::{PlaylistQuery, Rendered, render};
use super::segment;
use crate::core::chunk::{Chunk, Meta};
use crate::core::chunker::Chunker;
use crate::core::codec::{Format, Frame, frames_of};
use crate::core::rewind::RewindBuffer;

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
                if !next.discontinuity && !s.gap {
                    // Without a discontinuity the media timeline continues exactly (a gap
                    // segment, which has no media, ends at its slot boundary).
                    assert!((a + (s.extinf * 1e6).round() as i64 - b).abs() <= 1000);
                }
            }
            // Identity from content time: the sequence number is the slot of the start.
            let slot = pdt_micros(&s.pdt).div_euclid(L) as u64;
            assert_eq!(slot, s.msn, "msn {} at {}", s.msn, s.pdt);
            gaps += usize::from(s.gap);
            discs += usize::from(s.discontinuity);
            if s.gap {
                assert_eq!(s.extinf, L as f64 / 1e6);
            }
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
        assert_eq!(&body[65..73], &pts90k(s.start).to_be_bytes());
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

#[test]
fn a_new_source_owns_its_slot_and_gaps_are_listed() {
    let t0 = 1_764_000_000_000_000i64 - 1_764_000_000_000_000i64 % L;
    let mut chunker = Chunker::new(Duration::from_millis(500), 1, None, meta(""));
    let mut out = vec![];
    for f in &mp3_frames(400, 0) {
        chunker.push(f, t0, &mut out); // ~10.4 s: slot 0 whole, slot 1 partial
    }
    chunker.new_source(&mut out);
    // Back 20 s later: slots 2 and 3 are gaps... no: 1 partial, then gap slots, then new audio.
    let back = out.last().unwrap().end() + 20_000_000;
    for f in &mp3_frames(600, 400) {
        chunker.push(f, back, &mut out);
    }
    chunker.flush(&mut out);
    let mut buffer = RewindBuffer::new(Duration::from_secs(3600));
    for c in &out {
        buffer.push(c.clone());
    }
    let index = Index::build(&buffer, L);
    let s = &index.segments;
    let base = (t0 / L) as u64;
    assert_eq!(s[0].msn, base);
    assert!(!s[0].discontinuity && s[0].media.is_some());
    // The old source's last partial slot, then gaps up to the slot where the new source begins.
    assert!(s[1].media.is_some() && s[1].duration < L);
    let first_new = s.iter().position(|x| x.start >= back).unwrap();
    for g in &s[2..first_new] {
        assert!(g.media.is_none());
    }
    assert!(
        s[2].discontinuity,
        "the gap after the old source starts the new source's epoch"
    );
    assert!(s[3..=first_new].iter().all(|x| !x.discontinuity));
    assert_eq!(s[first_new].start, back);
    assert_eq!((s[1].dsn, s[2].dsn, s[first_new].dsn), (0, 1, 1));
    // Consecutive sequence numbers throughout.
    for w in s.windows(2) {
        assert_eq!(w[1].msn, w[0].msn + 1);
    }
}
