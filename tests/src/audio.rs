//! Test audio made by ffmpeg, and ffmpeg/ffprobe as the judge of what we serve.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use std::sync::Arc;

use streammachine::core::chunk::{Chunk, Meta};
use streammachine::core::chunker::Chunker;
use streammachine::core::codec::{Format, frames_of};

use crate::require;

/// A noise file (every frame differs, so byte ranges can be located in it) of `seconds`, cached
/// under `target/e2e-fixtures`. Different seeds tell sources apart.
pub fn fixture(format: Format, seconds: u32, seed: u32) -> PathBuf {
    lavfi_fixture(
        format,
        &format!("noise-{seed}-{seconds}s"),
        &format!("anoisesrc=d={seconds}:c=pink:r=44100:a=0.3:seed={seed}"),
    )
}

/// A 440 Hz tone (about -13 dBFS RMS) interrupted by digital silence: `parts` are
/// (seconds, audible) in order, e.g. `[(12.0, true), (25.0, false), (16.0, true)]`.
pub fn tone_and_silence(format: Format, parts: &[(f64, bool)]) -> PathBuf {
    let mut t = 0.0;
    let mut silent = Vec::new();
    let mut name = String::from("tone");
    for &(secs, audible) in parts {
        if !audible {
            silent.push(format!("between(t,{t},{})", t + secs));
        }
        name.push_str(&format!("-{}{secs}", if audible { 'a' } else { 's' }));
        t += secs;
    }
    let gate = if silent.is_empty() {
        "1".to_string()
    } else {
        format!("not({})", silent.join("+"))
    };
    lavfi_fixture(
        format,
        &name,
        &format!("aevalsrc='{gate}*0.3*sin(2*PI*440*t)':s=44100:d={t}"),
    )
}

/// Encode the lavfi source `source` (stereo, 44.1 kHz, 128 kbps) once, cached as `name`.
fn lavfi_fixture(format: Format, name: &str, source: &str) -> PathBuf {
    require("ffmpeg");
    let dir = crate::repo_root().join("target").join("e2e-fixtures");
    std::fs::create_dir_all(&dir).expect("fixture dir");
    let path = dir.join(format!("{name}.{}", format.extension()));
    if path.exists() {
        return path;
    }
    // Unique per caller: tests in one process may make the same fixture at once.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(
        ".{name}-{}-{n}.{}",
        std::process::id(),
        format.extension()
    ));
    let mut cmd = Command::new("ffmpeg");
    cmd.args([
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        source,
    ])
    .args(["-ac", "2", "-ar", "44100"]);
    match format {
        Format::Mp3 => cmd.args([
            "-c:a",
            "libmp3lame",
            "-b:a",
            "128k",
            "-write_xing",
            "0",
            "-id3v2_version",
            "0",
            "-f",
            "mp3",
        ]),
        Format::Aac => cmd.args(["-c:a", "aac", "-b:a", "128k", "-f", "adts"]),
    };
    let status = cmd.arg(&tmp).status().expect("run ffmpeg");
    assert!(status.success(), "ffmpeg could not make a fixture");
    std::fs::rename(&tmp, &path).expect("publish fixture");
    path
}

/// The audio frames' bytes of a file (tags dropped), as the server would buffer them.
pub fn frame_bytes(path: &Path, format: Format) -> Vec<u8> {
    let data = std::fs::read(path).expect("read fixture");
    frames_of(format, &data)
        .iter()
        .flat_map(|f| f.data.iter().copied())
        .collect()
}

/// Assert two byte strings are equal without printing megabytes when they are not.
#[track_caller]
pub fn assert_same_bytes(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let first = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: {} bytes received, {} expected, first difference at {first:?}",
            got.len(),
            want.len()
        );
    }
}

/// Where `needle` occurs in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// An ffmpeg process pushing a file to the server as an Icecast source; killed when dropped.
pub struct Encoder {
    child: Child,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// As fast as the server takes it (content timestamps keep this honest).
    Fast,
    /// `n` times real time (ffmpeg's `-readrate`): a live source that keeps sending for a while,
    /// in less wall time. The server paces by content timestamps, not by arrival.
    Rate(u32),
    RealTime,
}

