//! Title updates sent from the encoder side: Icecast's `/admin/metadata` and SHOUTcast v1's
//! `/admin.cgi`, on the listener port where encoders expect them.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::info;

use crate::app::App;
use crate::auth::{basic_password, bearer_allowed, secret_eq};
use crate::core::chunk::Meta;
use crate::stream::Stream;

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
    if bearer_allowed(auth, token) {
        return true;
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
    if stream.set_meta(Meta { title, url }, "source").is_err() {
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

pub async fn icecast_metadata(
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    encoder_title_update(&app, query, &headers, false)
}

pub async fn shoutcast_metadata(
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
    fn query_charsets() {
        let p = decode_query("song=Caf%E9+Del+Mar&charset=ISO-8859-1");
        assert_eq!(p[0].1, "Café Del Mar");
        let p = decode_query("song=Caf%C3%A9");
        assert_eq!(p[0].1, "Café");
    }
}
