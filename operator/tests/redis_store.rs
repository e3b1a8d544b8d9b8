//! The Redis config store against a real `redis-server` on a loopback port of its own: the
//! key layout and PUBLISH contract with the worker, no re-announcement of unchanged configs,
//! and key ownership across namespaces.

// Helpers outside #[test] fns fail by panicking too; clippy only exempts the test fns.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures::StreamExt;
use redis::AsyncCommands;
use streammachine_operator::store::{ConfigStore, PutOutcome, RedisStore, StoreError};
use streammachine_testkit::{Service, free_port};

#[tokio::test]
async fn put_and_delete_follow_the_worker_contract() {
    let server = Service::redis().await;
    let url = server.url();
    let store = RedisStore::new(&url, "station").unwrap();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe("station:config").await.unwrap();
    let document = r#"{"schema":1,"stream":{"format":"mp3"}}"#;

    assert_eq!(
        store.put("radio/live", "live", document).await.unwrap(),
        PutOutcome::Written
    );
    let stored: String = redis.get("station:stream:live").await.unwrap();
    assert_eq!(stored, document);
    let member: bool = redis.sismember("station:streams", "live").await.unwrap();
    assert!(member);
    let mut messages = pubsub.on_message();
    let message = tokio::time::timeout(Duration::from_secs(30), messages.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message.get_payload::<String>().unwrap(), "live");

    // The same config again: nothing written, nothing announced.
    assert_eq!(
        store.put("radio/live", "live", document).await.unwrap(),
        PutOutcome::Unchanged
    );
    // A set that lost the key is repaired (and announced) even if the value is equal.
    let _: i64 = redis.srem("station:streams", "live").await.unwrap();
    assert_eq!(
        store.put("radio/live", "live", document).await.unwrap(),
        PutOutcome::Written
    );

    // Another namespace's Stream cannot take or remove the key.
    let conflict = store.put("other/live", "live", document).await.unwrap_err();
    assert!(
        matches!(&conflict, StoreError::KeyInUse { owner, .. } if owner == "radio/live"),
        "{conflict}"
    );
    store.delete("other/live", "live").await.unwrap();
    let still: Option<String> = redis.get("station:stream:live").await.unwrap();
    assert!(still.is_some());

    store.delete("radio/live", "live").await.unwrap();
    let gone: Option<String> = redis.get("station:stream:live").await.unwrap();
    assert_eq!(gone, None);
    let members: Vec<String> = redis.smembers("station:streams").await.unwrap();
    assert!(members.is_empty());
    let owners: Option<String> = redis.hget("station:stream-owners", "live").await.unwrap();
    assert_eq!(owners, None);
    // Deleting twice is fine (cleanup must be idempotent).
    store.delete("radio/live", "live").await.unwrap();

    // Two announcements (initial write, repair) plus the delete. This checks an absence too (the
    // unchanged put announced nothing), so it reads until the channel has been quiet for a
    // moment: there is no event for "nothing more comes".
    let mut payloads = Vec::new();
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_millis(500), messages.next()).await
    {
        payloads.push(message.get_payload::<String>().unwrap());
    }
    assert_eq!(payloads, ["live", "live", "live"]);
}

#[tokio::test]
async fn an_unreachable_redis_is_an_error_not_a_hang() {
    let port = free_port();
    let store = RedisStore::new(&format!("redis://127.0.0.1:{port}/0"), "streammachine").unwrap();
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        store.put("radio/live", "live", "{}"),
    )
    .await
    .expect("the store gave up in time");
    assert!(matches!(result, Err(StoreError::Redis(_))), "{result:?}");
}
