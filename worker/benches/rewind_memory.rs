//! Heap used by the rewind buffer for one hour of 128 kbps MP3, against the audio bytes it holds.
//! Goal (issue: standalone server): overhead within 2 % of the audio itself.
//!
//! Run: `cargo bench -p streammachine --bench rewind_memory`

use std::alloc::System;
use std::sync::Arc;
use std::time::Duration;

use cap::Cap;
use streammachine::core::chunk::Meta;
use streammachine::core::chunker::Chunker;
use streammachine::core::codec::{Format, Parser};
use streammachine::core::rewind::RewindBuffer;

/// Counts live heap bytes (requested sizes; the allocator's own rounding comes on top).
#[global_allocator]
static ALLOC: Cap<System> = Cap::new(System, usize::MAX);

fn main() {
    // One MPEG-1 layer III 128 kbps 44.1 kHz frame (417 bytes, 418 padded: the encoder's mix).
    let frame = |padded: bool| {
        let mut f = vec![0xFF, 0xFB, if padded { 0x92 } else { 0x90 }, 0x64];
        f.resize(if padded { 418 } else { 417 }, 0x5A);
        f
    };
    let hour_frames = (3600.0 * 44100.0 / 1152.0) as usize + 1;
    let mut input = Vec::with_capacity(hour_frames * 418);
    for i in 0..hour_frames {
        // 128 kbps at 44.1 kHz averages 417.96 bytes a frame.
        input.extend(frame(i % 25 != 0));
    }

    let before = ALLOC.allocated() as isize;
    let mut buffer = RewindBuffer::new(Duration::from_secs(3600));
    {
        let meta = Arc::new(Meta {
            title: "Morning Show - Interview".into(),
            url: String::new(),
        });
        let mut chunker = Chunker::new(Duration::from_millis(500), 0, None, meta);
        let mut parser = Parser::new(Format::Mp3);
        let mut out = Vec::new();
        // Fed like a socket: 16 KiB reads.
        for piece in input.chunks(16 * 1024) {
            parser.push(piece);
            while let Some(f) = parser.next_frame() {
                chunker.push(&f, 0, &mut out);
                for c in out.drain(..) {
                    buffer.push(c);
                }
            }
        }
        chunker.flush(&mut out);
        for c in out.drain(..) {
            buffer.push(c);
        }
    }
    // Listeners share chunk bytes by cloning them; the first clone of each chunk allocates the
    // shared reference count, so count that too.
    let clones: Vec<_> = buffer.iter().map(|c| c.data.clone()).collect();
    drop(clones);
    let held = ALLOC.allocated() as isize - before;
    drop(input);
    let audio = buffer.bytes() as isize;
    let overhead = held - audio;
    let pct = overhead as f64 * 100.0 / audio as f64;
    println!(
        "rewind buffer, 1 h of 128 kbps MP3 in {} chunks: audio {:.1} MB, heap {:.1} MB, overhead {:.2} MB = {:.2} % (goal <= 2 %)",
        buffer.len(),
        audio as f64 / 1e6,
        held as f64 / 1e6,
        overhead as f64 / 1e6,
        pct
    );
    println!(
        "per chunk: {} bytes of bookkeeping (Chunk struct {} bytes)",
        overhead / buffer.len() as isize,
        std::mem::size_of::<streammachine::core::chunk::Chunk>()
    );
    assert!(pct <= 2.0, "rewind overhead {pct:.2} % exceeds 2 %");
}
