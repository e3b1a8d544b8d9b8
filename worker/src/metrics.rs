//! Prometheus metrics. Each stream holds clones of its own series (they are atomics), so hot paths
//! never look anything up.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabel {
    pub stream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabel {
    pub stream: String,
    pub protocol: String,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    listeners: Family<ProtocolLabel, Gauge>,
    connections: Family<ProtocolLabel, Counter>,
    sent_bytes: Family<StreamLabel, Counter>,
    slow_disconnects: Family<StreamLabel, Counter>,
    rejected: Family<StreamLabel, Counter>,
    source_connected: Family<StreamLabel, Gauge>,
    sources: Family<StreamLabel, Gauge>,
    received_bytes: Family<StreamLabel, Counter>,
    buffer_seconds: Family<StreamLabel, Gauge<f64, AtomicU64>>,
    chunks: Family<StreamLabel, Counter>,
    pub open_connections: Gauge,
}

/// One stream's series.
#[derive(Clone, Debug, Default)]
pub struct StreamMetrics {
    pub sent_bytes: Counter,
    pub slow_disconnects: Counter,
    pub rejected: Counter,
    pub source_connected: Gauge,
    pub sources: Gauge,
    pub received_bytes: Counter,
    pub buffer_seconds: Gauge<f64, AtomicU64>,
    pub chunks: Counter,
}

/// Listener protocols counted separately (their sum is the stream's listener count).
pub const PROTOCOLS: [&str; 3] = ["icy", "raw", "hls"];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("streammachine");
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            listeners: Family::default(),
            connections: Family::default(),
            sent_bytes: Family::default(),
            slow_disconnects: Family::default(),
            rejected: Family::default(),
            source_connected: Family::default(),
            sources: Family::default(),
            received_bytes: Family::default(),
            buffer_seconds: Family::default(),
            chunks: Family::default(),
            open_connections: Gauge::default(),
        };
        registry.register("listeners", "Connected listeners", m.listeners.clone());
        registry.register(
            "listener_connections",
            "Listener connections accepted",
            m.connections.clone(),
        );
        registry.register(
            "sent_bytes",
            "Audio bytes sent to listeners",
            m.sent_bytes.clone(),
        );
        registry.register(
            "slow_listener_disconnects",
            "Listeners disconnected for lagging too far behind",
            m.slow_disconnects.clone(),
        );
        registry.register(
            "rejected_listeners",
            "Listeners refused because a limit was reached",
            m.rejected.clone(),
        );
        registry.register(
            "source_connected",
            "Whether a source feeds the stream (1) or not (0)",
            m.source_connected.clone(),
        );
        registry.register(
            "sources",
            "Connected sources, live and standby",
            m.sources.clone(),
        );
        registry.register(
            "source_received_bytes",
            "Bytes received from sources",
            m.received_bytes.clone(),
        );
        registry.register(
            "buffer_seconds",
            "Seconds of audio in the rewind buffer",
            m.buffer_seconds.clone(),
        );
        registry.register(
            "chunks",
            "Chunks added to the rewind buffer",
            m.chunks.clone(),
        );
        registry.register(
            "open_connections",
            "Open TCP connections on the listener port",
            m.open_connections.clone(),
        );
        *m.registry.lock().expect("metrics registry lock") = registry;
        m
    }

    pub fn stream(&self, key: &str) -> StreamMetrics {
        let l = StreamLabel { stream: key.into() };
        StreamMetrics {
            sent_bytes: self.sent_bytes.get_or_create(&l).clone(),
            slow_disconnects: self.slow_disconnects.get_or_create(&l).clone(),
            rejected: self.rejected.get_or_create(&l).clone(),
            source_connected: self.source_connected.get_or_create(&l).clone(),
            sources: self.sources.get_or_create(&l).clone(),
            received_bytes: self.received_bytes.get_or_create(&l).clone(),
            buffer_seconds: self.buffer_seconds.get_or_create(&l).clone(),
            chunks: self.chunks.get_or_create(&l).clone(),
        }
    }

    pub fn listeners(&self, key: &str, protocol: &str) -> (Gauge, Counter) {
        let l = ProtocolLabel {
            stream: key.into(),
            protocol: protocol.into(),
        };
        (
            self.listeners.get_or_create(&l).clone(),
            self.connections.get_or_create(&l).clone(),
        )
    }

    /// Forget a removed stream's series.
    pub fn remove_stream(&self, key: &str) {
        let l = StreamLabel { stream: key.into() };
        self.sent_bytes.remove(&l);
        self.slow_disconnects.remove(&l);
        self.rejected.remove(&l);
        self.source_connected.remove(&l);
        self.sources.remove(&l);
        self.received_bytes.remove(&l);
        self.buffer_seconds.remove(&l);
        self.chunks.remove(&l);
        for protocol in PROTOCOLS {
            let l = ProtocolLabel {
                stream: key.into(),
                protocol: protocol.into(),
            };
            self.listeners.remove(&l);
            self.connections.remove(&l);
        }
    }

    /// Register extra series (role-specific ones).
    pub fn with_registry<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        f(&mut self.registry.lock().expect("metrics registry lock"))
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().expect("metrics registry lock");
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}
