//! The master role's cluster side: apply configs from the store, count the slaves' listeners,
//! watch how far behind each slave is, and on start recover chunks that slaves hold but the master's dump does not.
//!
//! Recovery: a master that crashed restarts from its last dump, which is older than what the
//! slaves received over NATS before the crash. Before a stream is created, the master asks on
//! `{prefix}.holdings` which slaves hold chunks newer than its dump; each answers with its
//! transport URL and `seq` range, and the master fetches what it lacks by range. Only then does
//! the stream start ingesting, so its next `seq` continues after everything recovered (and never
//! below the wall clock in milliseconds): `seq` never goes backwards.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use futures_util::StreamExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::app::{App, Reported};
use crate::cluster::STATS_INTERVAL;
use crate::cluster::bus::{Bus, HoldingsReply, HoldingsRequest, StatsReport};
use crate::cluster::lag;
use crate::cluster::repair::Range;
use crate::cluster::store::{ConfigWatch, Configs};
use crate::cluster::transport::TransportClient;
use crate::config::StreamConfig;
use crate::core::rewind::RewindBuffer;
use crate::events::EventKind;
use crate::metrics::StreamLabel;

/// How long a restarted master collects answers from slaves.
const HOLDINGS_WINDOW: Duration = Duration::from_secs(1);
/// How long it waits for NATS before giving up on asking.
const NATS_WAIT: Duration = Duration::from_secs(5);

/// Start the master's cluster tasks on `app`.
pub fn spawn(app: Arc<App>, configs: ConfigWatch, bus: Bus) {
    super::forward::spawn_master(&app, bus.clone());
    app.tasks
        .spawn(apply_configs(app.clone(), configs, bus.clone()));
    app.tasks.spawn(collect_stats(app.clone(), bus));
    app.tasks.spawn(publish_cluster_metrics(app.clone()));
}

async fn apply_configs(app: Arc<App>, mut rx: ConfigWatch, bus: Bus) {
    let mut first = true;
    loop {
        let snapshot = rx.borrow_and_update().clone();
        if let Some(configs) = snapshot {
            if first {
                // Only at start: later a new stream cannot have chunks anywhere yet.
                recover_all(&app, &bus, &configs).await;
                first = false;
            }
            app.apply_streams(&configs);
            app.set_ready(true);
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = super::stopped(&app) => return,
        }
    }
}

async fn recover_all(app: &Arc<App>, bus: &Bus, configs: &Configs) {
    let keys: Vec<(String, StreamConfig)> = configs
        .iter()
        .filter(|(k, _)| app.stream(k).is_none())
        .map(|(k, c)| (k.clone(), c.clone()))
        .collect();
    if keys.is_empty() {
        return;
    }
    let connected = bus.wait_connected(NATS_WAIT).await;
    if !connected {
        warn!(
            "NATS unreachable at start: cannot ask slaves for chunks newer than the dump; starting from the dump alone."
        );
    }
    let jobs = keys.into_iter().map(|(key, config)| {
        let app = app.clone();
        let bus = bus.clone();
        let span = info_span!("recover", stream = %key);
        async move {
            let buffer = recover(&app, &bus, &key, &config, connected).await;
            app.preload(&key, buffer);
        }
        .instrument(span)
    });
    futures_util::future::join_all(jobs).await;
}

/// The stream's buffer from its dump plus whatever slaves hold beyond it.
async fn recover(
    app: &Arc<App>,
    bus: &Bus,
    key: &str,
    config: &StreamConfig,
    ask_slaves: bool,
) -> RewindBuffer {
    let settings = app.settings.stream(key, config);
    let dump_app = app.clone();
    let dump_key = key.to_string();
    let rewind = settings.rewind;
    let mut buffer = tokio::task::spawn_blocking(move || dump_app.read_dump(&dump_key, rewind))
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| RewindBuffer::new(rewind));
    if !ask_slaves {
        return buffer;
    }
    let after = buffer.last().map(|c| c.seq);
    let replies = ask_holdings(bus, key, after).await;
    if replies.is_empty() {
        debug!(stream = %key, "No slave holds newer chunks.");
        return buffer;
    }
    let Some(token) = app.cluster_token() else {
        return buffer;
    };
    for reply in pull_order(replies, after) {
        let gaps: Vec<Range> = buffer.gaps();
        let last = buffer.last().map(|c| c.seq);
        let wanted = wanted(&gaps, last, after, (reply.first_seq, reply.last_seq));
        if wanted.is_empty() {
            continue;
        }
        let client = match TransportClient::new(&reply.url, token) {
            Ok(c) => c,
            Err(e) => {
                warn!(stream = %key, slave = %reply.slave, error = %e, "Cannot fetch from this slave.");
                continue;
            }
        };
        let mut pulled = 0usize;
        for (from, to) in wanted {
            match client.range(key, settings.format, from, Some(to)).await {
                Ok(fetched) => {
                    for c in fetched.chunks {
                        if buffer.push(c).0 != crate::core::rewind::Inserted::Duplicate {
                            pulled += 1;
                        }
                    }
                }
                Err(e) => {
                    warn!(stream = %key, slave = %reply.slave, error = %e, "Pulling newer chunks from a slave failed.");
                    break;
                }
            }
        }
        info!(
            stream = %key,
            slave = %reply.slave,
            chunks = pulled,
            dump_last_seq = ?after,
            last_seq = ?buffer.last().map(|c| c.seq),
            "Recovered chunks newer than the dump from a slave."
        );
    }
    buffer
}

