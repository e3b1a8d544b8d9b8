//! Listener-facing HTTP: live/rewound audio (raw and ICY), the pumper, playlists, Icecast's
//! metadata update, health and metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tower_http::cors::{Any, CorsLayer};
use tracing::{debug, info};

use crate::app::{App, Full, ListenerSlot};
use crate::chunk::Meta;
use crate::http_head::RequestHead;
use crate::ingest::{basic_password, secret_eq};
use crate::listener::{Cursor, End, landing_headers, pump_to};
use crate::rewind::Position;
use crate::stream::Stream;

/// Socket send buffer for listeners (the kernel doubles it): a few seconds of audio.
pub const LISTENER_SEND_BUFFER: usize = 64 * 1024;

/// How long a listener waits for audio (a slave still loading, a stream not yet on air).
const WAIT_FOR_AUDIO: Duration = Duration::from_secs(10);

const EXPOSED_HEADERS: [&str; 8] = [
    "icy-metaint",
    "icy-name",
    "icy-genre",
    "icy-url",
    "icy-br",
    "x-rewind-start",
    "x-rewind-offset",
    "x-rewind-clamped",
];

pub fn router(app: Arc<App>) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::HEAD, Method::OPTIONS])
        .allow_headers(Any)
        .expose_headers(EXPOSED_HEADERS.map(header::HeaderName::from_static));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/admin/metadata", get(icecast_metadata))
        .route("/admin.cgi", get(shoutcast_metadata))
        .route("/{name}", get(by_name).head(head_stream))
        .route("/{name}/seg/{file}", get(crate::hls::segment_route))
        .route("/sg/{file}", get(crate::hls::group_playlist))
        .fallback(|| async { (StatusCode::NOT_FOUND, "Invalid stream.\n") })
        .layer(cors)
        .with_state(app)
}

pub async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.is_ready() {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}

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

/// An RFC 3339 time, in µs since the epoch.
pub fn parse_time(v: &str) -> Result<i64, String> {
    v.parse::<jiff::Timestamp>()
        .map(|t| t.as_microsecond())
        .map_err(|_| "`at` must be an RFC 3339 time such as 2026-11-26T09:00:00Z".to_string())
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
    fn position(&self) -> Position {
        match (self.at, self.offset) {
            (Some(at), _) => Position::At(at),
            (None, Some(o)) => Position::Offset(o),
            (None, None) => Position::Live,
        }
    }
}

/// Whether the direct (hyper-less) path serves this request: GET of an existing stream, not a pump.
pub fn is_live_listen(app: &App, head: &RequestHead) -> bool {
    let key = head.path().trim_start_matches('/');
    !key.contains(['/', '.'])
        && app.stream(key).is_some()
        && !form_urlencoded::parse(head.query().as_bytes()).any(|(k, _)| k == "pump")
}

enum ListenError {
    NotFound,
    BadRequest(String),
    Full(Full),
    NotOnAir,
    /// Shutting down gracefully: connected listeners continue, new ones go elsewhere.
    Draining,
}

