//! Prometheus metrics. Each stream holds clones of its own series (they are atomics), so hot paths
//! never look anything up.

use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;

use crate::events::EventMetrics;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabel {
    pub stream: String,
}

/// One source of a stream, by the id it got when it connected.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub stream: String,
    pub source: String,
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
    buffer_target: Family<StreamLabel, Gauge<f64, AtomicU64>>,
    chunks: Family<StreamLabel, Counter>,
    source_silent: Family<SourceLabel, Gauge>,
    stream_silent: Family<StreamLabel, Gauge>,
    source_level: Family<StreamLabel, Gauge<f64, AtomicU64>>,
    pub open_connections: Gauge,
    pub events: EventMetrics,
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
    /// The configured rewind length: what `buffer_seconds` fills up to.
    pub buffer_target_seconds: Gauge<f64, AtomicU64>,
    pub chunks: Counter,
    /// Per source: whether it is in dead air (series added and removed with the source).
    pub source_silent: Family<SourceLabel, Gauge>,
    /// Whether the live source (the audio on air) is in dead air.
    pub stream_silent: Gauge,
    /// The live source's loudest channel, RMS over the latest 100 ms.
    pub source_level_dbfs: Gauge<f64, AtomicU64>,
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
            buffer_target: Family::default(),
            chunks: Family::default(),
            source_silent: Family::default(),
            stream_silent: Family::default(),
            source_level: Family::default(),
            open_connections: Gauge::default(),
            events: EventMetrics::default(),
        };
        m.events.register(&mut registry);
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
            "buffer_target_seconds",
            "Seconds of audio the rewind buffer is configured to hold",
            m.buffer_target.clone(),
        );
        registry.register(
            "chunks",
            "Chunks added to the rewind buffer",
            m.chunks.clone(),
        );
        registry.register(
            "source_silent",
            "Whether the source is in dead air (1) or not (0)",
            m.source_silent.clone(),
        );
        registry.register(
            "stream_silent",
            "Whether the audio on air (the live source) is in dead air (1) or not (0)",
            m.stream_silent.clone(),
        );
        registry.register(
            "source_level_dbfs",
            "Level of the live source: loudest channel, RMS over 100 ms",
            m.source_level.clone(),
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
            buffer_target_seconds: self.buffer_target.get_or_create(&l).clone(),
            chunks: self.chunks.get_or_create(&l).clone(),
            source_silent: self.source_silent.clone(),
            stream_silent: self.stream_silent.get_or_create(&l).clone(),
            source_level_dbfs: self.source_level.get_or_create(&l).clone(),
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
        self.buffer_target.remove(&l);
        self.chunks.remove(&l);
        self.source_level.remove(&l);
        self.stream_silent.remove(&l);
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

    /// The metrics in OpenMetrics text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }

    /// The metrics in the format a scraper asked for.
    pub fn render_as(&self, format: Exposition) -> String {
        match format {
            Exposition::OpenMetrics => self.render(),
            Exposition::Text => prometheus_text(&self.render()),
        }
    }
}

/// The two exposition formats scrapers ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposition {
    /// `application/openmetrics-text; version=1.0.0` (what Prometheus asks for first).
    OpenMetrics,
    /// The classic `text/plain; version=0.0.4` (promtool, older scrapers, curl).
    Text,
}

impl Exposition {
    /// The format an `Accept` header prefers: OpenMetrics only when asked for at least as
    /// strongly as plain text; no header or `*/*` gets plain text, like other Prometheus clients.
    pub fn negotiate(accept: Option<&str>) -> Exposition {
        let (mut om, mut text) = (-1.0f32, -1.0f32);
        for range in accept.unwrap_or("").split(',') {
            let mut parts = range.split(';').map(str::trim);
            let mime = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            match mime.as_str() {
                "application/openmetrics-text" => om = om.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if om > 0.0 && om >= text {
            Exposition::OpenMetrics
        } else {
            Exposition::Text
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Exposition::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Exposition::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// OpenMetrics text as the Prometheus 0.0.4 text format: counter families are named with their
/// `_total` suffix, `_created` samples, `# UNIT` lines and the `# EOF` trailer go, and the types
/// 0.0.4 lacks are mapped to the nearest it has.
fn prometheus_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
        {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            let kind = &line[..7];
            let name = if counters.contains(&name) {
                format!("{name}_total")
            } else {
                name.to_string()
            };
            let tail = match (kind, tail) {
                ("# TYPE ", "unknown") => "untyped",
                ("# TYPE ", "info" | "stateset") => "gauge",
                ("# TYPE ", "gaugehistogram") => "histogram",
                _ => tail,
            };
            out.push_str(&format!("{kind}{name} {tail}\n"));
            continue;
        }
        let sample = line.split(['{', ' ']).next().unwrap_or("");
        if sample
            .strip_suffix("_created")
            .is_some_and(|family| counters.contains(&family))
        {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod exposition_tests {
    use super::*;

    #[test]
    fn accept_headers() {
        use Exposition::*;
        // Prometheus 2.x and 3.x scrapes.
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                          version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Exposition::negotiate(Some(prometheus)), OpenMetrics);
        assert_eq!(
            Exposition::negotiate(Some("text/plain;version=0.0.4")),
            Text
        );
        assert_eq!(
            Exposition::negotiate(Some(
                "text/plain;version=0.0.4;q=0.9, application/openmetrics-text;q=0.5"
            )),
            Text
        );
        assert_eq!(Exposition::negotiate(None), Text);
        assert_eq!(Exposition::negotiate(Some("*/*")), Text);
        assert_eq!(
            Exposition::negotiate(Some("application/openmetrics-text")),
            OpenMetrics
        );
        assert_eq!(Exposition::negotiate(Some("garbage;;;q=x,")), Text);
    }

    #[test]
    fn text_format_names_counters_with_total() {
        let m = Metrics::new();
        let s = m.stream("live");
        s.sent_bytes.inc_by(5);
        let om = m.render_as(Exposition::OpenMetrics);
        assert!(
            om.contains("# TYPE streammachine_sent_bytes counter\n"),
            "{om}"
        );
        assert!(om.ends_with("# EOF\n"));
        let text = m.render_as(Exposition::Text);
        assert!(
            text.contains("# TYPE streammachine_sent_bytes_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# HELP streammachine_sent_bytes_total "),
            "{text}"
        );
        assert!(text.contains("streammachine_sent_bytes_total{stream=\"live\"} 5\n"));
        assert!(!text.contains("# EOF"));
        assert!(text.contains("# TYPE streammachine_open_connections gauge\n"));
        let converted = prometheus_text(
            "# HELP x_seconds X.\n# TYPE x_seconds counter\n# UNIT x_seconds seconds\n\
             x_seconds_total 1\nx_seconds_created 1.7e9\n# TYPE y unknown\ny 2\n# EOF\n",
        );
        assert_eq!(
            converted,
            "# HELP x_seconds_total X.\n# TYPE x_seconds_total counter\nx_seconds_total 1\n\
             # TYPE y untyped\ny 2\n"
        );
    }
}
