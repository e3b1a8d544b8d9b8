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

/// A playlist's segments: (PROGRAM-DATE-TIME µs, EXTINF µs, discontinuity before, gap, URI).
fn listed(playlist: &str) -> Vec<(i64, i64, bool, bool, String)> {
    let (mut pdt, mut dur, mut disc, mut gap) = (0, 0, false, false);
    let mut out = vec![];
    for l in playlist.lines() {
        if let Some(v) = l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            pdt = v.parse::<jiff::Timestamp>().unwrap().as_microsecond();
        } else if let Some(v) = l.strip_prefix("#EXTINF:") {
            let secs: f64 = v.trim_end_matches(',').parse().unwrap();
            dur = (secs * 1e6).round() as i64;
        } else if l == "#EXT-X-DISCONTINUITY" {
            disc = true;
        } else if l == "#EXT-X-GAP" {
            gap = true;
        } else if !l.starts_with('#') && !l.is_empty() {
            out.push((pdt, dur, disc, gap, l.to_string()));
            (disc, gap) = (false, false);
        }
    }
    out
}

/// PDT plus EXTINF is the next PDT unless a discontinuity is marked between them (PDT has
/// milliseconds).
fn assert_timeline(playlist: &str) {
    let segs = listed(playlist);
    for w in segs.windows(2) {
        if !w[1].2 {
            assert!(
                (w[0].0 + w[0].1 - w[1].0).abs() <= 1_000,
                "{} ends at {} but {} starts at {}, without a discontinuity:\n{playlist}",
                w[0].4,
                w[0].0 + w[0].1,
                w[1].4,
                w[1].0
            );
        }
    }
}

async fn rewind(server: &Server, key: &str) -> Vec<streammachine::core::chunk::Chunk> {
    let r = server
        .admin_get(&format!("/api/streams/{key}/rewind"))
        .await;
    streammachine::core::dump::decode(key, &r.bytes().await.unwrap()).unwrap()
}

/// Regression: after a 14 s outage the playlist had one slot-long gap and then a jump in
/// PROGRAM-DATE-TIME without a discontinuity.
#[tokio::test]
async fn gap_segments_cover_a_14_s_outage() {
    let server = Server::standalone(&["--stream", "live"]).await;
    let enc = Encoder::push(
        &fixture(Format::Mp3, 20, 41),
        Format::Mp3,
        &server.source_url("live"),
        Pace::Fast,
        false,
    );
    assert!(enc.wait(T).await.success());
    server
        .wait_settled("live", Duration::from_millis(500), T)
        .await;
    let stop = rewind(&server, "live").await.last().unwrap().end();
    // Content time ran ahead of the wall clock (fast feed): reconnect 14 s after it ends.
    let back = stop + 14_000_000;
    let wait = back - streammachine::time::now_micros();
    if wait > 0 {
        tokio::time::sleep(Duration::from_micros(wait as u64)).await;
    }
    let enc = Encoder::push(
        &fixture(Format::Mp3, 30, 42),
        Format::Mp3,
        &server.source_url("live"),
        Pace::Fast,
        false,
    );
    assert!(enc.wait(T).await.success());
    server
        .wait_settled("live", Duration::from_millis(500), T)
        .await;
    let chunks = rewind(&server, "live").await;
    let resumed = chunks.iter().find(|c| c.ts >= back - 1_000_000).unwrap();
    assert!(resumed.is_discontinuity());
    let outage = resumed.ts - stop;
    assert!(
        (14_000_000..16_000_000).contains(&outage),
        "outage {outage} µs"
    );

    let text = String::from_utf8(get(&server, "/live.m3u8").await.to_vec()).unwrap();
    assert_timeline(&text);
    let segs = listed(&text);
    let gaps: i64 = segs.iter().filter(|s| s.3).map(|s| s.1).sum();
    assert!(
        (gaps - outage).abs() <= 2_000,
        "gaps {gaps} µs for an outage of {outage} µs:\n{text}"
    );
    assert!(segs.iter().any(|s| s.2), "no discontinuity:\n{text}");
    let target: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-TARGETDURATION:"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(segs.iter().all(|s| s.1 <= target * 1_000_000));
}

/// Regression: when a new source took over inside a segment slot, the old source's audio in that
/// slot was in no HLS segment.
#[tokio::test]
async fn a_source_switch_mid_slot_keeps_the_old_sources_audio() {
    let server = Server::standalone(&["--stream", "live"]).await;
    // Fed fast, so the new source continues right where the old one's content ends: wherever
    // that falls in a slot (20.9 s is not a multiple of the segment length).
    for (seconds, seed) in [(21, 51), (20, 52)] {
        let enc = Encoder::push(
            &fixture(Format::Mp3, seconds, seed),
            Format::Mp3,
            &server.source_url("live"),
            Pace::Fast,
            false,
        );
        assert!(enc.wait(T).await.success());
        server
            .wait_settled("live", Duration::from_millis(500), T)
            .await;
    }
    let chunks = rewind(&server, "live").await;
    let switch = chunks.iter().position(|c| c.is_discontinuity()).unwrap();
    assert!(
        chunks[switch].ts % 6_000_000 > 100_000,
        "switch on a slot boundary"
    );
    let raw: Vec<u8> = chunks.iter().flat_map(|c| c.data.to_vec()).collect();
    let boundary: usize = chunks[..switch].iter().map(|c| c.data.len()).sum();

    let text = String::from_utf8(get(&server, "/live.m3u8").await.to_vec()).unwrap();
    assert_timeline(&text);
    let mut hls = vec![];
    for (_, _, _, gap, uri) in listed(&text) {
        assert!(!gap, "{text}");
        let body = get(&server, &format!("/{uri}")).await;
        let tag = 10
            + ((body[6] as usize) << 21
                | (body[7] as usize) << 14
                | (body[8] as usize) << 7
                | body[9] as usize);
        hls.extend_from_slice(&body[tag..]);
    }
    // The segments together are one contiguous run of the buffer's audio, across the switch.
    let start = raw
        .windows(4096)
        .position(|w| w == &hls[..4096])
        .expect("HLS audio is the buffer's audio");
    assert!(raw[start..].starts_with(&hls), "HLS audio has a hole");
    assert!(
        start < boundary && start + hls.len() > boundary,
        "the switch at byte {boundary} is not inside the listed audio {start}..{}",
        start + hls.len()
    );
}
