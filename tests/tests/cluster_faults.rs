//! Master and slaves under faults: a NATS outage, a master crash, misconfigured or corrupt peers.

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use streammachine::core::chunk::Chunk;
use streammachine::core::codec::Format;
use streammachine_e2e::audio::{Encoder, Pace};
use streammachine_e2e::cluster::{
    Services, dump, readyz, redis_put, seqs, wait_converged, wait_ready,
};
use streammachine_e2e::listener::Listener;
use streammachine_e2e::services::free_port;
use streammachine_e2e::{audio::fixture, eventually, temp_dir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(60);

/// 3. NATS down for ten seconds while streaming: the slaves follow the master over HTTP meanwhile
/// and end with exactly the master's buffer.
#[tokio::test]
async fn after_a_nats_outage_every_slave_holds_the_masters_buffer() {
    let mut services = Services::start().await;
    let master = services.master(&["--stream", "live"]).await;
    let (a, b) = tokio::join!(
        services.slave(master.admin, &[]),
        services.slave(master.admin, &[])
    );
    wait_ready(&a, T).await;
    wait_ready(&b, T).await;
    let file = fixture(Format::Mp3, 30, 51);
    // Three times real time: still a live source for the whole outage, in a third of the time.
    let encoder = Encoder::push(
        &file,
        Format::Mp3,
        &master.source_url("live"),
        Pace::Rate(3),
        false,
    );
    a.wait_buffer("live", 4.0, T).await;
    let mut l = Listener::connect(a.listen, "/live", &[]).await;

    services.nats.stop();
    // The outage lasts while the master ingests ten more seconds of audio.
    let before = master.status("live").await["buffer_seconds"]
        .as_f64()
        .unwrap();
    master.wait_buffer("live", before + 10.0, T).await;
    // Meanwhile the slave's listener keeps playing: chunks come from the master over HTTP.
    let during = l.read_bytes(48_000, Duration::from_secs(10)).await;
    assert_eq!(during.len(), 48_000, "live audio stalled during the outage");
    services.nats.restart().await;

    assert!(encoder.wait(T).await.success());
    master
        .wait_settled("live", Duration::from_millis(500), T)
        .await;
    wait_converged(&master, &[&a, &b], "live", Duration::from_secs(30)).await;
    let m = dump(&master, "live").await;
    assert!(m.len() > 55, "{} chunks", m.len());
    for s in [&a, &b] {
        assert!(
            s.metric("streammachine_cluster_repaired_chunks_total{stream=\"live\"}")
                .await
                > 0.0,
            "the slave fetched chunks over HTTP"
        );
    }
}

/// 4. The master crashes (SIGKILL) and restarts from its dump: it recovers the chunks newer than
/// the dump from a slave, the slaves keep their listeners, resume live audio, and every buffer
/// converges.
#[tokio::test]
async fn a_crashed_master_restarts_from_its_dump_and_the_slaves_converge() {
    let services = Services::start().await;
    let dir = temp_dir();
    let config = dir.path().join("master.yaml");
    std::fs::write(&config, "dump_interval: 2s\n").unwrap();
    let dumps = dir.path().join("dumps");
    std::fs::create_dir_all(&dumps).unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let args = [
        "--stream",
        "live",
        "--config",
        config.to_str().unwrap(),
        "--dump-dir",
        dumps.to_str().unwrap(),
        "--listen",
        &listen,
        "--admin-listen",
        &admin,
    ];
    let mut master = services.master(&args).await;
    let (a, b) = tokio::join!(
        services.slave(master.admin, &[]),
        services.slave(master.admin, &[])
    );
    wait_ready(&a, T).await;
    wait_ready(&b, T).await;
    let first = Encoder::push(
        &fixture(Format::Mp3, 60, 52),
        Format::Mp3,
        &master.source_url("live"),
        Pace::RealTime,
        false,
    );
    master.wait_buffer("live", 3.0, T).await;
    let mut listeners = vec![];
    for node in [&a, &b] {
        let mut l = Listener::connect(node.listen, "/live", &[]).await;
        // The burst (3 s and more) comes at once.
        assert_eq!(l.read_bytes(16_000, T).await.len(), 16_000);
        listeners.push(l);
    }

    // Crash right after the master got a few chunks beyond its last dump.
    eventually("chunks newer than the dump", T, || async {
        let dumped = streammachine::core::dump::read_file(&dumps, "live")
            .ok()
            .flatten()?;
        let dumped_last = dumped.last()?.seq;
        let last = master.status("live").await["last_seq"].as_u64()?;
        (last >= dumped_last + 2).then_some(())
    })
    .await;
    master.kill();
    first.kill();
    let slave_last = dump(&a, "live")
        .await
        .last()
        .unwrap()
        .seq
        .max(dump(&b, "live").await.last().unwrap().seq);
    let dumped_last = streammachine::core::dump::read_file(&dumps, "live")
        .unwrap()
        .unwrap()
        .last()
        .unwrap()
        .seq;
    assert!(
        slave_last > dumped_last,
        "the slave holds chunks the dump lacks"
    );

    // Slaves keep serving their listeners while the master is away: about time passing (no
    // event says "still open"), so a short window.
    for l in &mut listeners {
        assert!(!l.closed_within(Duration::from_millis(500)).await);
    }

    let master = services.master(&args).await;
    let recovered = master
        .wait_log("Recovered chunks newer than the dump from a slave.")
        .await;
    let recovered: serde_json::Value = serde_json::from_str(&recovered).unwrap();
    assert!(recovered["chunks"].as_u64().unwrap() >= 1, "{recovered}");
    let restored = dump(&master, "live").await;
    assert_eq!(restored.last().unwrap().seq, slave_last, "nothing lost");

    // A new encoder: live audio resumes on the slaves' existing connections, seq moves on.
    let second = Encoder::push(
        &fixture(Format::Mp3, 8, 53),
        Format::Mp3,
        &master.source_url("live"),
        Pace::Rate(2),
        false,
    );
    for l in &mut listeners {
        let got = l.read_bytes(32_000, Duration::from_secs(20)).await;
        assert_eq!(got.len(), 32_000, "a slave's listener did not resume");
    }
    assert!(second.wait(T).await.success());
    master
        .wait_settled("live", Duration::from_millis(500), T)
        .await;
    wait_converged(&master, &[&a, &b], "live", Duration::from_secs(30)).await;
    let m = dump(&master, "live").await;
    assert!(seqs(&m).windows(2).all(|w| w[0] < w[1]));
    assert!(
        m.last().unwrap().seq > slave_last,
        "seq never goes backwards"
    );
    // Both listeners were still connected all along.
    eventually("both listeners counted by the new master", T, || async {
        (master.status("live").await["listeners"] == 2).then_some(())
    })
    .await;
}

/// A fake master answering every request with `bodies[i]` (the last one repeated).
async fn fake_master(bodies: Vec<Vec<u8>>) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut n = 0;
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let body = bodies[n.min(bodies.len() - 1)].clone();
            n += 1;
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&body).await;
            });
        }
    });
    (url, task)
}

