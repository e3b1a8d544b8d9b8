//! Checks on chunks that arrive from another process (NATS, the HTTP transport) before they
//! reach a buffer: the encoding is already validated by [`Chunk::decode`]; this checks that the
//! audio is whole frames of the stream's format, so a corrupt or foreign message can never be
//! served to a listener.

use crate::core::chunk::Chunk;
use crate::core::codec::{AdtsHeader, Format, MpegHeader};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadChunk {
    #[error("chunk {seq} has codec `{codec}`, not {format} audio")]
    Codec {
        seq: u64,
        codec: String,
        format: Format,
    },
    #[error("chunk {seq} is not whole {format} frames (byte {at} of {len})")]
    Frames {
        seq: u64,
        format: Format,
        at: usize,
        len: usize,
    },
    #[error("chunk {seq} says {claimed} frames but holds {found}")]
    FrameCount { seq: u64, claimed: u32, found: u32 },
    #[error("chunk {seq} is empty")]
    Empty { seq: u64 },
}

/// Whether `chunk` is whole frames of `format` and agrees with its own header fields.
pub fn check_chunk(format: Format, chunk: &Chunk) -> Result<(), BadChunk> {
    let seq = chunk.seq;
    let prefix = match format {
        Format::Mp3 => "mp3-",
        Format::Aac => "aac-",
    };
    if !chunk.codec.starts_with(prefix) {
        return Err(BadChunk::Codec {
            seq,
            codec: chunk.codec.to_string(),
            format,
        });
    }
    let data = &chunk.data[..];
    if data.is_empty() {
        return Err(BadChunk::Empty { seq });
    }
    let mut at = 0;
    let mut found = 0u32;
    while at < data.len() {
        let len = match format {
            Format::Mp3 => MpegHeader::parse(&data[at..]).map(|h| h.frame_len),
            Format::Aac => AdtsHeader::parse(&data[at..]).map(|h| h.frame_len),
        };
        match len {
            Some(len) if len >= 4 && at + len <= data.len() => {
                at += len;
                found += 1;
            }
            _ => {
                return Err(BadChunk::Frames {
                    seq,
                    format,
                    at,
                    len: data.len(),
                });
            }
        }
    }
    if found != chunk.frames {
        return Err(BadChunk::FrameCount {
            seq,
            claimed: chunk.frames,
            found,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::chunk::test_chunk;
    use bytes::Bytes;

    /// MPEG-1 layer III, 128 kbps, 44.1 kHz, joint stereo, no padding: 417 bytes.
    fn mp3_chunk(frames: usize) -> Chunk {
        let mut data = vec![];
        for _ in 0..frames {
            let mut f = vec![0xFF, 0xFB, 0x90, 0x64];
            f.resize(417, 0);
            data.extend(f);
        }
        let mut c = test_chunk(1, 0, "t");
        c.data = Bytes::from(data);
        c.frames = frames as u32;
        c
    }

    #[test]
    fn whole_frames_pass() {
        assert_eq!(check_chunk(Format::Mp3, &mp3_chunk(19)), Ok(()));
    }

    #[test]
    fn garbage_foreign_and_inconsistent_chunks_fail() {
        // test_chunk's data is not audio at all.
        assert!(matches!(
            check_chunk(Format::Mp3, &test_chunk(1, 0, "t")),
            Err(BadChunk::Frames { at: 0, .. })
        ));
        assert!(matches!(
            check_chunk(Format::Aac, &mp3_chunk(3)),
            Err(BadChunk::Codec { .. })
        ));
        let mut cut = mp3_chunk(3);
        cut.data = cut.data.slice(..cut.data.len() - 1);
        assert!(matches!(
            check_chunk(Format::Mp3, &cut),
            Err(BadChunk::Frames { at: 834, .. })
        ));
        let mut lying = mp3_chunk(3);
        lying.frames = 4;
        assert_eq!(
            check_chunk(Format::Mp3, &lying),
            Err(BadChunk::FrameCount {
                seq: 1,
                claimed: 4,
                found: 3
            })
        );
        let mut empty = mp3_chunk(0);
        empty.frames = 0;
        assert_eq!(
            check_chunk(Format::Mp3, &empty),
            Err(BadChunk::Empty { seq: 1 })
        );
    }
}
