//! Responses written straight to a socket, before or instead of hyper: refusals of malformed
//! requests, the Icecast source handshake, and the direct listener path. One encoder, so every
//! such response has a well-formed status line and an exact `Content-Length`
//! (`serve::connection::send` writes it).

use http::StatusCode;

/// The interim answer to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    http10: bool,
    status: StatusCode,
    headers: Vec<(&'static str, String)>,
    body: Option<String>,
    close: bool,
}

impl Reply {
    /// A plain-text reply after which the connection closes.
    pub fn text(status: StatusCode, body: impl Into<String>) -> Reply {
        Reply {
            http10: false,
            status,
            headers: vec![],
            body: Some(body.into()),
            close: true,
        }
    }

    /// Headers only; the body that follows (a listener's audio) runs until the connection closes.
    pub fn streaming(status: StatusCode) -> Reply {
        Reply {
            http10: false,
            status,
            headers: vec![],
            body: None,
            close: true,
        }
    }

    /// Headers only, and the connection stays as it is: the client's body follows (a source).
    pub fn open(status: StatusCode) -> Reply {
        Reply {
            close: false,
            ..Reply::streaming(status)
        }
    }

    /// Answer in the request's HTTP version: HTTP/1.0 for HTTP/1.0 and ICE/1.0 clients.
    pub fn for_version(mut self, version: &str) -> Reply {
        self.http10 = version != "HTTP/1.1";
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    pub fn headers(mut self, headers: impl IntoIterator<Item = (&'static str, String)>) -> Reply {
        self.headers.extend(headers);
        self
    }

    /// The bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let version = if self.http10 { "HTTP/1.0" } else { "HTTP/1.1" };
        let mut out = format!("{version} {}\r\nServer: StreamMachine\r\n", self.status);
        for (name, value) in &self.headers {
            // Values come from our own code and from source headers checked to be visible
            // ASCII; a line break would still split the head, so none gets through.
            let value: String = value.chars().filter(|c| *c != '\r' && *c != '\n').collect();
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = &self.body {
            if !self
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            {
                out.push_str("Content-Type: text/plain; charset=utf-8\r\n");
            }
            out.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        if self.close {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        if let Some(body) = &self.body {
            out.push_str(body);
        }
        out.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(r: &Reply) -> String {
        String::from_utf8(r.encode()).unwrap()
    }

    #[test]
    fn text_replies_have_an_exact_length_and_close() {
        let r = Reply::text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content does not match the mount\n",
        );
        assert_eq!(
            text(&r),
            "HTTP/1.1 415 Unsupported Media Type\r\nServer: StreamMachine\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Length: 33\r\n\
             Connection: close\r\n\r\nContent does not match the mount\n"
        );
        let r = Reply::text(StatusCode::OK, "é").for_version("HTTP/1.0");
        assert!(text(&r).starts_with("HTTP/1.0 200 OK\r\n"));
        assert!(
            text(&r).contains("Content-Length: 2\r\n"),
            "bytes, not chars"
        );
    }

    #[test]
    fn versions_headers_and_open_replies() {
        let r = Reply::open(StatusCode::OK).for_version("ICE/1.0");
        assert_eq!(text(&r), "HTTP/1.0 200 OK\r\nServer: StreamMachine\r\n\r\n");
        let r = Reply::streaming(StatusCode::OK)
            .for_version("HTTP/1.1")
            .header("content-type", "audio/mpeg")
            .header("icy-name", "evil\r\nX-Injected: 1");
        let t = text(&r);
        assert!(t.contains("content-type: audio/mpeg\r\n"));
        assert!(t.contains("icy-name: evilX-Injected: 1\r\n"));
        assert!(!t.contains("Content-Length"));
        assert!(t.ends_with("Connection: close\r\n\r\n"));
        let r = Reply::text(StatusCode::OK, "<x/>").header("content-type", "text/xml");
        assert_eq!(text(&r).matches("ontent-").count(), 2, "{}", text(&r));
    }
}
