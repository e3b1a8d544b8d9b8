//! HTTP glue for HLS: per-stream caches (the index and its rendered playlists are rebuilt once
//! per segment boundary, segment bodies are built once), listener sessions, and the handlers.

use std::collections::VecDeque;
use std::hash::{DefaultHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tracing::debug;

use super::codecs::CodecInfo;
use super::compress::{self, Encoding};
use super::index::{Index, IndexKey, segment_len_us, target_duration};
use super::playlist::{
    PlaylistQuery, Rendered, Variant, View, measured_bandwidth, multivariant, parse_query, render,
    valid_session_id,
};
use super::segment;
use super::sessions::Sessions;
use crate::app::{App, ListenerSlot};
use crate::core::codec::Format;
use crate::stream::Stream;

const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
/// Segment bodies kept per stream: the newest few serve every live listener; older ones (rewound
/// listeners) are rebuilt from the buffer, which is a copy.
const SEGMENT_CACHE: usize = 16;
/// A segment's bytes never change: caches may keep it an hour (spelled out so no request
/// formats it).
const SEGMENT_CACHE_CONTROL: &str = "public, max-age=3600, immutable";
/// An HLS listener that made no request for this long (and at least three target durations) has
/// left.
const SESSION_IDLE_MIN: Duration = Duration::from_secs(30);
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// A stream's HLS state.
#[derive(Default)]
pub struct StreamHls {
    built: Mutex<Option<Arc<Built>>>,
    segments: Mutex<VecDeque<Arc<CachedSegment>>>,
    sessions: Mutex<Option<Sessions<ListenerSlot>>>,
    sweeping: AtomicBool,
    rebuilding: AtomicBool,
    /// One rebuild at a time; `built` itself is only locked to read or swap the result.
    rebuild: Mutex<()>,
}

/// A built segment with what every response to it says, so a request formats nothing.
pub struct CachedSegment {
    segment_len: i64,
    msn: u64,
    pub body: Bytes,
    pub etag: String,
    /// The header lines of a `200` (after the status line and `Date`), without the blank line.
    pub ok_head: Bytes,
    /// The header lines of a `304`.
    pub not_modified_head: Bytes,
}

impl CachedSegment {
    fn new(segment_len: i64, msn: u64, body: Bytes, etag: String, content_type: &str) -> Self {
        let common = format!(
            "Server: StreamMachine\r\nContent-Type: {content_type}\r\n\
             Cache-Control: {SEGMENT_CACHE_CONTROL}\r\nETag: {etag}\r\n\
             Access-Control-Allow-Origin: *\r\n"
        );
        CachedSegment {
            ok_head: format!("{common}Content-Length: {}\r\n", body.len()).into(),
            not_modified_head: common.into(),
            segment_len,
            msn,
            body,
            etag,
        }
    }

    #[cfg(test)]
    pub fn for_tests(body: Bytes, etag: &str, content_type: &str) -> Self {
        CachedSegment::new(0, 0, body, etag.into(), content_type)
    }
}

/// An index with everything derived from it, valid while the buffer's [`IndexKey`] holds.
pub struct Built {
    key: IndexKey,
    pub index: Index,
    pub rendered: Rendered,
    /// The playlists most requests get, with their gzip and brotli forms: the live window and its delta
    /// update, the whole buffer (`?window=` longer than it) and its delta update. A request
    /// whose view is one of these gets its bytes.
    cached: Vec<CachedPlaylist>,
    pub bandwidth: Option<(u64, u64)>,
}

/// One playlist built once per index, in each representation (plain, gzip, brotli).
struct CachedPlaylist {
    view: View,
    plain: Bytes,
    etag: String,
    /// `None` if compression failed: such a request gets the plain body.
    gzip: Option<Bytes>,
    gzip_etag: String,
    br: Option<Bytes>,
    br_etag: String,
}

impl CachedPlaylist {
    fn new(rendered: &Rendered, view: View) -> CachedPlaylist {
        let plain = rendered.assemble(&view, None);
        let etag = etag_of(&plain);
        CachedPlaylist {
            view,
            gzip: compress::gzip_at(&plain, compress::CACHED_LEVEL),
            gzip_etag: compress::encoded_etag(&etag, Encoding::Gzip),
            br: compress::brotli(&plain),
            br_etag: compress::encoded_etag(&etag, Encoding::Brotli),
            plain,
            etag,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn etag_of(body: &[u8]) -> String {
    let mut h = DefaultHasher::new();
    h.write(body);
    format!("\"p{:016x}\"", h.finish())
}

/// The stream's current index and playlists; `None` while it holds no audio.
///
/// At a segment boundary the index is rebuilt (a few milliseconds for four hours): inside the
/// runtime that happens on a blocking thread while requests keep getting the previous playlist
/// (for those few milliseconds, like a cache), so no request waits for it.
pub fn built(stream: &Arc<Stream>) -> Option<Arc<Built>> {
    let l = segment_len_us(stream.settings().hls_segment);
    let key = stream.buffer.read(|b| IndexKey::of(b, l))?;
    let stale = {
        let cached = lock(&stream.hls.built);
        match cached.as_ref() {
            Some(b) if b.key == key => return Some(b.clone()),
            Some(b) if b.key.segment_len == l => Some(b.clone()),
            _ => None,
        }
    };
    if let (Some(stale), Ok(rt)) = (stale, tokio::runtime::Handle::try_current()) {
        if !stream.hls.rebuilding.swap(true, Ordering::AcqRel) {
            let stream = stream.clone();
            rt.spawn_blocking(move || {
                rebuild(&stream);
                stream.hls.rebuilding.store(false, Ordering::Release);
            });
        }
        return Some(stale);
    }
    rebuild(stream)
}

/// Rebuild the index now (unless another caller just did).
pub fn rebuild(stream: &Stream) -> Option<Arc<Built>> {
    let settings = stream.settings();
    let l = segment_len_us(settings.hls_segment);
    // Concurrent callers wait for one rebuild instead of each doing it.
    let _one = lock(&stream.hls.rebuild);
    let key = stream.buffer.read(|b| IndexKey::of(b, l))?;
    if let Some(b) = lock(&stream.hls.built).as_ref()
        && b.key == key
    {
        return Some(b.clone());
    }
    let (key, index) = stream
        .buffer
        .read(|b| IndexKey::of(b, l).map(|k| (k, Index::build(b, l))))?;
    let aac = settings.format == Format::Aac;
    let rendered = render(
        &index,
        &format!("{}/seg/", stream.key),
        settings.format.extension(),
        aac,
    );
    // The plain request's playlist, and the whole buffer, each with its delta update (a buffer
    // shorter than the live window makes them the same: built once).
    let live = PlaylistQuery::default().with_live_window(settings.hls_live_window);
    // No window: from the oldest segment, as `?window=` longer than the buffer is.
    let whole = PlaylistQuery::default();
    let mut playlists: Vec<CachedPlaylist> = vec![];
    for q in [live, whole] {
        for skip in [false, true] {
            let Some(view) = rendered.view(&PlaylistQuery { skip, ..q.clone() }) else {
                continue;
            };
            if !playlists.iter().any(|c| c.view == view) {
                playlists.push(CachedPlaylist::new(&rendered, view));
            }
        }
    }
    let bandwidth = measured_bandwidth(&index);
    let mut cached = lock(&stream.hls.built);
    if cached.as_ref().is_some_and(|b| b.key.segment_len != l) {
        lock(&stream.hls.segments).clear();
    }
    let b = Arc::new(Built {
        key,
        index,
        rendered,
        cached: playlists,
        bandwidth,
    });
    *cached = Some(b.clone());
    Some(b)
}

fn text(status: StatusCode, body: &str) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    }
    r
}

fn not_on_air() -> Response {
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        "The stream has no complete HLS segment yet.\n",
    )
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// An Apple player's own session id (sent with every request, never put in URIs).
fn playback_session(headers: &HeaderMap) -> Option<&str> {
    header_str(headers, "x-playback-session-id").filter(|s| valid_session_id(s))
}

fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    etag_matches(header_str(headers, "if-none-match"), etag)
}

/// Whether an `If-None-Match` value names `etag`.
pub(super) fn etag_matches(if_none_match: Option<&str>, etag: &str) -> bool {
    if_none_match.is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

/// `GET /<stream>.m3u8[?window=S][&at=T][&_HLS_skip=YES][&session_id=X]`.
pub fn media_playlist(app: &Arc<App>, key: &str, query: &str, headers: &HeaderMap) -> Response {
    let Some(stream) = app.stream(key) else {
        return text(StatusCode::NOT_FOUND, "Invalid stream.\n");
    };
    let q = match parse_query(query) {
        Ok(q) => q,
        Err(e) => return text(StatusCode::BAD_REQUEST, &format!("{e}\n")),
    };
    if !app.is_ready() {
        return not_on_air();
    }
    let apple = playback_session(headers);
    if let Some(id) = apple.or(q.session_id.as_deref()) {
        // A reload keeps a listener alive; only segment requests start one.
        if let Some(s) = lock(&stream.hls.sessions).as_mut() {
            s.refresh(id, Instant::now());
        }
    }
    let Some(b) = built(&stream) else {
        return not_on_air();
    };
    let suffix = match (apple, &q.session_id) {
        (None, Some(id)) => Some(format!("?session_id={id}")),
        _ => None,
    };
    let q = q.with_live_window(stream.settings().hls_live_window);
    let Some(view) = b.rendered.view(&q) else {
        return not_on_air();
    };
    let accepted = compress::negotiate(
        headers
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let cached = match suffix {
        None => b.cached.iter().find(|c| c.view == view),
        Some(_) => None,
    };
    let (body, etag, encoding) = match cached {
        Some(c) => match (accepted.choose(c.br.is_some()), &c.gzip, &c.br) {
            (Encoding::Brotli, _, Some(br)) => {
                (br.clone(), Some(c.br_etag.as_str()), Encoding::Brotli)
            }
            (Encoding::Gzip, Some(gz), _) => {
                (gz.clone(), Some(c.gzip_etag.as_str()), Encoding::Gzip)
            }
            _ => (c.plain.clone(), Some(c.etag.as_str()), Encoding::Identity),
        },
        None => {
            let plain = b.rendered.assemble(&view, suffix.as_deref());
            // Assembled for this request alone: gzip at the fastest level costs less than
            // sending the bytes it saves; brotli would cost ten times more (docs/hls.md).
            let gz = (accepted.choose(false) == Encoding::Gzip)
                .then(|| compress::gzip_at(&plain, compress::PER_REQUEST_LEVEL))
                .flatten();
            match gz {
                Some(gz) => (gz, None, Encoding::Gzip),
                None => (plain, None, Encoding::Identity),
            }
        }
    };
    if let Some(etag) = etag
        && compress::none_match(
            headers
                .get_all(header::IF_NONE_MATCH)
                .iter()
                .filter_map(|v| v.to_str().ok()),
            etag,
        )
    {
        return playlist_headers(
            StatusCode::NOT_MODIFIED.into_response(),
            etag_header(etag),
            Encoding::Identity,
            false,
        );
    }
    playlist_headers(
        body.into_response(),
        etag.and_then(etag_header),
        encoding,
        view.clamped,
    )
}

fn etag_header(etag: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(etag).ok()
}

fn playlist_headers(
    mut r: Response,
    etag: Option<HeaderValue>,
    encoding: Encoding,
    clamped: bool,
) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(PLAYLIST_TYPE),
    );
    // The playlist changes at segment boundaries; a second of caching lets a CDN collapse the
    // reloads of many listeners into one.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=1"));
    // The same URL has a plain and a gzip representation: caches must key on the header.
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if let Some(e) = encoding.header() {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(e));
    }
    if let Some(e) = etag {
        h.insert(header::ETAG, e);
    }
    if clamped {
        h.insert("x-rewind-clamped", HeaderValue::from_static("1"));
    }
    r
}

