//! One listener's way through the rewind buffer: a `seq` cursor, burst then real-time pacing,
//! ICY interleaving, slow-listener detection. The IO adapters (a raw socket for the common case,
//! a hyper body for keep-alive connections) only write what [`Cursor::next`] hands them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::core::icy::IcyWriter;
use crate::core::rewind::Landing;
use crate::stream::{Stream, Tip};
use crate::time::rfc3339;

/// Why a listener's stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The listener disconnected.
    Gone,
    Shutdown,
    StreamRemoved,
    /// Lagged past the bound or fell out of the buffer: disconnected and counted.
    Slow(&'static str),
}

pub struct Cursor {
    stream: Arc<Stream>,
    seq: u64,
    delay: i64,
    landing_end: i64,
    connected: Instant,
    /// Audio sent at once on connect (beyond the pacing), µs.
    burst_span: i64,
    max_lag: i64,
    rx: watch::Receiver<Tip>,
    icy: Option<IcyWriter>,
    started: bool,
    shutdown: CancellationToken,
}

impl Cursor {
    pub fn new(
        stream: Arc<Stream>,
        landing: Landing,
        icy_metaint: Option<usize>,
        shutdown: CancellationToken,
    ) -> Cursor {
        let settings = stream.settings();
        let rx = stream.buffer.subscribe();
        let landing_end = landing.start_ts + landing.behind.as_micros() as i64;
        Cursor {
            seq: landing.start_seq,
            delay: landing.delay,
            landing_end,
            connected: Instant::now(),
            burst_span: landing.behind.as_micros() as i64 - landing.delay,
            max_lag: settings.listener_max_lag.as_micros() as i64,
            rx,
            icy: icy_metaint.map(IcyWriter::new),
            started: false,
            shutdown,
            stream,
        }
    }

    /// Wait until the next chunk may be sent and append its wire pieces to `out`; returns the
    /// audio bytes it carries.
    pub async fn next(&mut self, out: &mut Vec<Bytes>) -> Result<usize, End> {
        loop {
            if self.shutdown.is_cancelled() {
                return Err(End::Shutdown);
            }
            if self.stream.removed.is_cancelled() {
                return Err(End::StreamRemoved);
            }
            let tip = *self.rx.borrow_and_update();
            let (chunk, first) = self.stream.buffer.next_chunk(self.seq);
            if self.started && first.is_some_and(|f| self.seq < f) {
                return Err(End::Slow("fell out of the rewind buffer"));
            }
            let mut deadline = None;
            if let Some(c) = chunk {
                // The live edge, or where it would be by wall clock if the source stalls: a
                // rewound listener keeps playing through a source outage.
                let elapsed = self.connected.elapsed().as_micros() as i64;
                let edge = tip.end.max(self.landing_end + elapsed);
                if c.ts + self.delay <= edge {
                    let lag = edge - self.delay - c.ts - self.burst_span;
                    if self.started && lag > self.max_lag {
                        return Err(End::Slow("lagging behind"));
                    }
                    self.seq = c.seq + 1;
                    self.started = true;
                    match &mut self.icy {
                        Some(icy) => icy.write(&c.data, &c.meta, out),
                        None => out.push(c.data.clone()),
                    }
                    return Ok(c.data.len());
                }
                let wait = (c.ts + self.delay - self.landing_end).max(0) as u64;
                deadline = Some(self.connected + Duration::from_micros(wait));
            }
            // Only the tip is awaited: removing the stream or shutting down also wakes it (see
            // `SharedBuffer::wake`). The timer, needed by rewound listeners alone, is boxed so
            // the live listeners' tasks (most of them) stay small.
            match deadline {
                None => {
                    if self.rx.changed().await.is_err() {
                        return Err(End::StreamRemoved);
                    }
                }
                Some(d) => {
                    let sleep = Box::pin(tokio::time::sleep_until(d));
                    tokio::select! {
                        changed = self.rx.changed() => {
                            if changed.is_err() {
                                return Err(End::StreamRemoved);
                            }
                        }
                        _ = sleep => {}
                    }
                }
            }
        }
    }

    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }
}

/// Write the stream to a socket we own until it ends; returns why it ended and the audio bytes
/// sent. A write that cannot complete within the listener's lag bound means it stopped reading
/// (the caller keeps the socket's send buffer small, so that happens soon).
pub async fn pump_to<W: AsyncWrite + Unpin>(cursor: &mut Cursor, w: &mut W) -> (End, u64) {
    let timeout = Duration::from_micros(cursor.max_lag.max(1_000_000) as u64);
    let mut pieces = Vec::with_capacity(4);
    let mut sent = 0u64;
    loop {
        pieces.clear();
        let audio = match cursor.next(&mut pieces).await {
            Ok(n) => n,
            Err(end) => return (end, sent),
        };
        for p in &pieces {
            match tokio::time::timeout(timeout, w.write_all(p)).await {
                Ok(Ok(())) => {}
                // The listener went away: an ordinary end, not a slow one.
                Ok(Err(_)) => return (End::Gone, sent),
                Err(_) => return (End::Slow("stopped reading"), sent),
            }
        }
        sent += audio as u64;
        cursor.stream.metrics.sent_bytes.inc_by(audio as u64);
    }
}

/// Headers telling a rewound listener where it landed.
pub fn landing_headers(landing: &Landing) -> Vec<(&'static str, String)> {
    let mut h = vec![
        ("x-rewind-start", rfc3339(landing.start_ts)),
        (
            "x-rewind-offset",
            format!("{:.3}", landing.behind.as_secs_f64()),
        ),
    ];
    if landing.clamped {
        h.push(("x-rewind-clamped", "1".into()));
    }
    h
}

#[cfg(test)]
mod tests;
