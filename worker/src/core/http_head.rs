//! Request heads on the shared listener/source port (sans-IO): enough HTTP to tell an Icecast
//! source (`SOURCE`/`PUT`, also `ICE/1.0`) from a listener, plus the chunked body decoder for
//! `PUT` sources. Everything else is left to hyper.

use bytes::{Buf, BytesMut};

/// Largest request head accepted (request line and headers).
pub const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    /// Request target as sent (path and query).
    pub target: String,
    /// `HTTP/1.0`, `HTTP/1.1` or `ICE/1.0`.
    pub version: String,
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeadError {
    #[error("malformed request line")]
    RequestLine,
    #[error("malformed header: {0}")]
    Header(String),
    #[error("request head larger than {MAX_HEAD} bytes")]
    TooLarge,
}

impl RequestHead {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }

    /// HTTP/1.1 clients keep connections open unless told otherwise.
    pub fn is_http11(&self) -> bool {
        self.version == "HTTP/1.1"
    }
}

/// Length of the head (through the blank line) if `buf` holds a complete one.
pub fn head_len(buf: &[u8]) -> Option<usize> {
    // Accept bare LF line endings too: some old encoders send them.
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf[i + 1..].starts_with(b"\r\n") {
                return Some(i + 3);
            }
            if buf[i + 1..].starts_with(b"\n") {
                return Some(i + 2);
            }
        }
        i += 1;
    }
    None
}

/// Parse a complete head (as delimited by [`head_len`]).
pub fn parse_head(buf: &[u8]) -> Result<RequestHead, HeadError> {
    if buf.len() > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let line_end = buf
        .iter()
        .position(|b| *b == b'\n')
        .ok_or(HeadError::RequestLine)?;
    let line = std::str::from_utf8(&buf[..line_end])
        .map_err(|_| HeadError::RequestLine)?
        .trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::RequestLine);
    };
    let method_ok = !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase());
    let version_ok = matches!(version, "HTTP/1.0" | "HTTP/1.1" | "ICE/1.0");
    let target_ok = target.starts_with('/') && target.bytes().all(|b| b.is_ascii_graphic());
    if !method_ok || !version_ok || !target_ok {
        return Err(HeadError::RequestLine);
    }
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let rest = &buf[line_end + 1..];
    let parsed = match httparse::parse_headers(rest, &mut raw) {
        Ok(httparse::Status::Complete((_, h))) => h,
        Ok(httparse::Status::Partial) => return Err(HeadError::Header("incomplete".into())),
        Err(e) => return Err(HeadError::Header(e.to_string())),
    };
    let headers = parsed
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect();
    Ok(RequestHead {
        method: method.to_string(),
        target: target.to_string(),
        version: version.to_string(),
        headers,
    })
}

/// Decodes `Transfer-Encoding: chunked` bodies incrementally.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    buf: BytesMut,
    /// Bytes left in the current data chunk (then its CRLF).
    remaining: usize,
    state: ChunkedState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkedState {
    #[default]
    Size,
    Data,
    DataEnd,
    Done,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed chunked body")]
pub struct ChunkedError;

impl ChunkedDecoder {
    pub fn is_done(&self) -> bool {
        self.state == ChunkedState::Done
    }

    /// Feed raw body bytes; decoded data is appended to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), ChunkedError> {
        self.buf.extend_from_slice(data);
        loop {
            match self.state {
                ChunkedState::Done => {
                    self.buf.clear();
                    return Ok(());
                }
                ChunkedState::Size => match httparse::parse_chunk_size(&self.buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.buf.advance(used);
                        if size == 0 {
                            self.state = ChunkedState::Done;
                        } else {
                            self.remaining = usize::try_from(size).map_err(|_| ChunkedError)?;
                            self.state = ChunkedState::Data;
                        }
                    }
                    Ok(httparse::Status::Partial) => {
                        if self.buf.len() > 1024 {
                            return Err(ChunkedError);
                        }
                        return Ok(());
                    }
                    Err(_) => return Err(ChunkedError),
                },
                ChunkedState::Data => {
                    if self.buf.is_empty() {
                        return Ok(());
                    }
                    let n = self.remaining.min(self.buf.len());
                    out.extend_from_slice(&self.buf[..n]);
                    self.buf.advance(n);
                    self.remaining -= n;
                    if self.remaining == 0 {
                        self.state = ChunkedState::DataEnd;
                    }
                }
                ChunkedState::DataEnd => {
                    if self.buf.len() < 2 {
                        return Ok(());
                    }
                    if &self.buf[..2] != b"\r\n" {
                        return Err(ChunkedError);
                    }
                    self.buf.advance(2);
                    self.state = ChunkedState::Size;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_source_and_put_heads() {
        let raw = b"SOURCE /live ICE/1.0\r\nAuthorization: Basic c291cmNlOnB3\r\nice-name: Radio\r\n\r\nAUDIO";
        let n = head_len(raw).unwrap();
        assert_eq!(&raw[n..], b"AUDIO");
        let h = parse_head(&raw[..n]).unwrap();
        assert_eq!(
            (h.method.as_str(), h.path(), h.version.as_str()),
            ("SOURCE", "/live", "ICE/1.0")
        );
        assert_eq!(h.header("ICE-NAME"), Some("Radio"));

        let raw = b"PUT /live?x=1 HTTP/1.1\nContent-Type: audio/mpeg\n\n";
        let h = parse_head(&raw[..head_len(raw).unwrap()]).unwrap();
        assert_eq!((h.path(), h.query()), ("/live", "x=1"));
        assert!(h.is_http11());
    }

    #[test]
    fn rejects_malformed_heads() {
        for bad in [
            &b"GET\r\n\r\n"[..],
            b"GET / HTTP/9.9\r\n\r\n",
            b"get / HTTP/1.1\r\n\r\n",
            b"GET noslash HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1 extra\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
            b"\xff\xfe / HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                parse_head(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(head_len(b"GET / HTTP/1.1\r\nHost: x\r\n").is_none());
    }

    #[test]
    fn chunked_body_in_pieces() {
        let body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
        for step in 1..body.len() {
            let mut d = ChunkedDecoder::default();
            let mut out = vec![];
            for piece in body.chunks(step) {
                d.push(piece, &mut out).unwrap();
            }
            assert_eq!(out, b"hello, world");
            assert!(d.is_done());
        }
        let mut d = ChunkedDecoder::default();
        assert!(d.push(b"zz\r\n", &mut vec![]).is_err());
        let mut d = ChunkedDecoder::default();
        assert!(d.push(b"2\r\nabXX", &mut vec![]).is_err());
    }
}