/// `GET /<stream>/seg/<msn>.<ext>`.
pub async fn segment_route(
    State(app): State<Arc<App>>,
    Path((name, file)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    let Some(stream) = app.stream(&name) else {
        return text(StatusCode::NOT_FOUND, "Invalid stream.\n");
    };
    let Some(msn) = file
        .split_once('.')
        .and_then(|(n, ext)| matches!(ext, "mp3" | "aac").then_some(n))
        .and_then(|n| n.parse::<u64>().ok())
    else {
        return text(StatusCode::NOT_FOUND, "Segment not found.\n");
    };
    let Some(seg) = segment_body(&stream, msn) else {
        return text(StatusCode::NOT_FOUND, "Segment not found.\n");
    };
    let session = session_key(&headers, query.as_deref(), peer);
    if let Err(full) = touch_session(&app, &stream, &session) {
        return text(StatusCode::SERVICE_UNAVAILABLE, &format!("{full}\n"));
    }
    let etag = &seg.etag;
    let mut r = if not_modified(&headers, etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        stream.metrics.sent_bytes.inc_by(seg.body.len() as u64);
        seg.body.clone().into_response()
    };
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(stream.settings().format.content_type()),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(SEGMENT_CACHE_CONTROL),
    );
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    r
}

/// A segment, from the cache or built from the buffer.
pub fn segment_body(stream: &Arc<Stream>, msn: u64) -> Option<Arc<CachedSegment>> {
    let l = segment_len_us(stream.settings().hls_segment);
    if let Some(c) = lock(&stream.hls.segments)
        .iter()
        .find(|c| c.msn == msn && c.segment_len == l)
    {
        return Some(c.clone());
    }
    let mut b = built(stream)?;
    if b.index.get(msn).is_none() {
        // Listed by a replica (or a playlist) newer than our cached index: catch up now.
        b = rebuild(stream)?;
    }
    let seg = b.index.get(msn)?;
    let span = seg.media.as_ref()?;
    let body = stream
        .buffer
        .read(|buf| segment::build(seg, buf.range(span.first_seq, span.last_seq)));
    let body = match body {
        Ok(body) => body,
        Err(e) => {
            debug!(stream = %stream.key, msn, error = %e, "HLS segment unavailable.");
            return None;
        }
    };
    let etag = segment::etag(seg, span);
    let built = Arc::new(CachedSegment::new(
        l,
        msn,
        body,
        etag,
        stream.settings().format.content_type(),
    ));
    let mut cache = lock(&stream.hls.segments);
    if let Some(c) = cache.iter().find(|c| c.msn == msn && c.segment_len == l) {
        return Some(c.clone());
    }
    if cache.len() >= SEGMENT_CACHE {
        cache.pop_front();
    }
    cache.push_back(built.clone());
    Some(built)
}

