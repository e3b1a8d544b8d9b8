//! A minimal HTTP/1.1 keep-alive client: one connection, one request at a time, reconnecting
//! when the server closed it. Enough for HLS players: `Content-Length`, chunked bodies, bodies
//! up to the close, 304s. Bound to a chosen loopback source address so every simulated player is
//! its own client address (the server keys players without a session id by address).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

const MAX_HEAD: usize = 64 * 1024;

pub struct Response {
    pub status: u16,
    pub headers: Headers,
    /// The body as sent (still compressed; chunk framing removed).
    pub body: Vec<u8>,
    /// Bytes on the wire: head plus body with any framing.
    pub wire_bytes: u64,
    /// From sending the request to the first byte of the answer.
    pub ttfb: Duration,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub struct Conn {
    addr: SocketAddr,
    bind: Option<IpAddr>,
    timeout: Duration,
    sock: Option<TcpStream>,
    buf: Vec<u8>,
    connected_once: bool,
    pub reconnects: u64,
}

/// Why an exchange failed: `Stale` (the server closed an idle keep-alive connection before
/// answering, so the request may be sent again on a new one) or anything else.
enum Failure {
    Stale(anyhow::Error),
    Other(anyhow::Error),
}

impl Conn {
    pub fn new(addr: SocketAddr, bind: Option<IpAddr>, timeout: Duration) -> Conn {
        Conn {
            addr,
            bind,
            timeout,
            sock: None,
            buf: Vec::new(),
            connected_once: false,
            reconnects: 0,
        }
    }

    async fn connect(&mut self) -> anyhow::Result<()> {
        let sock = if self.addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(ip) = self.bind {
            sock.bind(SocketAddr::new(ip, 0))
                .with_context(|| format!("bind {ip}"))?;
        }
        let s = tokio::time::timeout(self.timeout, sock.connect(self.addr))
            .await
            .context("connect timed out")?
            .context("connect")?;
        let _ = s.set_nodelay(true);
        if self.connected_once {
            self.reconnects += 1;
        }
        self.connected_once = true;
        self.sock = Some(s);
        Ok(())
    }

    /// Send `request` (a complete request head) and read the whole answer.
    pub async fn send(&mut self, request: &[u8]) -> anyhow::Result<Response> {
        for _ in 0..2 {
            let reused = self.sock.is_some();
            if !reused {
                self.connect().await?;
            }
            match self.exchange(request).await {
                Ok(r) => return Ok(r),
                Err(Failure::Stale(e)) => {
                    self.sock = None;
                    if !reused {
                        return Err(e);
                    }
                }
                Err(Failure::Other(e)) => {
                    self.sock = None;
                    return Err(e);
                }
            }
        }
        Err(anyhow!("connection closed twice before an answer"))
    }

    async fn fill(&mut self) -> anyhow::Result<usize> {
        let sock = self.sock.as_mut().context("not connected")?;
        self.buf.reserve(16 * 1024);
        let n = tokio::time::timeout(self.timeout, sock.read_buf(&mut self.buf))
            .await
            .context("read timed out")??;
        Ok(n)
    }

