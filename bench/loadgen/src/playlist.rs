//! What a player needs from a media playlist (RFC 8216): the target duration, the media
//! sequence, the segments (sequence number, duration, URI), delta updates (`EXT-X-SKIP`), the
//! server's delta support (`EXT-X-SERVER-CONTROL:CAN-SKIP-UNTIL`) and `EXT-X-START`. Everything
//! else (dates, discontinuities, ID3) does not change what a player requests, so it is ignored.

use anyhow::{Context, bail};

#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub msn: u64,
    pub duration: f64,
    pub uri: String,
    /// `EXT-X-GAP`: listed but not to be fetched.
    pub gap: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Playlist {
    pub target_duration: f64,
    pub media_sequence: u64,
    /// `EXT-X-SKIP:SKIPPED-SEGMENTS=`: segments left out before the first listed one.
    pub skipped: u64,
    /// `CAN-SKIP-UNTIL` in seconds: the server answers `_HLS_skip=YES`.
    pub can_skip_until: Option<f64>,
    /// `EXT-X-START:TIME-OFFSET` (seconds; negative counts from the end).
    pub start_offset: Option<f64>,
    pub segments: Vec<Segment>,
    pub ended: bool,
}

fn attr<'a>(attrs: &'a str, name: &str) -> Option<&'a str> {
    attrs.split(',').find_map(|a| {
        let (k, v) = a.split_once('=')?;
        (k.trim() == name).then_some(v.trim())
    })
}

