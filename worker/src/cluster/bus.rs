//! The chunk bus between master and slaves: NATS core pub/sub (no JetStream: the HTTP transport
//! repairs anything NATS loses).
//!
//! Subjects, under a configurable prefix (default `streammachine`) so installations can share
//! a NATS cluster (see `docs/cluster.md`):
//! - `{prefix}.chunks.{key}`: every chunk of stream `key`, in the one chunk encoding;
//! - `{prefix}.stats`: each slave's listener counts and buffer ranges (JSON, every 2 s);
//! - `{prefix}.holdings`: a restarted master asks which slaves hold chunks newer than its own
//!   (JSON request; slaves that do answer on the reply subject);
//! - `{prefix}.events`: every event a slave raises, for the master to deliver (JSON, the
//!   `/api/events` form; see [`crate::cluster::forward`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::core::chunk::Chunk;
use crate::metrics::Metrics;
use crate::retry::Backoff;
use crate::stream::ChunkSink;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error(
        "invalid NATS subject prefix `{0}`: use letters, digits, `-`, `_` and `.` between non-empty tokens"
    )]
    Prefix(String),
    #[error("invalid NATS URL `{url}`: {message}")]
    Url { url: String, message: String },
}

/// Subject names under one prefix.
#[derive(Debug, Clone)]
pub struct Subjects {
    prefix: String,
}

impl Subjects {
    pub fn new(prefix: &str) -> Result<Subjects, BusError> {
        let ok = !prefix.is_empty()
            && prefix.split('.').all(|t| {
                !t.is_empty()
                    && t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if !ok {
            return Err(BusError::Prefix(prefix.to_string()));
        }
        Ok(Subjects {
            prefix: prefix.to_string(),
        })
    }

    /// Every chunk of one stream. Stream keys are `[A-Za-z0-9_-]`, safe as a subject token.
    pub fn chunks(&self, key: &str) -> String {
        format!("{}.chunks.{key}", self.prefix)
    }

    pub fn stats(&self) -> String {
        format!("{}.stats", self.prefix)
    }

    pub fn holdings(&self) -> String {
        format!("{}.holdings", self.prefix)
    }

    pub fn events(&self) -> String {
        format!("{}.events", self.prefix)
    }
}

/// A NATS connection that reconnects forever, and whether it is up right now.
#[derive(Clone)]
pub struct Bus {
    pub client: async_nats::Client,
    pub subjects: Subjects,
    connected: watch::Receiver<bool>,
}

/// Reconnect delay: the first attempt at once, then doubling from 125 ms to 2 s, with jitter (a
/// NATS pod restart takes seconds; a slave that reconnects late has a longer gap to repair).
fn reconnect_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    Backoff::nth_delay(
        Duration::from_millis(125),
        Duration::from_secs(2),
        attempts - 1,
    )
}

impl Bus {
    /// Start connecting to `url`; returns at once. The connection is retried in the background
    /// (also when the first attempt fails), and every state change is logged.
    pub async fn connect(url: &str, name: &str, subjects: Subjects) -> Result<Bus, BusError> {
        let (tx, connected) = watch::channel(false);
        let tx = Arc::new(tx);
        let options = async_nats::ConnectOptions::new()
            .name(name)
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(5))
            .reconnect_delay_callback(reconnect_delay)
            .event_callback(move |event| {
                let tx = tx.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tx.send_replace(true);
                            info!("Connected to NATS.");
                        }
                        async_nats::Event::Disconnected => {
                            tx.send_replace(false);
                            warn!("Lost the NATS connection; reconnecting. Slaves keep serving and fetch missed chunks from the master over HTTP.");
                        }
                        async_nats::Event::SlowConsumer(sid) => {
                            warn!(subscription = sid, "NATS dropped messages for a slow subscription; the gap will be repaired over HTTP.");
                        }
                        // async-nats logs these itself; every failed reconnect is one of them.
                        other => debug!(event = %other, "NATS event."),
                    }
                }
            });
        let client = options.connect(url).await.map_err(|e| BusError::Url {
            url: url.to_string(),
            message: e.to_string(),
        })?;
        Ok(Bus {
            client,
            subjects,
            connected,
        })
    }

    /// Wait (bounded) until connected; false on timeout.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut rx = self.connected.clone();
        tokio::time::timeout(timeout, rx.wait_for(|c| *c))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Resolves once the server has processed everything this client sent before: a message to
    /// our own inbox comes back only after earlier SUBs took effect. False on timeout.
    pub async fn barrier(&self, timeout: Duration) -> bool {
        use futures_util::StreamExt;
        let inbox = self.client.new_inbox();
        let work = async {
            let mut sub = self.client.subscribe(inbox.clone()).await.ok()?;
            self.client.publish(inbox, Bytes::new()).await.ok()?;
            sub.next().await
        };
        tokio::time::timeout(timeout, work)
            .await
            .ok()
            .flatten()
            .is_some()
    }
}

// === Messages ===

/// A slave's periodic report on `{prefix}.stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsReport {
    pub slave: String,
    /// Base URL of the slave's transport (for a restarted master).
    pub url: String,
    pub streams: BTreeMap<String, StreamStats>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamStats {
    /// Connected listeners, one per listener whatever the protocol.
    pub listeners: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
}

