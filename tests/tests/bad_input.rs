//! Hostile and broken input: the server stays up, other listeners keep receiving audio, and each
//! case is logged clearly.

use std::time::Duration;

use streammachine::core::codec::Format;
use streammachine_e2e::audio::{Encoder, Pace, fixture};
use streammachine_e2e::listener::Listener;
use streammachine_e2e::server::Server;
use streammachine_e2e::{eventually, temp_dir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(60);

/// Send raw bytes, return what the server answers before closing (bounded).
async fn raw(server: &Server, request: &[u8]) -> String {
    let mut s = TcpStream::connect(server.listen).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A server with a live source and a listener that keeps reading.
async fn on_air(args: &[&str]) -> (Server, Encoder, Listener) {
    let server = Server::standalone(args).await;
    let enc = Encoder::push(
        &fixture(Format::Mp3, 120, 11),
        Format::Mp3,
        &server.source_url("live"),
        Pace::RealTime,
        false,
    );
    server.wait_buffer("live", 1.0, T).await;
    let l = Listener::connect(server.listen, "/live", &[]).await;
    (server, enc, l)
}

/// More than 10 kB within 1.5 s (the source sends 16 kB/s): the bound is the assertion, and the
/// read returns as soon as the bytes are there.
async fn still_streaming(l: &mut Listener) {
    let got = l.read_bytes(10_001, Duration::from_millis(1500)).await;
    assert!(
        got.len() > 10_000,
        "the good listener stalled ({} bytes)",
        got.len()
    );
}

#[tokio::test]
async fn wrong_password_and_unknown_mount_are_refused() {
    let (server, _enc, mut l) = on_air(&["--stream", "live"]).await;
    let reply = raw(
        &server,
        b"SOURCE /live HTTP/1.0\r\nAuthorization: Basic c291cmNlOndyb25n\r\nContent-Type: audio/mpeg\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.0 401"), "{reply}");
    server
        .wait_log("Source refused: wrong or missing password.")
        .await;

    // A real encoder with the wrong password fails too.
    let url = format!("icecast://source:nope@{}/live", server.listen);
    let enc = Encoder::push(
        &fixture(Format::Mp3, 5, 12),
        Format::Mp3,
        &url,
        Pace::Fast,
        false,
    );
    assert!(
        !enc.wait(T).await.success(),
        "ffmpeg must fail with a wrong password"
    );

    let reply = raw(
        &server,
        b"PUT /nope HTTP/1.1\r\nAuthorization: Basic c291cmNlOmUyZS1zb3VyY2UtcHc=\r\nContent-Type: audio/mpeg\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
    server.wait_log("Source refused: no such mount.").await;

    // Mounts match exactly (the original matched prefixes).
    let reply = raw(
        &server,
        b"PUT /live2 HTTP/1.1\r\nAuthorization: Basic c291cmNlOmUyZS1zb3VyY2UtcHc=\r\nContent-Type: audio/mpeg\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");

    let reply = raw(
        &server,
        b"PUT /live HTTP/1.1\r\nAuthorization: Basic c291cmNlOmUyZS1zb3VyY2UtcHc=\r\nContent-Type: audio/ogg\r\n\r\n",
    )
    .await;
    assert!(
        reply.starts_with("HTTP/1.1 403") && reply.contains("Content-type not supported"),
        "{reply}"
    );
    still_streaming(&mut l).await;
    // The live encoder is still the only source.
    assert_eq!(
        server.status("live").await["sources"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn garbage_instead_of_audio_is_refused() {
    let (server, _enc, mut l) = on_air(&["--stream", "live", "--stream", "news:aac"]).await;
    let mut s = TcpStream::connect(server.listen).await.unwrap();
    s.write_all(b"PUT /news HTTP/1.1\r\nAuthorization: Basic c291cmNlOmUyZS1zb3VyY2UtcHc=\r\nContent-Type: audio/aac\r\nExpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 25];
    s.read_exact(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 100 Continue"));
    // Pseudo-random bytes: neither MP3 nor ADTS.
    let mut x: u32 = 12345;
    let garbage: Vec<u8> = (0..300_000)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8 & 0x7F
        })
        .collect();
    let _ = s.write_all(&garbage).await;
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut reply)).await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.contains("415"), "{reply}");
    server
        .wait_log("Source refused: its data is not audio of the stream's format.")
        .await;
    assert_eq!(server.status("news").await["buffer_seconds"], 0.0);

    // MP3 into the AAC stream (announced as AAC) is refused the same way.
    let mp3 = std::fs::read(fixture(Format::Mp3, 10, 13)).unwrap();
    let mut s = TcpStream::connect(server.listen).await.unwrap();
    s.write_all(b"SOURCE /news HTTP/1.0\r\nAuthorization: Basic c291cmNlOmUyZS1zb3VyY2UtcHc=\r\nContent-Type: audio/aac\r\n\r\n")
        .await
        .unwrap();
    let _ = s.write_all(&mp3).await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
    eventually("a second refusal", T, || async {
        (server
            .log_lines("Source refused: its data is not audio")
            .len()
            == 2)
            .then_some(())
    })
    .await;
    assert_eq!(server.status("news").await["buffer_seconds"], 0.0);
    still_streaming(&mut l).await;
}

#[tokio::test]
async fn malformed_and_oversized_requests_get_clear_errors() {
    let (server, _enc, mut l) = on_air(&["--stream", "live"]).await;
    let reply = raw(&server, b"HELLO THERE\r\n\r\n").await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    let reply = raw(&server, b"GET /live HTTP/7.0\r\n\r\n").await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    server.wait_log("Malformed request; refused.").await;
    let mut big = b"GET /live HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..400 {
        big.extend(format!("X-Filler-{i}: {}\r\n", "y".repeat(60)).as_bytes());
    }
    big.extend(b"\r\n");
    let reply = raw(&server, &big).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    server.wait_log("Request head too large; refused.").await;
    let reply = raw(
        &server,
        b"GET /live?offset=banana HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert!(
        reply.starts_with("HTTP/1.1 400") && reply.contains("offset"),
        "{reply}"
    );
    let reply = raw(&server, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
    still_streaming(&mut l).await;
}

#[tokio::test]
async fn a_thousand_idle_connections_do_not_disturb_listeners() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let dir = temp_dir();
    let config = dir.path().join("c.yaml");
    std::fs::write(&config, "header_timeout: 3s\nstreams:\n  live: {}\n").unwrap();
    let (server, _enc, mut l) = on_air(&["--config", config.to_str().unwrap()]).await;
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(TcpStream::connect(server.listen).await.unwrap());
    }
    eventually("1000 idle connections open", T, || async {
        (server.metric("streammachine_open_connections").await >= 1000.0).then_some(())
    })
    .await;
    still_streaming(&mut l).await;
    // Each idle connection is closed once the header timeout passes.
    let mut closed = 0;
    for s in &mut idle {
        let mut b = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 1000);
    still_streaming(&mut l).await;
    let mut fresh = Listener::connect(server.listen, "/live", &[]).await;
    assert_eq!(fresh.status, 200);
    still_streaming(&mut fresh).await;
}

