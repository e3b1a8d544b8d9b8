//! Playlist compression (sans-IO): which encoding a request accepts, gzip and brotli, and the
//! ETag of each representation.
//!
//! Playlists are text that repeats itself segment after segment (a four-hour one shrinks about
//! tenfold); segments are compressed audio and are never compressed again.

use std::io::Write as _;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;

/// The level of the cached playlists, compressed once per playlist version on the rebuild's
/// blocking thread: a third smaller than the fastest level, for about 1.5 ms per four hours of
/// playlist (numbers in `docs/hls.md`).
pub const CACHED_LEVEL: u32 = 6;
/// The level of playlists assembled per request (`?at=`, `?session_id=`, other windows): the
/// fastest, about 160 µs per four hours on the request's thread, ninefold smaller.
pub const PER_REQUEST_LEVEL: u32 = 1;

/// Brotli quality of the cached playlists: half the size of gzip's best for about twice the
/// time of gzip level 6 (2.9 ms per four hours); higher qualities cost ten times more and gain
/// nothing on playlist text.
pub const BROTLI_QUALITY: u32 = 6;
/// Brotli window: 4 MiB, more than any playlist.
const BROTLI_LGWIN: u32 = 22;

/// How a playlist response body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Brotli,
}

impl Encoding {
    /// The `Content-Encoding` value (`None`: the header is left out).
    pub fn header(self) -> Option<&'static str> {
        match self {
            Encoding::Identity => None,
            Encoding::Gzip => Some("gzip"),
            Encoding::Brotli => Some("br"),
        }
    }
}

/// The q-values a request gives gzip and brotli (0: refused).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Accepted {
    gzip: f32,
    br: f32,
}

impl Accepted {
    /// What to send when brotli is at hand (`br_available`) or not: the accepted encoding with
    /// the higher q-value, brotli on a tie (the smaller body), plain text when neither is.
    pub fn choose(self, br_available: bool) -> Encoding {
        if br_available && self.br > 0.0 && self.br >= self.gzip {
            Encoding::Brotli
        } else if self.gzip > 0.0 {
            Encoding::Gzip
        } else {
            Encoding::Identity
        }
    }
}

/// What the `Accept-Encoding` values of a request (all its header lines) accept: an encoding
/// named (`gzip` or `x-gzip`, `br`) with its q-value, or else `*`'s (RFC 9110, 12.5.3). A
/// malformed q-value makes its entry count as refused, so a request we cannot read gets the
/// plain text every client understands.
pub fn negotiate<'a>(values: impl IntoIterator<Item = &'a str>) -> Accepted {
    let mut gzip: Option<f32> = None;
    let mut br: Option<f32> = None;
    let mut star: Option<f32> = None;
    for value in values {
        for entry in value.split(',') {
            let mut parts = entry.split(';');
            let coding = parts.next().unwrap_or("").trim();
            if coding.is_empty() {
                continue;
            }
            let q = quality(parts);
            let slot =
                if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                    &mut gzip
                } else if coding.eq_ignore_ascii_case("br") {
                    &mut br
                } else if coding == "*" {
                    &mut star
                } else {
                    continue;
                };
            *slot = Some(slot.map_or(q, |o| o.max(q)));
        }
    }
    Accepted {
        gzip: gzip.or(star).unwrap_or(0.0),
        br: br.or(star).unwrap_or(0.0),
    }
}

