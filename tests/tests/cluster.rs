//! Master and slaves end to end: real redis-server and nats-server on free ports, real ffmpeg in
//! and out. Faults (NATS outage, master crash, bad peers) are in `cluster_faults.rs`.

use std::time::Duration;

use serde_json::json;
use streammachine::core::codec::Format;
use streammachine_e2e::audio::{Encoder, Pace, assert_same_bytes, decode, fixture, frame_bytes};
use streammachine_e2e::cluster::{
    Services, dump, gaps, readyz, redis_get, redis_put, seqs, wait_converged, wait_ready,
};
use streammachine_e2e::eventually;
use streammachine_e2e::listener::Listener;
use streammachine_e2e::server::Server;

const T: Duration = Duration::from_secs(60);

/// 1. ffmpeg into the master, two slaves: listeners on both hear exactly what the encoder sent,
/// and the pumper serves the same bytes on every node.
#[tokio::test]
async fn two_slaves_serve_the_masters_audio_byte_for_byte() {
    let services = Services::start().await;
    let master = services.master(&["--stream", "live"]).await;
    let (a, b) = tokio::join!(
        services.slave(master.admin, &[]),
        services.slave(master.admin, &[])
    );
    wait_ready(&a, T).await;
    wait_ready(&b, T).await;

    // Listeners connected before the first byte: they wait for audio, then get it live over NATS.
    let (la, lb) = (
        tokio::spawn(Listener::connect(a.listen, "/live", &[])),
        tokio::spawn(Listener::connect(b.listen, "/live", &[])),
    );
    let file = fixture(Format::Mp3, 20, 41);
    let sent = frame_bytes(&file, Format::Mp3);
    let encoder = Encoder::push(
        &file,
        Format::Mp3,
        &master.source_url("live"),
        Pace::Fast,
        false,
    );
    let (mut la, mut lb) = (la.await.unwrap(), lb.await.unwrap());
    assert_eq!((la.status, lb.status), (200, 200));
    assert!(encoder.wait(T).await.success());
    let (got_a, got_b) = tokio::join!(la.read_bytes(sent.len(), T), lb.read_bytes(sent.len(), T));
    assert_same_bytes(&got_a, &sent, "slave A's listener vs the encoder's frames");
    assert_same_bytes(&got_b, &sent, "slave B's listener vs the encoder's frames");
    let (secs, errors) = decode(&got_a, Format::Mp3);
    assert!(errors.is_empty(), "decoder errors: {errors}");
    assert!((secs - 20.0).abs() < 0.15, "decoded {secs} s");

    // The pumper: the same range, the same bytes, on every node.
    master
        .wait_settled("live", Duration::from_millis(500), T)
        .await;
    wait_converged(&master, &[&a, &b], "live", T).await;
    let mut pumped = vec![];
    for node in [&master, &a, &b] {
        let r = node.get("/live?pump=5&from=12").await;
        assert_eq!(r.status(), 200);
        pumped.push(r.bytes().await.unwrap().to_vec());
    }
    assert!(pumped[0].len() > 70_000, "5 s at 128 kbps");
    assert_same_bytes(&pumped[1], &pumped[0], "slave A's pump vs the master's");
    assert_same_bytes(&pumped[2], &pumped[0], "slave B's pump vs the master's");

    // The master counts both slaves' listeners (one each), in its API and /metrics.
    let status = eventually("listener totals from both slaves", T, || async {
        let s = master.status("live").await;
        (s["listeners"] == 2 && s["slaves_alive"] == 2).then_some(s)
    })
    .await;
    assert_eq!(status["source_connected"], false);
    eventually("listener totals in /metrics", T, || async {
        let m = master.metrics().await;
        (m.contains("streammachine_cluster_listeners{stream=\"live\"} 2")
            && m.contains("streammachine_cluster_slaves_alive 2"))
        .then_some(())
    })
    .await;
    drop((la, lb));
}

