//! The slave role: follow the master's streams and serve listeners.
//!
//! Per stream ([`follow`]): subscribe to the stream's NATS subject first, then load the master's
//! snapshot over HTTP and merge it by `seq` with what NATS delivered meanwhile; from then on
//! live chunks come over NATS, and a repair loop fills every gap in `seq` from the master by
//! range, and polls the master for newer chunks while NATS is quiet (NATS down). The slave is
//! ready once every stream it serves is loaded.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::{Notify, watch};
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::app::App;
use crate::cluster::bus::{Bus, HoldingsReply, HoldingsRequest, StatsReport, StreamStats};
use crate::cluster::check::check_chunk;
use crate::cluster::repair::{Repair, Tail};
use crate::cluster::store::ConfigWatch;
use crate::cluster::transport::{TransportClient, TransportError};
use crate::cluster::{STATS_INTERVAL, select};
use crate::core::chunk::Chunk;
use crate::metrics::StreamLabel;
use crate::retry::{Backoff, Repeated};
use crate::stream::Stream;

/// How often the repair loop looks for gaps (also woken at once by a jump in `seq`).
const REPAIR_INTERVAL: Duration = Duration::from_secs(1);
/// Ranges asked for per repair round.
const REPAIR_BATCH: usize = 8;
/// No chunk over NATS for this long: ask the master for newer ones over HTTP...
const TAIL_STALE: Duration = Duration::from_secs(3);
/// ...at most this often.
const TAIL_EVERY: Duration = Duration::from_secs(2);
/// Bound on waiting for NATS to confirm the subscription before loading the snapshot.
const SUBSCRIBE_BARRIER: Duration = Duration::from_secs(2);

/// Per-stream counters of what the slave received and repaired.
#[derive(Clone, Default)]
struct FollowMetrics {
    received: Family<StreamLabel, Counter>,
    rejected: Family<StreamLabel, Counter>,
    repaired: Family<StreamLabel, Counter>,
}

impl FollowMetrics {
    fn register(&self, app: &App) {
        app.metrics.with_registry(|r| {
            r.register(
                "cluster_received_chunks",
                "Chunks received from the master over NATS",
                self.received.clone(),
            );
            r.register(
                "cluster_rejected_chunks",
                "Chunks from the master rejected as invalid",
                self.rejected.clone(),
            );
            r.register(
                "cluster_repaired_chunks",
                "Chunks fetched from the master over HTTP to fill gaps or while NATS was quiet",
                self.repaired.clone(),
            );
        });
    }

    fn remove(&self, key: &str) {
        let l = StreamLabel { stream: key.into() };
        self.received.remove(&l);
        self.rejected.remove(&l);
        self.repaired.remove(&l);
    }
}

fn label(key: &str) -> StreamLabel {
    StreamLabel { stream: key.into() }
}

/// One followed stream.
struct Follower {
    stream: Arc<Stream>,
    loaded: Arc<AtomicBool>,
}

pub struct Slave {
    app: Arc<App>,
    bus: Bus,
    transport: TransportClient,
    id: String,
    /// Where a restarted master reaches this slave's transport.
    url: String,
    only: BTreeSet<String>,
    followers: Mutex<HashMap<String, Follower>>,
    /// Bumped whenever a follower finishes loading (readiness re-checks).
    loads: watch::Sender<u64>,
    metrics: FollowMetrics,
}

/// Start the slave's tasks on `app` (already serving, not yet ready).
pub fn spawn(
    app: Arc<App>,
    configs: ConfigWatch,
    bus: Bus,
    transport: TransportClient,
    only: BTreeSet<String>,
    id: String,
    url: String,
) -> Arc<Slave> {
    let slave = Arc::new(Slave {
        app: app.clone(),
        bus,
        transport,
        id,
        url,
        only,
        followers: Mutex::new(HashMap::new()),
        loads: watch::Sender::new(0),
        metrics: FollowMetrics::default(),
    });
    slave.metrics.register(&app);
    info!(
        slave = %slave.id,
        master = %slave.transport.base(),
        advertise = %slave.url,
        "Slave starting: waiting for the stream configs, then loading buffers from the master."
    );
    app.tasks.spawn(slave.clone().configs(configs));
    app.tasks.spawn(slave.clone().report_stats());
    app.tasks.spawn(slave.clone().answer_holdings());
    slave
}

