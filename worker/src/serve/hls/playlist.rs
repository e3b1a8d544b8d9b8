//! Playlist text (sans-IO): the media playlist over an [`Index`] (full DVR window, `?window=`,
//! `?at=` as `EXT-X-START`, delta updates with `EXT-X-SKIP`) and the multivariant playlist of a
//! stream group.
//!
//! The per-segment lines are rendered once per index ([`Rendered`]); a request only assembles a
//! header and slices of that text, so a four-hour playlist costs a copy, not a rebuild.

use std::fmt::Write as _;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use super::id3::split_title;
use super::index::{Index, Segment, target_duration};
use crate::time::rfc3339;

/// `CAN-SKIP-UNTIL` in target durations (the minimum the specification allows).
const SKIP_TARGETS: u64 = 6;
/// A live playlist is never shorter than this many target durations (`?window=` is clamped).
const MIN_WINDOW_TARGETS: u64 = 3;
/// `EXT-X-DATERANGE` class of now-playing titles.
pub const TITLE_CLASS: &str = "io.streammachine.title";

/// What a playlist request asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlaylistQuery {
    /// List only this much of the newest audio.
    pub window: Option<Duration>,
    /// Start playing at this content time (µs since the epoch).
    pub at: Option<i64>,
    /// `_HLS_skip=YES` (or `v2`): a delta update.
    pub skip: bool,
    /// Carried into segment URIs so segment requests can be counted per listener.
    pub session_id: Option<String>,
}

impl PlaylistQuery {
    /// The playlist every plain live request gets, cacheable as is.
    pub fn is_plain(&self) -> bool {
        self.window.is_none() && self.at.is_none() && self.session_id.is_none()
    }

    /// The query as served: a request that names neither a window nor a time gets the stream's
    /// live window (its delta updates too, so they stay deltas of the playlist the player
    /// loaded); `?window=` and `?at=` keep the whole buffer within reach.
    pub fn with_live_window(mut self, live_window: Duration) -> PlaylistQuery {
        if self.window.is_none() && self.at.is_none() {
            self.window = Some(live_window);
        }
        self
    }
}

/// A session id as it may appear in a URI unescaped; anything else is not carried.
pub fn valid_session_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

pub fn parse_query(query: &str) -> Result<PlaylistQuery, String> {
    let mut q = PlaylistQuery::default();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "window" => {
                let secs: f64 = v
                    .parse()
                    .map_err(|_| "`window` must be a number of seconds".to_string())?;
                if !(secs > 0.0 && secs < 1e9) {
                    return Err("`window` must be a positive number of seconds".into());
                }
                q.window = Some(Duration::from_secs_f64(secs));
            }
            "at" => q.at = Some(crate::time::parse_time(&v)?),
            "_HLS_skip" => q.skip = matches!(v.as_ref(), "YES" | "v2"),
            "session_id" if valid_session_id(&v) => q.session_id = Some(v.into_owned()),
            _ => {}
        }
    }
    Ok(q)
}

/// The listable segments of an index rendered to text once.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    text: Bytes,
    /// Where each listed segment's lines start in `text` (one more entry: the end).
    seg_at: Vec<usize>,
    /// Where each listed segment's URI line ends (its `\n`).
    uri_end: Vec<usize>,
    /// Playlist time (sum of `EXTINF`) at each listed segment's start, µs (one more: the end).
    offsets: Vec<i64>,
    starts: Vec<i64>,
    msn: Vec<u64>,
    /// `EXT-X-DISCONTINUITY-SEQUENCE` if the playlist started at that segment.
    dsn_base: Vec<u64>,
    /// (start, next title's start, line) of each title change.
    titles: Vec<(i64, i64, String)>,
    target: u64,
    aac: bool,
}

/// Render `index` for a stream whose segment URIs are `<uri_prefix><msn>.<extension>`.
pub fn render(index: &Index, uri_prefix: &str, extension: &str, aac: bool) -> Rendered {
    let listed = index.advertised();
    let mut text = String::with_capacity(listed.len() * 110);
    let mut r = Rendered {
        target: target_duration(index.segment_len),
        aac,
        ..Rendered::default()
    };
    let mut offset = 0i64;
    for s in listed {
        r.seg_at.push(text.len());
        r.offsets.push(offset);
        r.starts.push(s.start);
        r.msn.push(s.msn);
        r.dsn_base.push(s.dsn - u64::from(s.discontinuity));
        render_segment(&mut text, s, uri_prefix, extension);
        // The URI line ends right before the final newline.
        r.uri_end.push(text.len() - 1);
        offset += s.duration;
    }
    r.seg_at.push(text.len());
    r.offsets.push(offset);
    for (i, t) in index.titles.iter().enumerate() {
        let until = index.titles.get(i + 1).map_or(i64::MAX, |n| n.at);
        r.titles.push((t.at, until, daterange(t.at, &t.meta.title)));
    }
    r.text = Bytes::from(text);
    r
}

