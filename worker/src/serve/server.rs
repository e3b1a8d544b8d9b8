//! The listener port: one accept loop for Icecast sources and listeners. Each connection's head
//! is read here; sources go to [`crate::source::ingest`], first-request audio listeners are served straight
//! from the socket (no per-connection HTTP machinery for the long-lived, common case), everything
//! else is handed to hyper and the axum router with the bytes already read put back in front.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use bytes::{Buf, Bytes, BytesMut};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_io_timeout::TimeoutStream;
use tower::Service;
use tracing::{debug, info, warn};

use crate::app::App;
use crate::core::http_head::{self, HeadError};
use crate::core::http_reply::Reply;
use crate::retry::Backoff;
use crate::serve::connection::{ConnectionGuard, send};
use crate::serve::direct;
use crate::serve::hls;
use crate::serve::hls::direct::After;
use crate::serve::listen::LISTENER_SEND_BUFFER;
use crate::source::ingest;

/// How long a keep-alive connection on the direct HLS path may wait for its next request: longer
/// than a player waits between reloads (a target duration), as nginx's default 75 s is.
const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(75);

/// Accept connections until shutdown. Each connection holds a semaphore permit, so at most
/// `max_connections` are open; beyond that new connections wait in the kernel's backlog.
pub async fn serve(app: Arc<App>, listener: TcpListener, router: Router) {
    let limit = Arc::new(Semaphore::new(app.settings.max_connections as usize));
    let mut backoff = Backoff::new(Duration::from_millis(5), Duration::from_secs(1));
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = app.shutdown.cancelled() => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = app.shutdown.cancelled() => return,
        };
        let (sock, peer) = match accepted {
            Ok(a) => {
                backoff.reset();
                a
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!(error = %e, "Accept failed.");
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        let guard = ConnectionGuard::new(app.clone(), permit);
        tokio::spawn(connection(guard, sock, peer, router.clone()));
    }
}

async fn connection(guard: ConnectionGuard, mut sock: TcpStream, peer: SocketAddr, router: Router) {
    let app = &guard.app().clone();
    let _ = sock.set_nodelay(true);
    let mut buf = BytesMut::new();
    // The first request must come within the header timeout; a keep-alive connection on the
    // direct HLS path may then idle between a player's requests.
    let mut idle = None;
    loop {
        let head_len = match read_head(app, &mut sock, &mut buf, idle).await {
            Ok(n) => n,
            Err(HeadRead::Closed) => return,
            Err(HeadRead::Timeout) => {
                debug!(%peer, "Connection sent no complete request in time; closing.");
                if !buf.is_empty() {
                    respond(&mut sock, StatusCode::REQUEST_TIMEOUT, "Request timeout\n").await;
                }
                return;
            }
            Err(HeadRead::TooLarge) => {
                info!(%peer, "Request head too large; refused.");
                respond(
                    &mut sock,
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "Request head too large\n",
                )
                .await;
                return;
            }
        };
        let head = match http_head::parse_head(&buf[..head_len]) {
            Ok(h) => h,
            Err(e) => {
                info!(%peer, error = %e, "Malformed request; refused.");
                let status = if e == HeadError::TooLarge {
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
                } else {
                    StatusCode::BAD_REQUEST
                };
                respond(&mut sock, status, "Bad request\n").await;
                return;
            }
        };
        if let Some(request) = hls::direct::hls_request(&head) {
            match hls::direct::serve(app, &mut sock, &head, request, peer).await {
                After::KeepAlive => {
                    buf.advance(head_len);
                    idle = Some(KEEP_ALIVE_IDLE);
                    continue;
                }
                After::Close => return,
                After::NotServed => {}
            }
        }
        match head.method.as_str() {
            "SOURCE" | "PUT" => {
                buf.advance(head_len);
                // Boxed, like the HTTP path: the task of every connection is sized for its largest
                // branch, and most connections are long-lived listeners.
                Box::pin(ingest::handle_source(app.clone(), sock, head, buf, peer)).await;
            }
            "GET" if direct::is_live_listen(app, &head) => {
                // Free the read buffer: this connection may live for hours.
                drop(buf);
                direct::listen_direct(guard, sock, head, peer).await;
            }
            _ if head.version == "ICE/1.0" => {
                respond(
                    &mut sock,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "Only SOURCE uses ICE/1.0\n",
                )
                .await;
            }
            _ => Box::pin(serve_http(app, sock, buf.freeze(), peer, router)).await,
        }
        return;
    }
}

