//! The Icecast source protocol on the listener port: `PUT` (with `Expect: 100-continue`, chunked
//! or plain body), `SOURCE` over HTTP/1.0 and `ICE/1.0`; Basic auth with the stream's source
//! password; audio checked against the stream's format before the source joins the stream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{Instrument, info, warn};

use crate::app::App;
use crate::codec::Parser;
use crate::http_head::{ChunkedDecoder, RequestHead};
use crate::listener::rfc3339;
use crate::stream::{SourceInfo, SourceKind, StationInfo, Stream, now_micros};

/// Sources per stream (one live, the rest standby).
const MAX_SOURCES: usize = 8;
/// Input that yields no frame for this many bytes is not audio of the stream's format.
const MAX_GARBAGE: u64 = 64 * 1024;

/// Compare secrets without an early exit on the first differing byte.
pub fn secret_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The token of an `Authorization: Bearer` header.
pub fn bearer_token(header: Option<&str>) -> Option<&str> {
    header?.strip_prefix("Bearer ").map(str::trim)
}

/// The password from an `Authorization: Basic` header (the user name is not checked: Icecast
/// encoders send `source`, some send the mount name).
pub fn basic_password(header: Option<&str>) -> Option<String> {
    let value = header?.trim();
    let (scheme, b64) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':').map(|(_, p)| p.to_string())
}

fn station(head: &RequestHead) -> StationInfo {
    let pick = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| head.header(n).map(str::to_string))
    };
    StationInfo {
        name: pick(&["ice-name", "icy-name"]),
        description: pick(&["ice-description", "icy-description"]),
        genre: pick(&["ice-genre", "icy-genre"]),
        url: pick(&["ice-url", "icy-url"]),
        bitrate: pick(&["ice-bitrate", "icy-br"]),
        public: pick(&["ice-public", "icy-pub"]),
        audio_info: pick(&["ice-audio-info", "icy-audio-info"]),
    }
}

