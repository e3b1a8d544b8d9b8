//! The direct HLS path (playlists and segments answered from the socket, without hyper) says what
//! the router says: on one keep-alive connection a player's playlist reload, segment fetch,
//! revalidation (304), `HEAD` and pipelined requests all get well-formed answers with the
//! router's bytes and headers; a segment we do not hold falls back to the router's 404 and the
//! connection keeps working; HTTP/1.0 clients get their answer and a close.

use std::time::Duration;

use streammachine::core::codec::Format;
use streammachine_e2e::audio::{Encoder, Pace, fixture};
use streammachine_e2e::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(60);

/// One response read off a raw connection.
#[derive(Debug)]
struct Answer {
    status_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Raw {
    sock: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    async fn connect(server: &Server) -> Raw {
        let url = server.url("/");
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        Raw {
            sock: TcpStream::connect(addr).await.unwrap(),
            buf: vec![],
        }
    }

    async fn send(&mut self, requests: &str) {
        self.sock.write_all(requests.as_bytes()).await.unwrap();
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = vec![0u8; 64 * 1024];
        let n = tokio::time::timeout(T, self.sock.read(&mut chunk))
            .await
            .expect("an answer in time")
            .unwrap();
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// The next response; `head_only` for answers to HEAD.
    async fn answer(&mut self, head_only: bool) -> Answer {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(
                self.fill().await,
                "connection closed before a response head"
            );
        };
        let head = String::from_utf8(self.buf[..end].to_vec()).unwrap();
        self.buf.drain(..end);
        let mut lines = head.trim_end().split("\r\n");
        let status_line = lines.next().unwrap().to_string();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').expect("a header line");
                (n.trim().to_string(), v.trim().to_string())
            })
            .collect();
        let mut answer = Answer {
            status_line,
            headers,
            body: vec![],
        };
        let len = if head_only || answer.status_line.contains(" 304 ") {
            0
        } else {
            answer
                .header("content-length")
                .expect("content-length")
                .parse()
                .unwrap()
        };
        while self.buf.len() < len {
            assert!(self.fill().await, "connection closed inside a body");
        }
        answer.body = self.buf.drain(..len).collect();
        answer
    }

    async fn closed(&mut self) -> bool {
        self.buf.is_empty() && !self.fill().await
    }
}

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\nUser-Agent: direct-test\r\n{extra}\r\n")
}