enum HeadRead {
    Closed,
    Timeout,
    TooLarge,
}

/// Read a request head into `buf`; with `idle`, first wait that long for the request to begin.
async fn read_head(
    app: &App,
    sock: &mut TcpStream,
    buf: &mut BytesMut,
    idle: Option<Duration>,
) -> Result<usize, HeadRead> {
    if let Some(n) = http_head::head_len(buf) {
        // Pipelined behind the previous request.
        return if n > http_head::MAX_HEAD {
            Err(HeadRead::TooLarge)
        } else {
            Ok(n)
        };
    }
    if let Some(idle) = idle.filter(|_| buf.is_empty()) {
        tokio::select! {
            r = tokio::time::timeout(idle, sock.readable()) => {
                if !matches!(r, Ok(Ok(()))) {
                    return Err(HeadRead::Closed);
                }
            }
            _ = app.shutdown.cancelled() => return Err(HeadRead::Closed),
        }
    }
    let read = async {
        loop {
            if buf.capacity() - buf.len() < 512 {
                buf.reserve(1024);
            }
            match sock.read_buf(buf).await {
                Ok(0) | Err(_) => return Err(HeadRead::Closed),
                Ok(_) => {}
            }
            if let Some(n) = http_head::head_len(buf) {
                return if n > http_head::MAX_HEAD {
                    Err(HeadRead::TooLarge)
                } else {
                    Ok(n)
                };
            }
            if buf.len() > http_head::MAX_HEAD {
                return Err(HeadRead::TooLarge);
            }
        }
    };
    tokio::select! {
        r = tokio::time::timeout(app.settings.header_timeout, read) => r.unwrap_or(Err(HeadRead::Timeout)),
        _ = app.shutdown.cancelled() => Err(HeadRead::Closed),
    }
}

async fn respond(sock: &mut TcpStream, status: StatusCode, body: &str) {
    let _ = send(sock, &Reply::text(status, body)).await;
}

/// Hand the connection to hyper, replaying the head we already read.
async fn serve_http(
    app: &Arc<App>,
    sock: TcpStream,
    read: Bytes,
    peer: SocketAddr,
    router: Router,
) {
    let _ = socket2::SockRef::from(&sock).set_send_buffer_size(2 * LISTENER_SEND_BUFFER);
    let mut timed = TimeoutStream::new(sock);
    // A client that stops reading a long response is cut after this long.
    timed.set_write_timeout(Some(
        app.settings.listener_max_lag.max(Duration::from_secs(10)),
    ));
    let io = TokioIo::new(Prefixed {
        prefix: read,
        inner: Box::pin(timed),
    });
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            router.clone().call(req)
        });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(app.settings.header_timeout)
        .max_buf_size(64 * 1024)
        .serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                debug!(%peer, error = %e, "HTTP connection ended with an error.");
            }
        }
        _ = app.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}

/// A stream with bytes already read put back in front.
struct Prefixed<T> {
    prefix: Bytes,
    inner: Pin<Box<T>>,
}

impl<T: AsyncRead + AsyncWrite> AsyncRead for Prefixed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        self.inner.as_mut().poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite> AsyncWrite for Prefixed<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.inner.as_mut().poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.as_mut().poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.as_mut().poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.inner.as_mut().poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every listener's task is one of these futures for hours: keep an eye on their size
    /// (printed with `--nocapture`), it is most of the memory a listener costs.
    #[tokio::test]
    async fn listener_task_stays_small() {
        let app = crate::app::App::new(
            crate::config::Settings::defaults("pw".into()),
            crate::app::Role::Standalone,
            None,
            None,
        );
        let stream = Arc::new(crate::stream::Stream::new(
            app.settings.stream("x", &Default::default()),
            false,
            &app.metrics,
            None,
            None,
            Duration::from_millis(500),
        ));
        let landing = crate::core::rewind::Landing {
            start_seq: 0,
            start_ts: 0,
            behind: Duration::ZERO,
            delay: 0,
            clamped: false,
        };
        let mut cursor =
            crate::serve::listener::Cursor::new(stream, landing, None, app.shutdown.clone());
        let mut sink = tokio::io::sink();
        let f = crate::serve::listener::pump_to(&mut cursor, &mut sink);
        let size = std::mem::size_of_val(&f);
        eprintln!("pump_to future: {size} bytes");
        assert!(size < 1024, "a listener's write loop grew to {size} bytes");
    }
}
