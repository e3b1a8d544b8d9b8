//! Process-wide state shared by every task: settings, the stream registry, limits, metrics and
//! the shutdown signal. Each role builds one `App` and wires different tasks around it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::cluster::store::ConfigStore;
use crate::config::{Settings, StreamConfig};
use crate::core::dump;
use crate::core::rewind::RewindBuffer;
use crate::events::webhook::{Hook, Retry, Webhooks};
use crate::events::{EventKind, Events};
use crate::metrics::Metrics;
use crate::stream::{ChunkSink, Stream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Standalone,
    Master,
    Slave,
}

impl Role {
    pub fn ingests(self) -> bool {
        self != Role::Slave
    }
}

pub struct App {
    pub settings: Settings,
    pub role: Role,
    streams: RwLock<BTreeMap<String, Arc<Stream>>>,
    pub metrics: Metrics,
    /// Everything worth telling an operator about (log, `/api/events`, webhooks).
    pub events: Arc<Events>,
    listeners: AtomicU64,
    pub shutdown: CancellationToken,
    ready: tokio::sync::watch::Sender<bool>,
    sink: Option<Arc<dyn ChunkSink>>,
    /// Per-stream background tasks (fallback sources), by stream key: (fallback URL, its token).
    fallbacks: Mutex<HashMap<String, (String, CancellationToken)>>,
    pub tasks: TaskTracker,
    pub started: Instant,
    /// Master and slave: the shared cluster token and what slaves report.
    pub cluster: Option<Cluster>,
    /// Where stream configs are read and written (file, Redis); set once by the role.
    store: OnceLock<Arc<dyn ConfigStore>>,
    /// Slave: the master's admin base URL (for what only the master knows, e.g. other streams).
    master_url: OnceLock<String>,
    /// Buffers prepared before their stream exists (a restarted master: dump plus what slaves
    /// held); taken by the stream when it is created.
    preloaded: Mutex<HashMap<String, RewindBuffer>>,
    /// Shutting down gracefully: no new listeners, connected ones may finish.
    draining: AtomicBool,
    /// Standalone and master: the webhook deliveries (slaves hand their events to the master).
    webhooks: OnceLock<Arc<Webhooks>>,
}

/// Cluster membership as the master sees it: each slave's last listener report.
pub struct Cluster {
    pub token: String,
    slaves: Mutex<HashMap<String, SlaveReport>>,
}

struct SlaveReport {
    at: Instant,
    streams: HashMap<String, Reported>,
}

/// What a slave reports about one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reported {
    pub listeners: u64,
    /// The newest chunk it holds: how far behind the master it is.
    pub last_seq: Option<u64>,
}

/// A slave that has not reported for this long is considered gone.
pub const SLAVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);
/// ...and after this long forgotten. Until then it stays in the lag check, where a paused or
/// partitioned slave counts as behind (`replica.unsynced`) and, when it is back, `replica.synced`.
pub const SLAVE_FORGOTTEN: std::time::Duration = std::time::Duration::from_secs(60);

impl Cluster {
    pub fn new(token: String) -> Cluster {
        Cluster {
            token,
            slaves: Mutex::new(HashMap::new()),
        }
    }

    pub fn report(&self, slave: &str, streams: HashMap<String, Reported>) {
        self.report_at(slave, streams, Instant::now());
    }

    /// [`Cluster::report`] at a given time (tests move the clock).
    pub fn report_at(&self, slave: &str, streams: HashMap<String, Reported>, at: Instant) {
        let mut slaves = self.slaves.lock().unwrap_or_else(PoisonError::into_inner);
        slaves.insert(slave.to_string(), SlaveReport { at, streams });
        // Forget slaves long gone, so a churn of pods does not grow the map forever.
        slaves.retain(|_, r| at.saturating_duration_since(r.at) < SLAVE_FORGOTTEN);
    }

    /// Listeners of `stream` across live slaves, and how many slaves are live.
    pub fn totals(&self, stream: &str) -> (u64, usize) {
        self.totals_at(stream, Instant::now())
    }

    /// [`Cluster::totals`] as seen at `now`.
    pub fn totals_at(&self, stream: &str, now: Instant) -> (u64, usize) {
        let slaves = self.slaves.lock().unwrap_or_else(PoisonError::into_inner);
        let alive: Vec<&SlaveReport> = slaves
            .values()
            .filter(|r| now.saturating_duration_since(r.at) < SLAVE_TIMEOUT)
            .collect();
        let total = alive
            .iter()
            .map(|r| r.streams.get(stream).map_or(0, |s| s.listeners))
            .sum();
        (total, alive.len())
    }

