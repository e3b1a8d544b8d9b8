//! Audio frame parsers (sans-IO): MPEG audio (layers I-III, MPEG 1/2/2.5) and ADTS AAC.
//!
//! Both parsers take arbitrary byte pieces and hand back whole frames. They resynchronise after
//! garbage, skip ID3v1/ID3v2 tags and never panic on any input (fuzzed in `fuzz/`).

mod adts;
mod mpeg;

use bytes::{Buf, Bytes, BytesMut};

pub use adts::AdtsHeader;
pub use mpeg::MpegHeader;

/// The container formats a stream can carry (part of the operator/worker contract).
pub use streammachine_contract::Format;

/// What every frame header tells us, whatever the codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    Mpeg(MpegHeader),
    Adts(AdtsHeader),
}

impl Header {
    pub fn frame_len(&self) -> usize {
        match self {
            Header::Mpeg(h) => h.frame_len,
            Header::Adts(h) => h.frame_len,
        }
    }
    pub fn sample_rate(&self) -> u32 {
        match self {
            Header::Mpeg(h) => h.sample_rate,
            Header::Adts(h) => h.sample_rate,
        }
    }
    /// PCM samples per channel this frame decodes to.
    pub fn samples(&self) -> u32 {
        match self {
            Header::Mpeg(h) => h.samples,
            Header::Adts(h) => h.samples,
        }
    }
    /// The codec key, e.g. `mp3-44100-128-s` or `aac-44100-2-2`: what "compatible audio" means.
    pub fn codec_key(&self) -> String {
        match self {
            Header::Mpeg(h) => h.codec_key(),
            Header::Adts(h) => h.codec_key(),
        }
    }
    /// Whether two headers belong to one continuous encoding (bitrate may vary: VBR).
    pub fn same_stream(&self, other: &Header) -> bool {
        match (self, other) {
            (Header::Mpeg(a), Header::Mpeg(b)) => a.same_stream(b),
            (Header::Adts(a), Header::Adts(b)) => a.same_stream(b),
            _ => false,
        }
    }
}

/// One whole codec frame, header included.
#[derive(Debug, Clone)]
pub struct Frame {
    pub header: Header,
    pub data: Bytes,
}

/// Counters a source uses to decide whether its input is audio at all.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ParserStats {
    pub frames: u64,
    pub frame_bytes: u64,
    /// Bytes dropped while searching for a frame sync.
    pub garbage_bytes: u64,
    /// Bytes of ID3 tags skipped.
    pub tag_bytes: u64,
}

/// Tags larger than this are treated as garbage rather than skipped, so a corrupt size field in a
/// fake `ID3` header cannot swallow minutes of audio.
const MAX_ID3V2_LEN: usize = 4 * 1024 * 1024;
/// Bytes kept while hunting for a sync word; beyond this the oldest bytes are dropped as garbage.
const MAX_SCAN_WINDOW: usize = 64 * 1024;

/// A frame parser for one format. Feed bytes with [`Parser::push`], pull frames with
/// [`Parser::next_frame`]; call [`Parser::finish`] at end of input to release a final frame that
/// has no successor to confirm it.
#[derive(Debug)]
pub struct Parser {
    format: Format,
    buf: BytesMut,
    /// The last accepted header: while set we expect the next frame right at the cursor.
    synced: Option<Header>,
    /// Remaining bytes of an ID3v2 tag being skipped.
    skip: usize,
    finished: bool,
    stats: ParserStats,
}