impl Slave {
    /// Apply every config snapshot; become ready once everything wanted is loaded.
    async fn configs(self: Arc<Self>, mut rx: ConfigWatch) {
        let mut loads = self.loads.subscribe();
        let mut seen = false;
        let mut missing: Vec<String> = vec![];
        loop {
            let snapshot = rx.borrow_and_update().clone();
            if let Some(configs) = snapshot {
                self.app.apply_streams(&select(&configs, &self.only));
                self.follow_new_streams();
                seen = true;
                let now_missing: Vec<String> = self
                    .only
                    .iter()
                    .filter(|k| !configs.contains_key(*k))
                    .cloned()
                    .collect();
                if !now_missing.is_empty() && now_missing != missing {
                    warn!(streams = ?now_missing, "Streams named by --streams are not in the config store (yet).");
                }
                missing = now_missing;
            }
            if seen
                && missing.is_empty()
                && !self.app.is_ready()
                && !self.app.is_draining()
                && self.all_loaded()
            {
                self.app.set_ready(true);
                info!(
                    streams = self.app.streams().len(),
                    "Slave ready: every buffer is loaded."
                );
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                r = loads.changed() => if r.is_err() { return },
                _ = super::stopped(&self.app) => return,
            }
        }
    }

    fn all_loaded(&self) -> bool {
        self.followers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .all(|f| f.loaded.load(Ordering::Acquire))
    }

    /// Start a follower for every stream that has none (new, or recreated after a format
    /// change); forget followers of removed streams.
    fn follow_new_streams(self: &Arc<Self>) {
        let streams = self.app.streams();
        let mut followers = self
            .followers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        followers.retain(|key, f| {
            let keep = streams.iter().any(|s| Arc::ptr_eq(s, &f.stream));
            if !keep && self.app.stream(key).is_none() {
                self.metrics.remove(key);
            }
            keep
        });
        for stream in streams {
            if followers
                .get(&stream.key)
                .is_some_and(|f| Arc::ptr_eq(&f.stream, &stream))
            {
                continue;
            }
            let loaded = Arc::new(AtomicBool::new(false));
            followers.insert(
                stream.key.clone(),
                Follower {
                    stream: stream.clone(),
                    loaded: loaded.clone(),
                },
            );
            let span = info_span!("follow", stream = %stream.key);
            self.app
                .tasks
                .spawn(follow(self.clone(), stream, loaded).instrument(span));
        }
    }

    /// Publish listener counts and buffer ranges for the master.
    async fn report_stats(self: Arc<Self>) {
        let mut tick = tokio::time::interval(STATS_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = super::stopped(&self.app) => return,
            }
            let streams = self
                .app
                .streams()
                .iter()
                .map(|s| {
                    let (first, last) = s
                        .buffer
                        .read(|b| (b.first().map(|c| c.seq), b.last().map(|c| c.seq)));
                    let stats = StreamStats {
                        listeners: s.listener_count(),
                        first_seq: first,
                        last_seq: last,
                    };
                    (s.key.clone(), stats)
                })
                .collect();
            let report = StatsReport {
                slave: self.id.clone(),
                url: self.url.clone(),
                streams,
            };
            let Ok(json) = serde_json::to_vec(&report) else {
                continue;
            };
            // While NATS is away this only queues in the client (bounded, tiny messages).
            if let Err(e) = self
                .bus
                .client
                .publish(self.bus.subjects.stats(), json.into())
                .await
            {
                debug!(error = %e, "Could not publish listener stats.");
            }
        }
    }

    /// Answer a restarted master asking who holds chunks newer than its own.
    async fn answer_holdings(self: Arc<Self>) {
        let mut sub = match self
            .bus
            .client
            .subscribe(self.bus.subjects.holdings())
            .await
        {
            Ok(s) => s,
            Err(e) => {
                error!(error = %e, "Cannot subscribe to holdings requests; a restarted master will not find this slave's chunks.");
                return;
            }
        };
        loop {
            let msg = tokio::select! {
                m = sub.next() => m,
                _ = super::stopped(&self.app) => return,
            };
            let Some(msg) = msg else { return };
            let (Some(reply_to), Ok(req)) = (
                msg.reply,
                serde_json::from_slice::<HoldingsRequest>(&msg.payload),
            ) else {
                continue;
            };
            let Some(reply) = self.holdings(&req) else {
                continue;
            };
            let Ok(json) = serde_json::to_vec(&reply) else {
                continue;
            };
            info!(stream = %req.stream, after = ?req.after, last_seq = reply.last_seq, "Offering newer chunks to the restarted master.");
            let _ = self.bus.client.publish(reply_to, json.into()).await;
        }
    }

    fn holdings(&self, req: &HoldingsRequest) -> Option<HoldingsReply> {
        let followers = self
            .followers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let f = followers.get(&req.stream)?;
        // Only a loaded buffer is worth offering: before that it holds a few live chunks.
        if !f.loaded.load(Ordering::Acquire) {
            return None;
        }
        let (first, last) = f
            .stream
            .buffer
            .read(|b| (b.first().map(|c| c.seq), b.last().map(|c| c.seq)));
        let (first, last) = (first?, last?);
        if req.after.is_some_and(|a| last <= a) {
            return None;
        }
        Some(HoldingsReply {
            slave: self.id.clone(),
            url: self.url.clone(),
            first_seq: first,
            last_seq: last,
        })
    }
}