impl Encoder {
    /// `legacy` uses the `SOURCE` method instead of `PUT`.
    pub fn push(file: &Path, format: Format, url: &str, pace: Pace, legacy: bool) -> Encoder {
        require("ffmpeg");
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin"]);
        match pace {
            Pace::Fast => {}
            Pace::Rate(n) => {
                cmd.args(["-readrate", &n.to_string()]);
            }
            Pace::RealTime => {
                cmd.arg("-re");
            }
        }
        cmd.arg("-i").arg(file).args(["-c", "copy"]);
        let (content_type, muxer) = match format {
            Format::Mp3 => ("audio/mpeg", "mp3"),
            Format::Aac => ("audio/aac", "adts"),
        };
        cmd.args(["-content_type", content_type]);
        if format == Format::Mp3 {
            cmd.args(["-write_xing", "0", "-id3v2_version", "0"]);
        }
        if legacy {
            cmd.args(["-legacy_icecast", "1"]);
        }
        cmd.args(["-f", muxer, url])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        Encoder {
            child: cmd.spawn().expect("start ffmpeg"),
        }
    }

    /// Wait for ffmpeg to finish sending; its exit status.
    pub async fn wait(mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll ffmpeg") {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "ffmpeg did not finish in {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Drop the connection abruptly, like an encoder that crashes.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u32,
    pub duration: f64,
}

fn write_temp(bytes: &[u8], ext: &str) -> tempfile::NamedTempFile {
    let f = tempfile::Builder::new()
        .suffix(&format!(".{ext}"))
        .tempfile()
        .expect("temp file");
    std::fs::write(f.path(), bytes).expect("write temp file");
    f
}

/// What ffprobe says about received audio.
pub fn probe(bytes: &[u8], format: Format) -> Probe {
    require("ffprobe");
    let f = write_temp(bytes, format.extension());
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,sample_rate,channels:format=duration",
        ])
        .args(["-of", "json"])
        .arg(f.path())
        .output()
        .expect("run ffprobe");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe json");
    let s = &v["streams"][0];
    Probe {
        codec: s["codec_name"].as_str().unwrap_or_default().to_string(),
        sample_rate: s["sample_rate"]
            .as_str()
            .and_then(|x| x.parse().ok())
            .unwrap_or(0),
        channels: s["channels"].as_u64().unwrap_or(0) as u32,
        duration: v["format"]["duration"]
            .as_str()
            .and_then(|x| x.parse().ok())
            .unwrap_or(0.0),
    }
}

/// Decode everything with ffmpeg; returns (decoded seconds, ffmpeg's error output).
pub fn decode(bytes: &[u8], format: Format) -> (f64, String) {
    require("ffmpeg");
    let f = write_temp(bytes, format.extension());
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(f.path())
        .args(["-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    let errors = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "ffmpeg failed to decode: {errors}");
    // Exact decoded length: count frames ourselves (ffmpeg's null muxer does not print it at
    // error level).
    let frames = frames_of(format, bytes);
    let secs = frames
        .iter()
        .map(|f| f64::from(f.header.samples()) / f64::from(f.header.sample_rate()))
        .sum();
    (secs, errors)
}

/// A buffer of `seconds` of real audio ending at content time `end` (µs): the frames of `file`
/// over and over, in 500 ms chunks titled `title`. For restoring a long buffer from a dump
/// without encoding (or waiting for) that much audio.
pub fn looped_chunks(
    file: &Path,
    format: Format,
    seconds: u64,
    end: i64,
    title: &str,
) -> Vec<Chunk> {
    let data = std::fs::read(file).expect("read fixture");
    let frames = frames_of(format, &data);
    assert!(!frames.is_empty(), "no frames in {}", file.display());
    let rate = u64::from(frames[0].header.sample_rate());
    let want = seconds * rate;
    let start = end - (seconds * 1_000_000) as i64;
    let meta = Arc::new(Meta {
        title: title.into(),
        url: String::new(),
    });
    let mut chunker = Chunker::new(Duration::from_millis(500), 1, None, meta);
    let mut out = vec![];
    let mut samples = 0;
    for f in frames.iter().cycle() {
        if samples >= want {
            break;
        }
        chunker.push(f, start, &mut out);
        samples += u64::from(f.header.samples());
    }
    chunker.flush(&mut out);
    out
}