/// 2. A slave started two minutes (of content) after the source holds the whole history from
/// the snapshot, then follows live, with no gap.
#[tokio::test]
async fn a_late_slave_loads_the_history_and_follows_live_without_gaps() {
    let services = Services::start().await;
    let master = services.master(&["--stream", "live"]).await;
    let history = fixture(Format::Mp3, 120, 42);
    assert!(
        Encoder::push(
            &history,
            Format::Mp3,
            &master.source_url("live"),
            Pace::Fast,
            false
        )
        .wait(T)
        .await
        .success()
    );
    let settled = master
        .wait_settled("live", Duration::from_millis(500), T)
        .await;
    assert!(settled["buffer_seconds"].as_f64().unwrap() > 119.9);

    let slave = services.slave(master.admin, &[]).await;
    wait_ready(&slave, T).await;
    let loaded = slave
        .wait_log("Rewind snapshot loaded from the master.")
        .await;
    let loaded: serde_json::Value = serde_json::from_str(&loaded).unwrap();
    assert!(loaded["seconds"].as_f64().unwrap() > 119.9, "{loaded}");
    let m = dump(&master, "live").await;
    assert_eq!(
        dump(&slave, "live").await,
        m,
        "the snapshot is the whole history"
    );

    // Live audio after the load arrives over NATS (four times real time: still chunk by chunk).
    let live = fixture(Format::Mp3, 10, 43);
    assert!(
        Encoder::push(
            &live,
            Format::Mp3,
            &master.source_url("live"),
            Pace::Rate(4),
            false
        )
        .wait(T)
        .await
        .success()
    );
    master
        .wait_settled("live", Duration::from_millis(500), T)
        .await;
    wait_converged(&master, &[&slave], "live", T).await;
    let s = dump(&slave, "live").await;
    assert!(s.len() > m.len() + 18, "live chunks arrived");
    assert_eq!(gaps(&s), vec![], "no gap in seq");
    assert!(seqs(&s).windows(2).all(|w| w[0] < w[1]));
    // Everything after the snapshot came live: nothing had to be repaired.
    assert!(slave.log_lines("Gap in seq repaired").is_empty());
}

