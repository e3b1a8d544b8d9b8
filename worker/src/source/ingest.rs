//! The Icecast source protocol on the listener port: `PUT` (with `Expect: 100-continue`, chunked
//! or plain body), `SOURCE` over HTTP/1.0 and `ICE/1.0`; Basic auth with the stream's source
//! password; audio checked against the stream's format before the source joins the stream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::http::StatusCode;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{Instrument, info, warn};

use crate::app::App;
use crate::core::codec::Parser;
use crate::core::http_head::{ChunkedDecoder, RequestHead};
use crate::core::http_reply::Reply;
use crate::serve::connection::send;
use crate::source::admission::{self, Mount, Refusal};
use crate::stream::{SourceInfo, SourceKind, Stream};
use crate::time::{now_micros, rfc3339};

/// Input that yields no frame for this many bytes is not audio of the stream's format.
const MAX_GARBAGE: u64 = 64 * 1024;

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
    let decision = match app.stream(key) {
        None => Err(Refusal::NoSuchMount),
        Some(stream) => {
            let settings = stream.settings();
            let mount = Mount {
                format: settings.format,
                source_password: &settings.source_password,
                sources: stream.sources().len(),
            };
            admission::admit(&head, mount).map(|admitted| (stream, admitted))
        }
    };
    let (stream, admitted) = match decision {
        Ok(admitted) => admitted,
        Err(refusal) => {
            match &refusal {
                Refusal::BadPassword => warn!(%peer, %mount, "{}", refusal.reason()),
                Refusal::ContentType(ct) => {
                    info!(%peer, %mount, content_type = %ct, "{}", refusal.reason())
                }
                _ => info!(%peer, %mount, "{}", refusal.reason()),
            }
            let _ = send(&mut sock, &refusal.reply(&head.version)).await;
            return;
        }
    };
    if sock
        .write_all(&admitted.first_reply(&head.version))
        .await
        .is_err()
    {
        return;
    }
    let expect_continue = admitted.expect_continue;
    let info = SourceInfo {
        id: 0,
        kind: SourceKind::Encoder,
        remote: peer.to_string(),
        user_agent: admitted.user_agent,
        connected_at: rfc3339(now_micros()),
        codec: None,
        station: admitted.station,
    };
    let span = tracing::info_span!("source", stream = %stream.key, %peer);
    async move {
        let outcome = receive(&app, &stream, &mut sock, body, admitted.chunked, info).await;
        match outcome {
            Outcome::Ended { bytes, secs, body_done } => {
                info!(bytes, seconds = secs, "Source disconnected.");
                if expect_continue && body_done {
                    let _ = send(&mut sock, &Reply::streaming(StatusCode::OK)).await;
                }
            }
            Outcome::NotAudio { bytes } => {
                warn!(
                    bytes,
                    format = %stream.settings().format,
                    "Source refused: its data is not audio of the stream's format."
                );
                if expect_continue {
                    let refusal = Reply::text(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "Content does not match the mount\n",
                    );
                    let _ = send(&mut sock, &refusal).await;
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

impl Outcome {
    fn reason(&self) -> &'static str {
        match self {
            Outcome::Ended { .. } => "closed",
            Outcome::NotAudio { .. } => "not audio",
            Outcome::Timeout { .. } => "timeout",
            Outcome::Protocol => "protocol error",
            Outcome::Stopped => "stopped",
        }
    }
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
    /// Why the connection ended, for the departure event.
    reason: &'static str,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.stream.remove_source(self.id, self.reason);
    }
}

/// Turns a source's body bytes into frames for the stream.
struct Receiver<'a> {
    stream: &'a Stream,
    parser: Parser,
    decoder: Option<ChunkedDecoder>,
    decoded: Vec<u8>,
    frames: Vec<crate::core::codec::Frame>,
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
                reason: "closed",
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
    let outcome = read_body(app, stream, sock, initial, &mut rx, started).await;
    if let Some(r) = rx.registered.as_mut() {
        r.reason = outcome.reason();
    }
    outcome
}

async fn read_body(
    app: &App,
    stream: &Stream,
    sock: &mut TcpStream,
    initial: BytesMut,
    rx: &mut Receiver<'_>,
    started: Instant,
) -> Outcome {
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
            Ok(Err(_)) | Ok(Ok(0)) => return ended(rx, false),
            Ok(Ok(n)) => n,
        };
        if let Some(outcome) = rx.feed(&buf[..n]) {
            return outcome;
        }
    }
    ended(rx, true)
}
