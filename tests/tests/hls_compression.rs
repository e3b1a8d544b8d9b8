//! Compressed playlists and the default live window, end to end: gzip and brotli bodies
//! decompress to exactly the plain ones (live window, whole buffer, their delta updates; gzip for
//! per-request ones), `Vary` and each representation's ETag are right, a client that accepts no
//! encoding gets plain text; the plain playlist lists the live window while `?window=` and `?at=` reach the
//! rest of a long buffer.

use std::io::Read as _;
use std::time::Duration;

use reqwest::header::HeaderMap;
use streammachine::core::codec::Format;
use streammachine_e2e::audio::{Encoder, Pace, fixture, looped_chunks};
use streammachine_e2e::server::Server;
use streammachine_e2e::{eventually, temp_dir};

const T: Duration = Duration::from_secs(90);

struct Got {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 playlist")
    }
}

/// GET with extra request headers; the body as sent (reqwest here decodes nothing).
async fn get(server: &Server, path: &str, headers: &[(&str, &str)]) -> Got {
    let mut req = server.http.get(server.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("request");
    Got {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.bytes().await.expect("body").to_vec(),
    }
}

fn decode(encoding: &str, body: &[u8]) -> Vec<u8> {
    let mut out = vec![];
    match encoding {
        "gzip" => flate2::read::GzDecoder::new(body)
            .read_to_end(&mut out)
            .expect("a gzip body"),
        "br" => brotli::Decompressor::new(body, 4096)
            .read_to_end(&mut out)
            .expect("a brotli body"),
        other => panic!("unexpected encoding {other}"),
    };
    out
}

fn listed_seconds(playlist: &str) -> f64 {
    playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .map(|v| v.trim_end_matches(',').parse::<f64>().unwrap())
        .sum()
}

fn first_pdt(playlist: &str) -> i64 {
    playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:"))
        .map(|v| v.parse::<jiff::Timestamp>().unwrap().as_microsecond())
        .expect("a segment")
}

fn config(dir: &std::path::Path, yaml: &str) -> String {
    let path = dir.join("c.yaml");
    std::fs::write(&path, yaml).unwrap();
    path.to_str().unwrap().to_string()
}

#[tokio::test]
async fn gzip_and_brotli_playlists_decompress_to_the_plain_ones_with_vary_and_etags() {
    let dir = temp_dir();
    // A live window longer than CAN-SKIP-UNTIL (6 target durations, 78 s), so its delta update
    // skips something.
    let c = config(dir.path(), "hls_live_window: 120s\nstreams:\n  live: {}\n");
    let server = Server::standalone(&["--config", &c]).await;
    let file = fixture(Format::Mp3, 240, 31);
    let enc = Encoder::push(
        &file,
        Format::Mp3,
        &server.source_url("live"),
        Pace::Fast,
        false,
    );
    assert!(enc.wait(T).await.success());
    server
        .wait_settled("live", Duration::from_millis(500), T)
        .await;

    let cached = [
        "/live.m3u8",
        "/live.m3u8?_HLS_skip=YES",
        "/live.m3u8?window=86400",
        "/live.m3u8?window=86400&_HLS_skip=YES",
    ];
    let mut bodies = vec![];
    for path in cached {
        // Browsers accept both and get brotli; a client that names only gzip gets gzip.
        for (accept, encoding, suffix) in
            [("gzip", "gzip", "-gz"), ("gzip, deflate, br", "br", "-br")]
        {
            // Both representations of the same playlist version: the encoded one's ETag is the
            // plain one with a suffix (fetched until they agree, in case a segment boundary
            // passed between).
            let (plain, enc) = eventually(&format!("{path} at one version"), T, || async {
                let plain = get(&server, path, &[]).await;
                let enc = get(&server, path, &[("accept-encoding", accept)]).await;
                let base = enc.header("etag")?.replace(&format!("{suffix}\""), "\"");
                (plain.header("etag") == Some(base.as_str())).then_some((plain, enc))
            })
            .await;
            assert_eq!((plain.status, enc.status), (200, 200), "{path}");
            assert_eq!(plain.header("content-encoding"), None, "{path}");
            assert_eq!(enc.header("content-encoding"), Some(encoding), "{path}");
            for r in [&plain, &enc] {
                assert_eq!(r.header("vary"), Some("Accept-Encoding"), "{path}");
                assert_eq!(
                    r.header("content-type"),
                    Some("application/vnd.apple.mpegurl")
                );
            }
            assert!(plain.text().starts_with("#EXTM3U\n"), "{path}");
            assert!(enc.body.len() < plain.body.len(), "{path}: not smaller");
            assert!(
                decode(encoding, &enc.body) == plain.body,
                "{path}: the {encoding} body is not the plain one"
            );
            let (etag, enc_etag) = (plain.header("etag").unwrap(), enc.header("etag").unwrap());
            assert_ne!(etag, enc_etag);
            // Each representation's ETag answers a conditional request for it, with Vary and
            // the ETag; the other representation's ETag does not.
            for (accept, tag, other) in [(None, etag, enc_etag), (Some(accept), enc_etag, etag)] {
                let mut h = vec![("if-none-match", tag)];
                h.extend(accept.map(|a| ("accept-encoding", a)));
                let r = get(&server, path, &h).await;
                assert_eq!(r.status, 304, "{path} {h:?}");
                assert_eq!(r.header("etag"), Some(tag), "{path}");
                assert_eq!(r.header("vary"), Some("Accept-Encoding"), "{path}");
                assert!(r.body.is_empty());
                let mut h = vec![("if-none-match", other)];
                h.extend(accept.map(|a| ("accept-encoding", a)));
                assert_eq!(get(&server, path, &h).await.status, 200, "{path} {h:?}");
            }
            if encoding == "gzip" {
                bodies.push(plain.text());
            }
        }
    }
    // The live window lists about two minutes, the whole buffer all four; the delta updates
    // are shorter than what they update.
    let (live, live_delta, whole, whole_delta) = (&bodies[0], &bodies[1], &bodies[2], &bodies[3]);
    let secs = listed_seconds(live);
    // A window lists the segments that start within it of the live edge.
    assert!(
        (105.0..=121.0).contains(&secs),
        "live window lists {secs} s"
    );
    assert!(listed_seconds(whole) > 220.0, "{whole}");
    for (delta, of) in [(live_delta, live), (whole_delta, whole)] {
        assert!(delta.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS="), "{delta}");
        assert!(delta.len() < of.len());
    }

    // Assembled per request (a start time, a session id in every URI): gzip (also for a client
    // that prefers brotli), no ETag.
    let gzip = [("accept-encoding", "gzip, deflate, br")];
    let at = streammachine::time::rfc3339(first_pdt(whole) + 60_000_000).replace('+', "%2B");
    for path in [
        format!("/live.m3u8?at={at}"),
        "/live.m3u8?session_id=abc123".to_string(),
    ] {
        let plain = get(&server, &path, &[]).await;
        let gz = get(&server, &path, &gzip).await;
        assert_eq!((plain.status, gz.status), (200, 200), "{path}");
        assert_eq!(plain.header("content-encoding"), None);
        assert_eq!(gz.header("content-encoding"), Some("gzip"), "{path}");
        assert_eq!(gz.header("vary"), Some("Accept-Encoding"));
        assert_eq!(plain.header("vary"), Some("Accept-Encoding"));
        assert!(decode("gzip", &gz.body) == plain.body, "{path}");
    }

    // Refusing both, or naming only encodings we do not produce, gets plain text.
    for ae in [
        "gzip;q=0",
        "deflate",
        "identity",
        "*;q=0",
        "gzip;q=0, br;q=0",
    ] {
        let r = get(&server, "/live.m3u8", &[("accept-encoding", ae)]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-encoding"), None, "{ae}");
        assert_eq!(r.text(), *live, "{ae}");
    }
    // `*` stands for both; brotli for a cached playlist.
    let r = get(&server, "/live.m3u8", &[("accept-encoding", "*")]).await;
    assert_eq!(r.header("content-encoding"), Some("br"));
    let r = get(&server, "/live.m3u8", &[("accept-encoding", "*, br;q=0")]).await;
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    // Segments are audio: never compressed.
    let uri = live.lines().find(|l| l.ends_with(".mp3")).unwrap();
    let seg = get(&server, &format!("/{uri}"), &gzip).await;
    assert_eq!(seg.status, 200);
    assert_eq!(seg.header("content-encoding"), None);
}

#[tokio::test]
async fn the_live_window_limits_the_plain_playlist_while_window_and_at_reach_older_audio() {
    // Half an hour of real audio restored from a dump, a one-minute live window.
    let dir = temp_dir();
    let now = streammachine::time::now_micros();
    let file = fixture(Format::Mp3, 30, 32);
    let chunks = looped_chunks(&file, Format::Mp3, 1800, now, "Artist - Dumped");
    streammachine::core::dump::write_file(dir.path(), "live", &chunks).unwrap();
    let c = config(dir.path(), "hls_live_window: 60s\nstreams:\n  live: {}\n");
    let server =
        Server::standalone(&["--config", &c, "--dump-dir", dir.path().to_str().unwrap()]).await;
    server.wait_buffer("live", 1790.0, T).await;
    let oldest = chunks[0].ts;

    let text = |path: &'static str| {
        let server = &server;
        async move {
            let r = get(server, path, &[]).await;
            assert_eq!(r.status, 200, "{path}");
            r.text()
        }
    };
    let live = text("/live.m3u8").await;
    let secs = listed_seconds(&live);
    assert!(
        (45.0..=61.0).contains(&secs),
        "the plain playlist lists {secs} s"
    );
    assert!(now - first_pdt(&live) < 80_000_000, "{live}");
    // Its delta update: a 60 s window is shorter than CAN-SKIP-UNTIL, so nothing is skipped and
    // it lists the same window.
    let delta = text("/live.m3u8?_HLS_skip=YES").await;
    assert_eq!(listed_seconds(&delta), secs);
    // `?window=` reaches back the whole buffer (and no further than the buffer).
    let hour = text("/live.m3u8?window=3600").await;
    assert!(
        first_pdt(&hour) - oldest < 13_000_000,
        "{}",
        first_pdt(&hour) - oldest
    );
    assert!(listed_seconds(&hour) > 1780.0);
    let ten = text("/live.m3u8?window=600").await;
    assert!((585.0..=601.0).contains(&listed_seconds(&ten)));
    // `?at=` 25 minutes back: the whole buffer, starting there; that audio is served.
    let at = now - 25 * 60_000_000;
    let path = format!(
        "/live.m3u8?at={}",
        streammachine::time::rfc3339(at).replace('+', "%2B")
    );
    let r = get(&server, &path, &[]).await;
    assert_eq!(r.status, 200);
    let rewound = r.text();
    assert!(rewound.contains("#EXT-X-START:TIME-OFFSET="), "{rewound}");
    assert!(first_pdt(&rewound) - oldest < 13_000_000);
    let mut pdt = 0;
    let seg = rewound
        .lines()
        .find(|l| {
            if let Some(v) = l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
                pdt = v.parse::<jiff::Timestamp>().unwrap().as_microsecond();
            }
            l.ends_with(".mp3") && pdt >= at
        })
        .unwrap();
    assert!(!live.contains(seg), "{seg} is outside the live window");
    let r = get(&server, &format!("/{seg}"), &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.body.len() > 50_000);
}