/// Follow one stream until it is removed or the slave stops.
async fn follow(slave: Arc<Slave>, stream: Arc<Stream>, loaded: Arc<AtomicBool>) {
    let key = stream.key.clone();
    let format = stream.settings().format;
    let tail = Arc::new(Mutex::new(Tail::new(Instant::now())));
    let jump = Arc::new(Notify::new());

    // 1. Subscribe before anything else, so no chunk published from now on is missed.
    match slave
        .bus
        .client
        .subscribe(slave.bus.subjects.chunks(&key))
        .await
    {
        Ok(sub) => {
            if !slave.bus.barrier(SUBSCRIBE_BARRIER).await {
                warn!(stream = %key, "NATS has not confirmed the subscription; loading the snapshot anyway (live chunks come from the master over HTTP until NATS is back).");
            }
            let consume = consume(
                sub,
                slave.clone(),
                stream.clone(),
                tail.clone(),
                jump.clone(),
            );
            slave
                .app
                .tasks
                .spawn(consume.instrument(info_span!("nats", stream = %key)));
        }
        Err(e) => {
            error!(stream = %key, error = %e, "Cannot subscribe to the stream's chunks on NATS; following the master over HTTP only.");
        }
    }

    // 2. The snapshot, retried until it loads: the slave is not ready without it.
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
    let mut errors = Repeated::default();
    loop {
        match slave.transport.snapshot(&key, format).await {
            Ok(fetched) => {
                let n = fetched.chunks.len();
                let merged = stream.merge(fetched.chunks);
                let (first, last) = stream
                    .buffer
                    .read(|b| (b.first().map(|c| c.seq), b.last().map(|c| c.seq)));
                info!(
                    stream = %key,
                    chunks = n,
                    bytes = fetched.bytes,
                    ms = fetched.elapsed.as_millis() as u64,
                    already_live = merged.duplicates,
                    first_seq = ?first,
                    last_seq = ?last,
                    seconds = stream.buffer.held_seconds(),
                    "Rewind snapshot loaded from the master."
                );
                slave.app.events.emit(
                    Some(&key),
                    crate::events::EventKind::BufferRestored {
                        from: "master".into(),
                        chunks: n as u64,
                        seconds: stream.buffer.held_seconds(),
                    },
                );
                break;
            }
            Err(e) => {
                log_transport_error(&mut errors, &key, "loading the snapshot", &e);
                let stop = tokio::select! {
                    _ = tokio::time::sleep(backoff.next_delay()) => false,
                    _ = stream.removed.cancelled() => true,
                    _ = super::stopped(&slave.app) => true,
                };
                if stop {
                    return;
                }
            }
        }
    }
    loaded.store(true, Ordering::Release);
    slave.loads.send_modify(|n| *n += 1);

    // 3. Keep the buffer complete.
    repair_loop(&slave, &stream, &tail, &jump).await;
}

/// Chunks from NATS into the buffer. A jump in `seq` wakes the repair loop at once.
async fn consume(
    mut sub: async_nats::Subscriber,
    slave: Arc<Slave>,
    stream: Arc<Stream>,
    tail: Arc<Mutex<Tail>>,
    jump: Arc<Notify>,
) {
    let format = stream.settings().format;
    let l = label(&stream.key);
    let received = slave.metrics.received.get_or_create(&l).clone();
    let rejected = slave.metrics.rejected.get_or_create(&l).clone();
    let mut errors = Repeated::default();
    loop {
        let msg = tokio::select! {
            m = sub.next() => m,
            _ = stream.removed.cancelled() => return,
            _ = super::stopped(&slave.app) => return,
        };
        let Some(msg) = msg else { return };
        let chunk = Chunk::decode(msg.payload)
            .map_err(|e| e.to_string())
            .and_then(|c| {
                check_chunk(format, &c)
                    .map(|()| c)
                    .map_err(|e| e.to_string())
            });
        match chunk {
            Ok(chunk) => {
                received.inc();
                let before = stream.buffer.tip().last_seq;
                let seq = chunk.seq;
                stream.append(chunk);
                tail.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .arrived(Instant::now());
                if before.is_some_and(|last| seq > last.saturating_add(1)) {
                    jump.notify_one();
                }
            }
            Err(reason) => {
                rejected.inc();
                if errors.should_log("invalid") {
                    error!(stream = %stream.key, %reason, "Rejected an invalid chunk from NATS (not served); the gap will be repaired from the master.");
                }
            }
        }
    }
}