/// A restarted master asking who holds chunks of `stream` newer than `after`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldingsRequest {
    pub stream: String,
    pub after: Option<u64>,
}

/// A slave's answer: its transport and what it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldingsReply {
    pub slave: String,
    pub url: String,
    pub first_seq: u64,
    pub last_seq: u64,
}

// === Publishing chunks (master) ===

/// Chunks waiting for the NATS connection; beyond this they are dropped and counted (slaves
/// repair the gap over HTTP). About a minute of audio for a handful of streams.
const PUBLISH_QUEUE: usize = 1024;

/// The master's [`ChunkSink`]: never blocks ingest. Chunks go into a bounded queue drained by
/// one task; when NATS is slow or away the queue fills and further chunks are dropped.
pub struct NatsSink {
    subjects: Subjects,
    tx: mpsc::Sender<(String, Bytes)>,
    published: Counter,
    dropped: Counter,
    last_warning: Mutex<Option<Instant>>,
}

impl NatsSink {
    /// The sink and the queue's receiving end, for [`NatsSink::run`].
    pub fn new(subjects: Subjects) -> (Arc<NatsSink>, mpsc::Receiver<(String, Bytes)>) {
        let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
        let sink = Arc::new(NatsSink {
            subjects,
            tx,
            published: Counter::default(),
            dropped: Counter::default(),
            last_warning: Mutex::new(None),
        });
        (sink, rx)
    }

    pub fn register(&self, metrics: &Metrics) {
        metrics.with_registry(|r| {
            r.register(
                "bus_published_chunks",
                "Chunks published to NATS",
                self.published.clone(),
            );
            r.register(
                "bus_dropped_chunks",
                "Chunks not published because the NATS queue was full",
                self.dropped.clone(),
            );
        });
    }

    /// Publish queued chunks until shutdown.
    pub async fn run(
        self: Arc<Self>,
        bus: Bus,
        mut rx: mpsc::Receiver<(String, Bytes)>,
        shutdown: CancellationToken,
    ) {
        loop {
            let next = tokio::select! {
                n = rx.recv() => n,
                _ = shutdown.cancelled() => None,
            };
            let Some((subject, payload)) = next else {
                return;
            };
            match bus.client.publish(subject, payload).await {
                Ok(()) => {
                    self.published.inc();
                }
                Err(e) => {
                    self.dropped.inc();
                    if self.warning_due() {
                        warn!(error = %e, dropped_total = self.dropped.get(), "Publishing a chunk to NATS failed.");
                    }
                }
            }
        }
    }
}

impl NatsSink {
    /// One warning per 10 s at most: a NATS outage would otherwise log twice a second per
    /// stream.
    fn warning_due(&self) -> bool {
        let mut last = self
            .last_warning
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
            *last = Some(Instant::now());
            return true;
        }
        false
    }
}

impl ChunkSink for NatsSink {
    fn publish(&self, stream: &str, chunk: &Chunk) {
        let item = (self.subjects.chunks(stream), chunk.to_bytes());
        if self.tx.try_send(item).is_err() {
            self.dropped.inc();
            if self.warning_due() {
                warn!(
                    stream = %stream,
                    seq = chunk.seq,
                    dropped_total = self.dropped.get(),
                    "NATS publish queue full; dropping chunks (slaves fetch them from the master over HTTP)."
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::chunk::test_chunk;

    #[test]
    fn subjects_and_prefixes() {
        let s = Subjects::new("radio.prod").unwrap();
        assert_eq!(s.chunks("live"), "radio.prod.chunks.live");
        assert_eq!(s.stats(), "radio.prod.stats");
        assert_eq!(s.holdings(), "radio.prod.holdings");
        assert_eq!(s.events(), "radio.prod.events");
        for bad in ["", "a..b", "a.*", "a b", "a.>", ".a"] {
            assert!(Subjects::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reconnect_backoff_is_capped() {
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        let second = reconnect_delay(2);
        assert!((Duration::from_millis(125)..=Duration::from_millis(250)).contains(&second));
        let late = reconnect_delay(100);
        assert!((Duration::from_secs(2)..=Duration::from_secs(4)).contains(&late));
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        let (sink, mut rx) = NatsSink::new(Subjects::new("sm").unwrap());
        for i in 0..(PUBLISH_QUEUE as u64 + 10) {
            sink.publish("live", &test_chunk(i, 0, "t"));
        }
        assert_eq!(sink.dropped.get(), 10);
        let (subject, payload) = rx.try_recv().unwrap();
        assert_eq!(subject, "sm.chunks.live");
        assert_eq!(Chunk::decode(payload).unwrap().seq, 0);
    }

    #[test]
    fn messages_are_plain_json() {
        let r = HoldingsReply {
            slave: "s1".into(),
            url: "http://10.0.0.5:8000".into(),
            first_seq: 5,
            last_seq: 9,
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(
            json,
            r#"{"slave":"s1","url":"http://10.0.0.5:8000","first_seq":5,"last_seq":9}"#
        );
        assert_eq!(serde_json::from_str::<HoldingsReply>(&json).unwrap(), r);
    }
}
