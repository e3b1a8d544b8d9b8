//! HLS benchmarks (ignored in the normal run; `bench/hls.sh` runs them in release):
//! * what a request for a four-hour playlist costs the server (goal: under a millisecond), from
//!   the cached playlist and when the index is rebuilt at a segment boundary;
//! * a four-hour synthetic dump for the HTTP benchmark against nginx.
//!
//!   cargo test --release -p streammachine-e2e --test hls_bench -- --ignored --nocapture

use std::sync::Arc;
use std::time::{Duration, Instant};

use streammachine::config::Settings;
use streammachine::core::chunk::{Chunk, Meta};
use streammachine::core::chunker::Chunker;
use streammachine::core::codec::{Format, frames_of};
use streammachine::core::rewind::RewindBuffer;
use streammachine::metrics::Metrics;
use streammachine::serve::hls::index::{Index, segment_len_us};
use streammachine::serve::hls::playlist::{PlaylistQuery, render};
use streammachine::serve::hls::serve::built;
use streammachine::stream::Stream;
use streammachine::time::now_micros;

/// `hours` of 128 kbps MP3 (synthetic frames) ending now, with a title change every 4 minutes.
fn station(hours: u64) -> Vec<Chunk> {
    let frame_us = 1152.0 * 1e6 / 44100.0;
    let n = (hours as f64 * 3600e6 / frame_us) as usize;
    let mut data = Vec::with_capacity(n * 418);
    for i in 0..n {
        let padded = i % 25 != 0;
        let mut f = vec![0xFF, 0xFB, if padded { 0x92 } else { 0x90 }, 0x64];
        f.extend_from_slice(&(i as u64).to_be_bytes());
        f.resize(if padded { 418 } else { 417 }, 0x5A);
        data.extend(f);
    }
    let frames = frames_of(Format::Mp3, &data);
    let start = now_micros() - (hours * 3600 * 1_000_000) as i64;
    let meta = |i: usize| {
        Arc::new(Meta {
            title: format!("Artist {i} - Song {i}"),
            url: String::new(),
        })
    };
    let mut chunker = Chunker::new(Duration::from_millis(500), 1, None, meta(0));
    let mut out = vec![];
    let per_title = (240.0 * 1e6 / frame_us) as usize;
    for (i, f) in frames.iter().enumerate() {
        if i > 0 && i % per_title == 0 {
            chunker.set_meta(meta(i / per_title), &mut out);
        }
        chunker.push(f, start, &mut out);
    }
    chunker.flush(&mut out);
    out
}

fn stream_with(chunks: Vec<Chunk>) -> Arc<Stream> {
    let settings = Settings::defaults("pw".into());
    let s = settings.stream("live", &Default::default());
    let mut buffer = RewindBuffer::new(s.rewind);
    for c in chunks {
        buffer.push(c);
    }
    Arc::new(Stream::new(
        s,
        false,
        &Metrics::new(),
        Some(buffer),
        None,
        Duration::from_millis(500),
    ))
}

fn per_op(n: u32, f: impl Fn()) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed() / n
}

#[test]
#[ignore = "benchmark: run by bench/hls.sh"]
fn four_hour_playlist_request_costs_under_a_millisecond() {
    let stream = stream_with(station(4));
    let t = Instant::now();
    let b = built(&stream).expect("segments");
    let rebuild = t.elapsed();
    let segments = b.rendered.len();
    let full = b
        .rendered
        .assemble(&b.rendered.view(&PlaylistQuery::default()).unwrap(), None);
    // A request from the cache: the buffer's key, the cached playlist.
    let cached = per_op(10_000, || {
        let b = built(&stream).unwrap();
        std::hint::black_box(b.rendered.len());
    });
    let session = per_op(1_000, || {
        let q = PlaylistQuery {
            session_id: Some("3f2504e0".into()),
            ..Default::default()
        };
        std::hint::black_box(
            b.rendered
                .assemble(&b.rendered.view(&q).unwrap(), Some("?session_id=3f2504e0")),
        );
    });
    let at = per_op(1_000, || {
        let q = PlaylistQuery {
            at: Some(now_micros() - 3_600_000_000),
            ..Default::default()
        };
        std::hint::black_box(b.rendered.assemble(&b.rendered.view(&q).unwrap(), None));
    });
    let delta = per_op(10_000, || {
        let q = PlaylistQuery {
            skip: true,
            ..Default::default()
        };
        std::hint::black_box(b.rendered.assemble(&b.rendered.view(&q).unwrap(), None));
    });
    // Rebuilding: what happens once per segment boundary (index, rendering, both playlists).
    let l = segment_len_us(stream.settings().hls_segment);
    let rebuilds = per_op(20, || {
        let index = stream.buffer.read(|buf| Index::build(buf, l));
        let r = render(&index, "live/seg/", "mp3", false);
        for q in [
            PlaylistQuery::default(),
            PlaylistQuery {
                skip: true,
                ..Default::default()
            },
        ] {
            std::hint::black_box(r.assemble(&r.view(&q).unwrap(), None));
        }
    });
    println!(
        "4 h playlist: {segments} segments, {} KiB\n\
         cached full or delta playlist (per request): {cached:?}\n\
         full playlist with a session id in every URI (per request): {session:?}\n\
         full playlist with EXT-X-START from ?at= (per request): {at:?}\n\
         delta update assembled (per request): {delta:?}\n\
         index rebuild at a segment boundary (first {rebuild:?}): {rebuilds:?}",
        full.len() / 1024
    );
    assert!(cached < Duration::from_millis(1));
    assert!(session < Duration::from_millis(1));
    assert!(at < Duration::from_millis(1));
}

