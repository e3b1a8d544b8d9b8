//! The direct HLS path: media playlist and segment requests answered straight from the socket,
//! without hyper, on a keep-alive connection that stays on this path for as long as the player
//! asks for HLS. They are nearly all of HLS's requests (every session reloads the playlist and
//! fetches a segment per target duration), and their answers are cached bytes: a segment's
//! response head is built once with the segment ([`CachedSegment`]), so a segment request costs
//! a lookup, the session count and one vectored write; a playlist request is answered by
//! [`media_playlist`] as on the router. A segment we do not hold, a refused session or a request
//! with a body is left to hyper and [`super::segment_route`], the one place that words those
//! errors; the connection then stays with hyper.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use axum::http::{HeaderMap, HeaderName, HeaderValue};

use super::playlist::valid_session_id;
use super::serve::{
    CachedSegment, etag_matches, media_playlist, segment_body, session_key_of, touch_session,
};
use crate::app::App;
use crate::core::http_head::RequestHead;
use crate::serve::listen::EXPOSED_HEADERS;

/// A request the direct path may answer.
#[derive(Debug, PartialEq, Eq)]
pub enum HlsRequest<'a> {
    /// `/<stream>.m3u8`
    Playlist(&'a str),
    /// `/<stream>/seg/<msn>.<ext>`
    Segment(&'a str, u64),
}

/// What `head` asks for, if the direct path may answer it.
pub fn hls_request(head: &RequestHead) -> Option<HlsRequest<'_>> {
    if !matches!(head.method.as_str(), "GET" | "HEAD")
        || !matches!(head.version.as_str(), "HTTP/1.1" | "HTTP/1.0")
        || head.header("transfer-encoding").is_some()
        || head
            .header("content-length")
            .is_some_and(|v| v.trim() != "0")
    {
        return None;
    }
    let path = head.path().strip_prefix('/')?;
    if let Some(key) = path.strip_suffix(".m3u8") {
        return (!key.is_empty() && !key.contains('/')).then_some(HlsRequest::Playlist(key));
    }
    let (key, msn) = segment_path(path)?;
    Some(HlsRequest::Segment(key, msn))
}

fn segment_path(path: &str) -> Option<(&str, u64)> {
    let (key, file) = path.split_once("/seg/")?;
    let (msn, ext) = file.split_once('.')?;
    if key.is_empty() || key.contains('/') || !matches!(ext, "mp3" | "aac") {
        return None;
    }
    if msn.is_empty() || !msn.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((key, msn.parse().ok()?))
}

/// Answer one request `hls_request` accepted.
pub async fn serve(
    app: &Arc<App>,
    sock: &mut TcpStream,
    head: &RequestHead,
    request: HlsRequest<'_>,
    peer: SocketAddr,
) -> After {
    let keep = keep_alive(head);
    let (mut out, sent) = match request {
        HlsRequest::Segment(key, msn) => match segment(app, head, key, msn, peer, keep) {
            Some(r) => r,
            None => return After::NotServed,
        },
        HlsRequest::Playlist(key) => (playlist(app, head, key, keep).await, None),
    };
    // Like hyper's path: a client that stops reading is cut after this long.
    let limit = app.settings.listener_max_lag.max(Duration::from_secs(10));
    match tokio::time::timeout(limit, sock.write_all_buf(&mut out)).await {
        Ok(Ok(())) => {
            if let Some((stream, n)) = sent {
                stream.metrics.sent_bytes.inc_by(n);
            }
            if keep { After::KeepAlive } else { After::Close }
        }
        _ => After::Close,
    }
}

/// What the connection does after a direct answer.
#[derive(Debug, PartialEq, Eq)]
pub enum After {
    /// Read the next request.
    KeepAlive,
    Close,
    /// Not answered: hand the request to hyper.
    NotServed,
}

/// Whether the client keeps the connection open after this request (RFC 9112 9.3).
fn keep_alive(head: &RequestHead) -> bool {
    let connection = head.header("connection").unwrap_or("");
    let has = |t: &str| {
        connection
            .split(',')
            .any(|c| c.trim().eq_ignore_ascii_case(t))
    };
    if head.is_http11() {
        !has("close")
    } else {
        has("keep-alive")
    }
}

type Sent = Option<(Arc<crate::stream::Stream>, u64)>;