/// Who is asking: the player's session id, the one carried in the URI, or (for players that send
/// neither) the client address and user agent.
fn session_key(headers: &HeaderMap, query: Option<&str>, peer: SocketAddr) -> String {
    session_key_of(
        playback_session(headers),
        query,
        header_str(headers, "user-agent"),
        peer,
    )
}

/// [`session_key`] from the pieces; `playback` is a valid `X-Playback-Session-Id`.
pub(super) fn session_key_of(
    playback: Option<&str>,
    query: Option<&str>,
    user_agent: Option<&str>,
    peer: SocketAddr,
) -> String {
    if let Some(id) = playback {
        return id.to_string();
    }
    if let Some(id) = query.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, v)| k == "session_id" && valid_session_id(v))
            .map(|(_, v)| v.into_owned())
    }) {
        return id;
    }
    format!("{}|{}", peer.ip(), user_agent.unwrap_or(""))
}

fn session_idle(stream: &Stream) -> Duration {
    let target = target_duration(segment_len_us(stream.settings().hls_segment));
    SESSION_IDLE_MIN.max(Duration::from_secs(3 * target))
}

/// Count a segment request: a new session takes a listener slot (and may be refused by a limit).
pub(super) fn touch_session(
    app: &Arc<App>,
    stream: &Arc<Stream>,
    key: &str,
) -> Result<(), crate::app::Full> {
    let idle = session_idle(stream);
    let mut guard = lock(&stream.hls.sessions);
    let sessions = guard.get_or_insert_with(|| Sessions::new(idle));
    sessions.set_idle(idle);
    let new = sessions.touch(key, Instant::now(), || app.acquire_listener(stream, "hls"))?;
    if new && !stream.hls.sweeping.swap(true, Ordering::AcqRel) {
        spawn_sweeper(app, stream);
    }
    Ok(())
}

