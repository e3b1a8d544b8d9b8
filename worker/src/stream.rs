//! A stream at run time: its settings, shared rewind buffer, sources (where this role ingests)
//! and listener accounting.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::{SilenceAction, StreamSettings};
use crate::core::chunk::{Chunk, Meta};
use crate::core::chunker::Chunker;
use crate::core::codec::Frame;
use crate::core::level::chunks::ChunkLeveler;
use crate::core::rewind::{Inserted, RewindBuffer};
use crate::events::{EventKind, Events, Promotion};
use crate::metrics::{Metrics, SourceLabel, StreamMetrics};
use crate::source::monitor::{self, Monitor};
use crate::time::now_micros;

/// The newest audio in a buffer; listeners wait on changes of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tip {
    pub last_seq: Option<u64>,
    /// End (content time, µs) of the newest chunk.
    pub end: i64,
    /// Bumped on every change, so a filled gap also wakes waiters.
    pub version: u64,
}

/// A rewind buffer shared by ingest (one writer) and every listener (readers). Readers hold a
/// `seq` cursor, never a private queue; chunk bytes are shared `Bytes`, never copied per listener.
pub struct SharedBuffer {
    // std RwLock: no `.await` ever happens while it is held and critical sections are tiny.
    inner: RwLock<RewindBuffer>,
    tip: watch::Sender<Tip>,
}

impl SharedBuffer {
    pub fn new(buffer: RewindBuffer) -> Self {
        let tip = tip_of(&buffer, 0);
        SharedBuffer {
            inner: RwLock::new(buffer),
            tip: watch::Sender::new(tip),
        }
    }

    pub fn read<R>(&self, f: impl FnOnce(&RewindBuffer) -> R) -> R {
        f(&self.inner.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn write<R>(&self, f: impl FnOnce(&mut RewindBuffer) -> R) -> R {
        let mut guard = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let r = f(&mut guard);
        let version = self.tip.borrow().version + 1;
        self.tip.send_replace(tip_of(&guard, version));
        r
    }

    pub fn push(&self, chunk: Chunk) -> Inserted {
        self.write(|b| b.push(chunk).0)
    }

    /// Insert many chunks under one lock (a snapshot, a repaired range).
    pub fn push_many(&self, chunks: impl IntoIterator<Item = Chunk>) -> Merged {
        self.write(|b| {
            let mut m = Merged::default();
            for c in chunks {
                match b.push(c).0 {
                    Inserted::Appended => m.appended += 1,
                    Inserted::Filled => m.filled += 1,
                    Inserted::Duplicate => m.duplicates += 1,
                }
            }
            m
        })
    }

    pub fn set_max(&self, max: Duration) {
        self.write(|b| b.set_max(max));
    }

    pub fn replace(&self, buffer: RewindBuffer) {
        self.write(|b| *b = buffer);
    }

    pub fn clear(&self) {
        self.write(|b| b.clear());
    }

    /// Wake every listener waiting on the tip (the stream is going away).
    pub fn wake(&self) {
        self.tip.send_modify(|t| t.version += 1);
    }

    pub fn subscribe(&self) -> watch::Receiver<Tip> {
        self.tip.subscribe()
    }

    pub fn tip(&self) -> Tip {
        *self.tip.borrow()
    }

    /// The first chunk with `seq >= seq`, and the oldest seq held.
    pub fn next_chunk(&self, seq: u64) -> (Option<Chunk>, Option<u64>) {
        self.read(|b| (b.get_from(seq).cloned(), b.first().map(|c| c.seq)))
    }

    /// Every chunk, oldest first (cheap: reference-counted bytes).
    pub fn snapshot(&self) -> Vec<Chunk> {
        self.read(|b| b.iter().cloned().collect())
    }

    pub fn held_seconds(&self) -> f64 {
        self.read(|b| b.held() as f64 / 1e6)
    }
}

/// What merging chunks into a buffer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Merged {
    pub appended: usize,
    pub filled: usize,
    pub duplicates: usize,
}

fn tip_of(b: &RewindBuffer, version: u64) -> Tip {
    Tip {
        last_seq: b.last().map(|c| c.seq),
        end: b.last().map_or(0, |c| c.end()),
        version,
    }
}

/// Where chunks go besides the local buffer (the master publishes them to NATS).
pub trait ChunkSink: Send + Sync {
    fn publish(&self, stream: &str, chunk: &Chunk);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Encoder,
    Fallback,
}

/// What listeners learn about the station from the live source (`ice-*`/`icy-*` headers).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StationInfo {
    pub name: Option<String>,
    pub description: Option<String>,
    pub genre: Option<String>,
    pub url: Option<String>,
    pub bitrate: Option<String>,
    pub public: Option<String>,
    pub audio_info: Option<String>,
}