    /// The newest chunk each slave not yet forgotten last reported for `stream`: a slave that
    /// went silent keeps its last report, so its lag grows with the master's audio.
    pub fn tips(&self, stream: &str) -> Vec<(String, Option<u64>)> {
        self.tips_at(stream, Instant::now())
    }

    /// [`Cluster::tips`] as seen at `now`.
    pub fn tips_at(&self, stream: &str, now: Instant) -> Vec<(String, Option<u64>)> {
        let slaves = self.slaves.lock().unwrap_or_else(PoisonError::into_inner);
        let mut v: Vec<_> = slaves
            .iter()
            .filter(|(_, r)| now.saturating_duration_since(r.at) < SLAVE_FORGOTTEN)
            .map(|(id, r)| (id.clone(), r.streams.get(stream).and_then(|s| s.last_seq)))
            .collect();
        v.sort();
        v
    }

    /// Live slaves by id, with their reports' age.
    pub fn alive(&self) -> Vec<(String, std::time::Duration)> {
        let slaves = self.slaves.lock().unwrap_or_else(PoisonError::into_inner);
        let mut v: Vec<_> = slaves
            .iter()
            .filter(|(_, r)| r.at.elapsed() < SLAVE_TIMEOUT)
            .map(|(id, r)| (id.clone(), r.at.elapsed()))
            .collect();
        v.sort();
        v
    }
}

/// A listener counted against the stream's and the server's limits until dropped.
pub struct ListenerSlot {
    app: Arc<App>,
    stream: Arc<Stream>,
    gauge: prometheus_client::metrics::gauge::Gauge,
}

