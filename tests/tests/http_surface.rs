//! The small things players, load balancers and operators rely on: playlists, HEAD, CORS, probes,
//! metrics names, admin authentication, timeouts for silent sources.

use std::time::Duration;

use serde_json::json;
use streammachine::core::codec::Format;
use streammachine_e2e::audio::{Encoder, Pace, fixture};
use streammachine_e2e::listener::Listener;
use streammachine_e2e::server::Server;
use streammachine_e2e::{eventually, temp_dir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(60);

#[tokio::test]
async fn playlists_head_cors_and_probes() {
    let server = Server::standalone(&["--stream", "live", "--stream", "news:aac"]).await;
    let r = server.get("/healthz").await;
    assert_eq!(r.status(), 200);
    let r = server.get("/readyz").await;
    assert_eq!(r.status(), 200);

    let r = server
        .http
        .get(server.url("/live.pls"))
        .header("Host", "radio.example:8000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "audio/x-scpls");
    let body = r.text().await.unwrap();
    assert!(
        body.contains("File1=http://radio.example:8000/live"),
        "{body}"
    );
    let r = server
        .http
        .get(server.url("/news.m3u"))
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "radio.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "audio/x-mpegurl");
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("https://radio.example/news")
    );
    assert_eq!(server.get("/nope.pls").await.status(), 404);

    let r = server.http.head(server.url("/news")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "audio/aac");

    // CORS preflight and simple requests.
    let r = server
        .http
        .request(reqwest::Method::OPTIONS, server.url("/live.pls"))
        .header("Origin", "https://player.example")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(r.headers()["access-control-allow-origin"], "*");

    let _enc = Encoder::push(
        &fixture(Format::Mp3, 60, 20),
        Format::Mp3,
        &server.source_url("live"),
        Pace::RealTime,
        false,
    );
    server.wait_buffer("live", 1.0, T).await;
    let l = Listener::connect(
        server.listen,
        "/live",
        &[("Origin", "https://player.example")],
    )
    .await;
    assert_eq!(l.header("access-control-allow-origin"), Some("*"));
    assert_eq!(l.header("icy-name"), Some("live"));

    let metrics = server.metrics().await;
    for name in [
        "streammachine_listeners{stream=\"live\",protocol=\"raw\"} 1",
        "streammachine_listener_connections_total{stream=\"live\",protocol=\"raw\"} 1",
        "streammachine_source_connected{stream=\"live\"} 1",
        "streammachine_source_connected{stream=\"news\"} 0",
        "streammachine_buffer_seconds{stream=\"live\"}",
        "streammachine_sent_bytes_total{stream=\"live\"}",
        "streammachine_slow_listener_disconnects_total{stream=\"live\"} 0",
        "streammachine_source_received_bytes_total{stream=\"live\"}",
        "streammachine_open_connections",
    ] {
        assert!(metrics.contains(name), "missing `{name}` in\n{metrics}");
    }
    metrics_formats(&server, &server.url("/metrics")).await;
    metrics_formats(&server, &server.admin_url("/metrics")).await;
}

/// `/metrics` answers in the format asked for: the classic text format passes `promtool check
/// metrics` without a warning, and Prometheus' own `Accept` gets OpenMetrics.
async fn metrics_formats(server: &Server, url: &str) {
    let r = server
        .http
        .get(url)
        .header("Accept", "text/plain;version=0.0.4")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    assert!(
        text.contains("# TYPE streammachine_sent_bytes_total counter"),
        "{text}"
    );
    streammachine_e2e::require("promtool");
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool on {url}:\n{said}"
    );

    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                      version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let r = server
        .http
        .get(url)
        .header("Accept", prometheus)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(r.text().await.unwrap().ends_with("# EOF\n"));
}

