//! ICY (SHOUTcast) in-stream metadata (sans-IO): the interleaver for listeners and the demuxer for
//! relayed sources.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::core::chunk::Meta;

/// The largest metadata block the length byte can announce.
const MAX_BLOCK: usize = 255 * 16;

/// Render `StreamTitle='…';StreamUrl='…';`, NUL-padded to a multiple of 16, with its length byte
/// in front. Over-long titles are cut on a UTF-8 boundary so the block always fits.
pub fn metadata_block(meta: &Meta) -> Bytes {
    let url_part = if meta.url.is_empty() {
        String::new()
    } else {
        format!("StreamUrl='{}';", meta.url)
    };
    let fixed = "StreamTitle='';".len() + url_part.len();
    let title = truncate_utf8(&meta.title, MAX_BLOCK.saturating_sub(fixed));
    let mut text = format!("StreamTitle='{title}';{url_part}");
    if text.len() > MAX_BLOCK {
        text = truncate_utf8(&text, MAX_BLOCK).to_string();
    }
    let blocks = text.len().div_ceil(16);
    let mut out = BytesMut::with_capacity(1 + blocks * 16);
    out.put_u8(blocks as u8);
    out.put_slice(text.as_bytes());
    out.resize(1 + blocks * 16, 0);
    out.freeze()
}

/// At most `max` bytes of `s`, cut on a character boundary.
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Interleaves audio with metadata blocks every `metaint` bytes. Metadata is sent when it differs
/// from what the listener last got, so a title changes at the first block after the audio position
/// where it changed, also for rewound listeners.
#[derive(Debug)]
pub struct IcyWriter {
    metaint: usize,
    until_meta: usize,
    sent: Option<Arc<Meta>>,
    current: Option<Arc<Meta>>,
}

static EMPTY_BLOCK: [u8; 1] = [0];

impl IcyWriter {
    pub fn new(metaint: usize) -> Self {
        let metaint = metaint.max(1);
        IcyWriter {
            metaint,
            until_meta: metaint,
            sent: None,
            current: None,
        }
    }

    /// Append `data` (audio carrying `meta`) to `out` as pieces ready to write; audio pieces are
    /// zero-copy slices.
    pub fn write(&mut self, data: &Bytes, meta: &Arc<Meta>, out: &mut Vec<Bytes>) {
        self.current = Some(meta.clone());
        let mut pos = 0;
        while pos < data.len() {
            let n = self.until_meta.min(data.len() - pos);
            out.push(data.slice(pos..pos + n));
            pos += n;
            self.until_meta -= n;
            if self.until_meta == 0 {
                out.push(self.next_block());
                self.until_meta = self.metaint;
            }
        }
    }

    fn next_block(&mut self) -> Bytes {
        let changed = match (&self.sent, &self.current) {
            (Some(a), Some(b)) => !Arc::ptr_eq(a, b) && a != b,
            (None, Some(_)) => true,
            _ => false,
        };
        if changed {
            self.sent = self.current.clone();
            if let Some(m) = &self.current {
                return metadata_block(m);
            }
        }
        Bytes::from_static(&EMPTY_BLOCK)
    }
}

/// Splits an ICY stream back into audio and metadata (for relays, and for tests).
#[derive(Debug)]
pub struct IcyReader {
    metaint: usize,
    until_meta: usize,
    state: ReadState,
    block: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadState {
    Audio,
    Length,
    Block(usize),
}

/// What the reader found in one piece of input.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct IcyOutput {
    pub audio: Vec<u8>,
    /// (audio byte offset within this output where the block appeared, parsed metadata)
    pub metadata: Vec<(usize, IcyMeta)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IcyMeta {
    pub title: Option<String>,
    pub url: Option<String>,
}

impl IcyReader {
    pub fn new(metaint: usize) -> Self {
        IcyReader {
            metaint: metaint.max(1),
            until_meta: metaint.max(1),
            state: ReadState::Audio,
            block: vec![],
        }
    }

