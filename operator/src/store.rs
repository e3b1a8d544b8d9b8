//! The master's config store in Redis: the operator writes, the master and slaves read and watch.
//!
//! Layout (the contract crate's [`Keys`], shared with the worker):
//! - SET `{prefix}:streams` holds every stream key;
//! - STRING `{prefix}:stream:{key}` holds the JSON document of `config::StreamConfig`;
//! - after every write or delete, `PUBLISH {prefix}:config {key}`.
//!
//! The operator also keeps HASH `{prefix}:stream-owners` (key → `namespace/name` of the Stream
//! that wrote it), read by nobody else. Stream keys are global to the master while Streams are
//! namespaced: without it, `live` in two namespaces would overwrite each other's config and
//! deleting one would take the other off the air.

use std::time::Duration;

use futures::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Errors of the config store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis could not be reached or answered with an error.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Another Stream already owns the key.
    #[error("stream key {key:?} is already used by Stream {owner}")]
    KeyInUse {
        /// The contested key.
        key: String,
        /// `namespace/name` of the Stream owning it.
        owner: String,
    },
}

/// What `put` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The stored config was already equal: nothing written, nothing published, so the master
    /// and slaves are not asked to reload on every periodic reconcile.
    Unchanged,
    /// The config was written and announced.
    Written,
}

/// Where stream configs live. A trait so reconciler tests can use an in-memory store.
pub trait ConfigStore: Send + Sync {
    /// Stores `document` under `key` for the Stream `owner` (`namespace/name`).
    fn put<'a>(
        &'a self,
        owner: &'a str,
        key: &'a str,
        document: &'a str,
    ) -> BoxFuture<'a, Result<PutOutcome, StoreError>>;

    /// Removes `key` if `owner` owns it (or nobody does); a key owned by another Stream stays.
    fn delete<'a>(&'a self, owner: &'a str, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;
}

pub use streammachine_contract::Keys;

// Both scripts run atomically in Redis, so two reconciles of Streams sharing a key cannot
// interleave between the owner check and the write.
// KEYS: owners, stream, streams. ARGV: key, owner, document, channel.
const PUT_SCRIPT: &str = r"
local owner = redis.call('HGET', KEYS[1], ARGV[1])
if owner and owner ~= ARGV[2] then
  return {0, owner}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if redis.call('GET', KEYS[2]) == ARGV[3] and redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1 then
  return {1, ''}
end
redis.call('SET', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('PUBLISH', ARGV[4], ARGV[1])
return {2, ''}
";

// KEYS: owners, stream, streams. ARGV: key, owner, channel.
const DELETE_SCRIPT: &str = r"
local owner = redis.call('HGET', KEYS[1], ARGV[1])
if owner and owner ~= ARGV[2] then
  return 0
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[3], ARGV[1])
return 1
";

/// The Redis-backed store.
pub struct RedisStore {
    connection: ConnectionManager,
    keys: Keys,
    put_script: redis::Script,
    delete_script: redis::Script,
}

impl RedisStore {
    /// A store for `url` (`redis://host:6379/0`). Connects lazily and reconnects by itself, so
    /// the operator starts (and reports the failure per Stream) while Redis is down.
    pub fn new(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2);
        Ok(Self {
            connection: ConnectionManager::new_lazy_with_config(client, config)?,
            keys: Keys::new(prefix),
            put_script: redis::Script::new(PUT_SCRIPT),
            delete_script: redis::Script::new(DELETE_SCRIPT),
        })
    }
}

impl ConfigStore for RedisStore {
    fn put<'a>(
        &'a self,
        owner: &'a str,
        key: &'a str,
        document: &'a str,
    ) -> BoxFuture<'a, Result<PutOutcome, StoreError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let (code, current_owner): (i64, String) = self
                .put_script
                .key(self.keys.owners())
                .key(self.keys.stream(key))
                .key(self.keys.streams())
                .arg(key)
                .arg(owner)
                .arg(document)
                .arg(self.keys.channel())
                .invoke_async(&mut connection)
                .await?;
            match code {
                0 => Err(StoreError::KeyInUse {
                    key: key.to_owned(),
                    owner: current_owner,
                }),
                1 => Ok(PutOutcome::Unchanged),
                _ => Ok(PutOutcome::Written),
            }
        })
    }

    fn delete<'a>(&'a self, owner: &'a str, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let _deleted: i64 = self
                .delete_script
                .key(self.keys.owners())
                .key(self.keys.stream(key))
                .key(self.keys.streams())
                .arg(key)
                .arg(owner)
                .arg(self.keys.channel())
                .invoke_async(&mut connection)
                .await?;
            Ok(())
        })
    }
}

/// In-memory store with the same semantics, for reconciler tests.
#[cfg(test)]
pub mod memory {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;

    /// One stored entry.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Entry {
        /// `namespace/name` of the writer.
        pub owner: String,
        /// The JSON document.
        pub document: String,
    }

    /// A `ConfigStore` in a map; `fail` makes every call fail like an unreachable Redis.
    #[derive(Default)]
    pub struct MemoryStore {
        /// Stored entries by key.
        pub entries: Mutex<BTreeMap<String, Entry>>,
        /// Announced keys, in order (what PUBLISH would send).
        pub published: Mutex<Vec<String>>,
        /// Simulate Redis being down.
        pub fail: std::sync::atomic::AtomicBool,
    }

    impl MemoryStore {
        fn check_up(&self) -> Result<(), StoreError> {
            if self.fail.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(StoreError::Redis(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "connection refused",
                ))));
            }
            Ok(())
        }
    }

    impl ConfigStore for MemoryStore {
        fn put<'a>(
            &'a self,
            owner: &'a str,
            key: &'a str,
            document: &'a str,
        ) -> BoxFuture<'a, Result<PutOutcome, StoreError>> {
            Box::pin(async move {
                self.check_up()?;
                let mut entries = self.entries.lock().unwrap();
                if let Some(existing) = entries.get(key) {
                    if existing.owner != owner {
                        return Err(StoreError::KeyInUse {
                            key: key.to_owned(),
                            owner: existing.owner.clone(),
                        });
                    }
                    if existing.document == document {
                        return Ok(PutOutcome::Unchanged);
                    }
                }
                let entry = Entry {
                    owner: owner.to_owned(),
                    document: document.to_owned(),
                };
                entries.insert(key.to_owned(), entry);
                self.published.lock().unwrap().push(key.to_owned());
                Ok(PutOutcome::Written)
            })
        }

        fn delete<'a>(
            &'a self,
            owner: &'a str,
            key: &'a str,
        ) -> BoxFuture<'a, Result<(), StoreError>> {
            Box::pin(async move {
                self.check_up()?;
                let mut entries = self.entries.lock().unwrap();
                if entries.get(key).is_some_and(|e| e.owner != owner) {
                    return Ok(());
                }
                entries.remove(key);
                self.published.lock().unwrap().push(key.to_owned());
                Ok(())
            })
        }
    }
}
