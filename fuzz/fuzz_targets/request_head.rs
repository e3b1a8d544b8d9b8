#![no_main]
//! Request heads and chunked bodies from the network: errors, never panics.
use libfuzzer_sys::fuzz_target;
use streammachine::core::http_head::{ChunkedDecoder, head_len, parse_head};

fuzz_target!(|data: &[u8]| {
    if let Some(n) = head_len(data) {
        if let Ok(h) = parse_head(&data[..n]) {
            let _ = (h.path(), h.query(), h.header("authorization"));
        }
    }
    let _ = parse_head(data);
    let mut d = ChunkedDecoder::default();
    let mut out = Vec::new();
    for piece in data.chunks(7) {
        if d.push(piece, &mut out).is_err() {
            break;
        }
    }
    assert!(out.len() <= data.len());
});