#[tokio::test]
async fn admin_api_requires_its_token() {
    let server = Server::start(
        "standalone",
        &["--stream", "live", "--admin-token", "s3cret-token"],
        &[("STREAMMACHINE_ADMIN_TOKEN", "s3cret-token")],
    )
    .await;
    let r = server
        .http
        .get(server.admin_url("/api/streams"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("token"));
    let r = server
        .http
        .get(server.admin_url("/api/streams"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Probes stay open for Kubernetes.
    assert_eq!(
        server
            .http
            .get(server.admin_url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = server.admin_get("/api/streams").await;
    assert_eq!(r.status(), 200);
    let r = server.admin_get("/api/streams/nope").await;
    assert_eq!(r.status(), 404);
    let r = server
        .admin_post("/api/streams/live/metadata", json!({"tittle": "typo"}))
        .await;
    assert_eq!(r.status(), 400);
    assert!(
        r.json::<serde_json::Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("tittle")
    );
    // The token never reaches the logs.
    assert!(server.logs().iter().all(|l| !l.contains("s3cret-token")));
    // Icecast's title update accepts the admin token too.
    let r = server
        .http
        .get(server.url("/admin/metadata?mount=/live&mode=updinfo&song=Hi"))
        .basic_auth("admin", Some("s3cret-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = server
        .http
        .get(server.url("/admin/metadata?mount=/live&mode=updinfo&song=Hi"))
        .basic_auth("source", Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn admin_beyond_loopback_without_token_refuses_to_start() {
    let out = std::process::Command::new(streammachine_e2e::binary())
        .args([
            "standalone",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "0.0.0.0:0",
        ])
        .env_remove("STREAMMACHINE_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("admin_token"), "{err}");
}

#[tokio::test]
async fn bad_config_files_name_the_key() {
    let dir = temp_dir();
    for (text, key) in [
        ("listen_port: 8000\n", "listen_port"),
        ("streams:\n  live:\n    formt: mp3\n", "formt"),
        (
            "streams:\n  live:\n    icy_metaint: 0\n",
            "streams.live.icy_metaint",
        ),
        ("rewind: forever\n", "rewind"),
    ] {
        let path = dir.path().join("bad.yaml");
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(streammachine_e2e::binary())
            .args(["standalone", "--config", path.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "`{key}` not named in: {err}");
    }
}

#[tokio::test]
async fn a_silent_source_is_dropped() {
    let dir = temp_dir();
    let config = dir.path().join("c.yaml");
    std::fs::write(&config, "source_timeout: 1s\nstreams:\n  live: {}\n").unwrap();
    let server = Server::standalone(&["--config", config.to_str().unwrap()]).await;
    let mut s = tokio::net::TcpStream::connect(server.listen).await.unwrap();
    s.write_all(b"SOURCE /live HTTP/1.0\r\nAuthorization: Basic c291cmNlOmUyZS1zb3VyY2UtcHc=\r\nContent-Type: audio/mpeg\r\n\r\n")
        .await
        .unwrap();
    // Send a little audio, then nothing.
    let mp3 = std::fs::read(fixture(Format::Mp3, 5, 21)).unwrap();
    s.write_all(&mp3[..20_000]).await.unwrap();
    server
        .wait_log("Source dropped: sent nothing for too long.")
        .await;
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(n.is_ok(), "the server closed the connection");
    eventually("no source", T, || async {
        (server.status("live").await["source_connected"] == false).then_some(())
    })
    .await;
}

#[tokio::test]
async fn ice_protocol_source_and_station_headers_reach_listeners() {
    let server = Server::standalone(&["--stream", "live"]).await;
    let mut s = tokio::net::TcpStream::connect(server.listen).await.unwrap();
    // A very old encoder: ICE/1.0, bare LF line endings, station headers.
    s.write_all(b"SOURCE /live ICE/1.0\nAuthorization: Basic c291cmNlOmUyZS1zb3VyY2UtcHc=\nice-name: Test FM\nice-genre: Talk\nice-url: https://test.example\nice-bitrate: 128\nice-public: 1\n\n")
        .await
        .unwrap();
    let mut ok = [0u8; 15];
    s.read_exact(&mut ok).await.unwrap();
    assert!(String::from_utf8_lossy(&ok).starts_with("HTTP/1.0 200 OK"));
    let mp3 = std::fs::read(fixture(Format::Mp3, 5, 22)).unwrap();
    s.write_all(&mp3).await.unwrap();
    server.wait_buffer("live", 4.0, T).await;
    let l = Listener::connect(server.listen, "/live", &[]).await;
    assert_eq!(l.header("icy-name"), Some("Test FM"));
    assert_eq!(l.header("icy-genre"), Some("Talk"));
    assert_eq!(l.header("icy-url"), Some("https://test.example"));
    assert_eq!(l.header("icy-br"), Some("128"));
    assert_eq!(l.header("icy-pub"), Some("1"));
    let sources = server.admin_get("/api/streams/live/sources").await;
    let v: serde_json::Value = sources.json().await.unwrap();
    assert_eq!(v[0]["station"]["name"], "Test FM");
}

/// Text logs written to a pipe (a file, `kubectl logs`) carry no ANSI colour codes.
#[tokio::test]
async fn text_logs_to_a_pipe_have_no_colour_codes() {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(streammachine_e2e::binary())
        .args([
            "standalone",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(["--log-format", "text", "--stream", "live"])
        .env("STREAMMACHINE_SOURCE_PASSWORD", "pw")
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut seen = vec![];
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let done = line.contains("Listening");
            seen.push(line);
            if done {
                break;
            }
        }
        seen
    });
    let lines = tokio::time::timeout(T, lines).await.unwrap().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        lines.iter().any(|l| l.contains("Listening")),
        "no start-up line on stderr: {lines:?}"
    );
    assert!(
        lines.iter().all(|l| !l.contains('\u{1b}')),
        "colour codes in piped logs: {lines:?}"
    );
}