impl ListenError {
    fn status(&self) -> (StatusCode, String) {
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
struct Opened {
    slot: ListenerSlot,
    cursor: Cursor,
    headers: Vec<(&'static str, String)>,
}

async fn open_listener(
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
fn audio_headers(stream: &Stream) -> Vec<(&'static str, String)> {
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

fn log_end(stream: &Stream, peer: SocketAddr, end: End, sent: u64) {
    match end {
        End::Slow(reason) => {
            stream.metrics.slow_disconnects.inc();
            info!(stream = %stream.key, %peer, reason, "Slow listener disconnected.");
        }
        _ => debug!(stream = %stream.key, %peer, bytes = sent, "Listener left."),
    }
}

/// Serve a first-request listener straight from its socket.
pub async fn listen_direct(
    guard: crate::server::ConnectionGuard,
    mut sock: TcpStream,
    head: RequestHead,
    peer: SocketAddr,
) {
    let app = guard.app();
    let key = head.path().trim_start_matches('/');
    let icy = crate::server::wants_icy(&head);
    // Boxed: its state is needed only while the listener is set up, not for hours after.
    let opened = match Box::pin(open_listener(app, key, head.query(), icy)).await {
        Ok(o) => o,
        Err(e) => {
            let (status, body) = e.status();
            if status == StatusCode::SERVICE_UNAVAILABLE {
                info!(stream = %key, %peer, reason = %body.trim(), "Listener refused.");
            }
            let msg = format!(
                "HTTP/1.1 {status}\r\nServer: StreamMachine\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nRetry-After: 5\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ =
                tokio::time::timeout(Duration::from_secs(5), sock.write_all(msg.as_bytes())).await;
            return;
        }
    };
    let Opened {
        slot,
        mut cursor,
        headers,
    } = opened;
    // Kernel autotuning would let megabytes queue up for a listener that stopped reading; a
    // small send buffer makes a stalled listener block our writes within seconds.
    let _ = socket2::SockRef::from(&sock).set_send_buffer_size(LISTENER_SEND_BUFFER);
    let version = if head.is_http11() {
        "HTTP/1.1"
    } else {
        "HTTP/1.0"
    };
    let mut msg = format!("{version} 200 OK\r\nServer: StreamMachine\r\n");
    for (name, value) in &headers {
        msg.push_str(name);
        msg.push_str(": ");
        msg.push_str(value);
        msg.push_str("\r\n");
    }
    msg.push_str("Access-Control-Allow-Origin: *\r\n");
    msg.push_str(&format!(
        "Access-Control-Expose-Headers: {}\r\n",
        EXPOSED_HEADERS.join(", ")
    ));
    msg.push_str("Connection: close\r\n\r\n");
    if sock.write_all(msg.as_bytes()).await.is_err() {
        return;
    }
    drop((msg, headers, head));
    // The hours-long part runs in a task of its own holding only what it needs, so the memory
    // a listener costs is that small future, not this set-up code's (see server.rs tests).
    tokio::spawn(async move {
        let (end, sent) = pump_to(&mut cursor, &mut sock).await;
        log_end(cursor.stream(), peer, end, sent);
        drop((slot, guard));
    });
}

async fn by_name(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    if let Some(key) = name.strip_suffix(".pls") {
        return playlist(&app, key, &headers, Playlist::Pls);
    }
    if let Some(key) = name.strip_suffix(".m3u") {
        return playlist(&app, key, &headers, Playlist::M3u);
    }
    let query = query.unwrap_or_default();
    if let Some(key) = name.strip_suffix(".m3u8") {
        return crate::hls::media_playlist(&app, key, &query, &headers);
    }
    let q = match parse_listen_query(&query) {
        Ok(q) => q,
        Err(e) => return ListenError::BadRequest(e).into_response(),
    };
    if let Some(length) = q.pump {
        return pump(&app, &name, &q, length);
    }
    let icy = headers
        .get("icy-metadata")
        .is_some_and(|v| v.as_bytes().trim_ascii() == b"1");
    let opened = match open_listener(&app, &name, &query, icy).await {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    let Opened {
        slot,
        cursor,
        headers,
    } = opened;
    let body = futures_util::stream::unfold(
        (cursor, slot, Vec::new(), 0u64),
        move |(mut cursor, slot, mut pieces, sent)| async move {
            pieces.clear();
            match cursor.next(&mut pieces).await {
                Ok(n) => {
                    cursor.stream().metrics.sent_bytes.inc_by(n as u64);
                    let bytes: Bytes = if pieces.len() == 1 {
                        pieces[0].clone()
                    } else {
                        pieces.concat().into()
                    };
                    Some((
                        Ok::<_, std::io::Error>(bytes),
                        (cursor, slot, pieces, sent + n as u64),
                    ))
                }
                Err(end) => {
                    log_end(cursor.stream(), peer, end, sent);
                    None
                }
            }
        },
    );
    let mut resp = Response::new(Body::from_stream(body));
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(name, v);
        }
    }
    resp
}

/// `?pump=SECONDS[&from=SECONDS | &at=TIME]`: a range of the buffer as fast as possible.
fn pump(app: &App, key: &str, q: &ListenQuery, length: Duration) -> Response {
    let Some(stream) = app.stream(key) else {
        return ListenError::NotFound.into_response();
    };
    let chunks = stream.buffer.read(|b| match q.at {
        Some(at) => b.pump_at(at, length),
        None => b.pump(q.from.unwrap_or(length), length),
    });
    let len: usize = chunks.iter().map(|c| c.data.len()).sum();
    stream.metrics.sent_bytes.inc_by(len as u64);
    let mut headers = audio_headers(&stream);
    if let Some(first) = chunks.first() {
        headers.push(("x-rewind-start", crate::listener::rfc3339(first.ts)));
    }
    let body =
        futures_util::stream::iter(chunks.into_iter().map(|c| Ok::<_, std::io::Error>(c.data)));
    let mut resp = Response::new(Body::from_stream(body));
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(name, v);
        }
    }
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

async fn head_stream(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Some(key) = name.strip_suffix(".m3u8") {
        return crate::hls::media_playlist(&app, key, &query.unwrap_or_default(), &headers);
    }
    let Some(stream) = app.stream(&name) else {
        return ListenError::NotFound.into_response();
    };
    let mut resp = StatusCode::OK.into_response();
    for (name, value) in audio_headers(&stream) {
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(name, v);
        }
    }
    resp
}

enum Playlist {
    Pls,
    M3u,
}

/// The stream's URL as the client reached us (behind a proxy: its forwarded host and scheme).
pub fn public_url(headers: &HeaderMap, path: &str, fallback_host: &str) -> String {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let host = get("x-forwarded-host")
        .or_else(|| get("host"))
        .unwrap_or(fallback_host);
    let scheme = match get("x-forwarded-proto") {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}{path}")
}

fn playlist(app: &App, key: &str, headers: &HeaderMap, kind: Playlist) -> Response {
    let Some(stream) = app.stream(key) else {
        return ListenError::NotFound.into_response();
    };
    let url = public_url(
        headers,
        &format!("/{key}"),
        &app.settings.listen.to_string(),
    );
    let title = stream.station().name.unwrap_or_else(|| key.to_string());
    let (content_type, body) = match kind {
        Playlist::Pls => (
            "audio/x-scpls",
            format!(
                "[playlist]\nNumberOfEntries=1\nFile1={url}\nTitle1={title}\nLength1=-1\nVersion=2\n"
            ),
        ),
        Playlist::M3u => (
            "audio/x-mpegurl",
            format!("#EXTM3U\n#EXTINF:-1,{title}\n{url}\n"),
        ),
    };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// Query values decoded from percent-encoding, in UTF-8 or (with `charset=ISO-8859-1`) Latin-1.
fn decode_query(query: &str) -> Vec<(String, String)> {
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode(s.replace('+', " ").as_bytes())
                    .collect::<Vec<u8>>()
            };
            (dec(k), dec(v))
        })
        .collect();
    let latin1 = pairs.iter().any(|(k, v)| {
        k == b"charset" && {
            let c = String::from_utf8_lossy(v).to_ascii_lowercase();
            c == "iso-8859-1" || c == "latin1" || c == "latin-1"
        }
    });
    let text = |b: &[u8]| {
        if latin1 {
            b.iter().map(|&c| char::from(c)).collect()
        } else {
            String::from_utf8_lossy(b).into_owned()
        }
    };
    pairs.iter().map(|(k, v)| (text(k), text(v))).collect()
}

fn icecast_reply(status: StatusCode, message: &str) -> Response {
    let ok = u8::from(status.is_success());
    (
        status,
        [(header::CONTENT_TYPE, "text/xml")],
        format!("<?xml version=\"1.0\"?>\n<iceresponse><message>{message}</message><return>{ok}</return></iceresponse>\n"),
    )
        .into_response()
}

/// Whether the request may change the stream's title: the stream's source password (Basic, any
/// user; or `pass=`) or the admin token.
fn may_update(app: &App, stream: &Stream, headers: &HeaderMap, pass: Option<&str>) -> bool {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let source = stream.settings().source_password.clone();
    let token = app.settings.admin_token.as_deref();
    let ok = |p: &str| secret_eq(p, &source) || token.is_some_and(|t| secret_eq(p, t));
    if let Some(p) = basic_password(auth) {
        return ok(&p);
    }
    if let (Some(t), Some(bearer)) = (token, auth.and_then(|a| a.strip_prefix("Bearer "))) {
        return secret_eq(bearer.trim(), t);
    }
    pass.is_some_and(ok)
}

fn apply_title(stream: &Stream, params: &[(String, String)]) -> Response {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let title = match (get("song"), get("artist"), get("title")) {
        (Some(song), _, _) => song,
        (None, Some(a), Some(t)) => format!("{a} - {t}"),
        (None, None, Some(t)) => t,
        (None, Some(a), None) => a,
        (None, None, None) => return icecast_reply(StatusCode::BAD_REQUEST, "No song given"),
    };
    if title.len() > 4096 {
        return icecast_reply(StatusCode::BAD_REQUEST, "Title too long");
    }
    let url = get("url").unwrap_or_else(|| stream.meta().url);
    info!(stream = %stream.key, %title, "Title updated by the source side.");
    if stream.set_meta(Meta { title, url }).is_err() {
        return icecast_reply(StatusCode::BAD_REQUEST, "This server does not ingest audio");
    }
    icecast_reply(StatusCode::OK, "Metadata update successful")
}

/// Title updates from the encoder side: Icecast's `/admin/metadata?mount=/live&mode=updinfo&song=`
/// (mount required) and SHOUTcast v1's `/admin.cgi?mode=updinfo&pass=&song=` (the mount may be
/// left out when there is a single stream).
fn encoder_title_update(
    app: &App,
    query: Option<String>,
    headers: &HeaderMap,
    mount_optional: bool,
) -> Response {
    let params = decode_query(&query.unwrap_or_default());
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if get("mode").as_deref() != Some("updinfo") {
        return icecast_reply(StatusCode::BAD_REQUEST, "Unsupported mode");
    }
    let stream = match get("mount") {
        Some(m) => app.stream(m.trim_start_matches('/')),
        None if mount_optional => {
            let all = app.streams();
            if all.len() == 1 {
                all.into_iter().next()
            } else {
                None
            }
        }
        None => return icecast_reply(StatusCode::BAD_REQUEST, "Missing parameter mount"),
    };
    let Some(stream) = stream else {
        return icecast_reply(StatusCode::NOT_FOUND, "Source does not exist");
    };
    if !may_update(app, &stream, headers, get("pass").as_deref()) {
        info!(stream = %stream.key, "Title update refused: wrong credentials.");
        let mut r = icecast_reply(StatusCode::UNAUTHORIZED, "Authentication required");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"StreamMachine\""),
        );
        return r;
    }
    apply_title(&stream, &params)
}

async fn icecast_metadata(
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    encoder_title_update(&app, query, &headers, false)
}

async fn shoutcast_metadata(
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    encoder_title_update(&app, query, &headers, true)
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

    #[test]
    fn query_charsets() {
        let p = decode_query("song=Caf%E9+Del+Mar&charset=ISO-8859-1");
        assert_eq!(p[0].1, "Café Del Mar");
        let p = decode_query("song=Caf%C3%A9");
        assert_eq!(p[0].1, "Café");
    }

    #[test]
    fn public_urls() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("radio.example:8000"));
        assert_eq!(
            public_url(&h, "/live", "x"),
            "http://radio.example:8000/live"
        );
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert(
            "x-forwarded-host",
            HeaderValue::from_static("radio.example"),
        );
        assert_eq!(public_url(&h, "/live", "x"), "https://radio.example/live");
    }
}
