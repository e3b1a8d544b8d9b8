//! HLS timing end to end: ffmpeg's HLS demuxer decodes our playlists without a complaint at
//! `-v error` (exact ID3 timestamps), and successive segments' timestamps are contiguous in
//! samples.

use std::process::{Command, Stdio};
use std::time::Duration;

use streammachine::core::codec::{Format, frames_of};
use streammachine_e2e::audio::{Encoder, Pace, fixture};
use streammachine_e2e::require;
use streammachine_e2e::server::Server;

const T: Duration = Duration::from_secs(90);

async fn get(server: &Server, path: &str) -> bytes::Bytes {
    let r = server.get(path).await;
    assert!(r.status().is_success(), "GET {path}: {}", r.status());
    r.bytes().await.unwrap()
}

/// ffmpeg's stderr at `-v error` for decoding `seconds` of `url` to nothing.
async fn ffmpeg_errors(url: String, seconds: u32) -> String {
    require("ffmpeg");
    let run = tokio::task::spawn_blocking(move || {
        Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-v", "error", "-prefer_x_start", "1"])
            .args(["-i", &url, "-t", &seconds.to_string(), "-f", "null", "-"])
            .stdin(Stdio::null())
            .output()
            .expect("run ffmpeg")
    });
    let out = tokio::time::timeout(Duration::from_secs(150), run)
        .await
        .expect("ffmpeg finished in time")
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The media segments' URIs of a playlist, gaps left out.
fn uris(playlist: &str) -> Vec<String> {
    let mut gap = false;
    let mut out = vec![];
    for l in playlist.lines() {
        if l == "#EXT-X-GAP" {
            gap = true;
        } else if !l.starts_with('#') && !l.is_empty() {
            if !std::mem::take(&mut gap) {
                out.push(l.to_string());
            }
        }
    }
    out
}

async fn timing(format: Format) {
    let key = if format == Format::Mp3 { "live" } else { "news" };
    let server = Server::standalone(&["--stream", "live", "--stream", "news:aac"]).await;
    let file = fixture(format, 100, 21);
    let enc = Encoder::push(&file, format, &server.source_url(key), Pace::Fast, false);
    assert!(enc.wait(T).await.success());
    server
        .wait_settled(key, Duration::from_millis(500), T)
        .await;
    let r = server
        .admin_get(&format!("/api/streams/{key}/rewind"))
        .await;
    let chunks = streammachine::core::dump::decode(key, &r.bytes().await.unwrap()).unwrap();
    let at = streammachine::time::rfc3339(chunks[0].ts + 7_000_000).replace('+', "%2B");

    // 60 s from a point in the past: every segment boundary is crossed with exact timestamps.
    let errors = ffmpeg_errors(server.url(&format!("/{key}.m3u8?at={at}")), 60).await;
    assert!(errors.trim().is_empty(), "ffmpeg reported: {errors}");

    // Each segment's PRIV timestamp, back in samples, is where the previous segment's samples end.
    let text = String::from_utf8(get(&server, &format!("/{key}.m3u8")).await.to_vec()).unwrap();
    let uris = uris(&text);
    assert!(uris.len() >= 12, "{text}");
    let mut expected: Option<i64> = None;
    for uri in &uris {
        let body = get(&server, &format!("/{uri}")).await;
        assert_eq!(&body[..3], b"ID3");
        let pts = u64::from_be_bytes(body[65..73].try_into().unwrap());
        let tag = 10
            + ((body[6] as usize) << 21
                | (body[7] as usize) << 14
                | (body[8] as usize) << 7
                | body[9] as usize);
        let frames = frames_of(format, &body[tag..]);
        let rate = i128::from(frames[0].header.sample_rate());
        let first = (i128::from(pts) * rate * 2 + 90_000).div_euclid(180_000);
        if let Some(e) = expected {
            // Within the 33-bit wrap, which a 100 s test may cross.
            let wrap = (1i128 << 33) * rate / 90_000;
            let d = (first - i128::from(e)).rem_euclid(wrap);
            assert!(d == 0 || d == wrap, "{uri}: starts {d} samples off the previous end");
        }
        let n: i64 = frames.iter().map(|f| i64::from(f.header.samples())).sum();
        expected = Some((first as i64) + n);
    }
}

#[tokio::test]
async fn mp3_segments_have_exact_contiguous_timestamps() {
    timing(Format::Mp3).await;
}

#[tokio::test]
async fn aac_segments_have_exact_contiguous_timestamps() {
    timing(Format::Aac).await;
}
