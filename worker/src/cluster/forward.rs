//! Slaves' events to the master over NATS (`{prefix}.events`), so each event is delivered once
//! per cluster: a slave publishes every event it raises itself (listener counts, its buffer
//! loaded, actions on its admin API) and delivers none; the master takes each into its own bus
//! as it is (id, time and `node` kept), so its log, `/api/events` and webhooks see it once. The
//! master never publishes on the subject, so nothing loops.
//!
//! NATS core, no JetStream: events are best effort, like the bus's other consumers. While NATS
//! is away the client queues a little and then publishing fails; those events are dropped,
//! counted and logged once per outage, and never hold up the slave.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::broadcast;
use tracing::{debug, info, warn};

use crate::app::App;
use crate::cluster::bus::Bus;
use crate::events::{Event, EventKind};
use crate::retry::Repeated;

/// A publish that the client cannot queue within this long (its buffer is full while NATS is
/// away) is dropped rather than waited for.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("not an event: {0}")]
    Json(#[from] serde_json::Error),
    #[error("an event without `{0}`")]
    Missing(&'static str),
}

/// The message for one event: the event's JSON, the same form `/api/events` sends.
pub fn encode(event: &Event) -> Bytes {
    // An `Event` is strings and numbers only: serializing cannot fail.
    serde_json::to_vec(event).unwrap_or_default().into()
}

/// An event from a message; refuses anything that would not identify where it came from.
pub fn decode(payload: &[u8]) -> Result<Event, MessageError> {
    let event: Event = serde_json::from_slice(payload)?;
    if event.id.is_empty() {
        return Err(MessageError::Missing("id"));
    }
    if event.node.is_empty() {
        return Err(MessageError::Missing("node"));
    }
    Ok(event)
}

/// Whether a slave named `node` forwards `event`: only what it raised itself, and not
/// `config.changed`, which every pod raises when it applies a config the master raised first.
pub fn forwards(event: &Event, node: &str) -> bool {
    event.node == node && !matches!(event.kind, EventKind::ConfigChanged { .. })
}

/// Counters in `/metrics` (each role registers the pair it uses).
#[derive(Clone, Default)]
struct Counters {
    ok: Counter,
    failed: Counter,
}

/// On a slave: publish its own events until shutdown. Subscribes at once, so the events raised
/// right after (loading the buffers) are not missed.
pub fn spawn_slave(app: &Arc<App>, bus: Bus) {
    let counters = Counters::default();
    app.metrics.with_registry(|r| {
        r.register(
            "cluster_forwarded_events",
            "Events this slave published to the master",
            counters.ok.clone(),
        );
        r.register(
            "cluster_forward_dropped_events",
            "Events this slave could not publish to the master (NATS away, or too many at once)",
            counters.failed.clone(),
        );
    });
    let rx = app.events.subscribe();
    app.tasks.spawn(publish(app.clone(), bus, rx, counters));
}

async fn publish(
    app: Arc<App>,
    bus: Bus,
    mut rx: broadcast::Receiver<Arc<Event>>,
    counters: Counters,
) {
    let node = app.events.node().to_string();
    let subject = bus.subjects.events();
    let mut errors = Repeated::default();
    loop {
        let event = tokio::select! {
            e = rx.recv() => e,
            _ = super::stopped(&app) => return,
        };
        let event = match event {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                counters.failed.inc_by(n);
                if errors.should_log("lagged") {
                    warn!(
                        dropped = n,
                        "Too many events at once; some were not forwarded to the master."
                    );
                }
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if !forwards(&event, &node) {
            continue;
        }
        let sent = tokio::time::timeout(
            PUBLISH_TIMEOUT,
            bus.client.publish(subject.clone(), encode(&event)),
        )
        .await;
        match sent {
            Ok(Ok(())) => {
                counters.ok.inc();
                if errors.clear() {
                    info!("Forwarding events to the master again.");
                }
            }
            Ok(Err(e)) => {
                counters.failed.inc();
                if errors.should_log("publish") {
                    warn!(error = %e, event = event.kind_name(), dropped_total = counters.failed.get(), "Cannot forward events to the master over NATS; dropping them.");
                }
            }
            Err(_) => {
                counters.failed.inc();
                if errors.should_log("timeout") {
                    warn!(
                        event = event.kind_name(),
                        dropped_total = counters.failed.get(),
                        "NATS is not taking events (away?); dropping them instead of waiting."
                    );
                }
            }
        }
    }
}

/// On the master: take the slaves' events into its own bus until shutdown.
pub fn spawn_master(app: &Arc<App>, bus: Bus) {
    let counters = Counters::default();
    app.metrics.with_registry(|r| {
        r.register(
            "cluster_received_events",
            "Events received from slaves",
            counters.ok.clone(),
        );
        r.register(
            "cluster_rejected_events",
            "Messages on the events subject that were not a slave's event",
            counters.failed.clone(),
        );
    });
    app.tasks.spawn(receive(app.clone(), bus, counters));
}

async fn receive(app: Arc<App>, bus: Bus, counters: Counters) {
    let mut sub = match bus.client.subscribe(bus.subjects.events()).await {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "Cannot subscribe to the slaves' events; they will not be delivered.");
            return;
        }
    };
    let own = app.events.node().to_string();
    let mut errors = Repeated::default();
    loop {
        let msg = tokio::select! {
            m = sub.next() => m,
            _ = super::stopped(&app) => return,
        };
        let Some(msg) = msg else { return };
        match decode(&msg.payload) {
            // Our own would be a loop (or a slave misnamed after the master): never twice.
            Ok(event) if event.node == own => {
                counters.failed.inc();
                debug!(id = %event.id, "Ignoring an event with the master's own name.");
            }
            Ok(event) => {
                counters.ok.inc();
                app.events.publish(event);
            }
            Err(e) => {
                counters.failed.inc();
                if errors.should_log("malformed") {
                    warn!(error = %e, bytes = msg.payload.len(), rejected_total = counters.failed.get(), "Dropping an unreadable message on the events subject.");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{EventMetrics, Events};

    fn listeners(n: u64) -> EventKind {
        EventKind::StreamListenersChanged {
            listeners: n,
            previous: 0,
        }
    }

    #[test]
    fn an_event_travels_as_it_is() {
        let slave = Events::new("slave-a", EventMetrics::default());
        let e = slave.emit(Some("live"), listeners(3));
        let back = decode(&encode(&e)).unwrap();
        assert_eq!(back, *e);
        // Taken into the master's bus unchanged: same id, time and node.
        let master = Events::new("master", EventMetrics::default());
        let (_, mut rx) = master.resume(None);
        master.publish(back);
        let got = rx.try_recv().unwrap();
        assert_eq!(got.id, e.id);
        assert_eq!(got.node, "slave-a");
        assert_eq!(got.time, e.time);
    }

    #[test]
    fn malformed_messages_are_refused() {
        for bad in [
            &b""[..],
            b"not json",
            b"{}",
            br#"{"id":"x","time":"t","node":"n","type":"no.such.type","data":{}}"#,
            br#"{"id":"","time":"t","node":"n","type":"config.changed","data":{"change":"created"}}"#,
            br#"{"id":"x","time":"t","node":"","type":"config.changed","data":{"change":"created"}}"#,
        ] {
            assert!(decode(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let ok = br#"{"id":"x","time":"t","node":"n","type":"config.changed","data":{"change":"created"}}"#;
        assert!(decode(ok).is_ok());
    }

    #[test]
    fn a_slave_forwards_only_its_own_events_and_no_config_echoes() {
        let slave = Events::new("slave-a", EventMetrics::default());
        let own = slave.emit(Some("live"), listeners(1));
        assert!(forwards(&own, "slave-a"));
        let config = slave.emit(
            Some("live"),
            EventKind::ConfigChanged {
                change: "created".into(),
            },
        );
        assert!(!forwards(&config, "slave-a"));
        let other = Events::new("slave-b", EventMetrics::default()).emit(None, listeners(2));
        assert!(!forwards(&other, "slave-a"));
    }
}
