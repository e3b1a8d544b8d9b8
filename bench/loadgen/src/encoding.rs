//! Content encodings: what a player asks for (`Accept-Encoding`) and turning what the server sent
//! back into text. Only gzip is asked for and understood; the bytes on the wire are what is
//! counted as egress, decoding is only for reading playlists.

use std::borrow::Cow;
use std::io::Read;

use anyhow::{Context, bail};

/// The `Accept-Encoding` value of a player that takes compressed playlists.
pub const ACCEPT_GZIP: &str = "gzip";

/// A decoded playlist larger than this is refused (a broken or hostile answer, not a playlist).
const MAX_DECODED: u64 = 64 * 1024 * 1024;

/// `body` decoded per its `Content-Encoding` (absent or `identity`: as is).
pub fn decode<'a>(content_encoding: Option<&str>, body: &'a [u8]) -> anyhow::Result<Cow<'a, [u8]>> {
    match content_encoding
        .map(|e| e.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("identity") => Ok(Cow::Borrowed(body)),
        Some("gzip") | Some("x-gzip") => {
            let mut out = Vec::with_capacity(body.len() * 4);
            flate2::read::GzDecoder::new(body)
                .take(MAX_DECODED)
                .read_to_end(&mut out)
                .context("gzip body does not decode")?;
            Ok(Cow::Owned(out))
        }
        Some(other) => bail!("content encoding `{other}` was not asked for"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn plain_and_gzip_bodies_decode_to_the_same_text() {
        let text = b"#EXTM3U\n#EXT-X-TARGETDURATION:13\n".repeat(50);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&text).unwrap();
        let gz = gz.finish().unwrap();
        assert!(gz.len() < text.len());
        assert_eq!(decode(Some("gzip"), &gz).unwrap().as_ref(), &text[..]);
        assert_eq!(decode(Some(" GZIP"), &gz).unwrap().as_ref(), &text[..]);
        assert_eq!(decode(None, &text).unwrap().as_ref(), &text[..]);
        assert_eq!(decode(Some("identity"), &text).unwrap().as_ref(), &text[..]);
    }

    #[test]
    fn unasked_or_broken_encodings_are_errors() {
        assert!(decode(Some("br"), b"x").is_err());
        assert!(decode(Some("gzip"), b"not gzip").is_err());
    }
}
