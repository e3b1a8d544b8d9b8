//! One event system every part of the server reports through: a typed [`Event`] for everything
//! a station's operator cares about, raised with [`Events::emit`], and three sinks fed from it:
//! a log line per event (here), Server-Sent Events on the admin port ([`sse`]) and signed
//! webhooks ([`webhook`]). Emitting never waits: the bus is a broadcast channel, and a consumer
//! that cannot keep up loses events (and says so), never the ingest path.
//!
//! In a cluster, events raised on slaves travel to the master over NATS and are delivered there,
//! so each is delivered once per cluster, not once per pod.

pub mod sse;
pub mod webhook;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// Events kept for `Last-Event-ID` resumption.
pub const HISTORY: usize = 1024;
/// Events buffered per live consumer before it counts as too slow.
const CHANNEL: usize = 1024;

/// Something that happened, with its details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique across restarts and pods: the emitting process's start, then a counter.
    pub id: String,
    /// When it happened (RFC 3339, wall clock).
    pub time: String,
    /// The stream it concerns (absent for server-wide events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// The pod or process that raised it.
    pub node: String,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// The event's type, e.g. `source.silence.started`.
    pub fn kind_name(&self) -> &'static str {
        self.kind.name()
    }
}

/// How a source came to be live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Promotion {
    /// Through the admin API.
    Admin,
    /// Dead-air failover.
    Failover,
    /// The live source left and this one was next.
    Takeover,
}

/// Every event type and its details. The wire form is `{"type": "...", "data": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum EventKind {
    #[serde(rename = "source.connected")]
    SourceConnected {
        source_id: u64,
        /// `encoder` or `fallback`.
        source_kind: String,
        remote: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_agent: Option<String>,
        codec: String,
        /// Live at once, or waiting as a standby.
        live: bool,
    },
    #[serde(rename = "source.disconnected")]
    SourceDisconnected {
        source_id: u64,
        reason: String,
        bytes: u64,
        seconds: u64,
    },
    #[serde(rename = "source.promoted")]
    SourcePromoted { source_id: u64, by: Promotion },
    #[serde(rename = "source.silence.started")]
    SourceSilenceStarted {
        source_id: u64,
        /// Content time the silence began (RFC 3339).
        since: String,
        level_dbfs: f32,
    },
    #[serde(rename = "source.silence.ended")]
    SourceSilenceEnded { source_id: u64, silent_seconds: f64 },
    #[serde(rename = "stream.sourceless.started")]
    StreamSourcelessStarted { since: String },
    #[serde(rename = "stream.sourceless.ended")]
    StreamSourcelessEnded { sourceless_seconds: f64 },
    #[serde(rename = "stream.metadata.changed")]
    StreamMetadataChanged {
        title: String,
        url: String,
        /// Who changed it: `source`, `admin`, `relay`, `config`.
        by: String,
    },
    /// Raised per node, debounced: on a slave its own listeners (the slave is the `node`), on
    /// the master and standalone the total across the cluster (the master's own plus every
    /// slave reporting).
    #[serde(rename = "stream.listeners.changed")]
    StreamListenersChanged { listeners: u64, previous: u64 },
    #[serde(rename = "replica.unsynced")]
    ReplicaUnsynced { replica: String, lag_seconds: f64 },
    #[serde(rename = "replica.synced")]
    ReplicaSynced { replica: String, lag_seconds: f64 },
    #[serde(rename = "buffer.restored")]
    BufferRestored {
        /// `dump`, `slaves` (a restarted master) or `master` (a slave's snapshot).
        from: String,
        chunks: u64,
        seconds: f64,
    },
    #[serde(rename = "config.changed")]
    ConfigChanged {
        /// `created`, `updated` or `removed`.
        change: String,
    },
    #[serde(rename = "admin.action")]
    AdminAction {
        /// Who: the token's or user's name.
        actor: String,
        /// What, e.g. `stream.put`, `source.promote`, `metadata.set`.
        action: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
    },
}