async fn reply(sock: &mut TcpStream, version: &str, status: &str, body: &str) {
    let version = if version == "HTTP/1.1" {
        "HTTP/1.1"
    } else {
        "HTTP/1.0"
    };
    let msg = if body.is_empty() {
        format!("{version} {status}\r\nServer: StreamMachine\r\nConnection: close\r\n\r\n")
    } else {
        format!(
            "{version} {status}\r\nServer: StreamMachine\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let _ = sock.write_all(msg.as_bytes()).await;
}

/// Handle one source connection whose request head has been read; `body` holds bytes that came
/// after the head.
pub async fn handle_source(
    app: Arc<App>,
    mut sock: TcpStream,
    head: RequestHead,
    body: BytesMut,
    peer: SocketAddr,
) {
    let mount = head.path().to_string();
    let key = mount.trim_start_matches('/');
    let Some(stream) = app.stream(key) else {
        info!(%peer, %mount, "Source refused: no such mount.");
        reply(
            &mut sock,
            &head.version,
            "404 Not Found",
            "Mount point not found\n",
        )
        .await;
        return;
    };
    let settings = stream.settings();
    let password_ok = basic_password(head.header("authorization"))
        .is_some_and(|p| secret_eq(&p, &settings.source_password));
    if !password_ok {
        warn!(%peer, stream = %stream.key, "Source refused: wrong or missing password.");
        let body = "Invalid source or password.\n";
        let msg = format!(
            "HTTP/1.0 401 Unauthorized\r\nServer: StreamMachine\r\nWWW-Authenticate: Basic realm=\"StreamMachine\"\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = sock.write_all(msg.as_bytes()).await;
        return;
    }
    match head.header("content-type") {
        None if head.method == "PUT" => {
            info!(%peer, stream = %stream.key, "Source refused: no Content-Type.");
            reply(
                &mut sock,
                &head.version,
                "403 Forbidden",
                "No Content-type given\n",
            )
            .await;
            return;
        }
        Some(ct) if !settings.format.accepts_content_type(ct) => {
            info!(%peer, stream = %stream.key, content_type = %ct, format = %settings.format,
                "Source refused: content type does not match the stream's format.");
            reply(
                &mut sock,
                &head.version,
                "403 Forbidden",
                "Content-type not supported\n",
            )
            .await;
            return;
        }
        _ => {}
    }
    if stream.sources().len() >= MAX_SOURCES {
        info!(%peer, stream = %stream.key, "Source refused: too many sources.");
        reply(
            &mut sock,
            &head.version,
            "403 Forbidden",
            "too many sources connected\n",
        )
        .await;
        return;
    }
    let expect_continue = head
        .header("expect")
        .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"));
    let ok = if expect_continue {
        // The final status follows once the body ends (Icecast 2.5 does the same).
        "HTTP/1.1 100 Continue\r\n\r\n".to_string()
    } else if head.is_http11() {
        "HTTP/1.1 200 OK\r\nServer: StreamMachine\r\n\r\n".to_string()
    } else {
        "HTTP/1.0 200 OK\r\nServer: StreamMachine\r\n\r\n".to_string()
    };
    if sock.write_all(ok.as_bytes()).await.is_err() {
        return;
    }
    let chunked = head
        .header("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"));
    let info = SourceInfo {
        id: 0,
        kind: SourceKind::Encoder,
        remote: peer.to_string(),
        user_agent: head.header("user-agent").map(str::to_string),
        connected_at: rfc3339(now_micros()),
        codec: None,
        station: station(&head),
    };
    let span = tracing::info_span!("source", stream = %stream.key, %peer);
    async move {
        let outcome = receive(&app, &stream, &mut sock, body, chunked, info).await;
        match outcome {
            Outcome::Ended { bytes, secs, body_done } => {
                info!(bytes, seconds = secs, "Source disconnected.");
                if expect_continue && body_done {
                    let _ = sock
                        .write_all(b"HTTP/1.1 200 OK\r\nServer: StreamMachine\r\nConnection: close\r\n\r\n")
                        .await;
                }
            }
            Outcome::NotAudio { bytes } => {
                warn!(
                    bytes,
                    format = %stream.settings().format,
                    "Source refused: its data is not audio of the stream's format."
                );
                if expect_continue {
                    let _ = sock
                        .write_all(b"HTTP/1.1 415 Unsupported Media Type\r\nServer: StreamMachine\r\nConnection: close\r\nContent-Length: 33\r\n\r\nContent does not match the mount\n")
                        .await;
                }
            }
            Outcome::Timeout { bytes } => {
                warn!(bytes, timeout = ?app.settings.source_timeout, "Source dropped: sent nothing for too long.");
            }
            Outcome::Protocol => warn!("Source dropped: malformed chunked body."),
            Outcome::Stopped => info!("Source closed: stream removed or server shutting down."),
        }
    }
    .instrument(span)
    .await;
}

enum Outcome {
    Ended {
        bytes: u64,
        secs: u64,
        body_done: bool,
    },
    NotAudio {
        bytes: u64,
    },
    Timeout {
        bytes: u64,
    },
    Protocol,
    Stopped,
}

/// Removes the source from the stream however the connection ends.
struct Registered<'a> {
    stream: &'a Stream,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.stream.remove_source(self.id);
    }
}

/// Turns a source's body bytes into frames for the stream.
struct Receiver<'a> {
    stream: &'a Stream,
    parser: Parser,
    decoder: Option<ChunkedDecoder>,
    decoded: Vec<u8>,
    frames: Vec<crate::codec::Frame>,
    registered: Option<Registered<'a>>,
    info: Option<SourceInfo>,
    codec: Option<String>,
    garbage_mark: u64,
    bytes: u64,
}

