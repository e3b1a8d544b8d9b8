//! A connection on the listener port before (or instead of) hyper: what it counts against, and
//! how raw replies are written to it.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::OwnedSemaphorePermit;

use crate::app::App;
use crate::core::http_reply::Reply;

/// How long writing a reply may take before the peer is given up on.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Counts an open connection against `max_connections` and in the metrics until dropped; it
/// moves with the connection into whichever task ends up serving it.
pub struct ConnectionGuard {
    app: Arc<App>,
    _permit: OwnedSemaphorePermit,
}

impl ConnectionGuard {
    pub(crate) fn new(app: Arc<App>, permit: OwnedSemaphorePermit) -> ConnectionGuard {
        app.metrics.open_connections.inc();
        ConnectionGuard {
            app,
            _permit: permit,
        }
    }

    pub fn app(&self) -> &Arc<App> {
        &self.app
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.app.metrics.open_connections.dec();
    }
}

/// Write `reply`; a peer that does not take it within a few seconds is given up on.
pub async fn send<W: AsyncWrite + Unpin>(w: &mut W, reply: &Reply) -> std::io::Result<()> {
    match tokio::time::timeout(WRITE_TIMEOUT, w.write_all(&reply.encode())).await {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}