/// Ends idle sessions of one stream; runs while it has any. Sessions hold listener slots, which
/// hold the stream, so this is also what lets a removed stream go.
fn spawn_sweeper(app: &Arc<App>, stream: &Arc<Stream>) {
    let weak = Arc::downgrade(stream);
    let shutdown = app.shutdown.clone();
    let removed = stream.removed.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stop = tokio::select! {
                _ = tick.tick() => false,
                _ = shutdown.cancelled() => true,
                _ = removed.cancelled() => true,
            };
            let Some(stream) = weak.upgrade() else {
                return;
            };
            let gone = {
                let mut guard = lock(&stream.hls.sessions);
                let Some(sessions) = guard.as_mut() else {
                    stream.hls.sweeping.store(false, Ordering::Release);
                    return;
                };
                let gone = if stop {
                    sessions.clear()
                } else {
                    sessions.expire(Instant::now())
                };
                if sessions.is_empty() {
                    // Under the sessions lock, so a new session either sees this or is seen.
                    stream.hls.sweeping.store(false, Ordering::Release);
                    drop(guard);
                    drop(gone);
                    return;
                }
                gone
            };
            drop(gone);
        }
    });
}

/// The variants of stream group `group`: its member streams that have audio. The one place that
/// decides a group's membership.
pub fn group_variants(app: &App, group: &str) -> Vec<(String, Variant)> {
    let mut out = vec![];
    for stream in app.streams() {
        if stream.settings().group.as_deref() != Some(group) {
            continue;
        }
        let Some(codec) = stream.codec().as_deref().and_then(CodecInfo::parse) else {
            continue;
        };
        let measured = built(&stream).and_then(|b| b.bandwidth);
        let Some((bandwidth, average)) =
            measured.or_else(|| codec.bitrate.map(|b| (b + b / 100, b)))
        else {
            continue;
        };
        out.push((
            stream.key.clone(),
            Variant {
                uri: format!("../{}.m3u8", stream.key),
                bandwidth,
                average_bandwidth: average,
                codecs: codec.codecs(),
            },
        ));
    }
    out
}

