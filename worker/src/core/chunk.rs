//! The unit of buffered audio and its one binary encoding.
//!
//! A chunk is whole codec frames of about half a second. The same encoding travels in NATS
//! messages, in the rewind transport between master and slaves and in dump files, so it is
//! versioned (magic + version byte) and every length field is wide enough for long titles and
//! high bitrates (the original's u8/u16 length fields were not).

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::Serialize;

use crate::core::level::points::{Levels, MAX_CHANNELS, Point};

/// Now-playing metadata current at a point of the audio.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Meta {
    pub title: String,
    pub url: String,
}

/// Chunk flag: the audio does not continue the previous chunk (new source, gap, codec change).
pub const FLAG_DISCONTINUITY: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Per stream, strictly increasing, never reused (survives restarts).
    pub seq: u64,
    /// Content time of the first sample, microseconds since the Unix epoch.
    pub ts: i64,
    /// Exact duration in microseconds (sum of the frames').
    pub duration: u32,
    /// PCM samples per channel in the chunk; with the codec's rate this gives exact timestamps.
    pub samples: u32,
    pub frames: u32,
    pub flags: u8,
    /// Discontinuities since the stream began: bumped with every discontinuity flag, carried with
    /// the chunk, so every replica numbers HLS discontinuities the same and the numbers never go
    /// back when old chunks leave the buffer.
    pub epoch: u32,
    /// Codec key, e.g. `mp3-44100-128-s`.
    pub codec: Arc<str>,
    pub meta: Arc<Meta>,
    pub data: Bytes,
    /// The audio's level per 100 ms, measured where the chunk was made (absent in chunks of
    /// older versions and where the codec could not be decoded).
    pub levels: Option<Arc<Levels>>,
}

impl Chunk {
    pub fn end(&self) -> i64 {
        self.ts + i64::from(self.duration)
    }

    pub fn is_discontinuity(&self) -> bool {
        self.flags & FLAG_DISCONTINUITY != 0
    }
}

const MAGIC: &[u8; 3] = b"SMC";
/// Version 2 added `epoch`, version 3 the levels after the audio. Older versions are still read
/// (epoch 0, no levels), so dumps and peers of earlier releases keep working during an upgrade.
const VERSION: u8 = 3;
/// Fixed part of version 1: magic, version, seq, ts, duration, samples, frames, flags.
const FIXED_LEN_V1: usize = 3 + 1 + 8 + 8 + 4 + 4 + 4 + 1;
/// Version 2 adds the epoch.
const FIXED_LEN: usize = FIXED_LEN_V1 + 4;
/// Codec keys are short identifiers; anything longer is corruption.
const MAX_CODEC_LEN: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("not a chunk (bad magic)")]
    BadMagic,
    #[error("unsupported chunk encoding version {0}")]
    Version(u8),
    #[error("chunk is truncated")]
    Truncated,
    #[error("chunk field `{0}` is invalid")]
    Invalid(&'static str),
    #[error("{0} trailing bytes after the chunk")]
    Trailing(usize),
}

