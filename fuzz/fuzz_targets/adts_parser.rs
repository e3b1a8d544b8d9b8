#![no_main]
//! Any bytes, fed in pieces of any size: the ADTS parser never panics, only emits frames
//! whose length matches their header, and accounts for every input byte.
use libfuzzer_sys::fuzz_target;
use streammachine::core::codec::{Format, Parser};

fuzz_target!(|data: &[u8]| check(Format::Aac, data));

fn check(format: Format, data: &[u8]) {
    let split = data.first().map_or(1, |b| usize::from(*b % 64) + 1);
    let mut p = Parser::new(format);
    let mut frame_bytes = 0u64;
    for piece in data.chunks(split) {
        p.push(piece);
        while let Some(f) = p.next_frame() {
            assert_eq!(f.data.len(), f.header.frame_len());
            frame_bytes += f.data.len() as u64;
        }
    }
    p.finish();
    while let Some(f) = p.next_frame() {
        assert_eq!(f.data.len(), f.header.frame_len());
        frame_bytes += f.data.len() as u64;
    }
    let s = p.stats();
    assert_eq!(s.frame_bytes, frame_bytes);
    assert!(s.frame_bytes + s.garbage_bytes + s.tag_bytes <= data.len() as u64);
}
