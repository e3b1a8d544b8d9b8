//! Where stream configs come from: one trait, two stores.
//!
//! - [`StaticStore`]: the config file's streams, held in memory (standalone). The admin API can
//!   change them until the next restart.
//! - [`RedisStore`]: the cluster's store (master and slaves), written by the operator or the
//!   master's admin API. The layout and the document are the contract crate's
//!   (`streammachine_contract::{Keys, Document}`, see `docs/cluster.md`).
//!
//! Both publish whole snapshots through a `watch` channel, so a consumer that misses an update
//! still ends up with the latest state, and a consumer never sees a half-applied change.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{ConfigError, StreamConfig, ValidateStream, validate_key};
use crate::retry::Backoff;
use streammachine_contract::{Document, SchemaOnly};
pub use streammachine_contract::{Keys, SCHEMA_VERSION};

/// Stream configs by key.
pub type Configs = BTreeMap<String, StreamConfig>;

/// `None` until the store has been read once (a slave is not ready before that).
pub type ConfigWatch = watch::Receiver<Option<Arc<Configs>>>;

/// How long one Redis operation may take before the store counts Redis as down.
const REDIS_TIMEOUT: Duration = Duration::from_secs(5);
/// A full reload even without notifications: a PUBLISH lost during a reconnect cannot leave a
/// stale config behind for long.
const RESYNC_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot encode the stream config: {0}")]
    Encode(#[from] serde_json::Error),
}

/// A stream config store with change notifications.
pub trait ConfigStore: Send + Sync {
    /// The current configs, and every later change as a whole snapshot.
    fn watch(&self) -> ConfigWatch;
    /// Create or replace one stream's config.
    fn put<'a>(
        &'a self,
        key: &'a str,
        config: &'a StreamConfig,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Remove a stream; removing an absent one is not an error.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;
    /// The newest discontinuity epoch an earlier master ingested for `key`, as last read with
    /// the configs. Only the cluster's store keeps it (standalone has its dump).
    fn epoch_floor(&self, _key: &str) -> Option<u32> {
        None
    }
    /// Remember that `key` reached `epoch` (written in the background; best effort).
    fn record_epoch(&self, _key: &str, _epoch: u32) {}
}

/// A master's chunk sink that also records every epoch advance in the store, then passes the
/// chunk on: a master restarted without a dump and without slaves continues the numbering.
pub struct EpochRecorder {
    pub inner: Option<Arc<dyn crate::stream::ChunkSink>>,
    pub store: Arc<dyn ConfigStore>,
    /// The newest epoch recorded (or read at start).
    pub recorded: std::sync::atomic::AtomicU32,
}

impl crate::stream::ChunkSink for EpochRecorder {
    fn publish(&self, stream: &str, chunk: &crate::core::chunk::Chunk) {
        use std::sync::atomic::Ordering;
        if self.recorded.fetch_max(chunk.epoch, Ordering::Relaxed) < chunk.epoch {
            self.store.record_epoch(stream, chunk.epoch);
        }
        if let Some(inner) = &self.inner {
            inner.publish(stream, chunk);
        }
    }
}

// === StaticStore ===

/// The config file's streams, in memory.
pub struct StaticStore {
    tx: watch::Sender<Option<Arc<Configs>>>,
}

impl StaticStore {
    pub fn new(configs: Configs) -> StaticStore {
        StaticStore {
            tx: watch::Sender::new(Some(Arc::new(configs))),
        }
    }

    fn modify(&self, f: impl FnOnce(&mut Configs)) {
        self.tx.send_modify(|current| {
            let mut next = current.as_deref().cloned().unwrap_or_default();
            f(&mut next);
            *current = Some(Arc::new(next));
        });
    }
}

impl ConfigStore for StaticStore {
    fn watch(&self) -> ConfigWatch {
        self.tx.subscribe()
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        config: &'a StreamConfig,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.modify(|c| {
                c.insert(key.to_string(), config.clone());
            });
            Ok(())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.modify(|c| {
                c.remove(key);
            });
            Ok(())
        })
    }
}

// === The stored document (sans-IO) ===

#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("not a JSON stream document: {0}")]
    Json(serde_json::Error),
    #[error("unsupported document schema {0} (this version reads schema {SCHEMA_VERSION})")]
    Schema(u64),
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

/// Parse and validate `{"schema":1,"stream":{...}}` stored for `key`.
pub fn parse_document(key: &str, json: &str) -> Result<StreamConfig, DocumentError> {
    // The version first, so a newer schema is reported as such rather than as unknown fields.
    let SchemaOnly { schema } = serde_json::from_str(json).map_err(DocumentError::Json)?;
    if schema != SCHEMA_VERSION {
        return Err(DocumentError::Schema(schema));
    }
    let doc: Document = serde_json::from_str(json).map_err(DocumentError::Json)?;
    validate_key(key)?;
    doc.stream.validate(&format!("streams.{key}"))?;
    Ok(doc.stream)
}