impl EventKind {
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::SourceConnected { .. } => "source.connected",
            EventKind::SourceDisconnected { .. } => "source.disconnected",
            EventKind::SourcePromoted { .. } => "source.promoted",
            EventKind::SourceSilenceStarted { .. } => "source.silence.started",
            EventKind::SourceSilenceEnded { .. } => "source.silence.ended",
            EventKind::StreamSourcelessStarted { .. } => "stream.sourceless.started",
            EventKind::StreamSourcelessEnded { .. } => "stream.sourceless.ended",
            EventKind::StreamMetadataChanged { .. } => "stream.metadata.changed",
            EventKind::StreamListenersChanged { .. } => "stream.listeners.changed",
            EventKind::ReplicaUnsynced { .. } => "replica.unsynced",
            EventKind::ReplicaSynced { .. } => "replica.synced",
            EventKind::BufferRestored { .. } => "buffer.restored",
            EventKind::ConfigChanged { .. } => "config.changed",
            EventKind::AdminAction { .. } => "admin.action",
        }
    }
}

/// Every type name, for validating filters in config and queries (the contract's list, which
/// the operator checks `Stream` webhooks against).
pub const TYPES: &[&str] = streammachine_contract::EVENT_TYPES;

/// Which events a consumer wants: types (exact, or a prefix ending in `.*`) and streams; empty
/// lists want everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<String>,
}

impl Filter {
    /// Check the type patterns; the error names the bad one.
    pub fn validate(&self) -> Result<(), String> {
        for t in &self.types {
            let known = match t.strip_suffix(".*") {
                Some(prefix) => TYPES.iter().any(|k| k.starts_with(&format!("{prefix}."))),
                None => TYPES.contains(&t.as_str()),
            };
            if !known && t != "*" {
                return Err(format!(
                    "unknown event type `{t}` (known: {}, or a prefix like `source.*`)",
                    TYPES.join(", ")
                ));
            }
        }
        Ok(())
    }

    pub fn matches(&self, event: &Event) -> bool {
        let name = event.kind_name();
        let type_ok = self.types.is_empty()
            || self.types.iter().any(|t| {
                t == "*"
                    || t == name
                    || t.strip_suffix(".*")
                        .is_some_and(|p| name.starts_with(p) && name[p.len()..].starts_with('.'))
            });
        let stream_ok = self.streams.is_empty()
            || event
                .stream
                .as_ref()
                .is_some_and(|s| self.streams.iter().any(|f| f == s));
        type_ok && stream_ok
    }
}

/// What the event system counts in `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct EventMetrics {
    pub events: Family<TypeLabel, Counter>,
    pub sse_clients: Gauge,
    pub sse_dropped: Counter,
    pub webhook_delivered: Counter,
    pub webhook_retries: Counter,
    pub webhook_failed: Counter,
    pub webhook_dropped: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    pub r#type: String,
}

impl EventMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register("events", "Events raised, by type", self.events.clone());
        registry.register(
            "event_stream_clients",
            "Clients connected to /api/events",
            self.sse_clients.clone(),
        );
        registry.register(
            "event_stream_clients_dropped",
            "/api/events clients dropped for not keeping up",
            self.sse_dropped.clone(),
        );
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries accepted by their endpoint",
            self.webhook_delivered.clone(),
        );
        registry.register(
            "webhook_retries",
            "Webhook delivery attempts that failed and were retried",
            self.webhook_retries.clone(),
        );
        registry.register(
            "webhook_failures",
            "Webhook deliveries given up after retrying",
            self.webhook_failed.clone(),
        );
        registry.register(
            "webhook_dropped",
            "Events dropped because a webhook's queue was full",
            self.webhook_dropped.clone(),
        );
    }
}

/// The process's event bus.
pub struct Events {
    metrics: EventMetrics,
    node: String,
    boot: String,
    next: AtomicU64,
    tx: broadcast::Sender<Arc<Event>>,
    history: Mutex<VecDeque<Arc<Event>>>,
}

impl Events {
    pub fn new(node: &str, metrics: EventMetrics) -> Events {
        let boot_ms = crate::time::now_micros() / 1000;
        Events {
            metrics,
            node: node.to_string(),
            boot: format!("{boot_ms:x}"),
            next: AtomicU64::new(1),
            tx: broadcast::Sender::new(CHANNEL),
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
        }
    }