impl StationInfo {
    /// The `icy-*` response headers for listeners.
    pub fn icy_headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![];
        for (name, v) in [
            ("icy-name", &self.name),
            ("icy-description", &self.description),
            ("icy-genre", &self.genre),
            ("icy-url", &self.url),
            ("icy-br", &self.bitrate),
            ("icy-pub", &self.public),
            ("icy-audio-info", &self.audio_info),
        ] {
            if let Some(v) = v {
                // Header values must be visible ASCII; anything else is dropped, not mangled.
                if v.bytes().all(|b| (0x20..0x7F).contains(&b) || b == b'\t') {
                    h.push((name, v.clone()));
                }
            }
        }
        h
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceInfo {
    pub id: u64,
    pub kind: SourceKind,
    pub remote: String,
    pub user_agent: Option<String>,
    pub connected_at: String,
    pub codec: Option<String>,
    pub station: StationInfo,
}

struct IngestState {
    chunker: Chunker,
    /// Priority order: index 0 is live. Encoders in arrival order, the fallback last.
    sources: Vec<SourceInfo>,
    /// Per source id: its level monitor and what its departure event reports.
    tracked: HashMap<u64, Tracked>,
    next_id: u64,
}

struct Tracked {
    monitor: Option<Monitor>,
    since: Instant,
    bytes: u64,
}

impl IngestState {
    fn is_silent(&self, id: u64) -> bool {
        self.tracked
            .get(&id)
            .and_then(|t| t.monitor.as_ref())
            .is_some_and(|m| m.level.is_silent())
    }

    /// The first standby with audio now: metered, not in dead air, above the threshold.
    fn audible_standby(&self, threshold_dbfs: i16) -> Option<usize> {
        self.sources
            .iter()
            .skip(1)
            .position(|s| {
                self.tracked
                    .get(&s.id)
                    .and_then(|t| t.monitor.as_ref())
                    .is_some_and(|m| {
                        m.level.metered()
                            && !m.level.is_silent()
                            && m.level.rms_dbfs() >= f32::from(threshold_dbfs)
                    })
            })
            .map(|i| i + 1)
    }
}

/// Where this role ingests (standalone, master): sources, the chunker, the title.
pub struct Ingest {
    state: Mutex<IngestState>,
    /// New chunks on their way to the leveler, which measures them on the blocking pool and
    /// then appends them (see [`Stream::start_leveler`]); unset, chunks are appended at once.
    leveler: std::sync::OnceLock<mpsc::UnboundedSender<Chunk>>,
    /// Connected encoders (the fallback waits while this is above zero).
    encoders: watch::Sender<usize>,
}

pub struct Stream {
    pub key: String,
    settings: RwLock<Arc<StreamSettings>>,
    pub buffer: SharedBuffer,
    pub metrics: StreamMetrics,
    pub ingest: Option<Ingest>,
    sink: Option<Arc<dyn ChunkSink>>,
    listeners: AtomicU64,
    /// Cancelled when the stream is removed: its listeners and sources end.
    pub removed: CancellationToken,
    /// HLS caches and listener sessions.
    pub hls: crate::serve::hls::StreamHls,
    events: Option<Arc<Events>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StreamError {
    #[error("no source with id {0}")]
    NoSuchSource(u64),
    #[error("this role does not ingest audio")]
    NoIngest,
}

impl Stream {
    /// `restored` continues a buffer loaded from a dump.
    pub fn new(
        settings: StreamSettings,
        ingest: bool,
        metrics: &Metrics,
        restored: Option<RewindBuffer>,
        sink: Option<Arc<dyn ChunkSink>>,
        chunk_duration: Duration,
    ) -> Stream {
        let mut buffer = restored.unwrap_or_default();
        buffer.set_max(settings.rewind);
        let ingest = ingest.then(|| {
            // Never reuse a seq: continue after the restored buffer, and never below the
            // wall-clock milliseconds, which grow faster than any chunk counter could.
            let now_ms = (now_micros() / 1000).max(0) as u64;
            let next_seq = buffer.last().map_or(now_ms, |c| (c.seq + 1).max(now_ms));
            let meta = Arc::new(Meta {
                title: settings.title.clone(),
                url: settings.url.clone(),
            });
            Ingest {
                state: Mutex::new(IngestState {
                    chunker: Chunker::new(
                        chunk_duration,
                        next_seq,
                        buffer.last().map(|c| (c.end(), c.epoch)),
                        meta,
                    ),
                    sources: vec![],
                    tracked: HashMap::new(),
                    next_id: 1,
                }),
                encoders: watch::Sender::new(0),
                leveler: std::sync::OnceLock::new(),
            }
        });
        let stream_metrics = metrics.stream(&settings.key);
        stream_metrics
            .buffer_seconds
            .set(buffer.held() as f64 / 1e6);
        stream_metrics
            .buffer_target_seconds
            .set(settings.rewind.as_secs_f64());
        Stream {
            key: settings.key.clone(),
            settings: RwLock::new(Arc::new(settings)),
            buffer: SharedBuffer::new(buffer),
            metrics: stream_metrics,
            ingest,
            sink,
            listeners: AtomicU64::new(0),
            removed: CancellationToken::new(),
            hls: Default::default(),
            events: None,
        }
    }