pub fn encode_document(config: &StreamConfig) -> Result<String, serde_json::Error> {
    serde_json::to_string(&Document::new(config.clone()))
}

/// What one stored key holds when read.
#[derive(Debug)]
pub enum Stored {
    /// In the key set, with this document.
    Document(String),
    /// Not in the key set, or no document: the stream is gone.
    Absent,
}

/// Fold freshly read keys into the previous snapshot. A document that does not parse keeps the
/// stream's previous config (a bad write must not take a station off the air); the errors are
/// returned for logging.
pub fn fold(previous: &Configs, read: Vec<(String, Stored)>) -> (Configs, Vec<(String, String)>) {
    let mut next = previous.clone();
    let mut errors = vec![];
    for (key, stored) in read {
        match stored {
            Stored::Absent => {
                next.remove(&key);
            }
            Stored::Document(json) => match parse_document(&key, &json) {
                Ok(config) => {
                    next.insert(key, config);
                }
                Err(e) => errors.push((key, e.to_string())),
            },
        }
    }
    (next, errors)
}

// === RedisStore ===

pub struct RedisStore {
    client: redis::Client,
    commands: ConnectionManager,
    keys: Keys,
    tx: watch::Sender<Option<Arc<Configs>>>,
    /// Stored epochs by stream key, read with the documents (before the snapshot that creates
    /// a stream is published).
    epochs: std::sync::Mutex<BTreeMap<String, u32>>,
}

// Only ever raises the stored epoch: a late write of an older value cannot lower it.
// KEYS: epoch key. ARGV: epoch.
const RAISE_EPOCH_SCRIPT: &str = r"
local current = tonumber(redis.call('GET', KEYS[1]) or '-1') or -1
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1])
end
return 1
";

async fn timed<T>(
    f: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(REDIS_TIMEOUT, f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(StoreError::Timeout(REDIS_TIMEOUT)),
    }
}