/// 6. A slave with the wrong cluster token, or fed garbage (by HTTP or NATS), says so clearly and
/// never serves it.
#[tokio::test]
async fn a_slave_with_a_wrong_token_or_garbage_input_serves_nothing_corrupt() {
    let services = Services::start().await;
    let master = services.master(&["--stream", "live"]).await;
    // Twice real time: on air (15 s) for longer than the test needs.
    let _encoder = Encoder::push(
        &fixture(Format::Mp3, 30, 54),
        Format::Mp3,
        &master.source_url("live"),
        Pace::Rate(2),
        false,
    );
    master.wait_buffer("live", 2.0, T).await;

    // Wrong token: refused by the master, logged as such, never ready.
    let wrong = services
        .slave_with_token(&format!("http://{}", master.admin), "not-the-token", &[])
        .await;
    let line = wrong.wait_log("refused the cluster token").await;
    assert!(line.contains("ERROR"), "{line}");

    // Garbage snapshots: random bytes, then a well-formed dump whose audio is noise.
    let mut bad_audio =
        streammachine::core::chunk::Chunk::decode(dump_bytes_of_one_chunk()).unwrap();
    bad_audio.data = Bytes::from(vec![0x55u8; 4000]);
    let bodies = vec![
        b"<html>definitely not a rewind dump</html>".to_vec(),
        streammachine::core::dump::encode("live", &[bad_audio.clone()]).to_vec(),
    ];
    let (fake_url, fake) = fake_master(bodies).await;
    let fed_garbage = services
        .slave_with_token(&fake_url, streammachine_e2e::cluster::TOKEN, &[])
        .await;
    fed_garbage.wait_log("not a StreamMachine dump").await;
    fed_garbage.wait_log("invalid audio").await;

    // Neither is ready, and a listener gets a refusal, never bytes.
    for s in [&wrong, &fed_garbage] {
        assert_eq!(readyz(s).await, 503);
    }
    let (r1, r2) = tokio::join!(wrong.get("/live"), fed_garbage.get("/live"));
    assert_eq!((r1.status().as_u16(), r2.status().as_u16()), (503, 503));
    fake.abort();

    // Garbage over NATS reaches a healthy slave: rejected, logged, never in its buffer.
    let good = services.slave(master.admin, &[]).await;
    wait_ready(&good, T).await;
    let nats = async_nats::connect(services.nats.url()).await.unwrap();
    let last = dump(&good, "live").await.last().unwrap().seq;
    let mut forged = bad_audio;
    forged.seq = last + 1_000_000;
    for payload in [Bytes::from_static(b"garbage"), forged.to_bytes()] {
        nats.publish("streammachine.chunks.live", payload)
            .await
            .unwrap();
    }
    nats.flush().await.unwrap();
    good.wait_log("Rejected an invalid chunk from NATS").await;
    eventually("both forgeries counted", T, || async {
        (good
            .metric("streammachine_cluster_rejected_chunks_total{stream=\"live\"}")
            .await
            >= 2.0)
            .then_some(())
    })
    .await;
    let held = dump(&good, "live").await;
    assert!(held.iter().all(|c| c.seq != forged.seq));
    master
        .wait_buffer("live", held.len() as f64 * 0.5 + 1.0, T)
        .await;
    wait_converged(&master, &[&good], "live", T).await;

    // Redis holds a config a slave cannot use: it says which and keeps the last good one.
    redis_put(
        &services.redis.url(),
        "streammachine",
        "live",
        json!({"format": "mp3", "icy_metaint": 0}),
    )
    .await;
    good.wait_log("Ignoring an invalid stream config").await;
    assert_eq!(good.status("live").await["key"], "live");
}