    /// Report source changes and dead air through `events`.
    pub fn with_events(mut self, events: Arc<Events>) -> Stream {
        self.events = Some(events);
        self
    }

    /// Raise an event about this stream (no-op without an event bus).
    pub fn emit(&self, kind: EventKind) {
        if let Some(events) = &self.events {
            events.emit(Some(&self.key), kind);
        }
    }

    /// Tie the stream's life to `parent` (the process's shutdown): shutting down ends the
    /// stream's listeners and sources, and each of them waits on one token instead of two.
    pub fn with_parent(mut self, parent: &CancellationToken) -> Stream {
        self.removed = parent.child_token();
        self
    }

    pub fn settings(&self) -> Arc<StreamSettings> {
        self.settings
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// See [`Chunker::raise_epoch`]; returns the epoch the next chunk gets (`None`: no ingest).
    pub fn raise_epoch(&self, floor: u32) -> Option<u32> {
        let ingest = self.ingest.as_ref()?;
        let mut state = ingest.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.chunker.raise_epoch(floor);
        Some(state.chunker.epoch())
    }

    /// Apply changed settings in place: listeners stay connected.
    pub fn update_settings(&self, new: StreamSettings) {
        let old = self.settings();
        if old.rewind != new.rewind {
            self.buffer.set_max(new.rewind);
            self.metrics
                .buffer_target_seconds
                .set(new.rewind.as_secs_f64());
        }
        if (old.title != new.title || old.url != new.url) && self.ingest.is_some() {
            let _ = self.set_meta(
                Meta {
                    title: new.title.clone(),
                    url: new.url.clone(),
                },
                "config",
            );
        }
        *self
            .settings
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(new);
    }

    pub fn listener_count(&self) -> u64 {
        self.listeners.load(Ordering::Relaxed)
    }

    /// Take a listener slot if the stream's limit allows.
    pub fn try_add_listener(&self) -> bool {
        let limit = self.settings().max_listeners.map_or(u64::MAX, u64::from);
        self.listeners
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }

    pub fn remove_listener(&self) {
        self.listeners.fetch_sub(1, Ordering::AcqRel);
    }

    fn with_ingest<R>(
        &self,
        f: impl FnOnce(&mut IngestState, &mut Vec<Chunk>) -> R,
    ) -> Result<R, StreamError> {
        let ingest = self.ingest.as_ref().ok_or(StreamError::NoIngest)?;
        let mut state = ingest.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = vec![];
        let r = f(&mut state, &mut out);
        // Handed on while the ingest lock is held, so chunks reach the buffer in seq order.
        for chunk in out {
            match ingest.leveler.get() {
                Some(leveler) => {
                    if let Err(unsent) = leveler.send(chunk) {
                        // The leveler has stopped (the stream is going away): keep the audio.
                        self.append(unsent.0);
                    }
                }
                None => {
                    self.append(chunk);
                }
            }
        }
        self.metrics.sources.set(state.sources.len() as i64);
        self.metrics
            .source_connected
            .set(i64::from(!state.sources.is_empty()));
        if state.sources.is_empty() {
            // No source is not dead air (the sourceless alarm covers it).
            self.metrics.stream_silent.set(0);
        }
        // With failover on, an encoder in dead air does not hold the fallback back.
        let failover = self.settings().silence.action == SilenceAction::Failover;
        let encoders = state
            .sources
            .iter()
            .filter(|s| s.kind == SourceKind::Encoder && !(failover && state.is_silent(s.id)))
            .count();
        ingest.encoders.send_if_modified(|n| {
            let changed = *n != encoders;
            *n = encoders;
            changed
        });
        Ok(r)
    }

    /// Measure the levels of every chunk this stream makes before it is appended: on the
    /// blocking pool, one chunk after another, so the buffer, the NATS subject and the dumps
    /// get chunks with their levels in seq order. Decoding half a second of audio takes well
    /// under a millisecond, so the queue stays near empty (an unbounded queue keeps the order
    /// without ever blocking ingest). No-op outside a runtime or on a role that does not ingest.
    pub fn start_leveler(self: &Arc<Self>) {
        let (Some(ingest), Ok(runtime)) = (&self.ingest, tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<Chunk>();
        if ingest.leveler.set(tx).is_err() {
            return;
        }
        let stream = Arc::downgrade(self);
        runtime.spawn_blocking(move || {
            let mut leveler = ChunkLeveler::new();
            while let Some(mut chunk) = rx.blocking_recv() {
                let levels = leveler.measure(&chunk);
                if !levels.points.is_empty() {
                    chunk.levels = Some(Arc::new(levels));
                }
                let Some(stream) = stream.upgrade() else {
                    return;
                };
                stream.append(chunk);
            }
        });
    }

    /// Add a chunk made here or received from the master.
    pub fn append(&self, chunk: Chunk) -> Inserted {
        if let Some(sink) = &self.sink {
            sink.publish(&self.key, &chunk);
        }
        self.metrics.chunks.inc();
        let inserted = self.buffer.push(chunk);
        self.metrics.buffer_seconds.set(self.buffer.held_seconds());
        inserted
    }

    /// Add chunks fetched from elsewhere (a snapshot, a repaired gap) in one step. Not
    /// published to the sink: they are not new audio.
    pub fn merge(&self, chunks: Vec<Chunk>) -> Merged {
        let merged = self.buffer.push_many(chunks);
        self.metrics
            .chunks
            .inc_by((merged.appended + merged.filled) as u64);
        self.metrics.buffer_seconds.set(self.buffer.held_seconds());
        merged
    }

    /// A source whose audio has been recognised joins the stream. Encoders queue behind earlier
    /// encoders; any encoder displaces the fallback.
    pub fn add_source(&self, mut info: SourceInfo) -> Result<u64, StreamError> {
        let settings = self.settings();
        let (id, live, info) = self.with_ingest(|st, out| {
            let id = st.next_id;
            st.next_id += 1;
            info.id = id;
            let pos = match info.kind {
                SourceKind::Encoder => st
                    .sources
                    .iter()
                    .position(|s| s.kind == SourceKind::Fallback)
                    .unwrap_or(st.sources.len()),
                SourceKind::Fallback => st.sources.len(),
            };
            let monitor = Monitor::start(monitor::Context {
                stream: self.key.clone(),
                source_id: id,
                settings: settings.silence.detect,
                events: self.events.clone(),
                silent_gauge: self
                    .metrics
                    .source_silent
                    .get_or_create(&self.source_label(id))
                    .clone(),
            });
            st.tracked.insert(
                id,
                Tracked {
                    monitor,
                    since: Instant::now(),
                    bytes: 0,
                },
            );
            st.sources.insert(pos, info.clone());
            if pos == 0 {
                st.chunker.new_source(out);
            }
            (id, pos == 0, info)
        })?;
        self.emit(EventKind::SourceConnected {
            source_id: id,
            source_kind: match info.kind {
                SourceKind::Encoder => "encoder",
                SourceKind::Fallback => "fallback",
            }
            .to_string(),
            remote: info.remote,
            user_agent: info.user_agent,
            codec: info.codec.unwrap_or_default(),
            live,
        });
        Ok(id)
    }

    fn source_label(&self, id: u64) -> SourceLabel {
        SourceLabel {
            stream: self.key.clone(),
            source: id.to_string(),
        }
    }

    /// The source left: `reason` is what its departure event says (`closed`, `timeout`, ...).
    pub fn remove_source(&self, id: u64, reason: &str) {
        let left = self.with_ingest(|st, out| {
            let pos = st.sources.iter().position(|s| s.id == id)?;
            st.sources.remove(pos);
            let tracked = st.tracked.remove(&id);
            let next = (pos == 0)
                .then(|| st.sources.first().map(|s| s.id))
                .flatten();
            if pos == 0 {
                // The live source left: close its last chunk; the next one starts anew.
                st.chunker.new_source(out);
            }
            Some((tracked, next))
        });
        let Ok(Some((tracked, next))) = left else {
            return;
        };
        self.metrics.source_silent.remove(&self.source_label(id));
        let (bytes, seconds) = tracked.map_or((0, 0), |t| (t.bytes, t.since.elapsed().as_secs()));
        self.emit(EventKind::SourceDisconnected {
            source_id: id,
            reason: reason.to_string(),
            bytes,
            seconds,
        });
        if let Some(next) = next {
            self.emit(EventKind::SourcePromoted {
                source_id: next,
                by: Promotion::Takeover,
            });
        }
    }

    /// Make a standby source live.
    pub fn promote_source(&self, id: u64) -> Result<(), StreamError> {
        let moved = self.with_ingest(|st, out| {
            let pos = st
                .sources
                .iter()
                .position(|s| s.id == id)
                .ok_or(StreamError::NoSuchSource(id))?;
            if pos != 0 {
                let s = st.sources.remove(pos);
                st.sources.insert(0, s);
                st.chunker.new_source(out);
            }
            Ok(pos != 0)
        })??;
        if moved {
            self.emit(EventKind::SourcePromoted {
                source_id: id,
                by: Promotion::Admin,
            });
        }
        Ok(())
    }

    /// Frames from source `id`; every source's frames are metered, only the live source's
    /// become audio. With failover on, a live source in dead air gives way here to the first
    /// standby with audio.
    pub fn source_frames(&self, id: u64, frames: &[Frame]) -> bool {
        let silence = self.settings().silence;
        let (live, promoted) = self
            .with_ingest(|st, out| {
                if let Some(t) = st.tracked.get_mut(&id) {
                    t.bytes += frames.iter().map(|f| f.data.len() as u64).sum::<u64>();
                    if let Some(m) = &t.monitor {
                        m.feed(frames);
                    }
                }
                let mut promoted = None;
                if st.sources.first().map(|s| s.id) == Some(id)
                    && silence.action == SilenceAction::Failover
                    && st.is_silent(id)
                    && let Some(pos) = st.audible_standby(silence.detect.threshold_dbfs)
                {
                    let s = st.sources.remove(pos);
                    promoted = Some(s.id);
                    st.sources.insert(0, s);
                    st.chunker.new_source(out);
                }
                let Some(live) = st.sources.first().map(|s| s.id) else {
                    return (false, promoted);
                };
                if let Some(m) = st.tracked.get(&live).and_then(|t| t.monitor.as_ref()) {
                    self.metrics
                        .source_level_dbfs
                        .set(f64::from(m.level.rms_dbfs()));
                    self.metrics
                        .stream_silent
                        .set(i64::from(m.level.is_silent()));
                }
                if live != id {
                    return (false, promoted);
                }
                let now = now_micros();
                for f in frames {
                    st.chunker.push(f, now, out);
                }
                (true, promoted)
            })
            .unwrap_or((false, None));
        if let Some(standby) = promoted {
            tracing::warn!(
                stream = %self.key,
                from = id,
                to = standby,
                "Dead air: failing over to a standby source with audio."
            );
            self.emit(EventKind::SourcePromoted {
                source_id: standby,
                by: Promotion::Failover,
            });
        }
        live
    }

    /// The live source is in dead air (tripped and not yet cleared).
    pub fn live_silent(&self) -> bool {
        // A read: not through `with_ingest`, which also hands on chunks and updates gauges.
        self.ingest.as_ref().is_some_and(|ingest| {
            let st = ingest.state.lock().unwrap_or_else(PoisonError::into_inner);
            st.sources.first().is_some_and(|s| st.is_silent(s.id))
        })
    }

    pub fn set_source_codec(&self, id: u64, codec: &str) {
        let _ = self.with_ingest(|st, _| {
            if let Some(s) = st.sources.iter_mut().find(|s| s.id == id) {
                s.codec = Some(codec.to_string());
            }
        });
    }

    /// The title and url from here on; `by` says who changed them (`source`, `admin`,
    /// `config`) in the `stream.metadata.changed` event.
    pub fn set_meta(&self, meta: Meta, by: &str) -> Result<(), StreamError> {
        let changed = self.with_ingest(|st, out| {
            let changed = *st.chunker.meta() != meta;
            st.chunker.set_meta(Arc::new(meta.clone()), out);
            changed
        })?;
        if changed {
            self.metadata_changed(meta, by);
        }
        Ok(())
    }

    /// Metadata from a source itself (in-band ICY titles of a relay): applies only while that
    /// source is live.
    pub fn set_meta_from_source(&self, id: u64, meta: Meta) {
        let changed = self.with_ingest(|st, out| {
            let live = st.sources.first().map(|s| s.id) == Some(id);
            let changed = live && *st.chunker.meta() != meta;
            if changed {
                st.chunker.set_meta(Arc::new(meta.clone()), out);
            }
            changed
        });
        if changed == Ok(true) {
            self.metadata_changed(meta, "relay");
        }
    }

    fn metadata_changed(&self, meta: Meta, by: &str) {
        self.emit(EventKind::StreamMetadataChanged {
            title: meta.title,
            url: meta.url,
            by: by.to_string(),
        });
    }

    pub fn meta(&self) -> Meta {
        match &self.ingest {
            Some(i) => (*i
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .chunker
                .meta())
            .clone(),
            None => self
                .buffer
                .read(|b| b.last().map(|c| (*c.meta).clone()))
                .unwrap_or_default(),
        }
    }

    pub fn sources(&self) -> Vec<SourceInfo> {
        self.ingest
            .as_ref()
            .map(|i| {
                i.state
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .sources
                    .clone()
            })
            .unwrap_or_default()
    }

    /// The live source's station headers.
    pub fn station(&self) -> StationInfo {
        self.sources()
            .first()
            .map(|s| s.station.clone())
            .unwrap_or_default()
    }

    pub fn encoders(&self) -> Option<watch::Receiver<usize>> {
        self.ingest.as_ref().map(|i| i.encoders.subscribe())
    }

    /// The codec key of the newest audio.
    pub fn codec(&self) -> Option<String> {
        self.buffer.read(|b| b.last().map(|c| c.codec.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::core::codec::{Format, frames_of};

    fn stream() -> Stream {
        let s = Settings::defaults("pw".into());
        let settings = s.stream("live", &Default::default());
        Stream::new(
            settings,
            true,
            &Metrics::new(),
            None,
            None,
            Duration::from_millis(500),
        )
    }

    fn info(kind: SourceKind) -> SourceInfo {
        SourceInfo {
            id: 0,
            kind,
            remote: "127.0.0.1:1".into(),
            user_agent: None,
            connected_at: String::new(),
            codec: None,
            station: StationInfo::default(),
        }
    }

    fn frames(n: usize) -> Vec<Frame> {
        let mut data = vec![];
        for _ in 0..n {
            let mut f = vec![0xFF, 0xFB, 0x90, 0x64];
            f.resize(417, 0);
            data.extend(f);
        }
        frames_of(Format::Mp3, &data)
    }

    #[test]
    fn first_encoder_is_live_standby_takes_over_fallback_yields() {
        let s = stream();
        let fb = s.add_source(info(SourceKind::Fallback)).unwrap();
        assert!(s.source_frames(fb, &frames(40)));
        let a = s.add_source(info(SourceKind::Encoder)).unwrap();
        let b = s.add_source(info(SourceKind::Encoder)).unwrap();
        assert!(
            !s.source_frames(fb, &frames(10)),
            "fallback yields to an encoder"
        );
        assert!(s.source_frames(a, &frames(40)));
        assert!(!s.source_frames(b, &frames(40)), "b waits as standby");
        s.remove_source(a, "closed");
        assert!(s.source_frames(b, &frames(40)));
        s.promote_source(fb).unwrap();
        assert!(s.source_frames(fb, &frames(40)));
        assert_eq!(s.promote_source(99), Err(StreamError::NoSuchSource(99)));
        // Each source change is a discontinuity, and seq never repeats.
        let chunks = s.buffer.snapshot();
        assert!(chunks.windows(2).all(|w| w[0].seq < w[1].seq));
        assert_eq!(chunks.iter().filter(|c| c.is_discontinuity()).count(), 3);
    }

    #[test]
    fn listener_limit() {
        let s = stream();
        let mut settings = (*s.settings()).clone();
        settings.max_listeners = Some(2);
        s.update_settings(settings);
        assert!(s.try_add_listener());
        assert!(s.try_add_listener());
        assert!(!s.try_add_listener());
        s.remove_listener();
        assert!(s.try_add_listener());
    }
}
