//! Opening a listener, for both the direct path and the router: the request's position
//! (`offset`, `at`), the listener limits, waiting for audio, the landing in the buffer and the
//! response headers. What happens after (the hours of audio) is [`super::listener`]'s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::{debug, info};

use crate::app::{App, Full, ListenerSlot};
use crate::core::http_head::RequestHead;
use crate::core::rewind::Position;
use crate::serve::listener::{Cursor, End, landing_headers};
use crate::stream::Stream;
use crate::time::parse_time;

/// Socket send buffer for listeners (the kernel doubles it): a few seconds of audio.
pub const LISTENER_SEND_BUFFER: usize = 64 * 1024;

/// How long a listener waits for audio (a slave still loading, a stream not yet on air).
const WAIT_FOR_AUDIO: Duration = Duration::from_secs(10);

pub const EXPOSED_HEADERS: [&str; 8] = [
    "icy-metaint",
    "icy-name",
    "icy-genre",
    "icy-url",
    "icy-br",
    "x-rewind-start",
    "x-rewind-offset",
    "x-rewind-clamped",
];

/// Query parameters of audio requests.
#[derive(Debug, Default, PartialEq)]
pub struct ListenQuery {
    pub offset: Option<Duration>,
    pub at: Option<i64>,
    pub pump: Option<Duration>,
    pub from: Option<Duration>,
}

/// Seconds as a number (`90`, `1.5`) or a duration (`90s`, `1h30m`).
fn parse_seconds(name: &str, v: &str) -> Result<Duration, String> {
    if let Ok(s) = v.parse::<f64>() {
        if (0.0..1e9).contains(&s) {
            return Ok(Duration::from_secs_f64(s));
        }
        return Err(format!("`{name}` must be a non-negative number of seconds"));
    }
    humantime::parse_duration(v)
        .map_err(|_| format!("`{name}` must be seconds or a duration like 90s"))
}

pub fn parse_listen_query(query: &str) -> Result<ListenQuery, String> {
    let mut q = ListenQuery::default();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "offset" => q.offset = Some(parse_seconds("offset", &v)?),
            "pump" => q.pump = Some(parse_seconds("pump", &v)?),
            "from" => q.from = Some(parse_seconds("from", &v)?),
            "at" => q.at = Some(parse_time(&v)?),
            _ => {}
        }
    }
    if q.offset.is_some() && q.at.is_some() {
        return Err("give either `offset` or `at`, not both".into());
    }
    Ok(q)
}

impl ListenQuery {
    pub fn position(&self) -> Position {
        match (self.at, self.offset) {
            (Some(at), _) => Position::At(at),
            (None, Some(o)) => Position::Offset(o),
            (None, None) => Position::Live,
        }
    }
}

/// The request's `Icy-MetaData: 1`: the listener wants ICY titles interleaved.
pub fn wants_icy(head: &RequestHead) -> bool {
    wants_icy_value(head.header("icy-metadata"))
}

/// [`wants_icy`] for a header value however it was read.
pub fn wants_icy_value(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.trim() == "1")
}

pub(crate) enum ListenError {
    NotFound,
    BadRequest(String),
    Full(Full),
    NotOnAir,
    /// Shutting down gracefully: connected listeners continue, new ones go elsewhere.
    Draining,
}

impl ListenError {
    pub(crate) fn status(&self) -> (StatusCode, String) {
        match self {
            ListenError::NotFound => (StatusCode::NOT_FOUND, "Invalid stream.\n".into()),
            ListenError::BadRequest(m) => (StatusCode::BAD_REQUEST, format!("{m}\n")),
            ListenError::Full(f) => (StatusCode::SERVICE_UNAVAILABLE, format!("{f}\n")),
            ListenError::NotOnAir => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The stream is not on air.\n".into(),
            ),
            ListenError::Draining => (
                StatusCode::SERVICE_UNAVAILABLE,
                "This server is shutting down.\n".into(),
            ),
        }
    }
}

impl IntoResponse for ListenError {
    fn into_response(self) -> Response {
        let (status, body) = self.status();
        let mut r = (status, body).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        r
    }
}

