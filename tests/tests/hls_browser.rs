//! A real browser plays our HLS: Debian's headless Chromium with hls.js (both installed by
//! `scripts/install/hls.sh`), driven by `tests/browser/play.mjs`, plays a media playlist and a
//! group's multivariant playlist for 20 s each while encoders feed the streams in real time, and
//! seeks an hour back in the plain playlist (the default live window) of an hour-long buffer.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use streammachine::core::codec::Format;
use streammachine_e2e::audio::{Encoder, Pace, fixture, looped_chunks};
use streammachine_e2e::server::Server;
use streammachine_e2e::{eventually, repo_root, require, temp_dir};

const T: Duration = Duration::from_secs(90);

/// Fail (not skip) with the fix when the browser tooling is missing.
fn require_browser() {
    require("node");
    require("chromium");
    let modules = repo_root().join("tests/browser/node_modules");
    assert!(
        modules.join("hls.js").is_dir() && modules.join("playwright-core").is_dir(),
        "tests/browser/node_modules is missing hls.js or playwright-core; run scripts/install/hls.sh"
    );
}

/// Run `play.mjs` with `args`; its report.
async fn play(args: Value) -> Value {
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(repo_root().join("tests/browser/play.mjs"))
            .arg(args.to_string())
            .output()
            .expect("run node")
    });
    let out = tokio::time::timeout(Duration::from_secs(150), out)
        .await
        .expect("the browser run finished in time")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "play.mjs failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("play.mjs output: {e}: {stderr}"))
}