impl Parser {
    pub fn new(format: Format) -> Self {
        Parser {
            format,
            buf: BytesMut::new(),
            synced: None,
            skip: 0,
            finished: false,
            stats: ParserStats::default(),
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn stats(&self) -> ParserStats {
        self.stats
    }

    pub fn push(&mut self, data: &[u8]) {
        let mut data = data;
        if self.skip > 0 {
            let n = self.skip.min(data.len());
            self.skip -= n;
            self.stats.tag_bytes += n as u64;
            data = &data[n..];
        }
        self.buf.extend_from_slice(data);
    }

    /// No more input will come: a last frame is accepted without a following header.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    fn parse_header(&self, bytes: &[u8]) -> Option<Header> {
        match self.format {
            Format::Mp3 => MpegHeader::parse(bytes).map(Header::Mpeg),
            Format::Aac => AdtsHeader::parse(bytes).map(Header::Adts),
        }
    }

    fn header_len(&self) -> usize {
        match self.format {
            Format::Mp3 => 4,
            Format::Aac => 7,
        }
    }

    pub fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if self.skip > 0 {
                let n = self.skip.min(self.buf.len());
                self.buf.advance(n);
                self.skip -= n;
                self.stats.tag_bytes += n as u64;
                if self.skip > 0 {
                    return None;
                }
            }
            match self.step() {
                Step::Frame(frame) => return Some(frame),
                Step::Again => continue,
                Step::NeedMore => {
                    self.trim_scan_window();
                    return None;
                }
            }
        }
    }

    fn trim_scan_window(&mut self) {
        if self.synced.is_none() && self.buf.len() > MAX_SCAN_WINDOW {
            let drop = self.buf.len() - MAX_SCAN_WINDOW;
            self.buf.advance(drop);
            self.stats.garbage_bytes += drop as u64;
        }
    }

    fn drop_garbage(&mut self, n: usize) {
        self.buf.advance(n);
        self.stats.garbage_bytes += n as u64;
    }

    fn step(&mut self) -> Step {
        let buf = &self.buf[..];
        if buf.len() < 3 {
            return Step::NeedMore;
        }
        // Tags may sit at the start or between frames.
        if buf.starts_with(b"ID3") {
            if buf.len() < 10 {
                return Step::NeedMore;
            }
            if let Some(len) = id3v2_len(&buf[..10]) {
                let take = len.min(buf.len());
                self.buf.advance(take);
                self.stats.tag_bytes += take as u64;
                self.skip = len - take;
                return Step::Again;
            }
        }
        if self.format == Format::Mp3 && buf.starts_with(b"TAG") && self.synced.is_some() {
            if buf.len() < 128 {
                if self.finished {
                    let n = buf.len();
                    self.buf.advance(n);
                    self.stats.tag_bytes += n as u64;
                }
                return Step::NeedMore;
            }
            self.buf.advance(128);
            self.stats.tag_bytes += 128;
            return Step::Again;
        }

        let hlen = self.header_len();
        if let Some(prev) = self.synced {
            // On schedule: the next frame must start right here.
            if buf.len() < hlen {
                return Step::NeedMore;
            }
            match self.parse_header(buf) {
                Some(h) if h.same_stream(&prev) => {
                    let len = h.frame_len();
                    if buf.len() < len {
                        if self.finished {
                            let n = buf.len();
                            self.drop_garbage(n);
                        }
                        return Step::NeedMore;
                    }
                    Step::Frame(self.take_frame(h))
                }
                _ => {
                    // Lost sync: go back to scanning, starting one byte further.
                    self.synced = None;
                    self.drop_garbage(1);
                    Step::Again
                }
            }
        } else {
            // Scanning: find a sync word whose frame is followed by another matching header.
            let mut i = 0;
            while i + hlen <= buf.len() {
                if buf[i] == 0xFF
                    && let Some(h) = self.parse_header(&buf[i..])
                {
                    let next = i + h.frame_len();
                    if next + hlen <= buf.len() {
                        match self.parse_header(&buf[next..]) {
                            Some(h2) if h2.same_stream(&h) => {
                                self.drop_garbage(i);
                                return Step::Frame(self.take_frame(h));
                            }
                            _ => {}
                        }
                    } else if self.finished && next <= buf.len() {
                        // Last frame of the input: nothing can confirm it, accept it.
                        self.drop_garbage(i);
                        return Step::Frame(self.take_frame(h));
                    } else {
                        // Not enough data to confirm this candidate yet.
                        if i > 0 {
                            self.drop_garbage(i);
                        }
                        if self.finished {
                            let n = self.buf.len();
                            self.drop_garbage(n);
                        }
                        return Step::NeedMore;
                    }
                }
                if i > 0 && buf[i..].starts_with(b"ID3") {
                    self.drop_garbage(i);
                    return Step::Again;
                }
                i += 1;
            }
            // Keep the tail that may still start a header.
            let keep = (hlen - 1).min(buf.len());
            let drop = buf.len() - keep;
            if drop > 0 {
                self.drop_garbage(drop);
            }
            if self.finished {
                let n = self.buf.len();
                self.drop_garbage(n);
            }
            Step::NeedMore
        }
    }

    fn take_frame(&mut self, h: Header) -> Frame {
        let data = self.buf.split_to(h.frame_len()).freeze();
        self.synced = Some(h);
        self.stats.frames += 1;
        self.stats.frame_bytes += data.len() as u64;
        Frame { header: h, data }
    }
}

enum Step {
    Frame(Frame),
    Again,
    NeedMore,
}

/// Total length of an ID3v2 tag (header, body and optional footer), if `h` is a valid tag header.
fn id3v2_len(h: &[u8]) -> Option<usize> {
    if h.len() < 10 || &h[..3] != b"ID3" || h[3] == 0xFF || h[4] == 0xFF {
        return None;
    }
    if h[6..10].iter().any(|b| b & 0x80 != 0) {
        return None;
    }
    let size = h[6..10]
        .iter()
        .fold(0usize, |acc, b| (acc << 7) | usize::from(*b));
    let footer = if h[5] & 0x10 != 0 { 10 } else { 0 };
    let total = 10 + size + footer;
    (total <= MAX_ID3V2_LEN).then_some(total)
}