/// The q-value among an entry's parameters: 1 when absent, 0 when malformed.
fn quality<'a>(params: impl Iterator<Item = &'a str>) -> f32 {
    for p in params {
        let Some((name, value)) = p.split_once('=') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("q") {
            continue;
        }
        return parse_q(value.trim()).unwrap_or(0.0);
    }
    1.0
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`.
fn parse_q(v: &str) -> Option<f32> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match int {
        "0" => v.parse().ok(),
        "1" if frac.bytes().all(|b| b == b'0') => Some(1.0),
        _ => None,
    }
}

/// `body` gzipped at `level` (0-9). The header carries no time or name, so every replica
/// produces the same bytes for the same playlist. `None` only if the encoder fails (it writes to
/// memory, so it does not); the caller then serves the plain text.
pub fn gzip_at(body: &[u8], level: u32) -> Option<Bytes> {
    let mut e = GzEncoder::new(
        Vec::with_capacity(body.len() / 6 + 64),
        Compression::new(level.min(9)),
    );
    e.write_all(body).ok()?;
    e.finish().ok().map(Bytes::from)
}

/// `body` compressed with brotli at [`BROTLI_QUALITY`] (deterministic too); `None` as for
/// [`gzip_at`].
pub fn brotli(body: &[u8]) -> Option<Bytes> {
    let mut out = Vec::with_capacity(body.len() / 12 + 64);
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, BROTLI_QUALITY, BROTLI_LGWIN);
        w.write_all(body).ok()?;
        w.flush().ok()?;
    }
    Some(Bytes::from(out))
}

/// The strong ETag of a compressed representation of a body whose plain ETag is `plain` (a
/// quoted string): the same tag with `-gz` (gzip) or `-br` inside the quotes.
pub fn encoded_etag(plain: &str, encoding: Encoding) -> String {
    let suffix = match encoding {
        Encoding::Identity => return plain.to_string(),
        Encoding::Gzip => "-gz",
        Encoding::Brotli => "-br",
    };
    match plain.strip_suffix('"') {
        Some(open) => format!("{open}{suffix}\""),
        None => format!("{plain}{suffix}"),
    }
}

/// `If-None-Match` holds `etag` (or `*`). Weak comparison, as the header asks for: `W/"x"`
/// matches `"x"` (a proxy that recompresses may have weakened our tag).
pub fn none_match<'a>(values: impl IntoIterator<Item = &'a str>, etag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_string();
    let want = bare(etag);
    values
        .into_iter()
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == "*" || bare(t) == want)
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    /// What a request with these header lines gets for a playlist assembled per request
    /// (gzip or plain).
    fn n(v: &[&str]) -> Encoding {
        negotiate(v.iter().copied()).choose(false)
    }

    /// ... and for a cached one (brotli too).
    fn c(v: &[&str]) -> Encoding {
        negotiate(v.iter().copied()).choose(true)
    }

    #[test]
    fn brotli_when_cached_and_preferred_or_tied() {
        use Encoding::{Brotli, Gzip, Identity};
        assert_eq!(c(&["gzip, deflate, br"]), Brotli);
        assert_eq!(c(&["br"]), Brotli);
        assert_eq!(n(&["br"]), Identity);
        assert_eq!(n(&["gzip, br"]), Gzip);
        assert_eq!(c(&["gzip;q=1, br;q=0.5"]), Gzip);
        assert_eq!(c(&["gzip;q=0.5, br;q=0.9"]), Brotli);
        assert_eq!(c(&["gzip, br;q=0"]), Gzip);
        assert_eq!(c(&["gzip"]), Gzip);
        assert_eq!(c(&["*"]), Brotli);
        assert_eq!(c(&["*, br;q=0"]), Gzip);
        assert_eq!(c(&["br;q=2, gzip"]), Gzip);
        assert_eq!(c(&["identity"]), Identity);
        assert_eq!(c(&["BR"]), Brotli);
        assert_eq!(Brotli.header(), Some("br"));
        assert_eq!(Gzip.header(), Some("gzip"));
        assert_eq!(Identity.header(), None);
    }

    #[test]
    fn accept_encoding_q_values() {
        use Encoding::{Gzip, Identity};
        assert_eq!(n(&[]), Identity);
        assert_eq!(n(&[""]), Identity);
        assert_eq!(n(&["gzip"]), Gzip);
        assert_eq!(n(&["GZip"]), Gzip);
        assert_eq!(n(&["x-gzip"]), Gzip);
        assert_eq!(n(&["gzip, deflate, br"]), Gzip);
        assert_eq!(n(&["deflate, br"]), Identity);
        assert_eq!(n(&["deflate"]), Identity);
        assert_eq!(n(&["identity"]), Identity);
        assert_eq!(n(&["gzip;q=0"]), Identity);
        assert_eq!(n(&["gzip; q=0.000"]), Identity);
        assert_eq!(n(&["gzip;q=0.001"]), Gzip);
        assert_eq!(n(&["gzip;q=0.5, identity;q=1"]), Gzip);
        assert_eq!(n(&["gzip;Q=1.0"]), Gzip);
        // `*` stands for gzip unless gzip is named.
        assert_eq!(n(&["*"]), Gzip);
        assert_eq!(n(&["*;q=0"]), Identity);
        assert_eq!(n(&["*, gzip;q=0"]), Identity);
        assert_eq!(n(&["gzip;q=0.2, *;q=0"]), Gzip);
        assert_eq!(n(&["br;q=1, *;q=0.1"]), Gzip);
        // Several header lines count together.
        assert_eq!(n(&["br", "gzip"]), Gzip);
        assert_eq!(n(&["gzip;q=0", "gzip"]), Gzip);
        // Malformed q-values refuse their entry.
        for bad in [
            "gzip;q=2",
            "gzip;q=1.5",
            "gzip;q=0.1234",
            "gzip;q=abc",
            "gzip;q=",
            "gzip;q=-1",
            "gzip;q=.5",
            "gzip;q=0x1",
        ] {
            assert_eq!(n(&[bad]), Identity, "{bad}");
        }
        // Other parameters are not q.
        assert_eq!(n(&["gzip;level=0"]), Gzip);
        assert_eq!(n(&[",,; ,gzip;;q=1;"]), Gzip);
        assert_eq!(n(&["gzipx, xgzip"]), Identity);
    }

    #[test]
    fn gzip_round_trips_and_is_deterministic() {
        let body: Vec<u8> = (0..5000)
            .flat_map(|i| format!("#EXTINF:6.000000,\nlive/seg/{i}.mp3\n").into_bytes())
            .collect();
        for level in [PER_REQUEST_LEVEL, CACHED_LEVEL] {
            let gz = gzip_at(&body, level).unwrap();
            assert!(gz.len() * 5 < body.len(), "{} of {}", gz.len(), body.len());
            assert_eq!(gz, gzip_at(&body, level).unwrap());
            let mut back = vec![];
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, body);
        }
        assert!(gzip_at(b"", CACHED_LEVEL).is_some());
        let br = brotli(&body).unwrap();
        assert!(br.len() * 5 < body.len());
        assert_eq!(br, brotli(&body).unwrap());
        let mut back = vec![];
        brotli::Decompressor::new(&br[..], 4096)
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, body);
    }

    #[test]
    fn etags_of_the_representations() {
        assert_eq!(encoded_etag("\"p0123\"", Encoding::Gzip), "\"p0123-gz\"");
        assert_eq!(encoded_etag("\"p0123\"", Encoding::Brotli), "\"p0123-br\"");
        assert_eq!(encoded_etag("\"p1\"", Encoding::Identity), "\"p1\"");
        let gz = encoded_etag("\"p1\"", Encoding::Gzip);
        assert!(none_match(["\"p1-gz\""], &gz));
        assert!(none_match(["W/\"p1-gz\""], &gz));
        assert!(none_match(["\"x\", \"p1-gz\""], &gz));
        assert!(none_match(["\"x\"", "\"p1-gz\""], &gz));
        assert!(none_match(["*"], &gz));
        assert!(!none_match(["\"p1\""], &gz));
        assert!(!none_match(["\"p1-gz\""], "\"p1\""));
        assert!(!none_match([], "\"p1\""));
        assert!(!none_match([""], "\"p1\""));
    }
}