/// `GET /sg/<group>.m3u8`: the group's multivariant playlist. Players that send no session id
/// get one in the variant URIs, so their segment requests are counted per listener.
pub async fn group_playlist(
    State(app): State<Arc<App>>,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(group) = file.strip_suffix(".m3u8") else {
        return text(StatusCode::NOT_FOUND, "Invalid stream group.\n");
    };
    let mut variants = group_variants(&app, group);
    // A slave serves only its own streams; the group's other members live on other pods.
    variants.extend(super::remote::variants(&app, group, &variants).await);
    if variants.is_empty() {
        return text(StatusCode::NOT_FOUND, "Invalid stream group.\n");
    }
    let session = if playback_session(&headers).is_some() {
        None
    } else {
        let given = query.as_deref().and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, v)| k == "session_id" && valid_session_id(v))
                .map(|(_, v)| v.into_owned())
        });
        Some(given.unwrap_or_else(new_session_id))
    };
    let variants: Vec<Variant> = variants
        .into_iter()
        .map(|(_, mut v)| {
            if let Some(s) = &session {
                v.uri = format!("{}?session_id={s}", v.uri);
            }
            v
        })
        .collect();
    let mut r = multivariant(&variants).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(PLAYLIST_TYPE),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    r
}

fn new_session_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}