impl Playlist {
    pub fn parse(text: &str) -> anyhow::Result<Playlist> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        if lines.next() != Some("#EXTM3U") {
            bail!("not a playlist (no #EXTM3U)");
        }
        let mut p = Playlist::default();
        let mut target = None;
        let (mut duration, mut gap) = (None, false);
        let mut uris = vec![];
        for l in lines {
            if let Some(v) = l.strip_prefix("#EXT-X-TARGETDURATION:") {
                target = Some(v.parse::<f64>().context("EXT-X-TARGETDURATION")?);
            } else if let Some(v) = l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                p.media_sequence = v.parse().context("EXT-X-MEDIA-SEQUENCE")?;
            } else if let Some(v) = l.strip_prefix("#EXT-X-SKIP:") {
                p.skipped = attr(v, "SKIPPED-SEGMENTS")
                    .context("EXT-X-SKIP without SKIPPED-SEGMENTS")?
                    .parse()
                    .context("SKIPPED-SEGMENTS")?;
            } else if let Some(v) = l.strip_prefix("#EXT-X-SERVER-CONTROL:") {
                p.can_skip_until = attr(v, "CAN-SKIP-UNTIL").and_then(|s| s.parse().ok());
            } else if let Some(v) = l.strip_prefix("#EXT-X-START:") {
                p.start_offset = attr(v, "TIME-OFFSET").and_then(|s| s.parse().ok());
            } else if let Some(v) = l.strip_prefix("#EXTINF:") {
                let d = v.split(',').next().unwrap_or("");
                duration = Some(d.trim().parse::<f64>().context("EXTINF")?);
            } else if l == "#EXT-X-GAP" {
                gap = true;
            } else if l == "#EXT-X-ENDLIST" {
                p.ended = true;
            } else if !l.starts_with('#') {
                let d = duration.take().context("segment URI without EXTINF")?;
                uris.push((d, l.to_string(), std::mem::take(&mut gap)));
            }
        }
        p.target_duration = target.context("no EXT-X-TARGETDURATION")?;
        let first = p.media_sequence + p.skipped;
        p.segments = uris
            .into_iter()
            .enumerate()
            .map(|(i, (duration, uri, gap))| Segment {
                msn: first + i as u64,
                duration,
                uri,
                gap,
            })
            .collect();
        Ok(p)
    }

    /// The sequence number after the last listed segment.
    pub fn end_msn(&self) -> u64 {
        self.media_sequence + self.skipped + self.segments.len() as u64
    }

    /// Where hls.js and AVPlayer start a live playlist: `EXT-X-START` if given, otherwise the
    /// segment holding the point three target durations before the end.
    pub fn live_start_browser(&self) -> Option<u64> {
        let total: f64 = self.segments.iter().map(|s| s.duration).sum();
        let from_start = match self.start_offset {
            Some(o) if o < 0.0 => (total + o).max(0.0),
            Some(o) => o.min(total),
            None => (total - 3.0 * self.target_duration).max(0.0),
        };
        let mut t = 0.0;
        for s in &self.segments {
            if t + s.duration > from_start {
                return Some(s.msn);
            }
            t += s.duration;
        }
        self.segments.last().map(|s| s.msn)
    }

    /// Where ffmpeg starts a live playlist (`live_start_index` -3): the third segment from the
    /// end, `EXT-X-START` ignored (its default).
    pub fn live_start_ffmpeg(&self) -> Option<u64> {
        let n = self.segments.len();
        self.segments.get(n.saturating_sub(3)).map(|s| s.msn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Taken from a running server (trimmed): a full playlist with a session id in its URIs.
    const FULL: &str = "#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:13
#EXT-X-SERVER-CONTROL:CAN-SKIP-UNTIL=78.000000
#EXT-X-MEDIA-SEQUENCE:299442800
#EXT-X-DISCONTINUITY-SEQUENCE:0
#EXT-X-PROGRAM-DATE-TIME:2026-12-07T15:20:00.015Z
#EXTINF:6.008163,
live/seg/299442800.mp3?session_id=abc
#EXT-X-PROGRAM-DATE-TIME:2026-12-07T15:20:06.024Z
#EXTINF:5.982041,
live/seg/299442801.mp3?session_id=abc
#EXT-X-PROGRAM-DATE-TIME:2026-12-07T15:20:12.006Z
#EXTINF:6.008164,
live/seg/299442802.mp3?session_id=abc
#EXT-X-PROGRAM-DATE-TIME:2026-12-07T15:20:18.014Z
#EXTINF:6.008163,
live/seg/299442803.mp3?session_id=abc
#EXT-X-PROGRAM-DATE-TIME:2026-12-07T15:20:24.022Z
#EXTINF:5.982041,
live/seg/299442804.mp3?session_id=abc
#EXT-X-PROGRAM-DATE-TIME:2026-12-07T15:20:30.004Z
#EXTINF:6.008163,
live/seg/299442805.mp3?session_id=abc
#EXT-X-PROGRAM-DATE-TIME:2026-12-07T15:20:36.012Z
#EXTINF:6.008163,
live/seg/299442806.mp3?session_id=abc
#EXT-X-PROGRAM-DATE-TIME:2026-12-07T15:20:42.020Z
#EXTINF:5.982041,
live/seg/299442807.mp3?session_id=abc
";

    /// A delta update from the same server (`_HLS_skip=YES`).
    const DELTA: &str = "#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:13
#EXT-X-SERVER-CONTROL:CAN-SKIP-UNTIL=78.000000
#EXT-X-MEDIA-SEQUENCE:299442800
#EXT-X-DISCONTINUITY-SEQUENCE:0
#EXT-X-SKIP:SKIPPED-SEGMENTS=3
#EXT-X-PROGRAM-DATE-TIME:2026-12-07T15:20:18.014Z
#EXTINF:6.008163,
live/seg/299442803.mp3
#EXT-X-PROGRAM-DATE-TIME:2026-12-07T15:20:24.022Z
#EXTINF:5.982041,
live/seg/299442804.mp3
#EXT-X-PROGRAM-DATE-TIME:2026-12-07T15:20:30.004Z
#EXTINF:6.008163,
live/seg/299442805.mp3
";

    #[test]
    fn parses_a_full_playlist() {
        let p = Playlist::parse(FULL).unwrap();
        assert_eq!(p.target_duration, 13.0);
        assert_eq!(p.media_sequence, 299442800);
        assert_eq!(p.skipped, 0);
        assert_eq!(p.can_skip_until, Some(78.0));
        assert_eq!(p.segments.len(), 8);
        assert_eq!(
            p.segments[1],
            Segment {
                msn: 299442801,
                duration: 5.982041,
                uri: "live/seg/299442801.mp3?session_id=abc".into(),
                gap: false,
            }
        );
        assert_eq!(p.end_msn(), 299442808);
        // 8 segments of about 6 s, 48 s in all: 39 s (3 × 13) from the end falls in the 2nd.
        assert_eq!(p.live_start_browser(), Some(299442801));
        assert_eq!(p.live_start_ffmpeg(), Some(299442805));
    }

    #[test]
    fn parses_a_delta_update() {
        let p = Playlist::parse(DELTA).unwrap();
        assert_eq!(p.skipped, 3);
        let msns: Vec<u64> = p.segments.iter().map(|s| s.msn).collect();
        assert_eq!(msns, [299442803, 299442804, 299442805]);
        assert_eq!(p.segments[0].uri, "live/seg/299442803.mp3");
        assert_eq!(p.end_msn(), 299442806);
    }

    #[test]
    fn start_offset_and_gaps() {
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXT-X-START:TIME-OFFSET=-7,PRECISE=YES\n\
                    #EXTINF:6,\na.mp3\n#EXT-X-GAP\n#EXTINF:6,\nb.mp3\n#EXTINF:6,\nc.mp3\n";
        let p = Playlist::parse(text).unwrap();
        assert_eq!(p.start_offset, Some(-7.0));
        assert!(p.segments[1].gap && !p.segments[2].gap);
        // 18 s listed, 7 s from the end = 11 s from the start: the second segment.
        assert_eq!(p.live_start_browser(), Some(1));
        assert_eq!(p.can_skip_until, None);
    }

    #[test]
    fn rejects_what_is_not_a_playlist() {
        assert!(Playlist::parse("<html>").is_err());
        assert!(Playlist::parse("#EXTM3U\n#EXTINF:6,\na.mp3\n").is_err());
        assert!(Playlist::parse("#EXTM3U\n#EXT-X-TARGETDURATION:6\nb.mp3\n").is_err());
    }
}