impl Chunk {
    pub fn encoded_len(&self) -> usize {
        FIXED_LEN
            + 2
            + self.codec.len()
            + 4
            + self.meta.title.len()
            + 4
            + self.meta.url.len()
            + 4
            + self.data.len()
            + 1
            + 2
            + self.levels.as_ref().map_or(0, |l| {
                l.points.len().min(MAX_POINTS) * (4 + 2 * usize::from(l.channels))
            })
    }

    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(self.encoded_len());
        out.put_slice(MAGIC);
        out.put_u8(VERSION);
        out.put_u64_le(self.seq);
        out.put_i64_le(self.ts);
        out.put_u32_le(self.duration);
        out.put_u32_le(self.samples);
        out.put_u32_le(self.frames);
        out.put_u8(self.flags);
        out.put_u32_le(self.epoch);
        // Codec keys are ASCII identifiers well under 64 bytes (checked on decode).
        let codec = &self.codec.as_bytes()[..self.codec.len().min(MAX_CODEC_LEN)];
        out.put_u16_le(codec.len() as u16);
        out.put_slice(codec);
        put_str32(out, &self.meta.title);
        put_str32(out, &self.meta.url);
        put_bytes32(out, &self.data);
        put_levels(out, self.levels.as_deref());
    }

    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut out);
        out.freeze()
    }

    /// Decode exactly one chunk occupying all of `buf`. The audio bytes are a zero-copy slice.
    pub fn decode(buf: Bytes) -> Result<Chunk, DecodeError> {
        let mut b = buf;
        let chunk = Self::decode_from(&mut b)?;
        if b.has_remaining() {
            return Err(DecodeError::Trailing(b.remaining()));
        }
        Ok(chunk)
    }

    /// Decode one chunk from the front of `b`, advancing it.
    pub fn decode_from(b: &mut Bytes) -> Result<Chunk, DecodeError> {
        if b.remaining() >= 3 && &b[..3] != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        if b.remaining() < 4 {
            return Err(DecodeError::Truncated);
        }
        let version = b[3];
        let fixed = match version {
            1 => FIXED_LEN_V1,
            2 | VERSION => FIXED_LEN,
            other => return Err(DecodeError::Version(other)),
        };
        if b.remaining() < fixed {
            return Err(DecodeError::Truncated);
        }
        b.advance(4);
        let seq = b.get_u64_le();
        let ts = b.get_i64_le();
        let duration = b.get_u32_le();
        let samples = b.get_u32_le();
        let frames = b.get_u32_le();
        let flags = b.get_u8();
        let epoch = if version == 1 { 0 } else { b.get_u32_le() };
        if b.remaining() < 2 {
            return Err(DecodeError::Truncated);
        }
        let codec_len = usize::from(b.get_u16_le());
        if codec_len > MAX_CODEC_LEN {
            return Err(DecodeError::Invalid("codec"));
        }
        let codec = take(b, codec_len)?;
        let codec = std::str::from_utf8(&codec).map_err(|_| DecodeError::Invalid("codec"))?;
        let title = take_str32(b, "title")?;
        let url = take_str32(b, "url")?;
        let data = take32(b)?;
        let levels = if version >= 3 { take_levels(b)? } else { None };
        if ts.checked_add(i64::from(duration)).is_none() {
            return Err(DecodeError::Invalid("ts"));
        }
        Ok(Chunk {
            seq,
            ts,
            duration,
            samples,
            frames,
            flags,
            epoch,
            codec: Arc::from(codec),
            meta: Arc::new(Meta { title, url }),
            data,
            levels,
        })
    }
}

/// Far more windows than half a second (or ten seconds) of audio has; more is corruption.
const MAX_POINTS: usize = 1024;

/// Channels (u8), point count (u16), then per point its offset (i32) and each channel's RMS
/// and peak steps. No levels: zero channels and zero points.
fn put_levels(out: &mut BytesMut, levels: Option<&Levels>) {
    let Some(l) = levels.filter(|l| l.channels > 0 && !l.points.is_empty()) else {
        out.put_u8(0);
        out.put_u16_le(0);
        return;
    };
    let channels = usize::from(l.channels).min(MAX_CHANNELS);
    let points = &l.points[..l.points.len().min(MAX_POINTS)];
    out.put_u8(channels as u8);
    out.put_u16_le(points.len() as u16);
    for p in points {
        out.put_i32_le(p.offset);
        out.put_slice(&p.rms[..channels]);
        out.put_slice(&p.peak[..channels]);
    }
}

fn take_levels(b: &mut Bytes) -> Result<Option<Arc<Levels>>, DecodeError> {
    if b.remaining() < 3 {
        return Err(DecodeError::Truncated);
    }
    let channels = usize::from(b.get_u8());
    let count = usize::from(b.get_u16_le());
    if channels > MAX_CHANNELS || (channels == 0 && count > 0) || count > MAX_POINTS {
        return Err(DecodeError::Invalid("levels"));
    }
    if count == 0 {
        return Ok(None);
    }
    if b.remaining() < count * (4 + 2 * channels) {
        return Err(DecodeError::Truncated);
    }
    let points = (0..count)
        .map(|_| {
            let mut p = Point {
                offset: b.get_i32_le(),
                rms: [0; MAX_CHANNELS],
                peak: [0; MAX_CHANNELS],
            };
            b.copy_to_slice(&mut p.rms[..channels]);
            b.copy_to_slice(&mut p.peak[..channels]);
            p
        })
        .collect();
    Ok(Some(Arc::new(Levels {
        channels: channels as u8,
        points,
    })))
}

fn put_str32(out: &mut BytesMut, s: &str) {
    put_bytes32(out, s.as_bytes());
}

fn put_bytes32(out: &mut BytesMut, b: &[u8]) {
    // A chunk never approaches 4 GiB (half a second of audio); titles are capped on input.
    out.put_u32_le(b.len() as u32);
    out.put_slice(b);
}

fn take(b: &mut Bytes, len: usize) -> Result<Bytes, DecodeError> {
    if b.remaining() < len {
        return Err(DecodeError::Truncated);
    }
    Ok(b.split_to(len))
}

fn take32(b: &mut Bytes) -> Result<Bytes, DecodeError> {
    if b.remaining() < 4 {
        return Err(DecodeError::Truncated);
    }
    let len = b.get_u32_le() as usize;
    take(b, len)
}