impl RedisStore {
    /// A store on `url`. Connects in the background and keeps reconnecting with backoff, so a
    /// role starts (and keeps serving its last config) while Redis is away. `seed`: streams
    /// declared on the command line, written once when absent.
    pub fn start(
        url: &str,
        prefix: &str,
        seed: Configs,
        shutdown: CancellationToken,
    ) -> Result<Arc<RedisStore>, StoreError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1);
        let commands = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        let store = Arc::new(RedisStore {
            client,
            commands,
            keys: Keys::new(prefix),
            tx: watch::Sender::new(None),
            epochs: Default::default(),
        });
        tokio::spawn(store.clone().run(seed, shutdown));
        Ok(store)
    }

    async fn run(self: Arc<Self>, mut seed: Configs, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
        let mut ever_connected = false;
        let mut errors = crate::retry::Repeated::default();
        loop {
            let started = tokio::time::Instant::now();
            let result = tokio::select! {
                r = self.session(&mut seed, &mut ever_connected, &mut errors) => r,
                _ = shutdown.cancelled() => return,
            };
            // A session that lasted a while was healthy: start the backoff over.
            if started.elapsed() > Duration::from_secs(30) {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            if let Err(e) = result {
                let kept = self.tx.borrow().as_ref().map(|c| c.len());
                if !errors.should_log("down") {
                    debug!(error = %e, retry_in = ?delay, "Config store (Redis) still unavailable.");
                } else {
                    match kept {
                        Some(n) => warn!(
                            error = %e,
                            streams = n,
                            retry_in = ?delay,
                            "Config store (Redis) unavailable; keeping the last config and retrying."
                        ),
                        None => warn!(
                            error = %e,
                            retry_in = ?delay,
                            "Config store (Redis) unavailable; no config yet, retrying."
                        ),
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Subscribe, seed, load everything, then follow notifications until the connection drops.
    async fn session(
        &self,
        seed: &mut Configs,
        ever_connected: &mut bool,
        errors: &mut crate::retry::Repeated,
    ) -> Result<(), StoreError> {
        // Subscribe before reading, so no change between the read and the subscription is lost.
        let mut pubsub = timed(self.client.get_async_pubsub()).await?;
        timed(pubsub.subscribe(self.keys.channel())).await?;
        if !seed.is_empty() {
            self.seed(seed).await?;
            seed.clear();
        }
        self.reload_all().await?;
        if errors.clear() && *ever_connected {
            info!("Config store (Redis) reachable again.");
        }
        *ever_connected = true;
        let mut messages = pubsub.into_on_message();
        let mut resync = tokio::time::interval(RESYNC_INTERVAL);
        resync.tick().await;
        loop {
            tokio::select! {
                msg = messages.next() => {
                    let Some(msg) = msg else {
                        return Err(StoreError::Redis(redis::RedisError::from((
                            redis::ErrorKind::Io,
                            "notification connection closed",
                        ))));
                    };
                    let key: String = msg.get_payload().unwrap_or_default();
                    debug!(stream = %key, "Config change announced.");
                    self.reload_key(&key).await?;
                }
                _ = resync.tick() => self.reload_all().await?,
            }
        }
    }

    /// Write the declared streams that the store does not have yet.
    async fn seed(&self, seed: &Configs) -> Result<(), StoreError> {
        let mut con = self.commands.clone();
        for (key, config) in seed {
            let doc = encode_document(config)?;
            let created: bool = timed(
                redis::cmd("SET")
                    .arg(self.keys.stream(key))
                    .arg(&doc)
                    .arg("NX")
                    .query_async::<Option<String>>(&mut con),
            )
            .await?
            .is_some();
            if created {
                timed(con.sadd::<_, _, ()>(self.keys.streams(), key)).await?;
                timed(con.publish::<_, _, ()>(self.keys.channel(), key)).await?;
                info!(stream = %key, "Declared stream written to the config store.");
            } else {
                info!(stream = %key, "Declared stream already in the config store; the stored config wins.");
            }
        }
        Ok(())
    }

    async fn read_keys(
        &self,
        keys: Vec<String>,
        members: &[String],
    ) -> Result<Vec<(String, Stored)>, StoreError> {
        let mut con = self.commands.clone();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let doc: Option<String> = if members.contains(&key) {
                timed(con.get(self.keys.stream(&key))).await?
            } else {
                None
            };
            let epoch: Option<String> = timed(con.get(self.keys.epoch(&key))).await?;
            if let Some(epoch) = epoch.and_then(|e| e.parse::<u32>().ok()) {
                let mut epochs = self.epochs.lock().unwrap_or_else(|e| e.into_inner());
                let known = epochs.entry(key.clone()).or_insert(epoch);
                *known = (*known).max(epoch);
            }
            out.push((key, doc.map_or(Stored::Absent, Stored::Document)));
        }
        Ok(out)
    }

    async fn reload_all(&self) -> Result<(), StoreError> {
        let mut con = self.commands.clone();
        let members: Vec<String> = timed(con.smembers(self.keys.streams())).await?;
        let previous = self.tx.borrow().clone().unwrap_or_default();
        if members.is_empty() && !previous.is_empty() {
            // A Redis that restarted without its data looks exactly like this; taking every
            // station off the air for it would be worse than keeping them until the operator
            // writes the configs again. Deleting streams one by one (announced) still works.
            warn!(
                streams = previous.len(),
                "The config store holds no streams at all; keeping the current ones (did Redis restart without its data?)."
            );
            return Ok(());
        }
        // Keys that left the set are read as absent.
        let mut keys: Vec<String> = previous.keys().cloned().collect();
        keys.extend(members.iter().cloned());
        keys.sort();
        keys.dedup();
        let read = self.read_keys(keys, &members).await?;
        self.publish(&previous, read, true);
        Ok(())
    }

    async fn reload_key(&self, key: &str) -> Result<(), StoreError> {
        let mut con = self.commands.clone();
        let members: Vec<String> = timed(con.smembers(self.keys.streams())).await?;
        let previous = self.tx.borrow().clone().unwrap_or_default();
        let read = self.read_keys(vec![key.to_string()], &members).await?;
        self.publish(&previous, read, false);
        Ok(())
    }

    fn publish(&self, previous: &Configs, read: Vec<(String, Stored)>, full: bool) {
        let (next, errors) = fold(previous, read);
        for (key, error) in errors {
            warn!(stream = %key, %error, "Ignoring an invalid stream config in the store; keeping the previous one.");
        }
        let first = self.tx.borrow().is_none();
        if first || *previous != next {
            if first || full {
                info!(
                    streams = next.len(),
                    "Stream configs loaded from the config store."
                );
            }
            self.tx.send_replace(Some(Arc::new(next)));
        }
    }
}

impl ConfigStore for RedisStore {
    fn watch(&self) -> ConfigWatch {
        self.tx.subscribe()
    }

    fn epoch_floor(&self, key: &str) -> Option<u32> {
        let epochs = self.epochs.lock().unwrap_or_else(|e| e.into_inner());
        epochs.get(key).copied()
    }

    fn record_epoch(&self, key: &str, epoch: u32) {
        {
            let mut epochs = self.epochs.lock().unwrap_or_else(|e| e.into_inner());
            let known = epochs.entry(key.to_string()).or_insert(epoch);
            *known = (*known).max(epoch);
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut con = self.commands.clone();
        let redis_key = self.keys.epoch(key);
        let stream = key.to_string();
        runtime.spawn(async move {
            let script = redis::Script::new(RAISE_EPOCH_SCRIPT);
            let mut invocation = script.key(redis_key);
            invocation.arg(epoch);
            match timed(invocation.invoke_async::<i64>(&mut con)).await {
                Ok(_) => debug!(stream = %stream, epoch, "Discontinuity epoch recorded."),
                Err(e) => warn!(stream = %stream, epoch, error = %e, "Cannot record the discontinuity epoch; a restart without a dump may number discontinuities backwards."),
            }
        });
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        config: &'a StreamConfig,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let doc = encode_document(config)?;
            let mut con = self.commands.clone();
            let mut pipe = redis::pipe();
            pipe.atomic()
                .set(self.keys.stream(key), doc)
                .ignore()
                .sadd(self.keys.streams(), key)
                .ignore()
                .publish(self.keys.channel(), key)
                .ignore();
            timed(pipe.query_async::<()>(&mut con)).await
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut con = self.commands.clone();
            let mut pipe = redis::pipe();
            pipe.atomic()
                .del(self.keys.stream(key))
                .ignore()
                .srem(self.keys.streams(), key)
                .ignore()
                .publish(self.keys.channel(), key)
                .ignore();
            timed(pipe.query_async::<()>(&mut con)).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::codec::Format;

    #[test]
    fn parses_the_operator_document() {
        let json = r#"{"schema":1,"stream":{"format":"aac","rewind":"1h 30m","burst":"30s","icy_metaint":16000,"source_password":"pw","hls_segment":"6s"}}"#;
        let c = parse_document("live", json).unwrap();
        assert_eq!(c.format, Format::Aac);
        assert_eq!(c.rewind, Some(Duration::from_secs(5400)));
        assert_eq!(c.source_password.as_deref(), Some("pw"));
        let back = encode_document(&c).unwrap();
        assert_eq!(parse_document("live", &back).unwrap(), c);
    }

    #[test]
    fn rejects_bad_documents_with_a_reason() {
        let err = |key: &str, json: &str| parse_document(key, json).unwrap_err().to_string();
        assert!(err("live", r#"{"schema":2,"stream":{}}"#).contains("schema 2"));
        assert!(err("live", "not json").contains("not a JSON"));
        assert!(err("live", r#"{"schema":1,"stream":{"formatt":"mp3"}}"#).contains("formatt"));
        assert!(err("live", r#"{"schema":1,"stream":{"icy_metaint":0}}"#).contains("icy_metaint"));
        assert!(err("a/b", r#"{"schema":1,"stream":{}}"#).contains("streams.a/b"));
        assert!(err("live", r#"{"schema":1,"stream":{},"extra":1}"#).contains("extra"));
    }

    #[test]
    fn fold_applies_changes_and_keeps_the_last_good_config() {
        let mut previous = Configs::new();
        previous.insert(
            "live".into(),
            StreamConfig {
                rewind: Some(Duration::from_secs(60)),
                ..StreamConfig::default()
            },
        );
        previous.insert("gone".into(), StreamConfig::default());
        let read = vec![
            ("live".into(), Stored::Document("{broken".into())),
            ("gone".into(), Stored::Absent),
            (
                "news".into(),
                Stored::Document(r#"{"schema":1,"stream":{"format":"aac"}}"#.into()),
            ),
        ];
        let (next, errors) = fold(&previous, read);
        assert_eq!(next.keys().collect::<Vec<_>>(), vec!["live", "news"]);
        assert_eq!(
            next["live"], previous["live"],
            "bad write keeps the old config"
        );
        assert_eq!(next["news"].format, Format::Aac);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, "live");
    }

    #[tokio::test]
    async fn static_store_announces_changes() {
        let store = StaticStore::new(Configs::from([("live".into(), StreamConfig::default())]));
        let mut rx = store.watch();
        assert_eq!(rx.borrow_and_update().as_ref().unwrap().len(), 1);
        store.put("news", &StreamConfig::default()).await.unwrap();
        assert!(rx.has_changed().unwrap());
        assert_eq!(rx.borrow_and_update().as_ref().unwrap().len(), 2);
        store.delete("live").await.unwrap();
        let now = rx.borrow_and_update().clone().unwrap();
        assert_eq!(now.keys().collect::<Vec<_>>(), vec!["news"]);
    }
}
