//! Watching a server's events: `GET /api/events` read as Server-Sent Events, and a webhook
//! receiver on a loopback port. Both collect in the background; tests wait on what they hold.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::eventually;
use crate::server::Server;

/// What a collector has received so far, in order.
#[derive(Clone, Default)]
pub struct Received(Arc<Mutex<Vec<Value>>>);

impl Received {
    pub fn all(&self) -> Vec<Value> {
        self.0.lock().expect("events lock").clone()
    }

    fn push(&self, v: Value) {
        self.0.lock().expect("events lock").push(v);
    }

    /// How many have arrived: a mark for [`Received::matching_from`].
    pub fn len(&self) -> usize {
        self.0.lock().expect("events lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Those `pick` selects.
    pub fn matching(&self, pick: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.matching_from(0, pick)
    }

    /// Those `pick` selects among what arrived after the first `from`.
    pub fn matching_from(&self, from: usize, pick: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.all()
            .into_iter()
            .skip(from)
            .filter(|v| pick(v))
            .collect()
    }

    /// Wait until one `pick` selects has arrived; the first such.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pick: impl Fn(&Value) -> bool,
    ) -> Value {
        self.wait_for_from(0, what, timeout, pick).await
    }

    /// [`Received::wait_for`] among what arrived after the first `from`.
    pub async fn wait_for_from(
        &self,
        from: usize,
        what: &str,
        timeout: Duration,
        pick: impl Fn(&Value) -> bool,
    ) -> Value {
        let pick = &pick;
        eventually(what, timeout, || async move {
            self.matching_from(from, pick).into_iter().next()
        })
        .await
    }
}

/// `GET /api/events` of a server's admin port, read until dropped.
pub struct EventStream {
    pub received: Received,
    task: JoinHandle<()>,
}

impl EventStream {
    /// Connect (with `query`, e.g. `type=replica.*`), and return once the server answered 200.
    pub async fn open(server: &Server, query: &str) -> EventStream {
        let path = if query.is_empty() {
            "/api/events".to_string()
        } else {
            format!("/api/events?{query}")
        };
        // No overall timeout: the stream lasts as long as the test.
        let http = reqwest::Client::new();
        let mut req = http.get(server.admin_url(&path));
        if let Some(t) = server.admin_token() {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("GET /api/events");
        assert_eq!(resp.status().as_u16(), 200, "GET {path}");
        let received = Received::default();
        let sink = received.clone();
        let task = tokio::spawn(async move {
            let mut body = resp.bytes_stream();
            let mut parser = SseParser::default();
            while let Some(Ok(bytes)) = body.next().await {
                for v in parser.feed(&bytes) {
                    sink.push(v);
                }
            }
        });
        EventStream { received, task }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Server-Sent Events to JSON values: the `data:` lines of each event, joined, parsed.
#[derive(Default)]
pub struct SseParser {
    line: Vec<u8>,
    data: String,
}

impl SseParser {
    /// Feed bytes as they come; the events completed by them.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Value> {
        let mut out = vec![];
        for &b in bytes {
            if b != b'\n' {
                self.line.push(b);
                continue;
            }
            let line = String::from_utf8_lossy(&self.line)
                .trim_end_matches('\r')
                .to_string();
            self.line.clear();
            if line.is_empty() {
                if !self.data.is_empty() {
                    let data = std::mem::take(&mut self.data);
                    out.push(serde_json::from_str(&data).expect("an event's data is JSON"));
                }
            } else if let Some(d) = line.strip_prefix("data:") {
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(d.strip_prefix(' ').unwrap_or(d));
            }
            // `id:`, `event:` and `:` keep-alive comments: the data holds all of it.
        }
        out
    }
}

/// An HTTP endpoint on loopback that answers every POST with 204 and keeps the JSON bodies.
pub struct WebhookReceiver {
    pub url: String,
    pub received: Received,
    task: JoinHandle<()>,
}

impl WebhookReceiver {
    pub async fn start() -> WebhookReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let received = Received::default();
        let sink = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let sink = sink.clone();
                tokio::spawn(async move {
                    let _ = serve(sock, sink).await;
                });
            }
        });
        WebhookReceiver {
            url,
            received,
            task,
        }
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Requests on one (kept-alive) connection.
async fn serve(sock: tokio::net::TcpStream, sink: Received) -> std::io::Result<()> {
    let mut sock = BufReader::new(sock);
    loop {
        let mut length = 0usize;
        let mut first = true;
        loop {
            let mut line = String::new();
            if sock.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let line = line.trim_end();
            if line.is_empty() && !first {
                break;
            }
            first = false;
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        sock.read_exact(&mut body).await?;
        if let Ok(v) = serde_json::from_slice::<Value>(&body) {
            sink.push(v);
        }
        sock.get_mut()
            .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
            .await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_split_anywhere_are_parsed() {
        let text = ": keep-alive\n\nid: a-1\nevent: x\ndata: {\"id\":\"a-1\"}\n\nid: a-2\r\ndata: {\"id\":\r\ndata: \"a-2\"}\r\n\r\n";
        let mut p = SseParser::default();
        let mut got = vec![];
        for piece in text.as_bytes().chunks(7) {
            got.extend(p.feed(piece));
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0]["id"], "a-1");
        assert_eq!(got[1]["id"], "a-2");
    }
}