    /// The name this process raises its events under.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Raise an event: logged, kept for resumption, and handed to every live consumer.
    pub fn emit(&self, stream: Option<&str>, kind: EventKind) -> Arc<Event> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let event = Event {
            id: format!("{}-{}-{n}", self.node, self.boot),
            time: crate::time::rfc3339(crate::time::now_micros()),
            stream: stream.map(str::to_string),
            node: self.node.clone(),
            kind,
        };
        self.publish(event)
    }

    /// Take an event raised elsewhere (a slave's, arriving over NATS) as it is.
    pub fn publish(&self, event: Event) -> Arc<Event> {
        let event = Arc::new(event);
        log(&event);
        self.metrics
            .events
            .get_or_create(&TypeLabel {
                r#type: event.kind_name().to_string(),
            })
            .inc();
        {
            let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
            if history.len() == HISTORY {
                history.pop_front();
            }
            history.push_back(event.clone());
        }
        // No receiver is fine: nobody is listening.
        let _ = self.tx.send(event.clone());
        event
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// Subscribe, and the events after `last_id` still in the history (all of the history if
    /// `last_id` is unknown: it left the history, or came from an earlier run). The subscription
    /// is taken first, so nothing falls between the two; the caller skips what it sees twice.
    pub fn resume(
        &self,
        last_id: Option<&str>,
    ) -> (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>) {
        let rx = self.subscribe();
        let history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(last_id) = last_id else {
            return (vec![], rx);
        };
        let from = history
            .iter()
            .position(|e| e.id == last_id)
            .map_or(0, |i| i + 1);
        (history.iter().skip(from).cloned().collect(), rx)
    }
}

/// This host's name (the pod name on Kubernetes): the `node` of the events it raises.
pub fn this_host() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "streammachine".into())
}

/// The log sink: one line per event, with its type, stream and details as fields.
fn log(event: &Event) {
    let data = serde_json::to_value(&event.kind)
        .ok()
        .and_then(|v| v.get("data").map(ToString::to_string))
        .unwrap_or_default();
    tracing::info!(
        event = event.kind_name(),
        id = %event.id,
        stream = event.stream.as_deref().unwrap_or(""),
        data = %data,
        "Event."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn promoted(id: u64) -> EventKind {
        EventKind::SourcePromoted {
            source_id: id,
            by: Promotion::Admin,
        }
    }

    #[test]
    fn wire_form_is_type_and_data() {
        let events = Events::new("pod-a", EventMetrics::default());
        let e = events.emit(Some("live"), promoted(3));
        let v = serde_json::to_value(&*e).unwrap();
        assert_eq!(v["type"], "source.promoted");
        assert_eq!(v["data"]["source_id"], 3);
        assert_eq!(v["data"]["by"], "admin");
        assert_eq!(v["stream"], "live");
        assert_eq!(v["node"], "pod-a");
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, *e);
        // Every variant's name is in TYPES.
        assert!(TYPES.contains(&e.kind_name()));
        assert_eq!(TYPES.len(), 14);
    }

    #[test]
    fn filters() {
        let events = Events::new("n", EventMetrics::default());
        let e = events.emit(Some("live"), promoted(1));
        let f = |types: &[&str], streams: &[&str]| Filter {
            types: types.iter().map(|s| s.to_string()).collect(),
            streams: streams.iter().map(|s| s.to_string()).collect(),
        };
        assert!(f(&[], &[]).matches(&e));
        assert!(f(&["source.*"], &["live"]).matches(&e));
        assert!(f(&["source.promoted", "admin.action"], &[]).matches(&e));
        assert!(!f(&["source.silence.*"], &[]).matches(&e));
        assert!(!f(&["sour.*"], &[]).matches(&e), "prefixes end at a dot");
        assert!(!f(&[], &["news"]).matches(&e));
        assert!(f(&["source.silence.*", "*"], &[]).validate().is_ok());
        let err = f(&["source.silent"], &[]).validate().unwrap_err();
        assert!(err.contains("`source.silent`"), "{err}");
    }

    #[test]
    fn resumes_after_the_last_seen_id_from_a_bounded_history() {
        let events = Events::new("n", EventMetrics::default());
        let ids: Vec<String> = (0..HISTORY as u64 + 10)
            .map(|i| events.emit(None, promoted(i)).id.clone())
            .collect();
        let (missed, _rx) = events.resume(Some(&ids[ids.len() - 3]));
        assert_eq!(missed.len(), 2);
        assert_eq!(missed[0].id, ids[ids.len() - 2]);
        // Too old (or from an earlier run): everything still held.
        let (missed, _rx) = events.resume(Some(&ids[0]));
        assert_eq!(missed.len(), HISTORY);
        let (missed, _rx) = events.resume(None);
        assert!(missed.is_empty());
    }
}
