//! ID3v2.4 tags for packed-audio HLS segments (sans-IO): the `PRIV`
//! `com.apple.streaming.transportStreamTimestamp` frame every segment starts with, and the
//! `TIT2`/`TPE1` text frames that carry now-playing titles.

use bytes::{BufMut, BytesMut};

const PRIV_OWNER: &[u8] = b"com.apple.streaming.transportStreamTimestamp";
/// Titles are capped on input (4 KiB); a relay's in-band title is capped here so a tag stays small.
const MAX_TEXT: usize = 4096;

/// The 33-bit, 90 kHz MPEG timestamp of a content time (µs since the epoch). Derived from content
/// time alone, so every replica writes the same bytes for the same audio.
pub fn pts90k(micros: i64) -> u64 {
    let ticks = i128::from(micros) * 9 / 100;
    ticks.rem_euclid(1 << 33) as u64
}

/// A frame of an ID3v2.4 tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Id3Frame<'a> {
    /// The segment's first-sample timestamp.
    Timestamp(u64),
    /// `TIT2` (title) or `TPE1` (artist) as UTF-8 text.
    Text(&'a [u8; 4], &'a str),
}

/// The text frames for a now-playing title: `"Artist - Title"` becomes `TPE1` + `TIT2`, anything
/// else is the title alone.
pub fn title_frames(title: &str) -> Vec<Id3Frame<'_>> {
    match split_title(title) {
        (Some(artist), song) => vec![
            Id3Frame::Text(b"TIT2", song),
            Id3Frame::Text(b"TPE1", artist),
        ],
        (None, song) => vec![Id3Frame::Text(b"TIT2", song)],
    }
}

/// `(artist, title)` of a stream title.
pub fn split_title(title: &str) -> (Option<&str>, &str) {
    match title.split_once(" - ") {
        Some((artist, song)) if !artist.trim().is_empty() && !song.trim().is_empty() => {
            (Some(artist.trim()), song.trim())
        }
        _ => (None, title),
    }
}

/// Append a whole tag made of `frames`.
pub fn write_tag(out: &mut BytesMut, frames: &[Id3Frame<'_>]) {
    let mut body = BytesMut::new();
    for f in frames {
        match f {
            Id3Frame::Timestamp(pts) => {
                put_frame_header(&mut body, b"PRIV", PRIV_OWNER.len() + 1 + 8);
                body.put_slice(PRIV_OWNER);
                body.put_u8(0);
                body.put_u64(pts & ((1 << 33) - 1));
            }
            Id3Frame::Text(id, text) => {
                let text = crate::core::icy::truncate_utf8(text, MAX_TEXT).as_bytes();
                put_frame_header(&mut body, id, 1 + text.len());
                // Encoding 3: UTF-8 (ID3v2.4).
                body.put_u8(3);
                body.put_slice(text);
            }
        }
    }
    out.put_slice(b"ID3");
    out.put_slice(&[4, 0, 0]);
    out.put_slice(&syncsafe(body.len()));
    out.put_slice(&body);
}

fn put_frame_header(out: &mut BytesMut, id: &[u8; 4], len: usize) {
    out.put_slice(id);
    // ID3v2.4 frame sizes are syncsafe like the tag size.
    out.put_slice(&syncsafe(len));
    out.put_u16(0);
}

/// 28-bit syncsafe integer; the callers' sizes are far below 256 MiB.
fn syncsafe(n: usize) -> [u8; 4] {
    let n = n.min((1 << 28) - 1) as u32;
    [
        ((n >> 21) & 0x7F) as u8,
        ((n >> 14) & 0x7F) as u8,
        ((n >> 7) & 0x7F) as u8,
        (n & 0x7F) as u8,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_tag_is_apples_73_bytes() {
        let mut out = BytesMut::new();
        write_tag(&mut out, &[Id3Frame::Timestamp(0x1_2345_6789)]);
        assert_eq!(out.len(), 73);
        assert_eq!(&out[..10], b"ID3\x04\x00\x00\x00\x00\x00\x3F");
        assert_eq!(&out[10..14], b"PRIV");
        assert_eq!(&out[20..64], PRIV_OWNER);
        assert_eq!(out[64], 0);
        assert_eq!(&out[65..], &0x1_2345_6789u64.to_be_bytes());
    }

    #[test]
    fn pts_wraps_at_33_bits_and_handles_any_time() {
        assert_eq!(pts90k(1_000_000), 90_000);
        assert_eq!(pts90k(0), 0);
        let wrap = (1i64 << 33) * 100 / 9;
        assert!(pts90k(wrap + 1_000_000) < 100_000);
        assert!(pts90k(-1) < 1 << 33);
        assert!(pts90k(i64::MAX) < 1 << 33);
        assert!(pts90k(i64::MIN) < 1 << 33);
    }

    #[test]
    fn titles_split_into_artist_and_song() {
        assert_eq!(
            split_title("Nina Simone - Sinnerman"),
            (Some("Nina Simone"), "Sinnerman")
        );
        assert_eq!(split_title("News at nine"), (None, "News at nine"));
        assert_eq!(split_title(" - x"), (None, " - x"));
        let mut out = BytesMut::new();
        write_tag(&mut out, &title_frames("A - B"));
        assert_eq!(&out[10..14], b"TIT2");
        assert_eq!(&out[20..22], b"\x03B");
        assert_eq!(&out[22..26], b"TPE1");
        // Long titles are cut on a character boundary.
        let long = "é".repeat(5000);
        let mut out = BytesMut::new();
        write_tag(&mut out, &title_frames(&long));
        assert!(out.len() < MAX_TEXT + 32);
        assert!(std::str::from_utf8(&out[21..]).is_ok());
    }
}