/// One real chunk's encoding, to forge variants of.
fn dump_bytes_of_one_chunk() -> Bytes {
    Chunk {
        seq: 1,
        ts: 1_700_000_000_000_000,
        duration: 26_122,
        samples: 1152,
        frames: 1,
        flags: 0,
        epoch: 0,
        codec: "mp3-44100-128-s".into(),
        meta: Default::default(),
        data: Bytes::from(vec![0u8; 417]),
        levels: None,
    }
    .to_bytes()
}

/// Redis down: every role keeps its last config and serves on; Redis back (empty, as after a
/// restart without persistence): nothing is taken off the air, and new writes apply again.
#[tokio::test]
async fn a_redis_outage_keeps_the_last_config() {
    let mut services = Services::start().await;
    let master = services.master(&["--stream", "live"]).await;
    let slave = services.slave(master.admin, &[]).await;
    wait_ready(&slave, T).await;
    let _encoder = Encoder::push(
        &fixture(Format::Mp3, 40, 55),
        Format::Mp3,
        &master.source_url("live"),
        Pace::RealTime,
        false,
    );
    slave.wait_buffer("live", 2.0, T).await;
    let mut l = Listener::connect(slave.listen, "/live", &[]).await;
    // The burst (2 s and more) comes at once.
    assert_eq!(l.read_bytes(16_000, T).await.len(), 16_000);

    services.redis.stop();
    for node in [&master, &slave] {
        node.wait_log("Config store (Redis) unavailable; keeping the last config")
            .await;
    }
    assert_eq!(
        l.read_bytes(32_000, Duration::from_secs(10)).await.len(),
        32_000
    );
    assert_eq!(readyz(&slave).await, 200);

    services.redis.restart().await;
    for node in [&master, &slave] {
        node.wait_log("Config store (Redis) reachable again.").await;
        node.wait_log("The config store holds no streams at all")
            .await;
        assert_eq!(node.status("live").await["key"], "live");
    }
    assert_eq!(
        l.read_bytes(16_000, Duration::from_secs(10)).await.len(),
        16_000
    );

    // Writes apply again.
    redis_put(
        &services.redis.url(),
        "streammachine",
        "extra",
        json!({"format": "aac"}),
    )
    .await;
    for node in [&master, &slave] {
        eventually("the new stream after the outage", T, || async {
            (node.admin_get("/api/streams/extra").await.status() == 200).then_some(())
        })
        .await;
    }
}