#[tokio::test]
async fn a_listener_that_stops_reading_is_cut_and_counted() {
    let dir = temp_dir();
    let config = dir.path().join("c.yaml");
    std::fs::write(&config, "listener_max_lag: 2s\nstreams:\n  live: {}\n").unwrap();
    let server = Server::standalone(&["--config", config.to_str().unwrap()]).await;
    // A full buffer, so a new listener's 30 s burst cannot fit in socket buffers.
    assert!(
        Encoder::push(
            &fixture(Format::Mp3, 60, 14),
            Format::Mp3,
            &server.source_url("live"),
            Pace::Fast,
            false
        )
        .wait(T)
        .await
        .success()
    );
    let _enc = Encoder::push(
        &fixture(Format::Mp3, 120, 15),
        Format::Mp3,
        &server.source_url("live"),
        Pace::RealTime,
        false,
    );
    let mut good = Listener::connect(server.listen, "/live", &[]).await;
    let stuck = tokio::net::TcpSocket::new_v4().unwrap();
    stuck.set_recv_buffer_size(4096).unwrap();
    let mut stuck = stuck.connect(server.listen).await.unwrap();
    stuck
        .write_all(b"GET /live HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // Never read from `stuck`; `good` takes its burst (30 s at 16 kB/s, whole chunks).
    good.read_until("the good listener's burst", T, |got| got.len() >= 450_000)
        .await;
    eventually("the stuck listener to be cut", T, || async {
        (server
            .metric("streammachine_slow_listener_disconnects_total{stream=\"live\"}")
            .await
            >= 1.0)
            .then_some(())
    })
    .await;
    server.wait_log("Slow listener disconnected.").await;
    still_streaming(&mut good).await;
    assert_eq!(
        server
            .metric("streammachine_listeners{stream=\"live\",protocol=\"raw\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn listener_limits_answer_503() {
    let dir = temp_dir();
    let config = dir.path().join("c.yaml");
    std::fs::write(
        &config,
        "max_listeners: 3\nstreams:\n  live:\n    max_listeners: 2\n  other: {}\n",
    )
    .unwrap();
    let server = Server::standalone(&["--config", config.to_str().unwrap()]).await;
    let _enc = Encoder::push(
        &fixture(Format::Mp3, 120, 16),
        Format::Mp3,
        &server.source_url("live"),
        Pace::RealTime,
        false,
    );
    let _enc2 = Encoder::push(
        &fixture(Format::Mp3, 120, 17),
        Format::Mp3,
        &server.source_url("other"),
        Pace::RealTime,
        false,
    );
    server.wait_buffer("live", 1.0, T).await;
    server.wait_buffer("other", 1.0, T).await;
    let a = Listener::connect(server.listen, "/live", &[]).await;
    let b = Listener::connect(server.listen, "/live", &[]).await;
    assert_eq!((a.status, b.status), (200, 200));
    let c = Listener::connect(server.listen, "/live", &[]).await;
    assert_eq!(c.status, 503, "stream limit");
    let d = Listener::connect(server.listen, "/other", &[]).await;
    assert_eq!(d.status, 200);
    let e = Listener::connect(server.listen, "/other", &[]).await;
    assert_eq!(e.status, 503, "server limit");
    assert!(
        server
            .metric("streammachine_rejected_listeners_total{stream=\"live\"}")
            .await
            >= 1.0
    );
    drop(a);
    eventually("a freed slot", T, || async {
        let l = Listener::connect(server.listen, "/live", &[]).await;
        (l.status == 200).then_some(())
    })
    .await;
}
