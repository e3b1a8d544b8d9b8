//! The level travels with the audio: chunks made from a real ffmpeg source carry their levels,
//! `GET /api/streams/<key>/levels` returns them for a time range, they survive a dump and a
//! restart, and slaves get the same levels over NATS (live) and over the snapshot transport (a
//! slave that joins later), without decoding anything themselves.

use std::time::Duration;

use serde_json::Value;
use streammachine::core::codec::Format;
use streammachine_e2e::audio::{Encoder, Pace, fixture};
use streammachine_e2e::cluster::{Services, dump, wait_converged, wait_ready};
use streammachine_e2e::server::Server;
use streammachine_e2e::temp_dir;

const T: Duration = Duration::from_secs(60);

async fn levels(server: &Server, key: &str, from: &str, to: &str) -> Value {
    let r = server
        .admin_get(&format!("/api/streams/{key}/levels?from={from}&to={to}"))
        .await;
    assert!(r.status().is_success(), "levels of {key}: {}", r.status());
    r.json().await.unwrap()
}

/// The whole buffer's levels, by the buffer's own start and end.
async fn all_levels(server: &Server, key: &str) -> Value {
    let s = server.status(key).await;
    let (from, to) = (
        s["buffer_start"].as_str().unwrap().to_string(),
        s["buffer_end"].as_str().unwrap().to_string(),
    );
    levels(server, key, &from, &to).await
}

/// Pink noise at 0.3 amplitude: every 100 ms window is audio, every ~10 s is 100 points.
fn check_noise(reply: &Value, seconds: f64) {
    let points = reply["levels"].as_array().unwrap();
    let expected = (seconds * 10.0) as usize;
    assert!(
        points.len() + 3 >= expected && points.len() <= expected + 3,
        "{} points for {seconds} s",
        points.len()
    );
    assert_eq!(reply["window_ms"], 100);
    for p in points {
        let rms = p["rms_dbfs"].as_array().unwrap();
        let peak = p["peak_dbfs"].as_array().unwrap();
        assert_eq!(rms.len(), 2, "{p}");
        // Skip the encoder's priming at the very start.
        if p == &points[0] {
            continue;
        }
        for (r, k) in rms.iter().zip(peak) {
            let (r, k) = (r.as_f64().unwrap(), k.as_f64().unwrap());
            assert!((-40.0..-5.0).contains(&r), "rms {r} in {p}");
            assert!(k >= r, "peak {k} below rms {r} in {p}");
        }
    }
}

async fn push(server: &Server, seconds: u32, seed: u32) {
    let file = fixture(Format::Mp3, seconds, seed);
    let encoder = Encoder::push(
        &file,
        Format::Mp3,
        &server.source_url("live"),
        Pace::Fast,
        false,
    );
    assert!(encoder.wait(T).await.success());
}

#[tokio::test]
async fn levels_are_served_and_survive_a_dump_and_restart() {
    let dir = temp_dir();
    let dump_dir = dir.path().to_str().unwrap();
    let mut server = Server::standalone(&["--stream", "live", "--dump-dir", dump_dir]).await;
    push(&server, 20, 51).await;
    server
        .wait_settled("live", Duration::from_millis(500), T)
        .await;
    let chunks = dump(&server, "live").await;
    assert!(
        chunks.iter().all(|c| c.levels.is_some()),
        "every chunk of a decodable source carries levels"
    );
    let before = all_levels(&server, "live").await;
    check_noise(&before, 20.0);

    // A sub-range: only its points, in order, inside it.
    let points = before["levels"].as_array().unwrap();
    let (from, to) = (
        points[10]["time"].as_str().unwrap(),
        points[20]["time"].as_str().unwrap(),
    );
    let part = levels(&server, "live", from, to).await;
    assert_eq!(part["levels"].as_array().unwrap(), &points[10..20]);

    // Bad ranges are clear errors.
    for (query, status) in [
        ("from=yesterday", 400),
        ("from=2026-01-01T00:00:00Z&to=2026-01-01T02:00:00Z", 400),
        ("from=2026-01-01T00:00:10Z&to=2026-01-01T00:00:00Z", 400),
    ] {
        let r = server
            .admin_get(&format!("/api/streams/live/levels?{query}"))
            .await;
        assert_eq!(r.status().as_u16(), status, "{query}");
        let body: Value = r.json().await.unwrap();
        assert!(body["error"].as_str().is_some(), "{query}: {body}");
    }
    assert_eq!(
        server
            .admin_get("/api/streams/nope/levels")
            .await
            .status()
            .as_u16(),
        404
    );

    assert!(server.terminate().await.success());
    let server = Server::standalone(&["--stream", "live", "--dump-dir", dump_dir]).await;
    server.wait_log("Rewind buffer restored from dump.").await;
    let after = all_levels(&server, "live").await;
    assert_eq!(after["levels"], before["levels"]);
}

#[tokio::test]
async fn slaves_get_the_levels_over_nats_and_the_transport() {
    let services = Services::start().await;
    let master = services.master(&["--stream", "live"]).await;
    let early = services.slave(master.admin, &[]).await;
    wait_ready(&early, T).await;
    push(&master, 15, 52).await;
    master
        .wait_settled("live", Duration::from_millis(500), T)
        .await;
    // Converged means equal chunks, levels included: the early slave got them live on NATS.
    wait_converged(&master, &[&early], "live", T).await;
    let chunks = dump(&master, "live").await;
    assert!(chunks.iter().all(|c| c.levels.is_some()));

    // A slave that joins now loads the buffer from the master's snapshot.
    let late = services.slave(master.admin, &[]).await;
    wait_ready(&late, T).await;
    wait_converged(&master, &[&early, &late], "live", T).await;
    let want = all_levels(&master, "live").await;
    check_noise(&want, 15.0);
    for slave in [&early, &late] {
        let s = master.status("live").await;
        let got = levels(
            slave,
            "live",
            s["buffer_start"].as_str().unwrap(),
            s["buffer_end"].as_str().unwrap(),
        )
        .await;
        assert_eq!(got["levels"], want["levels"]);
    }
}
