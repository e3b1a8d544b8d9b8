//! A listener over a raw socket, so tests control exactly what is sent and when bytes are read
//! (or not read at all).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Listener {
    pub sock: TcpStream,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Body bytes that arrived with the head.
    pending: Vec<u8>,
}

impl Listener {
    pub async fn connect(addr: SocketAddr, path: &str, extra: &[(&str, &str)]) -> Listener {
        let mut sock = TcpStream::connect(addr).await.expect("connect");
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: e2e\r\n");
        for (k, v) in extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        sock.write_all(req.as_bytes()).await.expect("send request");
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        let head_end = loop {
            let n = tokio::time::timeout(Duration::from_secs(30), sock.read(&mut tmp))
                .await
                .expect("response head in time")
                .expect("read");
            assert!(n > 0, "connection closed before a response head");
            buf.extend_from_slice(&tmp[..n]);
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .expect("status line");
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Listener {
            sock,
            status,
            headers,
            pending: buf[head_end..].to_vec(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Read until `n` bytes arrived (or the deadline passed): what arrived.
    pub async fn read_bytes(&mut self, n: usize, timeout: Duration) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.pending);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut tmp = vec![0u8; 64 * 1024];
        while out.len() < n {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.sock.read(&mut tmp)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(k)) => out.extend_from_slice(&tmp[..k]),
            }
        }
        if out.len() > n {
            self.pending = out.split_off(n);
        }
        out
    }

    /// Read until `done` holds for everything read so far (checked after each read), failing
    /// the test when the deadline passes or the server closes the connection first. The
    /// condition waits for what the test is about (e.g. a source's frames), not for a window.
    pub async fn read_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&[u8]) -> bool,
    ) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.pending);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut tmp = vec![0u8; 64 * 1024];
        while !done(&out) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.sock.read(&mut tmp)).await {
                Ok(Ok(k)) if k > 0 => out.extend_from_slice(&tmp[..k]),
                Ok(_) => panic!("{what}: connection closed after {} bytes", out.len()),
                Err(_) => panic!(
                    "{what}: not there after {timeout:?} ({} bytes read)",
                    out.len()
                ),
            }
        }
        out
    }

    /// Read everything that arrives within `d`.
    pub async fn read_for(&mut self, d: Duration) -> Vec<u8> {
        self.read_bytes(usize::MAX, d).await
    }

    /// Whether the server closed the connection (reads EOF within `timeout`).
    pub async fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut tmp = vec![0u8; 64 * 1024];
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.sock.read(&mut tmp)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
    }
}