/// A segment's response, if we hold it and the session may listen; and the audio bytes it sends.
fn segment(
    app: &Arc<App>,
    head: &RequestHead,
    key: &str,
    msn: u64,
    peer: SocketAddr,
    keep: bool,
) -> Option<(Box<dyn Buf + Send>, Sent)> {
    let stream = app.stream(key)?;
    let seg = segment_body(&stream, msn)?;
    let playback = head
        .header("x-playback-session-id")
        .filter(|s| valid_session_id(s));
    let query = Some(head.query()).filter(|q| !q.is_empty());
    let session = session_key_of(playback, query, head.header("user-agent"), peer);
    touch_session(app, &stream, &session).ok()?;
    let fresh = !etag_matches(head.header("if-none-match"), &seg.etag);
    let with_body = fresh && head.method == "GET";
    let out = response(&seg, &head.version, fresh, with_body, keep, date_line());
    let sent = with_body.then(|| (stream, seg.body.len() as u64));
    Some((Box::new(out), sent))
}

/// A media playlist's response, as the router's handler words it.
async fn playlist(
    app: &Arc<App>,
    head: &RequestHead,
    key: &str,
    keep: bool,
) -> Box<dyn Buf + Send> {
    let mut headers = HeaderMap::new();
    for (name, value) in &head.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(n, v);
        }
    }
    let response = media_playlist(app, key, head.query(), &headers);
    let (parts, body) = response.into_parts();
    // The handler's bodies are in memory; the limit only guards against a change to that.
    let body = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    let http11 = head.version == "HTTP/1.1";
    let mut text = format!(
        "{} {}\r\n",
        if http11 { "HTTP/1.1" } else { "HTTP/1.0" },
        parts.status
    );
    text.push_str("Server: StreamMachine\r\n");
    for (name, value) in &parts.headers {
        if let Ok(v) = value.to_str() {
            text.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    text.push_str("Access-Control-Allow-Origin: *\r\n");
    text.push_str(&format!(
        "Access-Control-Expose-Headers: {}\r\n",
        EXPOSED_HEADERS.join(", ")
    ));
    let with_body = head.method == "GET" && parts.status != axum::http::StatusCode::NOT_MODIFIED;
    if parts.status != axum::http::StatusCode::NOT_MODIFIED {
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    text.push_str(match (keep, http11) {
        (false, _) => "Connection: close\r\n",
        (true, false) => "Connection: keep-alive\r\n",
        (true, true) => "",
    });
    let body = if with_body { body } else { bytes::Bytes::new() };
    Box::new(
        Bytes::from(text)
            .chain(date_line())
            .chain(Bytes::from_static(b"\r\n"))
            .chain(body),
    )
}

/// The response's bytes, in the pieces one vectored write sends.
fn response(
    seg: &CachedSegment,
    version: &str,
    fresh: bool,
    with_body: bool,
    keep: bool,
    date: Bytes,
) -> impl Buf + Send + use<> {
    let status: &'static [u8] = match (version == "HTTP/1.1", fresh) {
        (true, true) => b"HTTP/1.1 200 OK\r\n",
        (true, false) => b"HTTP/1.1 304 Not Modified\r\n",
        (false, true) => b"HTTP/1.0 200 OK\r\n",
        (false, false) => b"HTTP/1.0 304 Not Modified\r\n",
    };
    let headers = if fresh {
        seg.ok_head.clone()
    } else {
        seg.not_modified_head.clone()
    };
    let end: &'static [u8] = match (keep, version == "HTTP/1.1") {
        (false, _) => b"Connection: close\r\n\r\n",
        (true, false) => b"Connection: keep-alive\r\n\r\n",
        (true, true) => b"\r\n",
    };
    let body = if with_body {
        seg.body.clone()
    } else {
        Bytes::new()
    };
    Bytes::from_static(status)
        .chain(date)
        .chain(headers)
        .chain(Bytes::from_static(end))
        .chain(body)
}

