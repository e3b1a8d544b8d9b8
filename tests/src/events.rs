//! The two ends events arrive at: `GET /api/events` read as Server-Sent Events, and a webhook
//! receiver on a free loopback port that records every request and checks its Standard Webhooks
//! signature. Both record what arrived with the instant it arrived; tests wait on the records.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::eventually;
use crate::server::Server;

/// One event as `/api/events` sent it (`id`, `time`, `stream`, `node`, `type`, `data`).
#[derive(Debug, Clone)]
pub struct Received {
    pub event: Value,
    pub at: Instant,
}

/// A client of `/api/events` collecting events in the background until dropped.
pub struct EventStream {
    events: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl EventStream {
    /// Subscribe with the query `query` (e.g. `type=source.*&stream=live`); returns once the
    /// server answered 200, so events raised afterwards are seen.
    pub async fn open(server: &Server, query: &str) -> EventStream {
        let resp = server.admin_get(&format!("/api/events?{query}")).await;
        assert_eq!(resp.status(), 200, "GET /api/events?{query}");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let task = tokio::spawn(async move {
            let mut body = resp.bytes_stream();
            let mut buf = String::new();
            while let Some(Ok(bytes)) = body.next().await {
                buf.push_str(&String::from_utf8_lossy(&bytes));
                // One event per blank-line-terminated block; only `data:` matters here (its
                // JSON repeats the id and the type).
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    let data: String = block
                        .lines()
                        .filter_map(|l| l.strip_prefix("data:"))
                        .map(str::trim_start)
                        .collect::<Vec<_>>()
                        .join("\n");
                    if data.is_empty() {
                        continue;
                    }
                    let event: Value = serde_json::from_str(&data).expect("event JSON");
                    let at = Instant::now();
                    sink.lock().unwrap().push(Received { event, at });
                }
            }
        });
        EventStream { events, task }
    }

    pub fn all(&self) -> Vec<Received> {
        self.events.lock().unwrap().clone()
    }

    /// Events of type `kind` so far.
    pub fn of(&self, kind: &str) -> Vec<Received> {
        self.all()
            .into_iter()
            .filter(|r| r.event["type"] == kind)
            .collect()
    }

    /// The first event of type `kind` matching `pred`, waiting up to `timeout` for it.
    pub async fn wait(
        &self,
        kind: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Received {
        eventually(&format!("event `{kind}`"), timeout, || {
            let found = self.of(kind).into_iter().find(|r| pred(&r.event));
            async move { found }
        })
        .await
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How a [`Receiver`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `200 OK`.
    Ok,
    /// This status, e.g. 500.
    Status(u16),
    /// Reads the request and never answers (holds the connection open).
    Hang,
}

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("webhook body is JSON")
    }

    /// Whether `webhook-signature` holds `v1,base64(HMAC-SHA256(key, id.timestamp.body))`, the
    /// key being the secret's bytes (base64-decoded after `whsec_`, else the string itself).
    pub fn signed_with(&self, secret: &str) -> bool {
        let key = match secret.strip_prefix("whsec_") {
            Some(b64) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("base64 secret"),
            None => secret.as_bytes().to_vec(),
        };
        let (Some(id), Some(ts), Some(sigs)) = (
            self.header("webhook-id"),
            self.header("webhook-timestamp"),
            self.header("webhook-signature"),
        ) else {
            return false;
        };
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
        let mut signed = format!("{id}.{ts}.").into_bytes();
        signed.extend_from_slice(&self.body);
        let tag = ring::hmac::sign(&key, &signed);
        let expected = format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
        );
        sigs.split(' ').any(|s| s == expected)
    }
}

/// An HTTP endpoint on a free loopback port recording every request (keep-alive aware).
pub struct Receiver {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    task: JoinHandle<()>,
}

impl Receiver {
    pub async fn start(answer: Answer) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let sink = requests.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((sock, _)) = listener.accept().await {
                conns.spawn(serve(sock, answer, sink.clone()));
            }
        });
        Receiver {
            addr,
            requests,
            task,
        }
    }

    /// `http://127.0.0.1:<port>/hook`.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Wait until `pred` holds for the requests so far.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[Request]) -> bool,
    ) -> Vec<Request> {
        eventually(what, timeout, || {
            let r = self.requests();
            let done = pred(&r);
            async move { done.then_some(r) }
        })
        .await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection task.
        self.task.abort();
    }
}

/// A URL nothing listens on (a port that was free a moment ago): connections are refused.
pub fn closed_port_url() -> String {
    format!("http://127.0.0.1:{}/hook", crate::services::free_port())
}

async fn serve(mut sock: TcpStream, answer: Answer, sink: Arc<Mutex<Vec<Request>>>) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    loop {
        // The head.
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            match sock.read(&mut tmp).await {
                Ok(n) if n > 0 => buf.extend_from_slice(&tmp[..n]),
                _ => return,
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.lines();
        let mut start = lines.next().unwrap_or_default().split(' ');
        let method = start.next().unwrap_or_default().to_string();
        let path = start.next().unwrap_or_default().to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let len = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            match sock.read(&mut tmp).await {
                Ok(n) if n > 0 => buf.extend_from_slice(&tmp[..n]),
                _ => return,
            }
        }
        let body = buf[head_end..head_end + len].to_vec();
        buf.drain(..head_end + len);
        sink.lock().unwrap().push(Request {
            method,
            path,
            headers,
            body,
            at: Instant::now(),
        });
        let status = match answer {
            Answer::Ok => 200,
            Answer::Status(s) => s,
            Answer::Hang => {
                // Keep the socket open until the client gives up (or the receiver stops).
                while matches!(sock.read(&mut tmp).await, Ok(n) if n > 0) {}
                return;
            }
        };
        let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
        if sock.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}