    pub fn push(&mut self, mut data: &[u8]) -> IcyOutput {
        let mut out = IcyOutput::default();
        while !data.is_empty() {
            match self.state {
                ReadState::Audio => {
                    let n = self.until_meta.min(data.len());
                    out.audio.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    self.until_meta -= n;
                    if self.until_meta == 0 {
                        self.state = ReadState::Length;
                    }
                }
                ReadState::Length => {
                    let len = usize::from(data[0]) * 16;
                    data = &data[1..];
                    self.block.clear();
                    if len == 0 {
                        self.state = ReadState::Audio;
                        self.until_meta = self.metaint;
                    } else {
                        self.state = ReadState::Block(len);
                    }
                }
                ReadState::Block(len) => {
                    let n = (len - self.block.len()).min(data.len());
                    self.block.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    if self.block.len() == len {
                        out.metadata
                            .push((out.audio.len(), parse_metadata(&self.block)));
                        self.state = ReadState::Audio;
                        self.until_meta = self.metaint;
                    }
                }
            }
        }
        out
    }
}

/// Parse `StreamTitle='…';StreamUrl='…';` leniently (titles may contain quotes).
pub fn parse_metadata(block: &[u8]) -> IcyMeta {
    let end = block.iter().position(|b| *b == 0).unwrap_or(block.len());
    let text = String::from_utf8_lossy(&block[..end]);
    IcyMeta {
        title: field(&text, "StreamTitle='"),
        url: field(&text, "StreamUrl='"),
    }
}

fn field(text: &str, key: &str) -> Option<String> {
    let start = text.find(key)? + key.len();
    let rest = &text[start..];
    // The value ends at the last `';` before the next known key, or the last `';`.
    let end = rest
        .find("';StreamUrl='")
        .or_else(|| rest.rfind("';"))
        .unwrap_or(rest.len());
    Some(rest[..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(t: &str) -> Arc<Meta> {
        Arc::new(Meta {
            title: t.into(),
            url: String::new(),
        })
    }

    #[test]
    fn interleaves_and_round_trips() {
        let mut w = IcyWriter::new(100);
        let mut out = vec![];
        let a = meta("Artist - It's a song");
        let b = meta("Second");
        w.write(&Bytes::from(vec![1u8; 250]), &a, &mut out);
        w.write(&Bytes::from(vec![2u8; 250]), &b, &mut out);
        let wire: Vec<u8> = out.iter().flat_map(|b| b.iter().copied()).collect();

        let mut r = IcyReader::new(100);
        let mut audio = vec![];
        let mut metas = vec![];
        for piece in wire.chunks(7) {
            let o = r.push(piece);
            for (at, m) in o.metadata {
                metas.push((audio.len() + at, m.title.unwrap()));
            }
            audio.extend(o.audio);
        }
        assert_eq!(audio.len(), 500);
        assert_eq!(&audio[..250], &[1u8; 250][..]);
        // Block after byte 100 announces the first title; the next change appears at the first
        // block after byte 250, i.e. at 300.
        assert_eq!(
            metas,
            vec![
                (100, "Artist - It's a song".to_string()),
                (300, "Second".to_string())
            ]
        );
    }

    #[test]
    fn blocks_never_overflow_the_length_byte() {
        let block = metadata_block(&Meta {
            title: "ü".repeat(5000),
            url: "http://example.com".into(),
        });
        assert_eq!(block.len(), 1 + usize::from(block[0]) * 16);
        assert!(block.len() <= 1 + MAX_BLOCK);
        let parsed = parse_metadata(&block[1..]);
        assert!(parsed.title.unwrap().starts_with("üü"));
    }

    #[test]
    fn parse_with_url() {
        let m = parse_metadata(b"StreamTitle='A - B';StreamUrl='http://x';\0\0");
        assert_eq!(m.title.as_deref(), Some("A - B"));
        assert_eq!(m.url.as_deref(), Some("http://x"));
    }
}