/// `Date: ...\r\n` for now, formatted once a second per thread.
fn date_line() -> Bytes {
    thread_local! {
        static LINE: RefCell<(u64, Bytes)> = const { RefCell::new((u64::MAX, Bytes::new())) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    LINE.with_borrow_mut(|(at, line)| {
        if *at != second {
            *at = second;
            *line = format!("Date: {}\r\n", httpdate::fmt_http_date(now)).into();
        }
        line.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::http_head::parse_head;

    fn head(raw: &str) -> RequestHead {
        parse_head(raw.as_bytes()).unwrap()
    }

    #[test]
    fn takes_only_plain_playlist_and_segment_fetches() {
        let h = head("GET /live/seg/299443035.mp3?session_id=a HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            hls_request(&h),
            Some(HlsRequest::Segment("live", 299443035))
        );
        let h = head("HEAD /lo/seg/7.aac HTTP/1.0\r\n\r\n");
        assert_eq!(hls_request(&h), Some(HlsRequest::Segment("lo", 7)));
        let h = head("GET /live.m3u8?_HLS_skip=YES HTTP/1.1\r\n\r\n");
        assert_eq!(hls_request(&h), Some(HlsRequest::Playlist("live")));
        for raw in [
            "POST /live/seg/1.mp3 HTTP/1.1\r\n\r\n",
            "GET /live/seg/1.mp3 HTTP/1.1\r\nContent-Length: 3\r\n\r\n",
            "GET /live/seg/1.mp3 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /live/seg/1.ts HTTP/1.1\r\n\r\n",
            "GET /live/seg/+1.mp3 HTTP/1.1\r\n\r\n",
            "GET /live/seg/.mp3 HTTP/1.1\r\n\r\n",
            "GET /a/b/seg/1.mp3 HTTP/1.1\r\n\r\n",
            "GET //seg/1.mp3 HTTP/1.1\r\n\r\n",
            "GET /live/seg/99999999999999999999999.mp3 HTTP/1.1\r\n\r\n",
            "GET /live/seg/1.mp3 ICE/1.0\r\n\r\n",
            "GET /.m3u8 HTTP/1.1\r\n\r\n",
            "GET /sg/prog.m3u8 HTTP/1.1\r\n\r\n",
            "PUT /live.m3u8 HTTP/1.1\r\n\r\n",
            "GET /live HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(hls_request(&head(raw)), None, "{raw}");
        }
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection_header() {
        assert!(keep_alive(&head("GET / HTTP/1.1\r\n\r\n")));
        assert!(!keep_alive(&head(
            "GET / HTTP/1.1\r\nConnection: Keep-Alive, close\r\n\r\n"
        )));
        assert!(!keep_alive(&head("GET / HTTP/1.0\r\n\r\n")));
        assert!(keep_alive(&head(
            "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        )));
    }

    fn wire(mut b: impl Buf) -> String {
        String::from_utf8(b.copy_to_bytes(b.remaining()).to_vec()).unwrap()
    }

    #[test]
    fn responses_are_exact() {
        let seg = CachedSegment::for_tests(Bytes::from_static(b"abcd"), "\"s1\"", "audio/mpeg");
        let date = Bytes::from_static(b"Date: Mon, 07 Dec 2026 15:00:00 GMT\r\n");
        let ok = wire(response(&seg, "HTTP/1.1", true, true, true, date.clone()));
        assert_eq!(
            ok,
            "HTTP/1.1 200 OK\r\nDate: Mon, 07 Dec 2026 15:00:00 GMT\r\nServer: StreamMachine\r\n\
             Content-Type: audio/mpeg\r\nCache-Control: public, max-age=3600, immutable\r\n\
             ETag: \"s1\"\r\nAccess-Control-Allow-Origin: *\r\nContent-Length: 4\r\n\r\nabcd"
        );
        // HEAD: the same head, no body.
        let head_only = wire(response(&seg, "HTTP/1.1", true, false, true, date.clone()));
        assert_eq!(head_only, ok.trim_end_matches("abcd"));
        let not_modified = wire(response(&seg, "HTTP/1.0", false, false, false, date));
        assert!(not_modified.starts_with("HTTP/1.0 304 Not Modified\r\n"));
        assert!(not_modified.contains("ETag: \"s1\"\r\n"));
        assert!(!not_modified.contains("Content-Length"));
        assert!(not_modified.ends_with("Connection: close\r\n\r\n"));
    }

    #[test]
    fn the_date_line_is_an_http_date() {
        let line = date_line();
        let text = std::str::from_utf8(&line).unwrap();
        let value = text
            .strip_prefix("Date: ")
            .unwrap()
            .strip_suffix("\r\n")
            .unwrap();
        assert!(httpdate::parse_http_date(value).is_ok(), "{text}");
    }
}