fn take_str32(b: &mut Bytes, field: &'static str) -> Result<String, DecodeError> {
    let raw = take32(b)?;
    String::from_utf8(raw.to_vec()).map_err(|_| DecodeError::Invalid(field))
}

#[cfg(test)]
pub(crate) fn test_chunk(seq: u64, ts: i64, title: &str) -> Chunk {
    Chunk {
        seq,
        ts,
        duration: 500_000,
        samples: 22050,
        frames: 19,
        flags: 0,
        epoch: 0,
        codec: Arc::from("mp3-44100-128-s"),
        meta: Arc::new(Meta {
            title: title.into(),
            url: String::new(),
        }),
        data: Bytes::from(vec![seq as u8; 8000]),
        levels: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_long_title_and_big_chunk() {
        let mut c = test_chunk(7, 1_700_000_000_000_000, &"é".repeat(10_000));
        c.data = Bytes::from(vec![3u8; 200_000]);
        c.flags = FLAG_DISCONTINUITY;
        c.epoch = 7;
        let enc = c.to_bytes();
        assert_eq!(enc.len(), c.encoded_len());
        assert_eq!(Chunk::decode(enc).unwrap(), c);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let enc = test_chunk(1, 0, "x").to_bytes();
        for cut in 0..enc.len() {
            assert!(Chunk::decode(enc.slice(..cut)).is_err());
        }
        let mut bad = BytesMut::from(&enc[..]);
        bad[3] = 9;
        assert_eq!(Chunk::decode(bad.freeze()), Err(DecodeError::Version(9)));
        assert_eq!(
            Chunk::decode(Bytes::from_static(
                b"hello world, this is not a chunk at all"
            )),
            Err(DecodeError::BadMagic)
        );
        let mut trailing = BytesMut::from(&enc[..]);
        trailing.put_u8(0);
        assert_eq!(
            Chunk::decode(trailing.freeze()),
            Err(DecodeError::Trailing(1))
        );
    }

    #[test]
    fn levels_round_trip() {
        let mut c = test_chunk(4, 1_000, "loud");
        c.levels = Some(Arc::new(Levels {
            channels: 2,
            points: vec![
                Point {
                    offset: -410,
                    rms: [40, 42],
                    peak: [30, 31],
                },
                Point {
                    offset: 4000,
                    rms: [240, 240],
                    peak: [240, 239],
                },
            ],
        }));
        let enc = c.to_bytes();
        assert_eq!(enc.len(), c.encoded_len());
        assert_eq!(Chunk::decode(enc.clone()).unwrap(), c);
        // Mono stores one channel per point.
        let mono = Levels {
            channels: 1,
            points: vec![Point {
                offset: 0,
                rms: [12, 0],
                peak: [6, 0],
            }],
        };
        c.levels = Some(Arc::new(mono));
        let enc = c.to_bytes();
        assert_eq!(enc.len(), c.encoded_len());
        assert_eq!(Chunk::decode(enc).unwrap(), c);
        // Bad level fields are errors, never panics.
        let enc = c.to_bytes();
        let mut bad = BytesMut::from(&enc[..]);
        let at = enc.len() - (4 + 2) - 2 - 1; // the channel count, before the count and a point
        bad[at] = 7;
        assert_eq!(
            Chunk::decode(bad.freeze()),
            Err(DecodeError::Invalid("levels"))
        );
    }

    /// Version 2 is version 3 without the level fields; version 1 also lacks the epoch.
    #[test]
    fn version_1_and_2_chunks_are_still_read() {
        let c = test_chunk(3, 1_000, "old");
        let v3 = c.to_bytes();
        let v2_bytes = &v3[..v3.len() - 3];
        let mut v2 = BytesMut::from(v2_bytes);
        v2[3] = 2;
        assert_eq!(Chunk::decode(v2.clone().freeze()).unwrap(), c);
        let mut v1 = BytesMut::new();
        v1.put_slice(&v2[..FIXED_LEN_V1]);
        v1[3] = 1;
        v1.put_slice(&v2[FIXED_LEN..]);
        let mut old = c.clone();
        old.epoch = 0;
        assert_eq!(Chunk::decode(v1.freeze()).unwrap(), old);
    }

    #[test]
    fn several_chunks_decode_in_sequence() {
        let mut out = BytesMut::new();
        for i in 0..3 {
            test_chunk(i, i as i64 * 500_000, "t").encode(&mut out);
        }
        let mut b = out.freeze();
        for i in 0..3 {
            assert_eq!(Chunk::decode_from(&mut b).unwrap().seq, i);
        }
        assert!(!b.has_remaining());
    }
}
