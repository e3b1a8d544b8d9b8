#![no_main]
//! In-band ICY metadata from relayed servers: any bytes, any metaint.
use libfuzzer_sys::fuzz_target;
use streammachine::core::icy::IcyReader;

fuzz_target!(|data: &[u8]| {
    let metaint = data.first().map_or(1, |b| usize::from(*b) * 17 + 1);
    let mut r = IcyReader::new(metaint);
    let mut audio = 0;
    for piece in data.chunks(11) {
        let out = r.push(piece);
        audio += out.audio.len();
    }
    assert!(audio <= data.len());
});
