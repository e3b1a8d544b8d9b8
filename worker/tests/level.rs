//! The level meter on real encoder output: ffmpeg encodes a tone followed by digital silence as
//! MP3 and as ADTS AAC, and the meter must find the tone's level and the silence, window by
//! window, through our own frame parser (as ingest feeds it).
#![allow(clippy::unwrap_used)]

use std::process::Command;

use streammachine::core::codec::{Format, Parser};
use streammachine::core::level::decode::FrameDecoder;
use streammachine::core::level::silence::{Change, Detector, Settings};
use streammachine::core::level::{FLOOR_DBFS, Window};

/// 4 s of a 1 kHz tone at half scale on the left channel only, then 4 s of silence, 44.1 kHz stereo.
fn encode(codec_args: &[&str]) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i"])
        .arg("aevalsrc=if(lt(t\\,4)\\,0.5*sin(2*PI*1000*t)\\,0)|0:s=44100:d=8")
        .args(codec_args)
        .arg("-")
        .output()
        .expect("ffmpeg runs (scripts/install/base.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn meter(format: Format, bytes: &[u8], corrupt_every: Option<usize>) -> (Vec<Window>, u64) {
    let mut parser = Parser::new(format);
    parser.push(bytes);
    parser.finish();
    let mut decoder = FrameDecoder::new();
    let mut windows = Vec::new();
    let mut n = 0;
    while let Some(mut frame) = parser.next_frame() {
        n += 1;
        if corrupt_every.is_some_and(|k| n % k == 0) {
            // Keep the header (the parser accepted it) and scramble the audio data.
            let mut data = frame.data.to_vec();
            let start = frame.header.frame_len().min(16);
            for (i, b) in data.iter_mut().enumerate().skip(start) {
                *b = (i as u8).wrapping_mul(151) ^ 0x5A;
            }
            frame.data = data.into();
        }
        windows.extend(decoder.push(&frame).unwrap());
    }
    (windows, decoder.failed_frames)
}

fn check_tone_then_silence(windows: &[Window]) {
    // 8 s of audio is 80 windows; the encoder's priming and padding may add or drop one.
    assert!(
        (79..=81).contains(&windows.len()),
        "{} windows",
        windows.len()
    );
    for (i, w) in windows.iter().enumerate() {
        assert_eq!(w.first_sample, i as u64 * 4410);
        assert_eq!(w.channels.len(), 2);
        let left = w.channels[0].rms_dbfs;
        // Skip the windows around the encoder delay and the tone's end.
        if (1..38).contains(&i) {
            // 0.5 / √2 RMS ≈ −9.03 dBFS; lossy coding moves it a little.
            assert!((left + 9.03).abs() < 0.5, "window {i}: {left} dBFS");
            assert!(
                w.channels[1].rms_dbfs < -60.0,
                "window {i}: right {:?}",
                w.channels[1]
            );
        }
        if (42..78).contains(&i) {
            assert!(w.loudest_rms_dbfs() < -90.0, "window {i}: {w:?}");
        }
    }
}

#[test]
fn mp3_tone_and_silence() {
    let mp3 = encode(&["-c:a", "libmp3lame", "-b:a", "128k", "-f", "mp3"]);
    let (windows, failed) = meter(Format::Mp3, &mp3, None);
    assert_eq!(failed, 0);
    check_tone_then_silence(&windows);
}

#[test]
fn aac_tone_and_silence() {
    let aac = encode(&["-c:a", "aac", "-b:a", "128k", "-f", "adts"]);
    let (windows, failed) = meter(Format::Aac, &aac, None);
    assert_eq!(failed, 0);
    check_tone_then_silence(&windows);
}

