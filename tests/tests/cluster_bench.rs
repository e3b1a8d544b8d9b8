//! Cluster benchmarks (ignored by default; run by `bench/cluster.sh`, results in
//! `bench/RESULTS-cluster.md`):
//!
//! - snapshot transfer: how long a new slave takes to load an 8-hour 128 kbps buffer from the
//!   master on loopback;
//! - live latency: how much later a slave's listener gets audio than a listener on the master,
//!   which is the latency the cluster adds on top of the chunk duration.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use streammachine::cluster::transport::TransportClient;
use streammachine::core::chunk::{Chunk, Meta};
use streammachine::core::codec::{Format, frames_of};
use streammachine_e2e::audio::{find, fixture};
use streammachine_e2e::cluster::{Services, TOKEN, wait_ready};
use streammachine_e2e::listener::Listener;
use streammachine_e2e::temp_dir;

const T: Duration = Duration::from_secs(120);

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// `hours` of 128 kbps MP3 in chunks of 19 frames (~0.5 s), built from real frames.
fn synthetic_buffer(hours: u64) -> Vec<Chunk> {
    let file = fixture(Format::Mp3, 5, 61);
    let frames = frames_of(Format::Mp3, &std::fs::read(file).unwrap());
    let per_chunk = 19;
    let frame_us = 1152.0 * 1e6 / 44100.0;
    let chunks = (hours * 3600) as f64 * 1e6 / (frame_us * per_chunk as f64);
    let start_seq = (now_micros() / 1000) as u64 - 10_000_000;
    let start_ts = now_micros() - (hours * 3600 * 1_000_000) as i64;
    let meta = std::sync::Arc::new(Meta {
        title: "Benchmark - Eight hours".into(),
        url: String::new(),
    });
    let codec: std::sync::Arc<str> = std::sync::Arc::from("mp3-44100-128-s");
    let mut at = 0;
    (0..chunks as u64)
        .map(|i| {
            let mut data = Vec::with_capacity(per_chunk * 418);
            for _ in 0..per_chunk {
                data.extend_from_slice(&frames[at % frames.len()].data);
                at += 1;
            }
            Chunk {
                seq: start_seq + i,
                ts: start_ts + (i as f64 * frame_us * per_chunk as f64) as i64,
                duration: (frame_us * per_chunk as f64) as u32,
                samples: 1152 * per_chunk as u32,
                frames: per_chunk as u32,
                flags: 0,
                epoch: 0,
                codec: codec.clone(),
                meta: meta.clone(),
                data: Bytes::from(data),
                levels: None,
            }
        })
        .collect()
}

#[tokio::test]
#[ignore = "benchmark: bench/cluster.sh"]
async fn bench_snapshot_transfer_of_an_8_hour_buffer() {
    let dir = temp_dir();
    let chunks = synthetic_buffer(8);
    let bytes = streammachine::core::dump::write_file(dir.path(), "live", &chunks).unwrap();
    let n = chunks.len();
    drop(chunks);
    println!("buffer: {n} chunks, {:.1} MB encoded", bytes as f64 / 1e6);

    let services = Services::start().await;
    let master = services
        .master(&[
            "--stream",
            "live",
            "--rewind",
            "9h",
            "--dump-dir",
            dir.path().to_str().unwrap(),
        ])
        .await;
    let status = master.status("live").await;
    println!(
        "master restored {:.0} s of audio",
        status["buffer_seconds"].as_f64().unwrap()
    );

    // The transport alone: download, check every chunk, collect.
    let client = TransportClient::new(&format!("http://{}", master.admin), TOKEN).unwrap();
    for i in 0..3 {
        let started = Instant::now();
        let fetched = client.snapshot("live", Format::Mp3).await.unwrap();
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(fetched.chunks.len(), n);
        println!(
            "client fetch {i}: {:.3} s, {:.0} MB/s",
            secs,
            fetched.bytes as f64 / 1e6 / secs
        );
    }

    // A new slave process: from start to ready (snapshot loaded and merged).
    for i in 0..3 {
        let started = Instant::now();
        let slave = services.slave(master.admin, &["--rewind", "9h"]).await;
        wait_ready(&slave, T).await;
        let ready = started.elapsed().as_secs_f64();
        let line = slave.wait_log("Rewind snapshot loaded").await;
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        println!(
            "slave {i}: snapshot transfer {} ms ({} chunks, {:.1} MB), process start to ready {:.3} s",
            v["ms"],
            v["chunks"],
            v["bytes"].as_f64().unwrap() / 1e6,
            ready
        );
        assert_eq!(v["chunks"].as_u64().unwrap() as usize, n);
    }
}

