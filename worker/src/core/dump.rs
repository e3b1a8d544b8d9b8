//! Rewind dumps: a versioned header then chunks in the one chunk encoding, oldest first. The same
//! byte format is the master's snapshot transport, so the decoder is incremental.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::core::chunk::{Chunk, DecodeError};

const MAGIC: &[u8; 6] = b"SMDUMP";
const VERSION: u8 = 1;
/// A record larger than this is corruption (a chunk is half a second of audio).
const MAX_RECORD: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("not a StreamMachine dump (bad magic)")]
    BadMagic,
    #[error("unsupported dump version {0}")]
    Version(u8),
    #[error("dump is for stream `{found}`, expected `{expected}`")]
    WrongStream { found: String, expected: String },
    #[error("dump is truncated")]
    Truncated,
    #[error("dump record is invalid: {0}")]
    Record(#[from] DecodeError),
    #[error("dump record of {0} bytes is too large")]
    RecordTooLarge(usize),
    #[error("dump chunks are not in sequence order")]
    Order,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The dump header for `key`.
pub fn encode_header(key: &str, out: &mut BytesMut) {
    out.put_slice(MAGIC);
    out.put_u8(VERSION);
    let key = &key.as_bytes()[..key.len().min(u16::MAX as usize)];
    out.put_u16_le(key.len() as u16);
    out.put_slice(key);
}

pub fn encode_record(chunk: &Chunk, out: &mut BytesMut) {
    out.put_u32_le(chunk.encoded_len() as u32);
    chunk.encode(out);
}

/// The whole dump of a buffer.
pub fn encode(key: &str, chunks: &[Chunk]) -> Bytes {
    let mut out =
        BytesMut::with_capacity(64 + chunks.iter().map(|c| 4 + c.encoded_len()).sum::<usize>());
    encode_header(key, &mut out);
    for c in chunks {
        encode_record(c, &mut out);
    }
    out.freeze()
}

/// Incremental decoder: push bytes as they arrive, take chunks as they complete.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
    key: Option<String>,
    last_seq: Option<u64>,
}

impl Decoder {
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete chunk, `Ok(None)` when more input is needed.
    pub fn next_chunk(&mut self) -> Result<Option<Chunk>, DumpError> {
        if self.key.is_none() {
            if self.buf.len() >= MAGIC.len() && &self.buf[..MAGIC.len()] != MAGIC {
                return Err(DumpError::BadMagic);
            }
            if self.buf.len() < MAGIC.len() + 3 {
                return Ok(None);
            }
            let version = self.buf[MAGIC.len()];
            if version != VERSION {
                return Err(DumpError::Version(version));
            }
            let len = usize::from(u16::from_le_bytes([self.buf[7], self.buf[8]]));
            if self.buf.len() < 9 + len {
                return Ok(None);
            }
            let key = String::from_utf8_lossy(&self.buf[9..9 + len]).into_owned();
            self.buf.advance(9 + len);
            self.key = Some(key);
        }
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len > MAX_RECORD {
            return Err(DumpError::RecordTooLarge(len));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        self.buf.advance(4);
        let record = self.buf.split_to(len).freeze();
        let chunk = Chunk::decode(record)?;
        if self.last_seq.is_some_and(|s| chunk.seq <= s) {
            return Err(DumpError::Order);
        }
        self.last_seq = Some(chunk.seq);
        Ok(Some(chunk))
    }

    /// Input ended: anything left over means the dump was cut short.
    pub fn finish(&self) -> Result<(), DumpError> {
        if self.key.is_none() || !self.buf.is_empty() {
            return Err(DumpError::Truncated);
        }
        Ok(())
    }
}

/// Decode a complete dump for stream `key`.
pub fn decode(key: &str, data: &[u8]) -> Result<Vec<Chunk>, DumpError> {
    let mut d = Decoder::default();
    d.push(data);
    let mut chunks = vec![];
    while let Some(c) = d.next_chunk()? {
        chunks.push(c);
    }
    d.finish()?;
    match d.key() {
        Some(k) if k == key => Ok(chunks),
        found => Err(DumpError::WrongStream {
            found: found.unwrap_or_default().to_string(),
            expected: key.to_string(),
        }),
    }
}

pub fn path_for(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("{key}.dump"))
}