async fn repair_loop(slave: &Slave, stream: &Arc<Stream>, tail: &Mutex<Tail>, jump: &Notify) {
    let key = &stream.key;
    let format = stream.settings().format;
    let repaired = slave.metrics.repaired.get_or_create(&label(key)).clone();
    let mut repair = Repair::default();
    let mut errors = Repeated::default();
    let mut tick = tokio::time::interval(REPAIR_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = jump.notified() => {}
            _ = tick.tick() => {}
            _ = stream.removed.cancelled() => return,
            _ = super::stopped(&slave.app) => return,
        }
        let (gaps, first, last) = stream
            .buffer
            .read(|b| (b.gaps(), b.first().map(|c| c.seq), b.last().map(|c| c.seq)));
        if let Some(first) = first {
            repair.forget_before(first);
        }
        let mut failed = false;
        for range in repair.plan(&gaps, REPAIR_BATCH) {
            match slave
                .transport
                .range(key, format, range.0, Some(range.1))
                .await
            {
                Ok(fetched) => {
                    let seqs: Vec<u64> = fetched.chunks.iter().map(|c| c.seq).collect();
                    let merged = stream.merge(fetched.chunks);
                    repaired.inc_by(merged.filled as u64);
                    repair.record(range, &seqs);
                    recovered(&mut errors, key);
                    info!(
                        stream = %key,
                        from = range.0,
                        to = range.1,
                        filled = merged.filled,
                        missing_on_master = (range.1 - range.0)
                            .saturating_add(1)
                            .saturating_sub(seqs.len() as u64),
                        "Gap in seq repaired from the master."
                    );
                }
                Err(e) => {
                    log_transport_error(&mut errors, key, "repairing a gap", &e);
                    failed = true;
                    break;
                }
            }
        }
        let due = tail.lock().unwrap_or_else(PoisonError::into_inner).due(
            Instant::now(),
            TAIL_STALE,
            TAIL_EVERY,
        );
        if failed || !due {
            continue;
        }
        let from = last.map_or(0, |l| l.saturating_add(1));
        match slave.transport.range(key, format, from, None).await {
            Ok(fetched) => {
                recovered(&mut errors, key);
                if !fetched.chunks.is_empty() {
                    let merged = stream.merge(fetched.chunks);
                    repaired.inc_by((merged.appended + merged.filled) as u64);
                    debug!(stream = %key, appended = merged.appended, "Fetched newer chunks from the master while NATS is quiet.");
                }
            }
            Err(e) => log_transport_error(&mut errors, key, "polling for newer chunks", &e),
        }
    }
}

fn log_transport_error(errors: &mut Repeated, key: &str, doing: &str, e: &TransportError) {
    let kind = match e {
        TransportError::Unreachable { .. } => "unreachable",
        TransportError::Unauthorized { .. } => "unauthorized",
        TransportError::NotFound { .. } => "not-found",
        TransportError::Status { .. } => "status",
        TransportError::Dump { .. } => "dump",
        TransportError::Audio { .. } => "audio",
        TransportError::Invalid { .. } => "invalid",
    };
    if !errors.should_log(kind) {
        return;
    }
    if e.is_misconfiguration() {
        error!(stream = %key, error = %e, "Master transport error while {doing}; nothing from this answer is served. Retrying.");
    } else {
        warn!(stream = %key, error = %e, "Master unreachable while {doing}; serving what the buffer holds and retrying.");
    }
}

fn recovered(errors: &mut Repeated, key: &str) {
    if errors.clear() {
        info!(stream = %key, "Master transport reachable again.");
    }
}

/// The URL a restarted master should use to reach this slave's transport: `listen` itself when
/// it names an address, else the local address of the route towards the master (the pod IP on
/// Kubernetes). Found with an unconnected UDP socket: nothing is sent.
pub async fn advertise_url(listen: SocketAddr, master_url: &str) -> String {
    if !listen.ip().is_unspecified() {
        return format!("http://{listen}");
    }
    let ip = route_ip(master_url).await.unwrap_or(listen.ip());
    format!("http://{}", SocketAddr::new(ip, listen.port()))
}

async fn route_ip(master_url: &str) -> Option<IpAddr> {
    let url = reqwest::Url::parse(master_url).ok()?;
    let host = url.host_str()?.trim_matches(['[', ']']).to_string();
    let port = url.port_or_known_default()?;
    let target = tokio::net::lookup_host((host.as_str(), port))
        .await
        .ok()?
        .next()?;
    let bind: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let sock = std::net::UdpSocket::bind(bind).ok()?;
    sock.connect(target).ok()?;
    let ip = sock.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn advertises_the_route_towards_the_master() {
        let listen: SocketAddr = "127.0.0.1:8000".parse().unwrap();
        assert_eq!(
            advertise_url(listen, "http://x:1").await,
            "http://127.0.0.1:8000"
        );
        let any: SocketAddr = "0.0.0.0:8000".parse().unwrap();
        assert_eq!(
            advertise_url(any, "http://127.0.0.1:8001").await,
            "http://127.0.0.1:8000"
        );
    }
}