/// Everything a listener receives for `for_`, and when: (wall clock µs, bytes so far).
async fn capture(l: &mut Listener, for_: Duration) -> (Vec<u8>, Vec<(i64, usize)>) {
    let mut bytes = vec![];
    let mut times = vec![];
    let deadline = tokio::time::Instant::now() + for_;
    while tokio::time::Instant::now() < deadline {
        let got = l.read_bytes(1, Duration::from_millis(200)).await;
        if got.is_empty() {
            continue;
        }
        // A chunk is one write: when its first byte is here, all of it is (loopback).
        let at = now_micros();
        bytes.extend(got);
        bytes.extend(l.read_for(Duration::from_millis(1)).await);
        times.push((at, bytes.len()));
    }
    (bytes, times)
}

/// When the listener had received at least `pos` bytes.
fn time_at(times: &[(i64, usize)], pos: usize) -> Option<i64> {
    let i = times.partition_point(|(_, total)| *total < pos);
    times.get(i).map(|(t, _)| *t)
}

fn percentile(sorted: &[i64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
}

fn summary(what: &str, mut v: Vec<i64>) {
    v.sort_unstable();
    println!(
        "{what} ({} samples): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        v.len(),
        percentile(&v, 0.5),
        percentile(&v, 0.99),
        percentile(&v, 1.0)
    );
}

#[tokio::test]
#[ignore = "benchmark: bench/cluster.sh"]
async fn bench_live_latency_master_to_slave_listener() {
    let services = Services::start().await;
    let master = services
        .master(&["--stream", "live", "--burst", "0s"])
        .await;
    let slave = services.slave(master.admin, &["--burst", "0s"]).await;
    wait_ready(&slave, T).await;
    let seconds = 110;
    let file = fixture(Format::Mp3, seconds, 62);
    // Real time, each frame sent as soon as ffmpeg has it (no 32 KiB output buffering): chunks
    // complete at an even pace, as with a real encoder.
    let mut encoder = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-re",
            "-i",
        ])
        .arg(&file)
        .args([
            "-c",
            "copy",
            "-flush_packets",
            "1",
            "-content_type",
            "audio/mpeg",
        ])
        .args(["-write_xing", "0", "-id3v2_version", "0", "-f", "mp3"])
        .arg(master.source_url("live"))
        .spawn()
        .unwrap();
    master.wait_buffer("live", 1.0, T).await;
    let mut on_master = Listener::connect(master.listen, "/live", &[]).await;
    let mut on_slave = Listener::connect(slave.listen, "/live", &[]).await;
    let capture_for = Duration::from_secs(u64::from(seconds) - 10);
    let ((m_bytes, m_times), (s_bytes, s_times)) = tokio::join!(
        capture(&mut on_master, capture_for),
        capture(&mut on_slave, capture_for)
    );
    let _ = encoder.kill();
    let _ = encoder.wait();

    // The cluster hop: when the slave's listener had a byte vs when the master's had it. The two
    // listeners may have started a chunk apart: align the byte streams first.
    let shift: i64 = match find(&m_bytes, &s_bytes[..4096]) {
        Some(p) => p as i64,
        None => {
            -(find(&s_bytes, &m_bytes[..4096]).expect("the slave serves the master's audio") as i64)
        }
    };
    let added: Vec<i64> = s_times
        .iter()
        .filter_map(|&(t, total)| {
            let pos = usize::try_from(total as i64 + shift).ok()?;
            time_at(&m_times, pos).map(|tm| t - tm)
        })
        .collect();
    summary("slave listener minus master listener", added);
    // The master's listener gets a chunk the moment it is complete (same process), so this is
    // the latency the cluster adds on top of the chunk duration. (Chunk content times are not
    // used: they are anchored when the source's first frames are recognised, a few frames
    // after they arrived, which would skew an absolute figure by a constant.)
}
