//! A master and slaves on loopback, with their own redis-server and nats-server.

use std::net::SocketAddr;
use std::time::Duration;

use streammachine::core::chunk::Chunk;

use crate::eventually;
use crate::server::Server;
use crate::services::Service;

pub const TOKEN: &str = "e2e-cluster-token";

/// Redis and NATS for one test.
pub struct Services {
    pub redis: Service,
    pub nats: Service,
}

impl Services {
    pub async fn start() -> Services {
        let (redis, nats) = tokio::join!(Service::redis(), Service::nats());
        Services { redis, nats }
    }

    fn args(&self) -> Vec<String> {
        vec![
            "--redis".into(),
            self.redis.url(),
            "--nats".into(),
            self.nats.url(),
        ]
    }

    /// `streammachine master` with `extra` flags and the cluster token.
    pub async fn master(&self, extra: &[&str]) -> Server {
        let mut args = self.args();
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let master =
            Server::start("master", &args, &[("STREAMMACHINE_CLUSTER_TOKEN", TOKEN)]).await;
        // Ready once its streams exist (a master first asks slaves for chunks it may lack).
        wait_ready(&master, Duration::from_secs(30)).await;
        master
    }

    /// `streammachine slave` following the master whose admin API is at `master`.
    pub async fn slave(&self, master: SocketAddr, extra: &[&str]) -> Server {
        self.slave_with_token(&format!("http://{master}"), TOKEN, extra)
            .await
    }

    pub async fn slave_with_token(&self, master_url: &str, token: &str, extra: &[&str]) -> Server {
        let mut args = self.args();
        args.extend(["--master".to_string(), master_url.to_string()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Server::start("slave", &args, &[("STREAMMACHINE_CLUSTER_TOKEN", token)]).await
    }
}

/// `/readyz` of the listener port.
pub async fn readyz(server: &Server) -> u16 {
    match server.http.get(server.url("/readyz")).send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

pub async fn wait_ready(server: &Server, timeout: Duration) {
    eventually("/readyz to answer 200", timeout, || async {
        (readyz(server).await == 200).then_some(())
    })
    .await;
}

/// The stream's buffer, downloaded through the admin API.
pub async fn dump(server: &Server, key: &str) -> Vec<Chunk> {
    let r = server
        .admin_get(&format!("/api/streams/{key}/rewind"))
        .await;
    assert!(r.status().is_success(), "dump of {key}: {}", r.status());
    let bytes = r.bytes().await.expect("dump body");
    streammachine::core::dump::decode(key, &bytes).expect("valid dump")
}

pub fn seqs(chunks: &[Chunk]) -> Vec<u64> {
    chunks.iter().map(|c| c.seq).collect()
}

/// Whether two buffers hold the same chunks (seq, content time, bytes, metadata).
pub fn same(a: &[Chunk], b: &[Chunk]) -> bool {
    a == b
}

/// Describe how two buffers differ, for assertion messages.
pub fn diff(a: &[Chunk], b: &[Chunk]) -> String {
    let (sa, sb) = (seqs(a), seqs(b));
    let only_a: Vec<u64> = sa.iter().filter(|s| !sb.contains(s)).copied().collect();
    let only_b: Vec<u64> = sb.iter().filter(|s| !sa.contains(s)).copied().collect();
    format!(
        "{} vs {} chunks; only in the first: {:?}; only in the second: {:?}",
        a.len(),
        b.len(),
        &only_a[..only_a.len().min(10)],
        &only_b[..only_b.len().min(10)]
    )
}

/// Wait until every slave's buffer equals the master's.
pub async fn wait_converged(master: &Server, slaves: &[&Server], key: &str, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let m = dump(master, key).await;
        let mut differences = vec![];
        for (i, s) in slaves.iter().enumerate() {
            let d = dump(s, key).await;
            if !same(&m, &d) {
                differences.push(format!("slave {i}: {}", diff(&m, &d)));
            }
        }
        if differences.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "buffers did not converge in {timeout:?}: master vs {}",
            differences.join("; ")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sequence numbers missing between the oldest and newest chunk.
pub fn gaps(chunks: &[Chunk]) -> Vec<(u64, u64)> {
    chunks
        .windows(2)
        .filter(|w| w[1].seq > w[0].seq + 1)
        .map(|w| (w[0].seq + 1, w[1].seq - 1))
        .collect()
}

/// Write a stream config the way the operator does: `stream` goes through the contract's type
/// (so a field the worker would refuse fails here) and the contract's keys.
pub async fn redis_put(redis_url: &str, prefix: &str, key: &str, stream: serde_json::Value) {
    let stream: streammachine_contract::StreamConfig =
        serde_json::from_value(stream).expect("a stream config of the contract");
    let keys = streammachine_contract::Keys::new(prefix);
    let client = redis::Client::open(redis_url).expect("redis url");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let doc = serde_json::to_string(&streammachine_contract::Document::new(stream))
        .expect("encodable document");
    redis::pipe()
        .atomic()
        .set(keys.stream(key), doc)
        .ignore()
        .sadd(keys.streams(), key)
        .ignore()
        .publish(keys.channel(), key)
        .ignore()
        .query_async::<()>(&mut con)
        .await
        .expect("redis write");
}

/// The stored document of a stream, if any.
pub async fn redis_get(redis_url: &str, prefix: &str, key: &str) -> Option<serde_json::Value> {
    let client = redis::Client::open(redis_url).expect("redis url");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let doc: Option<String> = redis::cmd("GET")
        .arg(streammachine_contract::Keys::new(prefix).stream(key))
        .query_async(&mut con)
        .await
        .expect("redis read");
    doc.map(|d| serde_json::from_str(&d).expect("stored JSON"))
}
