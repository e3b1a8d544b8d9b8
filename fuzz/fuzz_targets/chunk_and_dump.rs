#![no_main]
//! The chunk encoding and the dump/snapshot format arrive from disk and from the network (NATS,
//! the rewind transport): any bytes decode to an error or to chunks that re-encode identically.
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use streammachine::core::chunk::Chunk;
use streammachine::core::dump;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Chunk::decode(Bytes::copy_from_slice(data)) {
        // The current version re-encodes byte for byte; version 1 is read, never written.
        if data[3] == 2 {
            assert_eq!(&c.to_bytes()[..], data);
        }
        assert_eq!(Chunk::decode(c.to_bytes()).as_ref(), Ok(&c));
    }
    let mut d = dump::Decoder::default();
    for piece in data.chunks(13) {
        d.push(piece);
        while let Ok(Some(c)) = d.next_chunk() {
            let _ = c.end();
        }
    }
    let _ = dump::decode("live", data);
});
