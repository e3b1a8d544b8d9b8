//! CPU cost of dead-air monitoring: decoding a source's frames with symphonia and metering them
//! in 100 ms windows through the silence detector, as `source::monitor` does for every source.
//! Goal (issue 9): about 0.2 % of one core per real-time 128 kbps stream.
//!
//! The audio is made by ffmpeg at bench time (pink noise, stereo 44.1 kHz, 128 kbps MP3 and
//! AAC-LC in ADTS) in a temporary directory; without ffmpeg the bench says so and exits.
//! CPU time is the thread's own (`/proc/thread-self/schedstat`, so other load on the machine
//! does not count), or wall time where that is unavailable.
//!
//! Run: `cargo bench -p streammachine --bench level` (`LEVEL_BENCH_MINUTES`, default 10).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use streammachine::core::codec::{Format, frames_of};
use streammachine::core::level::decode::FrameDecoder;
use streammachine::core::level::silence::{Detector, Settings};

/// This thread's CPU time, if the kernel tells.
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

fn encode(format: Format, minutes: u32, path: &Path) -> bool {
    let source = format!("anoisesrc=d={}:c=pink:r=44100:a=0.3", minutes * 60);
    let mut cmd = Command::new("ffmpeg");
    cmd.args([
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
    ])
    .arg(&source)
    .args(["-ac", "2", "-ar", "44100", "-b:a", "128k"]);
    match format {
        Format::Mp3 => cmd.args(["-c:a", "libmp3lame", "-f", "mp3"]),
        Format::Aac => cmd.args(["-c:a", "aac", "-f", "adts"]),
    };
    cmd.arg(path).status().is_ok_and(|s| s.success())
}

fn main() {
    let minutes: u32 = std::env::var("LEVEL_BENCH_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    if Command::new("ffmpeg").arg("-version").output().is_err() {
        println!("level: ffmpeg is not installed; skipped (scripts/install/base.sh installs it)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("sm-level-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    println!("level: decode + meter + detect, {minutes} min of 128 kbps stereo 44.1 kHz audio");
    for format in [Format::Mp3, Format::Aac] {
        let path = dir.join(format!("bench.{}", format.extension()));
        assert!(
            encode(format, minutes, &path),
            "ffmpeg could not encode {format:?}"
        );
        let data = std::fs::read(&path).expect("read the encoded file");
        let frames = frames_of(format, &data);
        let content: f64 = frames
            .iter()
            .map(|f| f64::from(f.header.samples()) / f64::from(f.header.sample_rate()))
            .sum();

        let mut decoder = FrameDecoder::new();
        let mut detector = Detector::new(Settings::default());
        let (mut windows, mut changes) = (0u64, 0u64);
        let (cpu0, wall0) = (thread_cpu(), Instant::now());
        for frame in &frames {
            for window in decoder.push(frame).expect("a supported stream") {
                windows += 1;
                changes += u64::from(detector.push(&window).is_some());
            }
        }
        let wall = wall0.elapsed();
        let (cpu, clock) = match (cpu0, thread_cpu()) {
            (Some(a), Some(b)) => (b - a, "thread CPU"),
            _ => (wall, "wall"),
        };
        assert!(
            windows as f64 >= content * 10.0 - 2.0,
            "every 100 ms metered"
        );
        assert_eq!(decoder.failed_frames, 0, "every frame decoded");
        assert_eq!(changes, 0, "pink noise is not dead air");
        let per_second = cpu.as_secs_f64() / content;
        println!(
            "  {:<4} {:>6} frames, {content:>6.0} s of audio: {:.3} s {clock} ({:.3} s wall), \
             {:.1} µs per stream-second = {:.3} % of one core per real-time stream",
            format!("{format:?}"),
            frames.len(),
            cpu.as_secs_f64(),
            wall.as_secs_f64(),
            per_second * 1e6,
            per_second * 100.0,
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