/// Ask every slave; collect answers for [`HOLDINGS_WINDOW`].
async fn ask_holdings(bus: &Bus, key: &str, after: Option<u64>) -> Vec<HoldingsReply> {
    let request = HoldingsRequest {
        stream: key.to_string(),
        after,
    };
    let Ok(payload) = serde_json::to_vec(&request) else {
        return vec![];
    };
    let inbox = bus.client.new_inbox();
    let mut sub = match bus.client.subscribe(inbox.clone()).await {
        Ok(s) => s,
        Err(e) => {
            warn!(stream = %key, error = %e, "Cannot ask slaves for newer chunks.");
            return vec![];
        }
    };
    if let Err(e) = bus
        .client
        .publish_with_reply(bus.subjects.holdings(), inbox, payload.into())
        .await
    {
        warn!(stream = %key, error = %e, "Cannot ask slaves for newer chunks.");
        return vec![];
    }
    let mut replies = vec![];
    let deadline = tokio::time::Instant::now() + HOLDINGS_WINDOW;
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, sub.next()).await {
        if let Ok(r) = serde_json::from_slice::<HoldingsReply>(&msg.payload) {
            replies.push(r);
        }
    }
    replies
}

/// Slaves worth pulling from, the one holding the newest chunk first.
pub fn pull_order(mut replies: Vec<HoldingsReply>, after: Option<u64>) -> Vec<HoldingsReply> {
    replies.retain(|r| after.is_none_or(|a| r.last_seq > a) && r.first_seq <= r.last_seq);
    replies.sort_by(|a, b| b.last_seq.cmp(&a.last_seq).then(a.slave.cmp(&b.slave)));
    replies
}

/// What to fetch from a slave holding `holds`: everything beyond our newest chunk, and our gaps
/// newer than the dump (`after`) that fall within what it holds.
pub fn wanted(gaps: &[Range], last: Option<u64>, after: Option<u64>, holds: Range) -> Vec<Range> {
    let (h_from, h_to) = holds;
    let mut out = vec![];
    for &(from, to) in gaps {
        if after.is_some_and(|a| to <= a) {
            continue;
        }
        let from = from
            .max(h_from)
            .max(after.map_or(0, |a| a.saturating_add(1)));
        let to = to.min(h_to);
        if from <= to {
            out.push((from, to));
        }
    }
    let tail_from = last.map_or(h_from, |l| l.saturating_add(1)).max(h_from);
    if last.is_none_or(|l| l < h_to) && tail_from <= h_to {
        out.push((tail_from, h_to));
    }
    out
}

/// Slaves' reports into [`crate::app::Cluster::report`].
async fn collect_stats(app: Arc<App>, bus: Bus) {
    let mut sub = match bus.client.subscribe(bus.subjects.stats()).await {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "Cannot subscribe to slave stats; listener totals will miss slaves.");
            return;
        }
    };
    let mut known: HashMap<String, ()> = HashMap::new();
    loop {
        let msg = tokio::select! {
            m = sub.next() => m,
            _ = super::stopped(&app) => return,
        };
        let Some(msg) = msg else { return };
        let Ok(report) = serde_json::from_slice::<StatsReport>(&msg.payload) else {
            debug!("Ignoring an unreadable stats report.");
            continue;
        };
        if known.insert(report.slave.clone(), ()).is_none() {
            info!(slave = %report.slave, url = %report.url, "Slave reporting.");
        }
        if let Some(cluster) = &app.cluster {
            let streams = report
                .streams
                .iter()
                .map(|(k, s)| {
                    let r = Reported {
                        listeners: s.listeners,
                        last_seq: s.last_seq,
                    };
                    (k.clone(), r)
                })
                .collect();
            cluster.report(&report.slave, streams);
        }
    }
}

