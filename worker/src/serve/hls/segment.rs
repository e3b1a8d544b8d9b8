//! Segment bodies (sans-IO): packed audio (the MP3 frames or ADTS AAC frames as received) behind
//! an ID3 tag with the `transportStreamTimestamp` of the first sample and the title on air, plus
//! a timed ID3 tag in front of the first frame of every title change inside the segment.
//! Everything is derived from the chunks, so two servers holding the same chunks serve
//! byte-identical segments.

use bytes::{Bytes, BytesMut};

use super::id3::{Id3Frame, title_frames, write_tag};
use super::index::{Segment, Span};
use crate::core::chunk::Chunk;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    #[error("the segment is a gap: no audio was on air")]
    Gap,
    #[error("the buffer no longer holds the segment's audio as indexed")]
    Changed,
}

/// The body of `seg`, from the chunks `span.first_seq..=span.last_seq` in order.
pub fn build<'a>(
    seg: &Segment,
    chunks: impl IntoIterator<Item = &'a Chunk>,
) -> Result<Bytes, SegmentError> {
    let span = seg.media.as_ref().ok_or(SegmentError::Gap)?;
    let mut out = BytesMut::with_capacity(span.bytes + 256);
    let mut lead = vec![Id3Frame::Timestamp(span.pts90k(seg.start))];
    if !span.meta.title.is_empty() {
        lead.extend(title_frames(&span.meta.title));
    }
    write_tag(&mut out, &lead);
    let mut title = span.meta.clone();
    let (mut n, mut audio) = (0u32, 0usize);
    for c in chunks {
        n += 1;
        let first = n == 1;
        let last = c.seq == span.last_seq;
        if first && c.seq != span.first_seq {
            return Err(SegmentError::Changed);
        }
        if !first && c.meta.title != title.title {
            // Chunks end where a title changes, so the change sits on this chunk's first frame.
            write_tag(&mut out, &title_frames(&c.meta.title));
            title = c.meta.clone();
        }
        let from = if first { span.first_offset } else { 0 };
        let to = if last { span.last_end } else { c.data.len() };
        let piece = c.data.get(from..to).ok_or(SegmentError::Changed)?;
        out.extend_from_slice(piece);
        audio += piece.len();
        if last {
            break;
        }
    }
    if n != span.chunks || audio != span.bytes {
        return Err(SegmentError::Changed);
    }
    Ok(out.freeze())
}

/// A strong validator for a segment body, derived from what it is made of (same on every replica).
pub fn etag(seg: &Segment, span: &Span) -> String {
    format!(
        "\"{}-{}-{}-{}-{}\"",
        seg.msn, span.first_seq, span.first_offset, span.last_seq, span.last_end
    )
}
