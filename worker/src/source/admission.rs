//! Whether a source may connect (sans-IO): the mount, the password, the content type and the
//! number of sources. Each refusal carries the reply the encoder gets and the reason we log;
//! an admitted source carries what the connection needs next.

use http::StatusCode;

use crate::auth::{basic_password, secret_eq};
use crate::core::codec::Format;
use crate::core::http_head::RequestHead;
use crate::core::http_reply::{CONTINUE, Reply};
use crate::stream::StationInfo;

/// Sources per stream (one live, the rest standby).
pub const MAX_SOURCES: usize = 8;

/// The stream a source asks for, as far as admission is concerned.
#[derive(Debug, Clone, Copy)]
pub struct Mount<'a> {
    pub format: Format,
    pub source_password: &'a str,
    /// Sources connected now.
    pub sources: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NoSuchMount,
    BadPassword,
    /// `PUT` must say what it sends.
    NoContentType,
    ContentType(String),
    TooManySources,
}

impl Refusal {
    /// What the encoder is told, in its HTTP version.
    pub fn reply(&self, version: &str) -> Reply {
        let reply = match self {
            Refusal::NoSuchMount => Reply::text(StatusCode::NOT_FOUND, "Mount point not found\n"),
            Refusal::BadPassword => {
                Reply::text(StatusCode::UNAUTHORIZED, "Invalid source or password.\n")
                    .header("www-authenticate", "Basic realm=\"StreamMachine\"")
            }
            Refusal::NoContentType => Reply::text(StatusCode::FORBIDDEN, "No Content-type given\n"),
            Refusal::ContentType(_) => {
                Reply::text(StatusCode::FORBIDDEN, "Content-type not supported\n")
            }
            Refusal::TooManySources => {
                Reply::text(StatusCode::FORBIDDEN, "too many sources connected\n")
            }
        };
        reply.for_version(version)
    }

    /// Why, for the log.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NoSuchMount => "Source refused: no such mount.",
            Refusal::BadPassword => "Source refused: wrong or missing password.",
            Refusal::NoContentType => "Source refused: no Content-Type.",
            Refusal::ContentType(_) => {
                "Source refused: content type does not match the stream's format."
            }
            Refusal::TooManySources => "Source refused: too many sources.",
        }
    }
}

/// An admitted source: how its body arrives and what it says about the station.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// `Expect: 100-continue`: the final status is sent once the body ends.
    pub expect_continue: bool,
    pub chunked: bool,
    pub station: StationInfo,
    pub user_agent: Option<String>,
}

impl Admission {
    /// The reply that lets the encoder start sending.
    pub fn first_reply(&self, version: &str) -> Vec<u8> {
        if self.expect_continue {
            CONTINUE.to_vec()
        } else {
            Reply::open(StatusCode::OK).for_version(version).encode()
        }
    }
}

/// Decide on a source request for an existing `mount` (the caller refuses unknown mounts with
/// [`Refusal::NoSuchMount`]).
pub fn admit(head: &RequestHead, mount: Mount<'_>) -> Result<Admission, Refusal> {
    let password_ok = basic_password(head.header("authorization"))
        .is_some_and(|p| secret_eq(&p, mount.source_password));
    if !password_ok {
        return Err(Refusal::BadPassword);
    }
    match head.header("content-type") {
        None if head.method == "PUT" => return Err(Refusal::NoContentType),
        Some(ct) if !mount.format.accepts_content_type(ct) => {
            return Err(Refusal::ContentType(ct.to_string()));
        }
        _ => {}
    }
    if mount.sources >= MAX_SOURCES {
        return Err(Refusal::TooManySources);
    }
    Ok(Admission {
        expect_continue: head
            .header("expect")
            .is_some_and(|e| e.eq_ignore_ascii_case("100-continue")),
        chunked: head
            .header("transfer-encoding")
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked")),
        station: station(head),
        user_agent: head.header("user-agent").map(str::to_string),
    })
}