    async fn exchange(&mut self, request: &[u8]) -> Result<Response, Failure> {
        self.buf.clear();
        if self.buf.capacity() > 256 * 1024 {
            self.buf = Vec::new();
        }
        let sent = Instant::now();
        let sock = self.sock.as_mut().expect("connected");
        if let Err(e) = sock.write_all(request).await {
            return Err(Failure::Stale(e.into()));
        }
        let mut ttfb = None;
        let head_end = loop {
            match self.fill().await {
                Ok(0) if self.buf.is_empty() => {
                    return Err(Failure::Stale(anyhow!("closed before answering")));
                }
                Ok(0) => return Err(Failure::Other(anyhow!("closed inside the answer's head"))),
                Ok(_) => {}
                // A reset before any byte of the answer is a stale connection too.
                Err(e) if self.buf.is_empty() => return Err(Failure::Stale(e)),
                Err(e) => return Err(Failure::Other(e)),
            }
            ttfb.get_or_insert_with(|| sent.elapsed());
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(Failure::Other(anyhow!("answer head over {MAX_HEAD} bytes")));
            }
        };
        let (status, headers, http10) =
            parse_head(&self.buf[..head_end]).map_err(Failure::Other)?;
        let mut r = Response {
            status,
            headers,
            body: Vec::new(),
            wire_bytes: 0,
            ttfb: ttfb.unwrap_or_default(),
        };
        let close = http10
            || r.header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let no_body = status / 100 == 1 || status == 204 || status == 304;
        let chunked = r
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let length = r
            .header("content-length")
            .map(|v| v.trim().parse::<usize>())
            .transpose()
            .map_err(|_| Failure::Other(anyhow!("bad content-length")))?;
        let wire_end = if no_body {
            head_end
        } else if chunked {
            self.read_chunked(head_end, &mut r.body)
                .await
                .map_err(Failure::Other)?
        } else if let Some(n) = length {
            while self.buf.len() < head_end + n {
                match self.fill().await {
                    Ok(0) => return Err(Failure::Other(anyhow!("closed inside the body"))),
                    Ok(_) => {}
                    Err(e) => return Err(Failure::Other(e)),
                }
            }
            r.body.extend_from_slice(&self.buf[head_end..head_end + n]);
            head_end + n
        } else {
            // No length: the body runs to the close.
            loop {
                match self.fill().await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => return Err(Failure::Other(e)),
                }
            }
            r.body.extend_from_slice(&self.buf[head_end..]);
            self.sock = None;
            self.buf.len()
        };
        r.wire_bytes = wire_end as u64;
        if close {
            self.sock = None;
        }
        Ok(r)
    }

    /// Decode a chunked body starting at `at` in the buffer; returns where it ends.
    async fn read_chunked(&mut self, mut at: usize, body: &mut Vec<u8>) -> anyhow::Result<usize> {
        loop {
            let line_end = loop {
                if let Some(p) = self.buf[at..].windows(2).position(|w| w == b"\r\n") {
                    break at + p;
                }
                if self.fill().await? == 0 {
                    bail!("closed inside a chunked body");
                }
            };
            let size_text = std::str::from_utf8(&self.buf[at..line_end])?;
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16).context("bad chunk size")?;
            at = line_end + 2;
            if size == 0 {
                // Trailers (usually none), up to an empty line.
                loop {
                    if let Some(p) = self.buf[at..].windows(2).position(|w| w == b"\r\n") {
                        let empty = p == 0;
                        at += p + 2;
                        if empty {
                            return Ok(at);
                        }
                    } else if self.fill().await? == 0 {
                        bail!("closed inside chunked trailers");
                    }
                }
            }
            while self.buf.len() < at + size + 2 {
                if self.fill().await? == 0 {
                    bail!("closed inside a chunk");
                }
            }
            body.extend_from_slice(&self.buf[at..at + size]);
            at += size + 2;
        }
    }
}

/// Header (name in lower case, value) pairs.
type Headers = Vec<(String, String)>;

/// Status, headers and whether it is HTTP/1.0.
fn parse_head(head: &[u8]) -> anyhow::Result<(u16, Headers, bool)> {
    let text = std::str::from_utf8(head).context("answer head is not text")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.split(' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        bail!("not an HTTP/1 answer: `{status_line}`");
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .with_context(|| format!("bad status line `{status_line}`"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok((status, headers, version == "HTTP/1.0"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn parses_heads() {
        let (s, h, old) =
            parse_head(b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
        assert_eq!((s, old), (304, false));
        assert_eq!(h[0], ("etag".into(), "\"x\"".into()));
        assert!(parse_head(b"ICY 200 OK\r\n\r\n").is_err());
    }

    /// A server that answers each request on one connection from a list of canned answers,
    /// then closes.
    async fn canned(answers: Vec<&'static [u8]>) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            for a in answers {
                let _ = s.read(&mut buf).await.unwrap();
                s.write_all(a).await.unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn keep_alive_lengths_chunks_and_304() {
        let addr = canned(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\n\r\n",
        ])
        .await;
        let mut c = Conn::new(addr, None, Duration::from_secs(5));
        let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let r = c.send(req).await.unwrap();
        assert_eq!((r.status, &r.body[..]), (200, &b"hello"[..]));
        assert_eq!(r.wire_bytes, 43);
        let r = c.send(req).await.unwrap();
        assert_eq!(&r.body[..], b"abcde");
        let r = c.send(req).await.unwrap();
        assert_eq!((r.status, r.body.len()), (304, 0));
        assert_eq!(c.reconnects, 0);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_reopened() {
        // One answer per connection, then close (like a server's idle timeout between reloads).
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await.unwrap();
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await
                    .unwrap();
                let _ = s.shutdown().await;
            }
        });
        let mut c = Conn::new(addr, Some([127, 0, 0, 9].into()), Duration::from_secs(5));
        let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        for _ in 0..3 {
            let r = c.send(req).await.unwrap();
            assert_eq!(&r.body[..], b"ok");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(c.reconnects, 2);
    }
}