/// Parse every frame of a complete buffer (a chunk's bytes, a file). Used where whole frames are
/// already known to be there, e.g. to split chunks on frame boundaries for HLS.
pub fn frames_of(format: Format, data: &[u8]) -> Vec<Frame> {
    let mut p = Parser::new(format);
    p.push(data);
    p.finish();
    std::iter::from_fn(|| p.next_frame()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid MPEG-1 layer III 128 kbps 44.1 kHz joint-stereo frame of `len` bytes (417 or 418).
    pub(crate) fn mp3_frame(padding: bool) -> Vec<u8> {
        let mut f = vec![0xFF, 0xFB, 0x90 | if padding { 0x02 } else { 0 }, 0x64];
        let len = if padding { 418 } else { 417 };
        f.resize(len, 0x55);
        f
    }

    pub(crate) fn adts_frame(payload: usize) -> Vec<u8> {
        let len = payload + 7;
        // AAC LC (profile 1), 44.1 kHz (index 4), 2 channels, protection absent.
        let mut f = vec![
            0xFF,
            0xF1,
            (1 << 6) | (4 << 2),
            (2 << 6) | ((len >> 11) & 0x3) as u8,
            ((len >> 3) & 0xFF) as u8,
            (((len & 0x7) << 5) as u8) | 0x1F,
            0xFC,
        ];
        f.resize(len, 0x21);
        f
    }

    fn parse_all(format: Format, pieces: &[&[u8]]) -> (Vec<Frame>, ParserStats) {
        let mut p = Parser::new(format);
        let mut out = vec![];
        for piece in pieces {
            p.push(piece);
            while let Some(f) = p.next_frame() {
                out.push(f);
            }
        }
        p.finish();
        while let Some(f) = p.next_frame() {
            out.push(f);
        }
        (out, p.stats())
    }

    #[test]
    fn mp3_frames_are_found_byte_by_byte() {
        let mut input = vec![];
        for i in 0..10 {
            input.extend(mp3_frame(i % 3 == 0));
        }
        let pieces: Vec<&[u8]> = input.chunks(1).collect();
        let (frames, stats) = parse_all(Format::Mp3, &pieces);
        assert_eq!(frames.len(), 10);
        assert_eq!(stats.garbage_bytes, 0);
        assert_eq!(frames[0].header.codec_key(), "mp3-44100-128-s");
        assert_eq!(frames[0].header.samples(), 1152);
        assert_eq!(stats.frame_bytes as usize, input.len());
    }

    #[test]
    fn mp3_resyncs_after_garbage_and_skips_tags() {
        let mut input = b"garbage\xFF\xFB\x00junk".to_vec();
        // ID3v2 tag with a 20-byte body.
        input.extend(b"ID3\x04\x00\x00\x00\x00\x00\x14");
        input.extend([0u8; 20]);
        for _ in 0..3 {
            input.extend(mp3_frame(false));
        }
        input.extend(b"\x00\x01\x02");
        for _ in 0..3 {
            input.extend(mp3_frame(true));
        }
        let mut tag = b"TAG".to_vec();
        tag.resize(128, b' ');
        input.extend(tag);
        let (frames, stats) = parse_all(Format::Mp3, &[&input]);
        assert_eq!(frames.len(), 6);
        assert_eq!(stats.tag_bytes, 30 + 128);
        assert_eq!(stats.garbage_bytes, 14 + 3);
    }

    #[test]
    fn adts_frames_and_key() {
        let mut input = vec![];
        for n in [100, 200, 150, 300] {
            input.extend(adts_frame(n));
        }
        let (frames, stats) = parse_all(Format::Aac, &[&input[..50], &input[50..]]);
        assert_eq!(frames.len(), 4);
        assert_eq!(stats.garbage_bytes, 0);
        assert_eq!(frames[0].header.codec_key(), "aac-44100-2-2");
        assert_eq!(frames[0].header.samples(), 1024);
    }

    #[test]
    fn wrong_format_yields_no_frames() {
        let mut mp3 = vec![];
        for _ in 0..20 {
            mp3.extend(mp3_frame(false));
        }
        let (frames, stats) = parse_all(Format::Aac, &[&mp3]);
        assert!(frames.is_empty());
        assert_eq!(stats.garbage_bytes as usize, mp3.len());

        let mut aac = vec![];
        for _ in 0..20 {
            aac.extend(adts_frame(300));
        }
        let (frames, _) = parse_all(Format::Mp3, &[&aac]);
        assert!(frames.is_empty());
    }

    #[test]
    fn huge_fake_id3_is_garbage_not_a_black_hole() {
        let mut input = b"ID3\x04\x00\x00\x7F\x7F\x7F\x7F".to_vec();
        for _ in 0..5 {
            input.extend(mp3_frame(false));
        }
        let (frames, _) = parse_all(Format::Mp3, &[&input]);
        assert_eq!(frames.len(), 5);
    }

    #[test]
    fn scanning_memory_is_bounded() {
        let mut p = Parser::new(Format::Mp3);
        for _ in 0..100 {
            p.push(&[0u8; 10_000]);
            assert!(p.next_frame().is_none());
        }
        assert!(p.buf.len() <= MAX_SCAN_WINDOW);
    }

    #[test]
    fn format_parsing_and_content_types() {
        assert_eq!("MP3".parse::<Format>(), Ok(Format::Mp3));
        assert!("ogg".parse::<Format>().is_err());
        assert!(Format::Mp3.accepts_content_type("audio/mpeg; charset=x"));
        assert!(!Format::Mp3.accepts_content_type("audio/aac"));
        assert!(Format::Aac.accepts_content_type("audio/aacp"));
    }
}