/// Cluster-wide figures in the master's `/metrics`.
async fn publish_cluster_metrics(app: Arc<App>) {
    let listeners: Family<StreamLabel, Gauge> = Family::default();
    let alive: Gauge = Gauge::default();
    app.metrics.with_registry(|r| {
        r.register(
            "cluster_listeners",
            "Listeners across the master and every live slave (one per listener, any protocol)",
            listeners.clone(),
        );
        r.register(
            "cluster_slaves_alive",
            "Slaves that reported recently",
            alive.clone(),
        );
    });
    let lag_seconds: Family<ReplicaLabel, Gauge<f64, AtomicU64>> = Family::default();
    app.metrics.with_registry(|r| {
        r.register(
            "replica_lag_seconds",
            "How far a slave's newest chunk is behind the master's (content time)",
            lag_seconds.clone(),
        );
    });
    let mut tracker = lag::Tracker::default();
    let mut lag_shown: Vec<ReplicaLabel> = vec![];
    let mut tick = tokio::time::interval(STATS_INTERVAL / 2);
    let mut shown: Vec<String> = vec![];
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = super::stopped(&app) => return,
        }
        let streams = app.streams();
        // Removed streams' series go away.
        for key in shown.drain(..) {
            if !streams.iter().any(|s| s.key == key) {
                listeners.remove(&StreamLabel { stream: key });
            }
        }
        let mut slaves = 0;
        for s in &streams {
            if let Some((n, live)) = app.cluster_listeners(&s.key) {
                listeners
                    .get_or_create(&StreamLabel {
                        stream: s.key.clone(),
                    })
                    .set(n as i64);
                slaves = live;
            }
            shown.push(s.key.clone());
        }
        if streams.is_empty()
            && let Some(c) = &app.cluster
        {
            slaves = c.alive().len();
        }
        alive.set(slaves as i64);
        check_replicas(&app, &streams, &mut tracker, &lag_seconds, &mut lag_shown);
    }
}

/// Each slave's lag per stream (a silent one included until forgotten): the gauge, and
/// `replica.unsynced`/`replica.synced` when it crosses [`lag::UNSYNCED_AT`] (for
/// [`lag::CONFIRM`]).
fn check_replicas(
    app: &App,
    streams: &[Arc<crate::stream::Stream>],
    tracker: &mut lag::Tracker,
    gauge: &Family<ReplicaLabel, Gauge<f64, AtomicU64>>,
    shown: &mut Vec<ReplicaLabel>,
) {
    let Some(cluster) = &app.cluster else {
        return;
    };
    let mut now_shown = vec![];
    let now = std::time::Instant::now();
    for stream in streams {
        for (replica, last_seq) in cluster.tips(&stream.key) {
            let lag = stream.buffer.read(|b| lag::lag(b, last_seq));
            let label = ReplicaLabel {
                stream: stream.key.clone(),
                replica: replica.clone(),
            };
            gauge.get_or_create(&label).set(lag.as_secs_f64());
            now_shown.push(label);
            let kind = match tracker.observe(&replica, &stream.key, lag, now) {
                Some(lag::Transition::Unsynced { replica, lag }) => {
                    warn!(stream = %stream.key, %replica, lag = ?lag, "Slave is behind the master.");
                    EventKind::ReplicaUnsynced {
                        replica,
                        lag_seconds: lag.as_secs_f64(),
                    }
                }
                Some(lag::Transition::Synced { replica, lag }) => {
                    info!(stream = %stream.key, %replica, "Slave caught up with the master.");
                    EventKind::ReplicaSynced {
                        replica,
                        lag_seconds: lag.as_secs_f64(),
                    }
                }
                None => continue,
            };
            stream.emit(kind);
        }
    }
    // Slaves gone and streams removed: their series and states go too.
    for old in shown.drain(..) {
        if !now_shown.contains(&old) {
            gauge.remove(&old);
        }
    }
    tracker.forget(|r, s| now_shown.iter().any(|l| l.replica == r && l.stream == s));
    *shown = now_shown;
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplicaLabel {
    stream: String,
    replica: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(slave: &str, first: u64, last: u64) -> HoldingsReply {
        HoldingsReply {
            slave: slave.into(),
            url: format!("http://{slave}"),
            first_seq: first,
            last_seq: last,
        }
    }

    #[test]
    fn the_slave_with_the_newest_chunk_goes_first() {
        let order = pull_order(
            vec![reply("a", 1, 10), reply("b", 1, 12), reply("c", 1, 9)],
            Some(9),
        );
        let names: Vec<&str> = order.iter().map(|r| r.slave.as_str()).collect();
        assert_eq!(names, vec!["b", "a"]);
        assert_eq!(pull_order(vec![reply("a", 1, 3)], None).len(), 1);
    }

    #[test]
    fn wanted_is_the_tail_and_gaps_newer_than_the_dump() {
        // Dump ends at 10; nothing pulled yet: ask for 11..=20.
        assert_eq!(wanted(&[], Some(10), Some(10), (1, 20)), vec![(11, 20)]);
        // No dump at all: everything the slave holds.
        assert_eq!(wanted(&[], None, None, (5, 20)), vec![(5, 20)]);
        // Pulled up to 20 from one slave that had a gap 14..=15; another slave holds 12..=22.
        assert_eq!(
            wanted(&[(3, 4), (14, 15)], Some(20), Some(10), (12, 22)),
            vec![(14, 15), (21, 22)]
        );
        // A slave holding nothing new: nothing.
        assert_eq!(wanted(&[], Some(20), Some(10), (1, 20)), vec![]);
    }
}