#[tokio::test]
async fn the_direct_path_answers_like_the_router_on_one_keep_alive_connection() {
    let server = Server::standalone(&["--stream", "live"]).await;
    let _enc = Encoder::push(
        &fixture(Format::Mp3, 40, 5),
        Format::Mp3,
        &server.source_url("live"),
        Pace::Fast,
        false,
    );
    server.wait_buffer("live", 30.0, T).await;
    server.wait_settled("live", Duration::from_secs(1), T).await;

    let mut direct = Raw::connect(&server).await;
    direct.send(&get("/live.m3u8", "")).await;
    let playlist = direct.answer(false).await;
    assert_eq!(playlist.status_line, "HTTP/1.1 200 OK");
    assert_eq!(
        playlist.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    assert_eq!(playlist.header("access-control-allow-origin"), Some("*"));
    assert!(playlist.header("date").is_some());
    let text = String::from_utf8(playlist.body.clone()).unwrap();
    assert!(text.starts_with("#EXTM3U"), "{text}");
    let seg = format!(
        "/{}",
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .nth(1)
            .expect("a segment URI")
    );

    // The router's answer for comparison: a connection whose first request goes to hyper
    // stays with hyper.
    let mut routed = Raw::connect(&server).await;
    routed.send(&get("/healthz", "")).await;
    assert!(routed.answer(false).await.status_line.ends_with("200 OK"));
    routed.send(&get(&seg, "")).await;
    let by_router = routed.answer(false).await;
    routed.send(&get("/live.m3u8", "")).await;
    let playlist_by_router = routed.answer(false).await;

    direct.send(&get(&seg, "")).await;
    let segment = direct.answer(false).await;
    assert_eq!(segment.status_line, "HTTP/1.1 200 OK");
    assert_eq!(segment.body, by_router.body);
    assert!(segment.body.len() > 10_000);
    for h in [
        "content-type",
        "content-length",
        "cache-control",
        "etag",
        "access-control-allow-origin",
    ] {
        assert_eq!(segment.header(h), by_router.header(h), "{h}");
    }
    assert_eq!(playlist.body, playlist_by_router.body);
    for h in ["content-type", "cache-control", "etag"] {
        assert_eq!(playlist.header(h), playlist_by_router.header(h), "{h}");
    }

    // Revalidation, HEAD and two pipelined requests, still on the same connection.
    let etag = segment.header("etag").unwrap().to_string();
    direct
        .send(&get(&seg, &format!("If-None-Match: {etag}\r\n")))
        .await;
    let not_modified = direct.answer(false).await;
    assert_eq!(not_modified.status_line, "HTTP/1.1 304 Not Modified");
    assert_eq!(not_modified.header("etag"), Some(etag.as_str()));
    direct
        .send(&format!(
            "HEAD {seg} HTTP/1.1\r\nHost: test\r\nUser-Agent: direct-test\r\n\r\n"
        ))
        .await;
    let head = direct.answer(true).await;
    assert_eq!(head.status_line, "HTTP/1.1 200 OK");
    assert_eq!(
        head.header("content-length"),
        segment.header("content-length")
    );
    direct
        .send(&format!("{}{}", get(&seg, ""), get("/live.m3u8", "")))
        .await;
    assert_eq!(direct.answer(false).await.body, segment.body);
    assert!(direct.answer(false).await.body.starts_with(b"#EXTM3U"));

    // A segment long gone: the router words the 404, and the connection goes on with hyper.
    direct.send(&get("/live/seg/1.mp3", "")).await;
    let missing = direct.answer(false).await;
    assert_eq!(missing.status_line, "HTTP/1.1 404 Not Found");
    direct.send(&get(&seg, "")).await;
    assert_eq!(direct.answer(false).await.body, segment.body);

    // HTTP/1.0: the answer, then the server closes.
    let mut old = Raw::connect(&server).await;
    old.send(&format!(
        "GET {seg} HTTP/1.0\r\nUser-Agent: direct-test\r\n\r\n"
    ))
    .await;
    let answer = old.answer(false).await;
    assert_eq!(answer.status_line, "HTTP/1.0 200 OK");
    assert_eq!(answer.header("connection"), Some("close"));
    assert_eq!(answer.body, segment.body);
    assert!(old.closed().await, "HTTP/1.0 connection left open");

    // Every request came from one address with one user agent: one HLS session.
    assert_eq!(
        server
            .metric("streammachine_listeners{stream=\"live\",protocol=\"hls\"}")
            .await,
        1.0
    );
}

/// Listener limits hold for HLS on the direct path: a session takes one slot however many
/// requests it makes, and a session beyond the limit gets the router's 503.
#[tokio::test]
async fn hls_sessions_count_once_against_the_listener_limit() {
    let dir = streammachine_e2e::temp_dir();
    let config = dir.path().join("c.yaml");
    std::fs::write(&config, "streams:\n  live:\n    max_listeners: 2\n").unwrap();
    let server = Server::standalone(&["--config", config.to_str().unwrap()]).await;
    let _enc = Encoder::push(
        &fixture(Format::Mp3, 40, 6),
        Format::Mp3,
        &server.source_url("live"),
        Pace::Fast,
        false,
    );
    server.wait_buffer("live", 30.0, T).await;
    server.wait_settled("live", Duration::from_secs(1), T).await;
    let text = server.get("/live.m3u8").await.text().await.unwrap();
    let uris: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert!(uris.len() >= 3, "{text}");
    let mut conn = Raw::connect(&server).await;
    let mut fetch = async |uri: &str, session: &str| {
        conn.send(&get(&format!("/{uri}?session_id={session}"), ""))
            .await;
        conn.answer(false).await.status_line
    };
    for uri in &uris[..3] {
        assert_eq!(fetch(uri, "a").await, "HTTP/1.1 200 OK");
        assert_eq!(fetch(uri, "b").await, "HTTP/1.1 200 OK");
    }
    assert_eq!(
        fetch(uris[0], "c").await,
        "HTTP/1.1 503 Service Unavailable"
    );
    assert_eq!(
        server
            .metric("streammachine_listeners{stream=\"live\",protocol=\"hls\"}")
            .await,
        2.0
    );
}