fn render_segment(out: &mut String, s: &Segment, uri_prefix: &str, extension: &str) {
    if s.discontinuity {
        out.push_str("#EXT-X-DISCONTINUITY\n");
    }
    let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", rfc3339(s.start));
    let _ = writeln!(out, "#EXTINF:{},", seconds(s.duration));
    if s.media.is_none() {
        out.push_str("#EXT-X-GAP\n");
    }
    let _ = writeln!(out, "{uri_prefix}{}.{extension}", s.msn);
}

/// Microseconds as decimal seconds, exactly.
fn seconds(us: i64) -> String {
    let sign = if us < 0 { "-" } else { "" };
    let us = us.unsigned_abs();
    format!("{sign}{}.{:06}", us / 1_000_000, us % 1_000_000)
}

/// Attribute values are quoted strings: no double quotes, no line breaks.
fn quoted(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' => '\'',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

fn daterange(at: i64, title: &str) -> String {
    let mut line = format!(
        "#EXT-X-DATERANGE:ID=\"title-{at}\",CLASS=\"{TITLE_CLASS}\",START-DATE=\"{}\",END-ON-NEXT=YES",
        rfc3339(at)
    );
    match split_title(title) {
        (Some(artist), song) => {
            let _ = write!(
                line,
                ",X-TITLE=\"{}\",X-ARTIST=\"{}\"",
                quoted(song),
                quoted(artist)
            );
        }
        (None, song) => {
            let _ = write!(line, ",X-TITLE=\"{}\"", quoted(song));
        }
    }
    line.push('\n');
    line
}

/// Where a request's playlist starts and what it says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    /// First listed segment (index into the rendered segments).
    pub from: usize,
    /// Segments replaced by `EXT-X-SKIP` after `from`.
    pub skipped: usize,
    /// `EXT-X-START:TIME-OFFSET`, µs from the playlist's first segment.
    pub start_offset: Option<i64>,
    /// `at` pointed outside the playlist and was moved to its edge.
    pub clamped: bool,
}

impl Rendered {
    pub fn len(&self) -> usize {
        self.msn.len()
    }

    pub fn is_empty(&self) -> bool {
        self.msn.is_empty()
    }

    pub fn target(&self) -> u64 {
        self.target
    }

    /// `CAN-SKIP-UNTIL`, µs.
    fn skip_until(&self) -> i64 {
        (SKIP_TARGETS * self.target * 1_000_000) as i64
    }

    /// The view a query asks for; `None` when nothing can be listed yet.
    pub fn view(&self, q: &PlaylistQuery) -> Option<View> {
        let n = self.len();
        if n == 0 {
            return None;
        }
        let end = self.offsets[n];
        let mut from = 0;
        if let Some(w) = q.window {
            let min = (MIN_WINDOW_TARGETS * self.target * 1_000_000) as i64;
            let w = (w.as_micros() as i64).max(min);
            from = self.offsets.partition_point(|&o| end - o > w).min(n - 1);
        }
        let mut start_offset = None;
        let mut clamped = false;
        if let Some(at) = q.at {
            // The segment holding `at`: the last one starting at or before it.
            let j = self.starts.partition_point(|&s| s <= at);
            let (j, within) = if j == 0 || j - 1 < from {
                clamped = at < self.starts[from];
                (from, 0)
            } else {
                let j = j - 1;
                let dur = self.offsets[j + 1] - self.offsets[j];
                let within = at - self.starts[j];
                if within >= dur {
                    // In a hole after the segment (a gap before a discontinuity): the next one.
                    clamped = j + 1 == n;
                    (j.min(n - 1), if j + 1 == n { 0 } else { dur })
                } else {
                    (j, within)
                }
            };
            start_offset = Some(self.offsets[j] - self.offsets[from] + within);
        }
        let mut skipped = 0;
        if q.skip {
            let until = self.skip_until();
            // Offsets grow, so the skipped ones are a prefix: found by bisection, as every request
            // (cached ones too) computes its view.
            skipped = self.offsets[from..n].partition_point(|&o| end - o > until);
        }
        Some(View {
            from,
            skipped,
            start_offset,
            clamped,
        })
    }