#[test]
#[ignore = "benchmark: run by bench/hls.sh"]
fn write_four_hour_dump() {
    let dir = std::env::var("HLS_BENCH_DUMP_DIR").expect("HLS_BENCH_DUMP_DIR");
    let chunks = station(4);
    let bytes =
        streammachine::core::dump::write_file(std::path::Path::new(&dir), "live", &chunks).unwrap();
    println!("wrote {} chunks, {} MB", chunks.len(), bytes / 1_000_000);
}

/// Sizes of the four-hour playlist, a one-hour window and a delta update, plain, gzipped at a
/// few levels and in brotli, and what each costs per body (the cached ones are compressed once per playlist
/// version; the per-request ones would be compressed per request). `HLS_BENCH_PLAYLIST=path`
/// also writes the four-hour playlist there (to try other compressors on it).
#[test]
#[ignore = "benchmark: run by bench/hls.sh"]
fn playlist_compression_sizes_and_cost() {
    use streammachine::serve::hls::compress::{BROTLI_QUALITY, brotli, gzip_at};
    let stream = stream_with(station(4));
    let b = built(&stream).expect("segments");
    let r = &b.rendered;
    let body = |q: PlaylistQuery| r.assemble(&r.view(&q).unwrap(), None);
    let hour = Some(Duration::from_secs(3600));
    let bodies = [
        ("full 4 h", body(PlaylistQuery::default())),
        (
            "1 h window",
            body(PlaylistQuery {
                window: hour,
                ..Default::default()
            }),
        ),
        (
            "delta (1 h window)",
            body(PlaylistQuery {
                window: hour,
                skip: true,
                ..Default::default()
            }),
        ),
        (
            "delta (whole 4 h)",
            body(PlaylistQuery {
                skip: true,
                ..Default::default()
            }),
        ),
        (
            "full 4 h with session ids",
            r.assemble(
                &r.view(&PlaylistQuery::default()).unwrap(),
                Some("?session_id=3f2504e0"),
            ),
        ),
    ];
    if let Ok(path) = std::env::var("HLS_BENCH_PLAYLIST") {
        std::fs::write(path, &bodies[0].1).unwrap();
    }
    for (what, plain) in &bodies {
        let mut line = format!("{what}: plain {} B", plain.len());
        for level in [1, 6, 9] {
            let n = if plain.len() > 100_000 { 50 } else { 500 };
            let gz = gzip_at(plain, level).unwrap();
            let cost = per_op(n, || {
                std::hint::black_box(gzip_at(plain, level));
            });
            line += &format!(
                ", gzip -{level} {} B ({:.1} %) in {cost:?}",
                gz.len(),
                100.0 * gz.len() as f64 / plain.len() as f64
            );
        }
        let br = brotli(plain).unwrap();
        let cost = per_op(if plain.len() > 100_000 { 20 } else { 200 }, || {
            std::hint::black_box(brotli(plain));
        });
        line += &format!(
            ", br q{BROTLI_QUALITY} {} B ({:.1} %) in {cost:?}",
            br.len(),
            100.0 * br.len() as f64 / plain.len() as f64
        );
        println!("{line}");
    }
}