/// The station as the encoder describes it (`ice-*`, or the older `icy-*` headers).
fn station(head: &RequestHead) -> StationInfo {
    let pick = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| head.header(n).map(str::to_string))
    };
    StationInfo {
        name: pick(&["ice-name", "icy-name"]),
        description: pick(&["ice-description", "icy-description"]),
        genre: pick(&["ice-genre", "icy-genre"]),
        url: pick(&["ice-url", "icy-url"]),
        bitrate: pick(&["ice-bitrate", "icy-br"]),
        public: pick(&["ice-public", "icy-pub"]),
        audio_info: pick(&["ice-audio-info", "icy-audio-info"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::http_head::parse_head;

    // "source:hackme"
    const AUTH: &str = "Authorization: Basic c291cmNlOmhhY2ttZQ==\r\n";

    fn head(text: &str) -> RequestHead {
        parse_head(text.as_bytes()).unwrap()
    }

    fn mount(sources: usize) -> Mount<'static> {
        Mount {
            format: Format::Mp3,
            source_password: "hackme",
            sources,
        }
    }

    #[test]
    fn refusals_in_order_of_the_checks() {
        let put = format!("PUT /live HTTP/1.1\r\n{AUTH}Content-Type: audio/mpeg\r\n\r\n");
        let wrong = "PUT /live HTTP/1.1\r\nAuthorization: Basic c291cmNlOng=\r\n\r\n";
        assert_eq!(admit(&head(wrong), mount(0)), Err(Refusal::BadPassword));
        let none = "SOURCE /live HTTP/1.0\r\nContent-Type: audio/mpeg\r\n\r\n";
        assert_eq!(admit(&head(none), mount(0)), Err(Refusal::BadPassword));
        let untyped = format!("PUT /live HTTP/1.1\r\n{AUTH}\r\n");
        assert_eq!(
            admit(&head(&untyped), mount(0)),
            Err(Refusal::NoContentType)
        );
        let aac = format!("PUT /live HTTP/1.1\r\n{AUTH}Content-Type: audio/aac\r\n\r\n");
        assert_eq!(
            admit(&head(&aac), mount(0)),
            Err(Refusal::ContentType("audio/aac".into()))
        );
        assert_eq!(
            admit(&head(&put), mount(MAX_SOURCES)),
            Err(Refusal::TooManySources)
        );
        // SOURCE without a content type is allowed (old encoders), PUT is not.
        let source = format!("SOURCE /live ICE/1.0\r\n{AUTH}\r\n");
        assert!(admit(&head(&source), mount(0)).is_ok());
    }

    #[test]
    fn refusal_replies() {
        let r = Refusal::BadPassword.reply("ICE/1.0").encode();
        let r = String::from_utf8(r).unwrap();
        assert!(r.starts_with("HTTP/1.0 401 Unauthorized\r\n"), "{r}");
        assert!(r.contains("www-authenticate: Basic realm=\"StreamMachine\"\r\n"));
        let r = String::from_utf8(Refusal::NoSuchMount.reply("HTTP/1.1").encode()).unwrap();
        assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(r.ends_with("\r\n\r\nMount point not found\n"));
    }

    #[test]
    fn admitted_sources() {
        let put = format!(
            "PUT /live HTTP/1.1\r\n{AUTH}Content-Type: audio/mpeg\r\nExpect: 100-continue\r\n\
             Transfer-Encoding: chunked\r\nIce-Name: Radio X\r\nIcy-Genre: Jazz\r\n\
             User-Agent: butt\r\n\r\n"
        );
        let a = admit(&head(&put), mount(1)).unwrap();
        assert!(a.expect_continue && a.chunked);
        assert_eq!(a.station.name.as_deref(), Some("Radio X"));
        assert_eq!(a.station.genre.as_deref(), Some("Jazz"));
        assert_eq!(a.user_agent.as_deref(), Some("butt"));
        assert_eq!(a.first_reply("HTTP/1.1"), CONTINUE);
        let source = format!("SOURCE /live HTTP/1.0\r\n{AUTH}Content-Type: audio/mpeg\r\n\r\n");
        let a = admit(&head(&source), mount(0)).unwrap();
        assert!(!a.expect_continue && !a.chunked);
        assert_eq!(
            a.first_reply("HTTP/1.0"),
            b"HTTP/1.0 200 OK\r\nServer: StreamMachine\r\n\r\n"
        );
    }
}