#[test]
fn silence_detector_trips_on_encoded_silence() {
    let mp3 = encode(&["-c:a", "libmp3lame", "-b:a", "128k", "-f", "mp3"]);
    let (windows, _) = meter(Format::Mp3, &mp3, None);
    let mut detector = Detector::new(Settings {
        trip_after: std::time::Duration::from_secs(2),
        ..Settings::default()
    });
    let changes: Vec<(usize, Change)> = windows
        .iter()
        .enumerate()
        .filter_map(|(i, w)| detector.push(w).map(|c| (i, c)))
        .collect();
    assert_eq!(changes.len(), 1, "{changes:?}");
    // Silence begins at 4.0 s (window 40, give or take the encoder delay); trips 2 s later.
    assert!((59..=61).contains(&changes[0].0), "{changes:?}");
}

#[test]
fn frames_that_do_not_decode_count_as_silence_and_keep_the_clock() {
    for (format, args) in [
        (
            Format::Mp3,
            &["-c:a", "libmp3lame", "-b:a", "128k", "-f", "mp3"][..],
        ),
        (
            Format::Aac,
            &["-c:a", "aac", "-b:a", "128k", "-f", "adts"][..],
        ),
    ] {
        let bytes = encode(args);
        let (clean, _) = meter(format, &bytes, None);
        let (windows, failed) = meter(format, &bytes, Some(3));
        assert!(failed > 0, "{format}: the scrambled frames were decoded");
        // Same sample clock: as many windows as the clean stream.
        assert_eq!(windows.len(), clean.len(), "{format}");
        assert!(windows.iter().all(|w| w.loudest_rms_dbfs() >= FLOOR_DBFS));
    }
}

/// The levels chunks carry: the chunker cuts the encoded tone and silence into half-second
/// chunks, the leveler measures them in order, and the points, placed on the content clock,
/// show the tone's level and then the silence, every 100 ms without a hole or an overlap; the
/// encoding carries them to the other side unchanged.
fn chunk_levels(format: Format, codec_args: &[&str]) {
    use std::sync::Arc;
    use streammachine::core::chunk::{Chunk, Meta};
    use streammachine::core::chunker::Chunker;
    use streammachine::core::level::chunks::{ChunkLeveler, timed_points};

    let bytes = encode(codec_args);
    let mut parser = Parser::new(format);
    parser.push(&bytes);
    parser.finish();
    let start = 1_800_000_000_000_000;
    let mut chunker = Chunker::new(
        std::time::Duration::from_millis(500),
        1,
        None,
        Arc::new(Meta::default()),
    );
    let mut chunks = vec![];
    while let Some(frame) = parser.next_frame() {
        chunker.push(&frame, start, &mut chunks);
    }
    chunker.flush(&mut chunks);
    let mut leveler = ChunkLeveler::new();
    let chunks: Vec<Chunk> = chunks
        .into_iter()
        .map(|mut c| {
            c.levels = Some(Arc::new(leveler.measure(&c)));
            Chunk::decode(c.to_bytes()).unwrap()
        })
        .collect();
    let points = timed_points(&chunks, i64::MIN, i64::MAX);
    assert!((79..=81).contains(&points.len()), "{} points", points.len());
    let first = chunks[0].ts;
    for (i, p) in points.iter().enumerate() {
        // 4410 samples at 44.1 kHz: exactly 100 ms apart (rounded to the microsecond).
        assert!(
            (p.ts - first - i as i64 * 100_000).abs() <= 1,
            "point {i} at {}",
            p.ts - first
        );
        assert_eq!(p.rms_dbfs.len(), 2);
        if (1..38).contains(&i) {
            assert!((p.rms_dbfs[0] + 9.0).abs() < 0.75, "point {i}: {p:?}");
            assert!(p.peak_dbfs[0] > -7.0, "point {i}: {p:?}");
        }
        if (42..78).contains(&i) {
            assert!(
                p.rms_dbfs[0] < -90.0 && p.rms_dbfs[1] < -90.0,
                "point {i}: {p:?}"
            );
        }
    }
}

#[test]
fn mp3_chunks_carry_their_levels() {
    chunk_levels(
        Format::Mp3,
        &["-c:a", "libmp3lame", "-b:a", "128k", "-f", "mp3"],
    );
}

#[test]
fn aac_chunks_carry_their_levels() {
    chunk_levels(Format::Aac, &["-c:a", "aac", "-b:a", "128k", "-f", "adts"]);
}
