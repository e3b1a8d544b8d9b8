//! The direct listener path: a first-request `GET /<stream>` is served straight from its socket,
//! without hyper, because it is the common case and lives for hours (see
//! `server::tests::listener_task_stays_small` for what that saves).

use std::net::SocketAddr;

use axum::http::StatusCode;
use tokio::net::TcpStream;
use tracing::info;

use crate::app::App;
use crate::core::http_head::RequestHead;
use crate::core::http_reply::Reply;
use crate::serve::connection::ConnectionGuard;
use crate::serve::connection::send;
use crate::serve::listen::{
    EXPOSED_HEADERS, LISTENER_SEND_BUFFER, Opened, log_end, open_listener, wants_icy,
};
use crate::serve::listener::pump_to;

/// Whether the direct (hyper-less) path serves this request: GET of an existing stream, not a pump.
pub fn is_live_listen(app: &App, head: &RequestHead) -> bool {
    let key = head.path().trim_start_matches('/');
    !key.contains(['/', '.'])
        && app.stream(key).is_some()
        && !form_urlencoded::parse(head.query().as_bytes()).any(|(k, _)| k == "pump")
}

/// Serve a first-request listener straight from its socket.
pub async fn listen_direct(
    guard: ConnectionGuard,
    mut sock: TcpStream,
    head: RequestHead,
    peer: SocketAddr,
) {
    let app = guard.app();
    let key = head.path().trim_start_matches('/');
    let icy = wants_icy(&head);
    // Boxed: its state is needed only while the listener is set up, not for hours after.
    let opened = match Box::pin(open_listener(app, key, head.query(), icy)).await {
        Ok(o) => o,
        Err(e) => {
            let (status, body) = e.status();
            if status == StatusCode::SERVICE_UNAVAILABLE {
                info!(stream = %key, %peer, reason = %body.trim(), "Listener refused.");
            }
            let mut reply = Reply::text(status, body).header("access-control-allow-origin", "*");
            if status == StatusCode::SERVICE_UNAVAILABLE {
                reply = reply.header("retry-after", "5");
            }
            let _ = send(&mut sock, &reply).await;
            return;
        }
    };
    let Opened {
        slot,
        mut cursor,
        headers,
    } = opened;
    // Kernel autotuning would let megabytes queue up for a listener that stopped reading; a
    // small send buffer makes a stalled listener block our writes within seconds.
    let _ = socket2::SockRef::from(&sock).set_send_buffer_size(LISTENER_SEND_BUFFER);
    let reply = Reply::streaming(StatusCode::OK)
        .for_version(&head.version)
        .headers(headers)
        .header("access-control-allow-origin", "*")
        .header("access-control-expose-headers", EXPOSED_HEADERS.join(", "));
    if send(&mut sock, &reply).await.is_err() {
        return;
    }
    drop((reply, head));
    // The hours-long part runs in a task of its own holding only what it needs, so the memory
    // a listener costs is that small future, not this set-up code's (see server.rs tests).
    tokio::spawn(async move {
        let (end, sent) = pump_to(&mut cursor, &mut sock).await;
        log_end(cursor.stream(), peer, end, sent);
        drop((slot, guard));
    });
}