#[tokio::test]
async fn chromium_with_hls_js_plays_a_stream_and_a_group() {
    require_browser();
    let dir = temp_dir();
    let config = dir.path().join("c.yaml");
    std::fs::write(
        &config,
        "streams:\n  hi:\n    group: prog\n  lo:\n    format: aac\n    group: prog\n",
    )
    .unwrap();
    let server = Server::standalone(&["--config", config.to_str().unwrap()]).await;
    let _hi = Encoder::push(
        &fixture(Format::Mp3, 120, 21),
        Format::Mp3,
        &server.source_url("hi"),
        Pace::RealTime,
        false,
    );
    let _lo = Encoder::push(
        &fixture(Format::Aac, 120, 21),
        Format::Aac,
        &server.source_url("lo"),
        Pace::RealTime,
        false,
    );
    server.wait_buffer("hi", 26.0, T).await;
    server.wait_buffer("lo", 26.0, T).await;
    // A title change while the browser plays: it arrives as a timed ID3 cue.
    let shots = repo_root().join("target/e2e-artifacts");
    let args = json!({
        "urls": [server.url("/hi.m3u8"), server.url("/sg/prog.m3u8")],
        "seconds": 20,
        "screenshots": shots,
    });
    let title = {
        let server_admin = server.admin_url("/api/streams/hi/metadata");
        let http = server.http.clone();
        let metrics = server.url("/metrics");
        tokio::spawn(async move {
            // While the browser plays: once its first page fetches `hi` over HLS.
            let playing = "streammachine_listeners{stream=\"hi\",protocol=\"hls\"} 1";
            eventually("the browser to play `hi`", T, || async {
                let text = http.get(&metrics).send().await.ok()?.text().await.ok()?;
                text.contains(playing).then_some(())
            })
            .await;
            http.post(server_admin)
                .json(&json!({"title": "Browser Artist - Browser Song"}))
                .send()
                .await
                .map(|r| r.status().is_success())
        })
    };
    let report = play(args).await;
    assert!(title.await.unwrap().unwrap());
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for r in results {
        let samples: Vec<f64> = r["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let (first, last) = (samples[0], *samples.last().unwrap());
        assert!(r["started"].as_bool().unwrap(), "{r}");
        assert!(
            r["fatal"].as_array().unwrap().is_empty(),
            "fatal hls.js errors: {r}"
        );
        assert!(r["pageErrors"].as_array().unwrap().is_empty(), "{r}");
        // currentTime advances in real time (allowing a moment to start).
        assert!(
            last - first > 15.0,
            "currentTime went from {first} to {last}: {r}"
        );
        assert!(samples.windows(2).all(|w| w[1] >= w[0]), "{r}");
        assert!(r["id3"].as_u64().unwrap() > 0, "no ID3 samples: {r}");
    }
    assert_eq!(
        results[1]["levels"].as_u64(),
        Some(2),
        "the group has two variants"
    );
    for i in 0..2 {
        assert!(shots.join(format!("hls-{i}.png")).is_file());
    }
    // Two listeners (one per page), counted as HLS listeners while they played.
    let connections = server
        .metric("streammachine_listener_connections_total{stream=\"hi\",protocol=\"hls\"}")
        .await
        + server
            .metric("streammachine_listener_connections_total{stream=\"lo\",protocol=\"hls\"}")
            .await;
    assert!(connections >= 2.0, "{connections}");
}

#[tokio::test]
async fn chromium_with_hls_js_seeks_back_an_hour_in_the_plain_playlist() {
    require_browser();
    // An hour of real audio restored from a dump, ending a few seconds ahead of now so the live
    // encoder (connecting within those seconds) continues right where it ends: a new source, so
    // a discontinuity, but no gap.
    let dir = temp_dir();
    let end = streammachine::time::now_micros() + 5_000_000;
    let chunks = looped_chunks(
        &fixture(Format::Mp3, 60, 24),
        Format::Mp3,
        3600,
        end,
        "Archive Artist - An Hour Ago",
    );
    streammachine::core::dump::write_file(dir.path(), "live", &chunks).unwrap();
    let server = Server::standalone(&[
        "--stream",
        "live",
        "--dump-dir",
        dir.path().to_str().unwrap(),
    ])
    .await;
    let _live = Encoder::push(
        &fixture(Format::Mp3, 120, 25),
        Format::Mp3,
        &server.source_url("live"),
        Pace::RealTime,
        false,
    );
    // The dump and 15 s of live audio after it.
    server.wait_buffer("live", 3615.0, T).await;
    let shots = repo_root().join("target/e2e-artifacts");
    // Two minutes after the start of the seekable range: 58 minutes behind live.
    let report = play(json!({
        "urls": [{"url": server.url("/live.m3u8"), "seek": 120}],
        "seconds": 20,
        "screenshots": shots,
        "name": "hls-seek",
    }))
    .await;
    let r = &report["results"][0];
    assert!(r["started"].as_bool().unwrap(), "{r}");
    assert!(
        r["fatal"].as_array().unwrap().is_empty(),
        "fatal hls.js errors: {r}"
    );
    assert!(r["pageErrors"].as_array().unwrap().is_empty(), "{r}");
    let seek = &r["seek"];
    assert!(seek.is_object(), "never seeked: {r}");
    let (start, edge) = (
        seek["start"].as_f64().unwrap(),
        seek["end"].as_f64().unwrap(),
    );
    // The plain playlist's seekable range is the default live window: an hour.
    assert!(
        (3500.0..=3700.0).contains(&(edge - start)),
        "seekable {start}..{edge}: {r}"
    );
    let f64s = |k: &str| -> Vec<f64> {
        r[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let (samples, edges) = (f64s("samples"), f64s("edges"));
    // Once the seek took effect: playing about an hour behind the live edge, and advancing.
    let behind: Vec<f64> = samples
        .iter()
        .zip(&edges)
        .filter(|(t, e)| *e - *t > 3000.0)
        .map(|(t, _)| *t)
        .collect();
    assert!(behind.len() >= 12, "not an hour behind for long: {r}");
    let (first, last) = (behind[0], *behind.last().unwrap());
    assert!(
        last - first > 8.0,
        "currentTime went from {first} to {last}: {r}"
    );
    assert!(behind.windows(2).all(|w| w[1] >= w[0]), "{r}");
    assert!(shots.join("hls-seek-0.png").is_file());
}
