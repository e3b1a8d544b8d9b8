//! A real browser plays our HLS: Debian's headless Chromium with hls.js (both installed by
//! `scripts/install/hls.sh`), driven by `tests/browser/play.mjs`, plays a media playlist and a
//! group's multivariant playlist for 20 s each while encoders feed the streams in real time.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use streammachine::core::codec::Format;
use streammachine_e2e::audio::{Encoder, Pace, fixture};
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
    assert!(title.await.unwrap().unwrap());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "play.mjs failed: {stderr}");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("play.mjs output: {e}: {stderr}"));
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