impl<'a> Receiver<'a> {
    /// Feed raw body bytes; `Some(outcome)` ends the connection.
    fn feed(&mut self, raw: &[u8]) -> Option<Outcome> {
        self.bytes += raw.len() as u64;
        self.stream.metrics.received_bytes.inc_by(raw.len() as u64);
        let data: &[u8] = match &mut self.decoder {
            Some(d) => {
                self.decoded.clear();
                if d.push(raw, &mut self.decoded).is_err() {
                    return Some(Outcome::Protocol);
                }
                &self.decoded
            }
            None => raw,
        };
        self.parser.push(data);
        self.frames.clear();
        while let Some(f) = self.parser.next_frame() {
            self.frames.push(f);
        }
        let garbage = self.parser.stats().garbage_bytes;
        if self.frames.is_empty() {
            if garbage - self.garbage_mark > MAX_GARBAGE {
                return Some(Outcome::NotAudio { bytes: self.bytes });
            }
            return None;
        }
        self.garbage_mark = garbage;
        let key = self.frames[0].header.codec_key();
        if self.registered.is_none() {
            let mut info = self.info.take()?;
            info.codec = Some(key.clone());
            let Ok(id) = self.stream.add_source(info) else {
                return Some(Outcome::Stopped);
            };
            let live = self.stream.sources().first().map(|s| s.id) == Some(id);
            info!(
                codec = %key,
                source_id = id,
                role = if live { "live" } else { "standby" },
                "Source connected."
            );
            self.registered = Some(Registered {
                stream: self.stream,
                id,
            });
        }
        if let Some(r) = &self.registered {
            if self.codec.as_deref() != Some(key.as_str()) {
                self.stream.set_source_codec(r.id, &key);
                self.codec = Some(key);
            }
            self.stream.source_frames(r.id, &self.frames);
        }
        None
    }

    fn body_done(&self) -> bool {
        self.decoder.as_ref().is_some_and(ChunkedDecoder::is_done)
    }
}

async fn receive(
    app: &App,
    stream: &Arc<Stream>,
    sock: &mut TcpStream,
    initial: BytesMut,
    chunked: bool,
    info: SourceInfo,
) -> Outcome {
    let started = Instant::now();
    let mut rx = Receiver {
        stream,
        parser: Parser::new(stream.settings().format),
        decoder: chunked.then(ChunkedDecoder::default),
        decoded: Vec::with_capacity(16 * 1024),
        frames: Vec::with_capacity(64),
        registered: None,
        info: Some(info),
        codec: None,
        garbage_mark: 0,
        bytes: 0,
    };
    let ended = |rx: &Receiver<'_>, body_done| Outcome::Ended {
        bytes: rx.bytes,
        secs: started.elapsed().as_secs(),
        body_done,
    };
    if !initial.is_empty()
        && let Some(outcome) = rx.feed(&initial)
    {
        return outcome;
    }
    let mut buf = vec![0u8; 16 * 1024];
    while !rx.body_done() {
        let read = tokio::select! {
            r = tokio::time::timeout(app.settings.source_timeout, sock.read(&mut buf)) => r,
            _ = app.shutdown.cancelled() => return Outcome::Stopped,
            _ = stream.removed.cancelled() => return Outcome::Stopped,
        };
        let n = match read {
            Err(_) => return Outcome::Timeout { bytes: rx.bytes },
            Ok(Err(_)) | Ok(Ok(0)) => return ended(&rx, false),
            Ok(Ok(n)) => n,
        };
        if let Some(outcome) = rx.feed(&buf[..n]) {
            return outcome;
        }
    }
    ended(&rx, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth() {
        assert_eq!(
            basic_password(Some("Basic c291cmNlOmhhY2ttZQ==")).as_deref(),
            Some("hackme")
        );
        assert_eq!(
            basic_password(Some("basic c291cmNlOmE6Yg==")).as_deref(),
            Some("a:b")
        );
        assert_eq!(basic_password(Some("Bearer xyz")), None);
        assert_eq!(basic_password(Some("Basic !!!")), None);
        assert_eq!(basic_password(None), None);
        assert!(secret_eq("abc", "abc"));
        assert!(!secret_eq("abc", "abd"));
        assert!(!secret_eq("abc", "abcd"));
    }
}