impl Drop for ListenerSlot {
    fn drop(&mut self) {
        self.stream.remove_listener();
        self.app.listeners.fetch_sub(1, Ordering::AcqRel);
        self.gauge.dec();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Full {
    #[error("the stream has reached its listener limit")]
    Stream,
    #[error("the server has reached its listener limit")]
    Server,
}

impl App {
    pub fn new(
        settings: Settings,
        role: Role,
        sink: Option<Arc<dyn ChunkSink>>,
        cluster: Option<Cluster>,
    ) -> Arc<App> {
        App::named(settings, role, sink, cluster, &crate::events::this_host())
    }

    /// [`App::new`] raising its events as `node`: a slave uses its cluster id, the name the
    /// master's stats and `replica.*` events know it by (two slaves may share a host).
    pub fn named(
        settings: Settings,
        role: Role,
        sink: Option<Arc<dyn ChunkSink>>,
        cluster: Option<Cluster>,
        node: &str,
    ) -> Arc<App> {
        let metrics = Metrics::new();
        let events = Arc::new(Events::new(node, metrics.events.clone()));
        Arc::new(App {
            settings,
            role,
            streams: RwLock::new(BTreeMap::new()),
            metrics,
            events,
            listeners: AtomicU64::new(0),
            shutdown: CancellationToken::new(),
            ready: tokio::sync::watch::Sender::new(false),
            sink,
            fallbacks: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
            started: Instant::now(),
            cluster,
            store: OnceLock::new(),
            master_url: OnceLock::new(),
            preloaded: Mutex::new(HashMap::new()),
            draining: AtomicBool::new(false),
            webhooks: OnceLock::new(),
        })
    }

    /// Deliver events to webhooks from now on (once; later calls are ignored): the server-wide
    /// ones and every stream's own, kept in step with the streams by [`App::apply_streams`].
    pub fn start_webhooks(&self, retry: Retry) {
        let hooks = Webhooks::start(
            &self.events,
            self.metrics.events.clone(),
            retry,
            self.shutdown.clone(),
        );
        if self.webhooks.set(hooks).is_ok() {
            self.sync_webhooks();
        }
    }

    fn sync_webhooks(&self) {
        let Some(webhooks) = self.webhooks.get() else {
            return;
        };
        let server = self.settings.webhooks.iter().map(|config| Hook {
            stream: None,
            config: config.clone(),
        });
        let per_stream: Vec<Hook> = self
            .streams()
            .iter()
            .flat_map(|s| {
                let settings = s.settings();
                settings
                    .webhooks
                    .iter()
                    .map(|config| Hook {
                        stream: Some(settings.key.clone()),
                        config: config.clone(),
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        webhooks.set(server.chain(per_stream).collect());
    }

    /// Set the config store (once; later calls are ignored).
    pub fn set_store(&self, store: Arc<dyn ConfigStore>) {
        let _ = self.store.set(store);
    }

    pub fn store(&self) -> Option<Arc<dyn ConfigStore>> {
        self.store.get().cloned()
    }

    /// Set the master's admin URL (slaves; once).
    pub fn set_master_url(&self, url: &str) {
        let _ = self.master_url.set(url.trim_end_matches('/').to_string());
    }

    pub fn master_url(&self) -> Option<&str> {
        self.master_url.get().map(String::as_str)
    }

    /// Hand a prepared buffer to the stream `key` when it gets created.
    pub fn preload(&self, key: &str, buffer: RewindBuffer) {
        self.preloaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.to_string(), buffer);
    }

    /// Stop taking listeners (and report not ready); connected listeners continue.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
        self.set_ready(false);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub fn cluster_token(&self) -> Option<&str> {
        self.cluster.as_ref().map(|c| c.token.as_str())
    }

    /// On a master: (listeners across slaves plus its own, live slaves).
    pub fn cluster_listeners(&self, key: &str) -> Option<(u64, usize)> {
        if self.role != Role::Master {
            return None;
        }
        let cluster = self.cluster.as_ref()?;
        let (n, alive) = cluster.totals(key);
        let local = self.stream(key).map_or(0, |s| s.listener_count());
        Some((n + local, alive))
    }

    pub fn stream(&self, key: &str) -> Option<Arc<Stream>> {
        self.streams
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    pub fn streams(&self) -> Vec<Arc<Stream>> {
        self.streams
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    pub fn is_ready(&self) -> bool {
        *self.ready.borrow() && !self.shutdown.is_cancelled()
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.send_replace(ready);
    }

    /// Resolves once the role is ready to serve (buffers loaded).
    pub async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    pub fn listener_count(&self) -> u64 {
        self.listeners.load(Ordering::Relaxed)
    }

    /// Count a new listener, or say which limit is reached.
    pub fn acquire_listener(
        self: &Arc<Self>,
        stream: &Arc<Stream>,
        protocol: &str,
    ) -> Result<ListenerSlot, Full> {
        let limit = self.settings.max_listeners.map_or(u64::MAX, u64::from);
        if self
            .listeners
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_err()
        {
            stream.metrics.rejected.inc();
            return Err(Full::Server);
        }
        if !stream.try_add_listener() {
            self.listeners.fetch_sub(1, Ordering::AcqRel);
            stream.metrics.rejected.inc();
            return Err(Full::Stream);
        }
        let (gauge, connections) = self.metrics.listeners(&stream.key, protocol);
        gauge.inc();
        connections.inc();
        Ok(ListenerSlot {
            app: self.clone(),
            stream: stream.clone(),
            gauge,
        })
    }

    /// Make the running streams match `configs`: create new ones, update changed ones in place
    /// (listeners stay), remove the rest (their listeners and sources are closed).
    pub fn apply_streams(self: &Arc<Self>, configs: &BTreeMap<String, StreamConfig>) {
        let current: Vec<String> = self
            .streams
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        let changed = |key: &str, change: &str| {
            self.events.emit(
                Some(key),
                EventKind::ConfigChanged {
                    change: change.to_string(),
                },
            );
        };
        for key in &current {
            if !configs.contains_key(key) {
                self.remove_stream(key);
                changed(key, "removed");
            }
        }
        for (key, config) in configs {
            let settings = self.settings.stream(key, config);
            match self.stream(key) {
                Some(s) if s.settings().format == settings.format => {
                    if *s.settings() != settings {
                        info!(stream = %key, "Stream settings changed; applied in place.");
                        s.update_settings(settings);
                        changed(key, "updated");
                    }
                }
                Some(_) => {
                    warn!(stream = %key, "Stream format changed; recreating the stream.");
                    self.remove_stream(key);
                    self.create_stream(settings);
                    changed(key, "updated");
                }
                None => {
                    self.create_stream(settings);
                    changed(key, "created");
                }
            }
            self.reconcile_fallback(key);
        }
        self.sync_webhooks();
    }

    fn create_stream(self: &Arc<Self>, settings: crate::config::StreamSettings) {
        let key = settings.key.clone();
        let restored = self.restore(&key, &settings);
        // A master numbers discontinuities on from what the store remembers (see
        // `cluster::store::EpochRecorder`).
        let store = (self.role == Role::Master).then(|| self.store()).flatten();
        let floor = store.as_ref().and_then(|s| s.epoch_floor(&key));
        let sink = match &store {
            Some(store) => Some(Arc::new(crate::cluster::store::EpochRecorder {
                inner: self.sink.clone(),
                store: store.clone(),
                recorded: std::sync::atomic::AtomicU32::new(floor.unwrap_or(0)),
            }) as Arc<dyn ChunkSink>),
            None => self.sink.clone(),
        };
        let stream = Stream::new(
            settings,
            self.role.ingests(),
            &self.metrics,
            restored,
            sink,
            self.settings.chunk_duration,
        )
        .with_parent(&self.shutdown)
        .with_events(self.events.clone());
        if let Some(floor) = floor {
            let next = stream.raise_epoch(floor);
            info!(stream = %key, floor, next = ?next, "Discontinuity epoch continued from the store.");
        }
        let stream = Arc::new(stream);
        stream.start_leveler();
        info!(stream = %key, format = %stream.settings().format, "Stream created.");
        // Listeners wait on the buffer's tip alone; wake them when the stream goes away.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let waker = stream.clone();
            runtime.spawn(async move {
                waker.removed.cancelled().await;
                waker.buffer.wake();
            });
            if self.role.ingests() {
                runtime.spawn(crate::source::sourceless::watch(stream.clone()));
            }
            // Every role: a master counts the whole cluster, a slave its own listeners (its
            // events reach the master over NATS, named by the slave).
            let (app, counted) = (self.clone(), stream.clone());
            runtime.spawn(crate::serve::audience::watch(stream.clone(), move || {
                app.cluster_listeners(&counted.key)
                    .map_or_else(|| counted.listener_count(), |(n, _)| n)
            }));
        }
        self.streams
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, stream);
    }

    fn restore(&self, key: &str, settings: &crate::config::StreamSettings) -> Option<RewindBuffer> {
        if let Some(buffer) = self
            .preloaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key)
        {
            return Some(buffer);
        }
        self.read_dump(key, settings.rewind)
    }

    /// The stream's buffer as last dumped, if this role keeps dumps and there is a usable one.
    pub fn read_dump(&self, key: &str, rewind: std::time::Duration) -> Option<RewindBuffer> {
        let dir = self.settings.dump_dir.as_ref()?;
        if !self.role.ingests() {
            return None;
        }
        let started = Instant::now();
        match dump::read_file(dir, key) {
            Ok(Some(chunks)) => {
                let mut buffer = RewindBuffer::new(rewind);
                let n = chunks.len();
                for c in chunks {
                    buffer.push(c);
                }
                info!(
                    stream = %key,
                    chunks = n,
                    seconds = buffer.held() as f64 / 1e6,
                    ms = started.elapsed().as_millis() as u64,
                    "Rewind buffer restored from dump."
                );
                self.events.emit(
                    Some(key),
                    EventKind::BufferRestored {
                        from: "dump".into(),
                        chunks: n as u64,
                        seconds: buffer.held() as f64 / 1e6,
                    },
                );
                Some(buffer)
            }
            Ok(None) => None,
            Err(e) => {
                warn!(
                    stream = %key,
                    path = %dump::path_for(dir, key).display(),
                    error = %e,
                    "Ignoring unusable rewind dump; starting with an empty buffer."
                );
                None
            }
        }
    }

    pub fn remove_stream(&self, key: &str) {
        let removed = self
            .streams
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
        if let Some(s) = removed {
            s.removed.cancel();
            self.metrics.remove_stream(key);
            if let Some((_, token)) = self
                .fallbacks
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(key)
            {
                token.cancel();
            }
            info!(stream = %key, "Stream removed.");
        }
    }

    /// Start, restart or stop the stream's fallback source to match its settings.
    fn reconcile_fallback(self: &Arc<Self>, key: &str) {
        if !self.role.ingests() {
            return;
        }
        let Some(stream) = self.stream(key) else {
            return;
        };
        let want = stream.settings().fallback.clone();
        let mut fallbacks = self
            .fallbacks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((url, token)) = fallbacks.get(key) {
            if Some(url) == want.as_ref() {
                return;
            }
            token.cancel();
            fallbacks.remove(key);
        }
        if let Some(url) = want {
            let token = stream.removed.child_token();
            fallbacks.insert(key.to_string(), (url.clone(), token.clone()));
            let timeout = self.settings.source_timeout;
            self.tasks
                .spawn(crate::source::fallback::run(stream, url, timeout, token));
        }
    }

    /// Dump every stream's buffer (if persistence is on).
    pub async fn dump_all(&self) {
        let Some(dir) = self.settings.dump_dir.clone() else {
            return;
        };
        if !self.role.ingests() {
            return;
        }
        for stream in self.streams() {
            let chunks = stream.buffer.snapshot();
            let key = stream.key.clone();
            let dir = dir.clone();
            let started = Instant::now();
            let n = chunks.len();
            let result =
                tokio::task::spawn_blocking(move || dump::write_file(&dir, &key, &chunks)).await;
            match result {
                Ok(Ok(bytes)) => tracing::debug!(
                    stream = %stream.key,
                    chunks = n,
                    bytes,
                    ms = started.elapsed().as_millis() as u64,
                    "Rewind buffer dumped."
                ),
                Ok(Err(e)) => warn!(stream = %stream.key, error = %e, "Rewind dump failed."),
                Err(e) => warn!(stream = %stream.key, error = %e, "Rewind dump task failed."),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::core::codec::Format;

    #[test]
    fn listener_totals_add_up_live_slaves_only() {
        let c = Cluster::new("t".into());
        let t0 = Instant::now();
        let counts = |pairs: &[(&str, u64)]| {
            pairs
                .iter()
                .map(|(k, n)| {
                    let r = Reported {
                        listeners: *n,
                        last_seq: None,
                    };
                    (k.to_string(), r)
                })
                .collect::<HashMap<_, _>>()
        };
        c.report_at("a", counts(&[("live", 3), ("news", 1)]), t0);
        c.report_at("b", counts(&[("live", 2)]), t0 + Duration::from_secs(10));
        assert_eq!(c.totals_at("live", t0 + Duration::from_secs(11)), (5, 2));
        assert_eq!(c.totals_at("news", t0 + Duration::from_secs(11)), (1, 2));
        // A slave that reports again replaces its counts; one that went silent drops out.
        c.report_at("b", counts(&[("live", 7)]), t0 + Duration::from_secs(12));
        assert_eq!(c.totals_at("live", t0 + Duration::from_secs(20)), (7, 1));
        assert_eq!(c.totals_at("other", t0 + Duration::from_secs(20)), (0, 1));
        assert_eq!(c.totals_at("live", t0 + Duration::from_secs(40)), (0, 0));
    }

    #[test]
    fn a_silent_slave_stays_in_the_lag_check_until_forgotten() {
        let c = Cluster::new("t".into());
        let t0 = Instant::now();
        let tip = |seq| {
            HashMap::from([(
                "live".to_string(),
                Reported {
                    listeners: 0,
                    last_seq: Some(seq),
                },
            )])
        };
        c.report_at("a", tip(7), t0);
        // Paused past the liveness timeout: no longer counted for listeners, still behind.
        let later = t0 + SLAVE_TIMEOUT + Duration::from_secs(5);
        assert_eq!(c.totals_at("live", later).1, 0);
        assert_eq!(c.tips_at("live", later), vec![("a".to_string(), Some(7))]);
        assert!(c.tips_at("live", t0 + SLAVE_FORGOTTEN).is_empty());
    }

    #[tokio::test]
    async fn applying_configs_creates_updates_in_place_and_removes() {
        let app = App::new(Settings::defaults("pw".into()), Role::Slave, None, None);
        let config = |format, rewind: u64| StreamConfig {
            format,
            rewind: Some(Duration::from_secs(rewind)),
            ..StreamConfig::default()
        };
        app.apply_streams(&BTreeMap::from([
            ("a".to_string(), config(Format::Mp3, 60)),
            ("b".to_string(), config(Format::Mp3, 60)),
            ("c".to_string(), config(Format::Mp3, 60)),
        ]));
        let (a, b, c) = (
            app.stream("a").unwrap(),
            app.stream("b").unwrap(),
            app.stream("c").unwrap(),
        );
        app.apply_streams(&BTreeMap::from([
            ("a".to_string(), config(Format::Mp3, 30)),
            ("c".to_string(), config(Format::Aac, 60)),
            ("d".to_string(), config(Format::Mp3, 60)),
        ]));
        // Changed in place: the same stream (its listeners stay), new settings.
        let a2 = app.stream("a").unwrap();
        assert!(Arc::ptr_eq(&a, &a2));
        assert_eq!(a2.settings().rewind, Duration::from_secs(30));
        assert!(!a.removed.is_cancelled());
        // Removed: its listeners end. A format change recreates the stream.
        assert!(app.stream("b").is_none() && b.removed.is_cancelled());
        assert!(c.removed.is_cancelled());
        assert_eq!(app.stream("c").unwrap().settings().format, Format::Aac);
        assert!(app.stream("d").is_some());
    }
}