/// Write atomically: a temporary file, fsync, then rename over the old dump. An empty buffer
/// removes the dump instead.
pub fn write_file(dir: &Path, key: &str, chunks: &[Chunk]) -> Result<usize, DumpError> {
    let path = path_for(dir, key);
    if chunks.is_empty() {
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        return Ok(0);
    }
    let bytes = encode(key, chunks);
    let tmp = dir.join(format!(".{key}.dump.tmp"));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    Ok(bytes.len())
}

/// Read a stream's dump: `Ok(None)` when there is none.
pub fn read_file(dir: &Path, key: &str) -> Result<Option<Vec<Chunk>>, DumpError> {
    let path = path_for(dir, key);
    let data = match fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    decode(key, &data).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::chunk::test_chunk;

    #[test]
    fn round_trip_and_incremental() {
        let chunks: Vec<Chunk> = (0..5).map(|i| test_chunk(i, i as i64, "t")).collect();
        let bytes = encode("live", &chunks);
        assert_eq!(decode("live", &bytes).unwrap(), chunks);
        let mut d = Decoder::default();
        let mut got = vec![];
        for piece in bytes.chunks(333) {
            d.push(piece);
            while let Some(c) = d.next_chunk().unwrap() {
                got.push(c);
            }
        }
        d.finish().unwrap();
        assert_eq!(got, chunks);
    }

    /// A dump of the previous release: its chunks are version 2 (no levels). It loads, and a
    /// dump of chunks with levels keeps them.
    #[test]
    fn dumps_of_the_previous_chunk_version_load_and_levels_survive() {
        use crate::core::level::points::{Levels, Point};
        let chunks: Vec<Chunk> = (0..3).map(|i| test_chunk(i, i as i64, "t")).collect();
        let mut old = BytesMut::new();
        encode_header("live", &mut old);
        for c in &chunks {
            let v3 = c.to_bytes();
            // Version 2 is version 3 without the (here empty) level fields.
            let mut v2 = BytesMut::from(&v3[..v3.len() - 3]);
            v2[3] = 2;
            old.put_u32_le(v2.len() as u32);
            old.put_slice(&v2);
        }
        assert_eq!(decode("live", &old.freeze()).unwrap(), chunks);

        let mut loud = chunks.clone();
        for c in &mut loud {
            c.levels = Some(std::sync::Arc::new(Levels {
                channels: 2,
                points: vec![Point {
                    offset: 0,
                    rms: [18, 19],
                    peak: [2, 3],
                }],
            }));
        }
        assert_eq!(decode("live", &encode("live", &loud)).unwrap(), loud);
    }

    #[test]
    fn corrupt_and_foreign_dumps_are_errors() {
        let chunks: Vec<Chunk> = (0..3).map(|i| test_chunk(i, i as i64, "t")).collect();
        let bytes = encode("live", &chunks);
        assert!(matches!(
            decode("other", &bytes),
            Err(DumpError::WrongStream { .. })
        ));
        assert!(matches!(
            decode("live", &bytes[..bytes.len() - 1]),
            Err(DumpError::Truncated)
        ));
        assert!(matches!(
            decode("live", b"PK\x03\x04 zip file"),
            Err(DumpError::BadMagic)
        ));
        let mut v = bytes.to_vec();
        v[6] = 7;
        assert!(matches!(decode("live", &v), Err(DumpError::Version(7))));
        let mut v = bytes.to_vec();
        v[20] ^= 0xFF;
        assert!(decode("live", &v).is_err());
        let reversed: Vec<Chunk> = chunks.iter().rev().cloned().collect();
        assert!(matches!(
            decode("live", &encode("live", &reversed)),
            Err(DumpError::Order)
        ));
    }

    #[test]
    fn files_are_replaced_atomically_and_removed_when_empty() {
        let dir = std::env::temp_dir().join(format!("sm-dump-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let chunks: Vec<Chunk> = (0..3).map(|i| test_chunk(i, i as i64, "t")).collect();
        write_file(&dir, "live", &chunks).unwrap();
        assert_eq!(read_file(&dir, "live").unwrap().unwrap(), chunks);
        write_file(&dir, "live", &[]).unwrap();
        assert!(read_file(&dir, "live").unwrap().is_none());
        fs::remove_dir_all(&dir).unwrap();
    }
}