    /// The playlist text for `view`; `suffix` (e.g. `?session_id=x`) is appended to every URI.
    pub fn assemble(&self, view: &View, suffix: Option<&str>) -> Bytes {
        let n = self.len();
        let from = view.from.min(n.saturating_sub(1));
        let first = from + view.skipped.min(n - from);
        let mut head = String::with_capacity(512);
        let version = if view.skipped > 0 { 9 } else { 3 };
        let _ = write!(
            head,
            "#EXTM3U\n#EXT-X-VERSION:{version}\n#EXT-X-TARGETDURATION:{}\n#EXT-X-SERVER-CONTROL:CAN-SKIP-UNTIL={}\n",
            self.target,
            seconds(self.skip_until())
        );
        if self.aac {
            // ADTS frames decode independently (unlike MP3's bit reservoir).
            head.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
        }
        if let (Some(msn), Some(dsn)) = (self.msn.get(from), self.dsn_base.get(from)) {
            let _ = write!(
                head,
                "#EXT-X-MEDIA-SEQUENCE:{msn}\n#EXT-X-DISCONTINUITY-SEQUENCE:{dsn}\n"
            );
        }
        if let Some(o) = view.start_offset {
            let _ = writeln!(head, "#EXT-X-START:TIME-OFFSET={},PRECISE=YES", seconds(o));
        }
        // Every title that is on air during a listed segment, also one that began earlier.
        if let (Some(&lo), Some(&last)) = (self.starts.get(from), self.starts.get(n - 1)) {
            let hi = last + (self.offsets[n] - self.offsets[n - 1]);
            for (at, until, line) in &self.titles {
                if *at < hi && *until > lo {
                    head.push_str(line);
                }
            }
        }
        if view.skipped > 0 {
            let _ = writeln!(head, "#EXT-X-SKIP:SKIPPED-SEGMENTS={}", first - from);
        }
        let body_from = self.seg_at.get(first).copied().unwrap_or(self.text.len());
        match suffix {
            None => {
                let mut out = BytesMut::with_capacity(head.len() + self.text.len() - body_from);
                out.put_slice(head.as_bytes());
                out.put_slice(&self.text[body_from..]);
                out.freeze()
            }
            Some(sfx) => {
                let mut out = BytesMut::with_capacity(
                    head.len() + self.text.len() - body_from + (n - first) * sfx.len(),
                );
                out.put_slice(head.as_bytes());
                let mut pos = body_from;
                for &e in &self.uri_end[first..n] {
                    out.put_slice(&self.text[pos..e]);
                    out.put_slice(sfx.as_bytes());
                    pos = e;
                }
                out.put_slice(&self.text[pos..]);
                out.freeze()
            }
        }
    }
}

/// One entry of a multivariant playlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    pub uri: String,
    /// Peak segment bitrate, bits/s.
    pub bandwidth: u64,
    pub average_bandwidth: u64,
    pub codecs: String,
}

pub fn multivariant(variants: &[Variant]) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:3\n");
    for v in variants {
        let _ = write!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},CODECS=\"{}\"\n{}\n",
            v.bandwidth, v.average_bandwidth, v.codecs, v.uri
        );
    }
    out
}

/// Measured (peak, average) bitrate of an index's media segments, bits/s, counting the bytes a
/// client downloads. Short segments (after a discontinuity) are left out of the peak: their tag
/// weighs too much to say anything about the audio.
pub fn measured_bandwidth(index: &Index) -> Option<(u64, u64)> {
    let (mut bytes, mut micros, mut peak) = (0u64, 0u64, 0u64);
    for s in index.advertised() {
        let Some(m) = &s.media else { continue };
        // The leading tag: 73 bytes of timestamp plus the title.
        let b = (m.bytes + 73 + m.meta.title.len()) as u64;
        let d = s.duration.max(1) as u64;
        bytes += b;
        micros += d;
        if s.duration * 2 >= index.segment_len {
            peak = peak.max(b * 8_000_000 / d);
        }
    }
    (micros > 0).then(|| {
        let avg = bytes * 8_000_000 / micros;
        (peak.max(avg), avg)
    })
}
