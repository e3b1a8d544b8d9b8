//! The listener port's HTTP router (requests that are not a first-request live listener):
//! audio on keep-alive connections, the pumper, `.pls`/`.m3u` playlists, HLS, encoder title
//! updates, health and metrics.

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
use tower_http::cors::{Any, CorsLayer};

use crate::app::App;
use crate::probes;
use crate::serve::listen::{
    EXPOSED_HEADERS, ListenError, ListenQuery, Opened, audio_headers, log_end, open_listener,
    parse_listen_query, wants_icy_value,
};
use crate::source::titles;

pub fn router(app: Arc<App>) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::HEAD, Method::OPTIONS])
        .allow_headers(Any)
        .expose_headers(EXPOSED_HEADERS.map(header::HeaderName::from_static));
    Router::new()
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz))
        .route("/metrics", get(probes::metrics))
        .route("/admin/metadata", get(titles::icecast_metadata))
        .route("/admin.cgi", get(titles::shoutcast_metadata))
        .route("/{name}", get(by_name).head(head_stream))
        .route("/{name}/seg/{file}", get(crate::serve::hls::segment_route))
        .route("/sg/{file}", get(crate::serve::hls::group_playlist))
        .fallback(|| async { (StatusCode::NOT_FOUND, "Invalid stream.\n") })
        .layer(cors)
        .with_state(app)
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
        return crate::serve::hls::media_playlist(&app, key, &query, &headers);
    }
    let q = match parse_listen_query(&query) {
        Ok(q) => q,
        Err(e) => return ListenError::BadRequest(e).into_response(),
    };
    if let Some(length) = q.pump {
        return pump(&app, &name, &q, length);
    }
    let icy = wants_icy_value(headers.get("icy-metadata").and_then(|v| v.to_str().ok()));
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
        headers.push(("x-rewind-start", crate::time::rfc3339(first.ts)));
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
        return crate::serve::hls::media_playlist(&app, key, &query.unwrap_or_default(), &headers);
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

#[cfg(test)]
mod tests {
    use super::*;

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