/// A listener ready to receive audio: counted, positioned, with its response headers.
pub(crate) struct Opened {
    pub slot: ListenerSlot,
    pub cursor: Cursor,
    pub headers: Vec<(&'static str, String)>,
}

pub(crate) async fn open_listener(
    app: &Arc<App>,
    key: &str,
    query: &str,
    icy: bool,
) -> Result<Opened, ListenError> {
    let stream = app.stream(key).ok_or(ListenError::NotFound)?;
    if app.is_draining() {
        return Err(ListenError::Draining);
    }
    let q = parse_listen_query(query).map_err(ListenError::BadRequest)?;
    let slot = app
        .acquire_listener(&stream, if icy { "icy" } else { "raw" })
        .map_err(ListenError::Full)?;
    wait_for_audio(app, &stream).await?;
    let settings = stream.settings();
    let landing = stream
        .buffer
        .read(|b| b.land(q.position(), settings.burst))
        .ok_or(ListenError::NotOnAir)?;
    let mut headers = audio_headers(&stream);
    if icy {
        headers.push(("icy-metaint", settings.icy_metaint.to_string()));
    }
    headers.extend(landing_headers(&landing));
    let cursor = Cursor::new(
        stream.clone(),
        landing,
        icy.then_some(settings.icy_metaint),
        app.shutdown.clone(),
    );
    Ok(Opened {
        slot,
        cursor,
        headers,
    })
}

/// A listener that arrives before the first audio (slave loading, source connecting) waits a
/// little instead of failing.
async fn wait_for_audio(app: &App, stream: &Stream) -> Result<(), ListenError> {
    if app.is_ready() && !stream.buffer.read(|b| b.is_empty()) {
        return Ok(());
    }
    let mut tip = stream.buffer.subscribe();
    let wait = async {
        app.wait_ready().await;
        let _ = tip.wait_for(|t| t.last_seq.is_some()).await;
    };
    tokio::time::timeout(WAIT_FOR_AUDIO, wait)
        .await
        .map_err(|_| ListenError::NotOnAir)
}

/// Content type, cache and station headers shared by every audio response.
pub(crate) fn audio_headers(stream: &Stream) -> Vec<(&'static str, String)> {
    let settings = stream.settings();
    let station = stream.station();
    let mut h = vec![
        ("content-type", settings.format.content_type().to_string()),
        ("cache-control", "no-cache, no-store".to_string()),
        ("pragma", "no-cache".to_string()),
        ("accept-ranges", "none".to_string()),
    ];
    let icy = station.icy_headers();
    if !icy.iter().any(|(n, _)| *n == "icy-name") {
        h.push(("icy-name", stream.key.clone()));
    }
    h.extend(icy);
    h
}

pub(crate) fn log_end(stream: &Stream, peer: SocketAddr, end: End, sent: u64) {
    match end {
        End::Slow(reason) => {
            stream.metrics.slow_disconnects.inc();
            info!(stream = %stream.key, %peer, reason, "Slow listener disconnected.");
        }
        _ => debug!(stream = %stream.key, %peer, bytes = sent, "Listener left."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_queries() {
        let q = parse_listen_query("offset=60").unwrap();
        assert_eq!(q.offset, Some(Duration::from_secs(60)));
        let q = parse_listen_query("pump=10&from=1m30s").unwrap();
        assert_eq!(
            (q.pump, q.from),
            (Some(Duration::from_secs(10)), Some(Duration::from_secs(90)))
        );
        let q = parse_listen_query("at=2026-11-26T09:00:00%2B01:00").unwrap();
        assert_eq!(q.at, Some(parse_time("2026-11-26T08:00:00Z").unwrap()));
        assert!(parse_listen_query("offset=-3").is_err());
        assert!(parse_listen_query("offset=NaN").is_err());
        assert!(parse_listen_query("at=yesterday").is_err());
        assert!(parse_listen_query("offset=1&at=2026-11-26T09:00:00Z").is_err());
        assert_eq!(
            parse_listen_query("foo=bar").unwrap(),
            ListenQuery::default()
        );
    }
}
