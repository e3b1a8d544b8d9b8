//! The load generator's HLS mode against a real server fed in real time: 100 players of mixed
//! profiles (hls.js, AVPlayer, ffmpeg) for 20 s play without a stall or an error, and the server
//! counts each of them once as an HLS listener while they play (not once per request, not
//! once per way of telling them apart).

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use streammachine::core::codec::Format;
use streammachine_e2e::audio::{Encoder, Pace, fixture};
use streammachine_e2e::eventually;
use streammachine_e2e::server::Server;
use tokio::io::AsyncReadExt;

const SESSIONS: u64 = 100;
const RATE: u64 = 50;
const HOLD: Duration = Duration::from_secs(20);
const HLS: &str = "streammachine_listeners{stream=\"live\",protocol=\"hls\"}";
const HLS_STARTED: &str =
    "streammachine_listener_connections_total{stream=\"live\",protocol=\"hls\"}";

#[tokio::test]
async fn hundred_hls_players_play_without_stalls_and_count_once() {
    let server = Server::standalone(&["--stream", "live"]).await;
    // Long enough to stay live through the wait for a buffer, the ramp and the hold.
    let file = fixture(Format::Mp3, 120, 13);
    let _enc = Encoder::push(
        &file,
        Format::Mp3,
        &server.source_url("live"),
        Pace::RealTime,
        false,
    );
    // A few complete segments, so every profile has its live start point to begin at.
    server
        .wait_buffer("live", 25.0, Duration::from_secs(90))
        .await;

    let mut loadgen = tokio::process::Command::new(streammachine_testkit::binary("loadgen"))
        .args(["hls", "--url", &server.url("/live.m3u8")])
        .args(["--sessions", &SESSIONS.to_string()])
        .args(["--rate", &RATE.to_string()])
        .args(["--hold", &format!("{}s", HOLD.as_secs())])
        .args(["--profiles", "hlsjs,avplayer,ffmpeg"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start loadgen");
    let mut stdout = loadgen.stdout.take().expect("loadgen stdout");

    // Every player counted once, as soon as all have started...
    let ramp = Duration::from_secs(SESSIONS / RATE);
    eventually(
        "every HLS player counted in /metrics",
        ramp + Duration::from_secs(15),
        || async { (server.metric(HLS).await >= SESSIONS as f64).then_some(()) },
    )
    .await;
    // ...and still exactly once through the first half of the hold (reloads and segment
    // requests of the same player must not add to it).
    let until = tokio::time::Instant::now() + HOLD / 2;
    while tokio::time::Instant::now() < until {
        assert_eq!(server.metric(HLS).await, SESSIONS as f64, "HLS listeners");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(server.metric(HLS_STARTED).await, SESSIONS as f64);

    let status = tokio::time::timeout(ramp + HOLD + Duration::from_secs(60), loadgen.wait())
        .await
        .expect("loadgen finishes")
        .expect("loadgen exit status");
    assert!(status.success(), "loadgen failed: {status}");
    let mut out = String::new();
    stdout.read_to_string(&mut out).await.unwrap();
    let report: Value = serde_json::from_str(out.trim()).expect("loadgen JSON report");
    let n = |v: &Value| v.as_u64().unwrap_or(u64::MAX);
    assert_eq!(n(&report["started"]), SESSIONS, "{report}");
    assert_eq!(n(&report["ok"]), SESSIONS, "{report}");
    assert_eq!(n(&report["failed"]), 0, "{report}");
    assert_eq!(n(&report["stalls"]), 0, "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    assert_eq!(n(&report["missed_segments"]), 0, "{report}");
    for p in ["hlsjs", "avplayer", "ffmpeg"] {
        let r = &report["by_profile"][p];
        assert!(n(&r["sessions"]) >= SESSIONS / 3, "{p}: {r}");
        // The hold spans at least two new segments: every player fetched more than its start.
        assert!(
            n(&r["segment"]["requests"]) > 2 * n(&r["sessions"]),
            "{p}: {r}"
        );
        assert!(
            n(&r["playlist"]["requests"]) > 2 * n(&r["sessions"]),
            "{p}: {r}"
        );
    }
}