/// 5. Config changes in Redis reach every role within seconds, in place: a new stream, a rewind
/// length change, a removal; listeners of other streams stay connected.
#[tokio::test]
async fn config_changes_in_redis_apply_live_on_every_role() {
    let services = Services::start().await;
    let prefix = ["--redis-prefix", "e2e", "--nats-prefix", "e2e.sm"];
    let mut args = vec!["--stream", "live"];
    args.extend(prefix);
    let master = services.master(&args).await;
    let (a, b) = tokio::join!(
        services.slave(master.admin, &prefix),
        services.slave(master.admin, &prefix)
    );
    wait_ready(&a, T).await;
    wait_ready(&b, T).await;
    let redis = services.redis.url();
    // The master wrote its declared stream with its defaults filled in.
    let stored = redis_get(&redis, "e2e", "live").await.unwrap();
    assert_eq!(stored["stream"]["rewind"], "4h");

    let file = fixture(Format::Mp3, 60, 44);
    // Twice real time: 8 s of buffer in 4 s, and still on air for the whole test.
    let _encoder = Encoder::push(
        &file,
        Format::Mp3,
        &master.source_url("live"),
        Pace::Rate(2),
        false,
    );
    let mut listeners = vec![];
    for node in [&a, &b] {
        node.wait_buffer("live", 8.0, T).await;
        let mut l = Listener::connect(node.listen, "/live", &[]).await;
        assert_eq!(l.status, 200);
        // The burst (8 s and more) comes at once.
        let burst = l.read_bytes(16_000, T).await;
        assert_eq!(burst.len(), 16_000);
        listeners.push(l);
    }
    let nodes = [&master, &a, &b];

    // A new stream, written as the operator writes it.
    redis_put(
        &redis,
        "e2e",
        "news",
        json!({"format": "aac", "rewind": "10m", "burst": "5s"}),
    )
    .await;
    for node in nodes {
        eventually(
            "the new stream on every role",
            Duration::from_secs(10),
            || async {
                let r = node.admin_get("/api/streams/news").await;
                (r.status() == 200).then_some(())
            },
        )
        .await;
        assert_eq!(node.status("news").await["format"], "aac");
    }

    // A shorter rewind for `live`: applied in place, the buffer shrinks everywhere.
    let mut doc = redis_get(&redis, "e2e", "live").await.unwrap()["stream"].clone();
    doc["rewind"] = json!("6s");
    redis_put(&redis, "e2e", "live", doc).await;
    for node in nodes {
        eventually(
            "the shorter rewind on every role",
            Duration::from_secs(10),
            || async {
                let s = node.status("live").await;
                (s["buffer_seconds"].as_f64().unwrap() <= 6.0).then_some(())
            },
        )
        .await;
    }

    // Removal through the master's admin API (the same store); slaves refuse writes.
    let r = a.admin_post("/api/streams/news", json!({})).await;
    assert_eq!(r.status(), 405);
    let r = a
        .http
        .put(a.admin_url("/api/streams/other"))
        .bearer_auth(streammachine_e2e::cluster::TOKEN)
        .json(&json!({"format": "mp3"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409, "slaves do not write configs");
    let r = master
        .http
        .delete(master.admin_url("/api/streams/news"))
        .bearer_auth(streammachine_e2e::cluster::TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    for node in nodes {
        eventually(
            "the removal on every role",
            Duration::from_secs(10),
            || async {
                let r = node.admin_get("/api/streams/news").await;
                (r.status() == 404).then_some(())
            },
        )
        .await;
    }
    assert!(redis_get(&redis, "e2e", "news").await.is_none());

    // The listeners of `live` never noticed: still connected, still receiving.
    for l in &mut listeners {
        let more = l.read_bytes(16_000, Duration::from_secs(10)).await;
        assert_eq!(more.len(), 16_000, "a listener of `live` lost its stream");
    }
    for node in [&a, &b] {
        assert_eq!(node.status("live").await["listeners"], 1);
    }
}

/// A slave stops taking listeners on SIGTERM, keeps serving the connected ones for its drain
/// timeout, and reports not ready meanwhile.
#[tokio::test]
async fn a_slave_drains_on_sigterm() {
    let services = Services::start().await;
    let master = services.master(&["--stream", "live"]).await;
    let mut slave = services
        .slave(master.admin, &["--drain-timeout", "3s"])
        .await;
    wait_ready(&slave, T).await;
    let file = fixture(Format::Mp3, 30, 45);
    // Twice real time: on air for 15 s, longer than the test needs.
    let _encoder = Encoder::push(
        &file,
        Format::Mp3,
        &master.source_url("live"),
        Pace::Rate(2),
        false,
    );
    slave.wait_buffer("live", 2.0, T).await;
    let mut l = Listener::connect(slave.listen, "/live", &[]).await;
    // The burst (2 s and more) comes at once.
    assert_eq!(l.read_bytes(16_000, T).await.len(), 16_000);

    let pid = slave.pid().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    slave.wait_log("Draining").await;
    assert_eq!(readyz(&slave).await, 503);
    let r = slave.get("/live").await;
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("shutting down"));
    // The connected listener keeps getting audio during the drain.
    let more = l.read_bytes(8000, Duration::from_secs(2)).await;
    assert_eq!(more.len(), 8000);
    let started = std::time::Instant::now();
    let status = slave.terminate().await;
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(l.closed_within(Duration::from_secs(5)).await);
}

/// Standalone keeps its file store behind the same trait: the admin API adds and removes
/// streams live.
#[tokio::test]
async fn standalone_admin_api_writes_through_the_file_store() {
    let server = Server::start(
        "standalone",
        &["--stream", "live"],
        &[("STREAMMACHINE_ADMIN_TOKEN", "adm")],
    )
    .await;
    let put = |body: serde_json::Value| {
        server
            .http
            .put(server.admin_url("/api/streams/extra"))
            .bearer_auth("adm")
            .json(&body)
            .send()
    };
    assert_eq!(put(json!({"format": "ogg"})).await.unwrap().status(), 400);
    assert_eq!(put(json!({"icy_metaint": 0})).await.unwrap().status(), 400);
    let r = put(json!({"format": "aac", "rewind": "1m"})).await.unwrap();
    assert_eq!(r.status(), 200);
    eventually("the new stream", T, || async {
        let r = server.admin_get("/api/streams/extra").await;
        (r.status() == 200).then_some(())
    })
    .await;
    assert_eq!(server.status("extra").await["format"], "aac");
    let r = server
        .http
        .delete(server.admin_url("/api/streams/extra"))
        .bearer_auth("adm")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    eventually("the stream removed", T, || async {
        let r = server.admin_get("/api/streams/extra").await;
        (r.status() == 404).then_some(())
    })
    .await;
    assert_eq!(server.status("live").await["key"], "live");
}

/// A slave runs one stream of a group (as on Kubernetes, one Deployment per stream) and still
/// answers the group's multivariant playlist with every member, the others described by the
/// master.
#[tokio::test]
async fn a_slave_lists_every_member_of_its_group() {
    let services = Services::start().await;
    let dir = streammachine_e2e::temp_dir();
    let config = dir.path().join("c.yaml");
    std::fs::write(
        &config,
        "streams:\n  hi:\n    group: prog\n  lo:\n    format: aac\n    group: prog\n",
    )
    .unwrap();
    let master = services
        .master(&["--config", config.to_str().unwrap()])
        .await;
    let _hi = Encoder::push(
        &fixture(Format::Mp3, 60, 45),
        Format::Mp3,
        &master.source_url("hi"),
        Pace::RealTime,
        false,
    );
    let _lo = Encoder::push(
        &fixture(Format::Aac, 60, 46),
        Format::Aac,
        &master.source_url("lo"),
        Pace::RealTime,
        false,
    );
    master.wait_buffer("hi", 2.0, T).await;
    master.wait_buffer("lo", 2.0, T).await;
    let slave = services.slave(master.admin, &["--streams", "hi"]).await;
    wait_ready(&slave, T).await;
    let text = eventually("both variants on the slave", T, || async {
        let r = slave.get("/sg/prog.m3u8").await;
        let t = r.text().await.unwrap();
        (t.contains("../hi.m3u8") && t.contains("../lo.m3u8")).then_some(t)
    })
    .await;
    assert!(text.contains("mp4a.40.34"), "{text}");
    assert!(text.contains("mp4a.40.2"), "{text}");
    assert_eq!(
        slave.get("/lo").await.status(),
        404,
        "the slave serves only its own stream"
    );
}
