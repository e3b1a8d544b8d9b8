//! Events in a cluster: what slaves raise reaches the master over NATS and is delivered there
//! once (its `/api/events` and its webhooks), and the master notices a slave that stops.

use std::time::Duration;

use serde_json::Value;
use streammachine::core::codec::Format;
use streammachine_e2e::audio::{Encoder, Pace, fixture};
use streammachine_e2e::cluster::{Services, wait_ready};
use streammachine_e2e::events::{EventStream, WebhookReceiver};
use streammachine_e2e::listener::Listener;
use streammachine_e2e::server::Server;
use streammachine_e2e::temp_dir;

const T: Duration = Duration::from_secs(60);
/// The listener-count debounce (10 s) and a margin: long enough for any duplicate to show.
const NO_DUPLICATE_WINDOW: Duration = Duration::from_secs(13);
/// The deliberate stop of a slave.
const PAUSE: Duration = Duration::from_secs(15);

/// The cluster id a slave names itself by (in its events and its stats to the master).
async fn slave_id(slave: &Server) -> String {
    let line = slave.wait_log("Slave starting").await;
    let v: Value = serde_json::from_str(&line).expect("json log line");
    v["slave"].as_str().expect("slave id").to_string()
}

fn is(v: &Value, kind: &str) -> bool {
    v["type"] == kind
}

/// 4. Master + 2 slaves: a listener-count event raised on a slave is delivered once; a slave
/// stopped with SIGSTOP for 15 s raises `replica.unsynced` and then `replica.synced`.
#[tokio::test]
async fn slave_events_are_delivered_once_and_a_stopped_slave_turns_unsynced_then_synced() {
    let services = Services::start().await;
    let hook = WebhookReceiver::start().await;
    let dir = temp_dir();
    let config = dir.path().join("master.yaml");
    std::fs::write(
        &config,
        format!(
            "webhooks:\n  - url: {}\n    types: [stream.listeners.changed, replica.*]\n",
            hook.url
        ),
    )
    .unwrap();
    let master = services
        .master(&["--stream", "live", "--config", config.to_str().unwrap()])
        .await;
    let sse = EventStream::open(&master, "type=stream.listeners.changed,replica.*").await;
    let (a, b) = tokio::join!(
        services.slave(master.admin, &[]),
        services.slave(master.admin, &[])
    );
    wait_ready(&a, T).await;
    wait_ready(&b, T).await;
    let (a_id, b_id) = (slave_id(&a).await, slave_id(&b).await);
    assert_ne!(a_id, b_id);

    // Some audio, as fast as the master takes it, on every node.
    let encoder = Encoder::push(
        &fixture(Format::Mp3, 10, 61),
        Format::Mp3,
        &master.source_url("live"),
        Pace::Fast,
        false,
    );
    assert!(encoder.wait(T).await.success());
    a.wait_buffer("live", 9.0, T).await;

    // One listener on slave A: one event for A, at the master's /api/events and its webhook.
    let listener = Listener::connect(a.listen, "/live", &[]).await;
    assert_eq!(listener.status, 200);
    let from_a = |v: &Value| is(v, "stream.listeners.changed") && v["node"] == a_id.as_str();
    let e = sse
        .received
        .wait_for("A's listener count at the master", T, from_a)
        .await;
    assert_eq!(e["stream"], "live");
    assert_eq!(e["data"]["listeners"], 1, "{e}");
    assert_eq!(e["data"]["previous"], 0, "{e}");
    let a_source = format!("urn:streammachine:{a_id}");
    let hook_from_a = |v: &Value| {
        v["type"] == "io.streammachine.stream.listeners.changed" && v["source"] == a_source.as_str()
    };
    let delivered = hook
        .received
        .wait_for("A's listener count at the webhook", T, hook_from_a)
        .await;
    assert_eq!(delivered["id"], e["id"], "the event keeps its id");
    // The master's own count is the cluster's total, named by the master.
    let total = sse
        .received
        .wait_for("the cluster total at the master", T, |v| {
            is(v, "stream.listeners.changed")
                && v["node"] != a_id.as_str()
                && v["node"] != b_id.as_str()
        })
        .await;
    assert_eq!(total["data"]["listeners"], 1, "{total}");

    // Past the debounce window: still exactly once, at either sink.
    tokio::time::sleep(NO_DUPLICATE_WINDOW).await;
    assert_eq!(
        sse.received.matching(from_a).len(),
        1,
        "{:#?}",
        sse.received.all()
    );
    assert_eq!(
        hook.received.matching(hook_from_a).len(),
        1,
        "{:#?}",
        hook.received.all()
    );
    let ids: Vec<String> = sse
        .received
        .all()
        .iter()
        .map(|v| v["id"].to_string())
        .collect();
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), unique.len(), "an event twice: {ids:?}");
    drop(listener);
    // A burst of audio into the master is not a slave falling behind.
    let early = sse.received.matching(|v| is(v, "replica.unsynced"));
    assert!(early.is_empty(), "{early:#?}");

    // A live source three times real time, so the master's audio moves on while B is stopped.
    let live = Encoder::push(
        &fixture(Format::Mp3, 120, 62),
        Format::Mp3,
        &master.source_url("live"),
        Pace::Rate(3),
        false,
    );
    master
        .wait_buffer(
            "live",
            master.status("live").await["buffer_seconds"]
                .as_f64()
                .unwrap()
                + 3.0,
            T,
        )
        .await;
    let unsynced_b = |v: &Value| is(v, "replica.unsynced") && v["data"]["replica"] == b_id.as_str();
    let synced_b = |v: &Value| is(v, "replica.synced") && v["data"]["replica"] == b_id.as_str();
    let (sse_mark, hook_mark) = (sse.received.len(), hook.received.len());
    {
        let _paused = b.pause();
        let stopped = tokio::time::Instant::now();
        let e = sse
            .received
            .wait_for_from(sse_mark, "replica.unsynced for B", PAUSE, unsynced_b)
            .await;
        assert_eq!(e["stream"], "live");
        assert!(e["data"]["lag_seconds"].as_f64().unwrap() >= 10.0, "{e}");
        // Stopped for the whole 15 s, also past the master's liveness timeout.
        tokio::time::sleep(PAUSE.saturating_sub(stopped.elapsed())).await;
        assert!(
            sse.received.matching_from(sse_mark, synced_b).is_empty(),
            "B cannot catch up while stopped"
        );
    } // SIGCONT
    let e = sse
        .received
        .wait_for_from(sse_mark, "replica.synced for B after SIGCONT", T, synced_b)
        .await;
    assert!(e["data"]["lag_seconds"].as_f64().unwrap() < 10.0, "{e}");
    // Each once, also at the webhook; A, which kept up, never turned unsynced.
    assert_eq!(sse.received.matching(unsynced_b).len(), 1);
    hook.received
        .wait_for_from(hook_mark, "replica.synced for B at the webhook", T, |v| {
            v["type"] == "io.streammachine.replica.synced" && v["data"]["replica"] == b_id.as_str()
        })
        .await;
    let hook_unsynced = hook.received.matching(|v| {
        v["type"] == "io.streammachine.replica.unsynced" && v["data"]["replica"] == b_id.as_str()
    });
    assert_eq!(hook_unsynced.len(), 1, "{hook_unsynced:#?}");
    let a_unsynced = sse
        .received
        .matching(|v| is(v, "replica.unsynced") && v["data"]["replica"] == a_id.as_str());
    assert!(a_unsynced.is_empty(), "{a_unsynced:#?}");
    live.kill();
}
