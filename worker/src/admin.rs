//! The admin API: stream status, titles, sources (list, promote), rewind dump download, metrics.
//! A bearer token guards everything but the health probes when one is configured.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::app::{App, Role};
use crate::auth::bearer_allowed;
use crate::config::{StreamConfig, ValidateStream, validate_key};
use crate::core::chunk::Meta;
use crate::events::EventKind;
use crate::stream::{SourceInfo, Stream, StreamError};
use crate::time::rfc3339;
use streammachine_contract::StreamReport;

/// JSON errors with a message, for every failure the API returns.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

fn not_found(key: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("no stream `{key}`"))
}

/// `GET /api/streams/{key}`: the contract's report (what the operator reads) and the figures
/// only people and tests read.
#[derive(Debug, Serialize)]
pub struct StreamStatus {
    pub key: String,
    pub format: String,
    #[serde(flatten)]
    pub report: StreamReport,
    pub sources: Vec<SourceInfo>,
    pub buffer_bytes: usize,
    pub buffer_start: Option<String>,
    pub buffer_end: Option<String>,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub url: String,
}

pub fn status(app: &App, stream: &Stream) -> StreamStatus {
    let settings = stream.settings();
    let (held, bytes, first, last) = stream.buffer.read(|b| {
        (
            b.held() as f64 / 1e6,
            b.bytes(),
            b.first().map(|c| (c.seq, c.ts)),
            b.last().map(|c| (c.seq, c.end())),
        )
    });
    let sources = stream.sources();
    let meta = stream.meta();
    let (listeners, slaves_alive) = match app.cluster_listeners(&stream.key) {
        Some((n, alive)) => (n, Some(alive)),
        None => (stream.listener_count(), None),
    };
    StreamStatus {
        key: stream.key.clone(),
        format: settings.format.to_string(),
        report: StreamReport {
            codec: stream.codec(),
            source_connected: !sources.is_empty(),
            buffer_seconds: held,
            listeners,
            slaves_alive: slaves_alive.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            title: meta.title,
            source_silent: stream.live_silent(),
        },
        sources,
        buffer_bytes: bytes,
        buffer_start: first.map(|(_, ts)| rfc3339(ts)),
        buffer_end: last.map(|(_, ts)| rfc3339(ts)),
        first_seq: first.map(|(s, _)| s),
        last_seq: last.map(|(s, _)| s),
        url: meta.url,
    }
}

pub fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route("/api/events", get(crate::events::sse::events))
        .route("/api/streams", get(list_streams))
        .route(
            "/api/streams/{key}",
            get(get_stream).put(put_stream).delete(delete_stream),
        )
        .route("/api/streams/{key}/metadata", post(set_metadata))
        .route("/api/streams/{key}/sources", get(list_sources))
        .route("/api/streams/{key}/sources/{id}/promote", post(promote))
        .route("/api/streams/{key}/rewind", get(download_rewind))
        .route("/api/streams/{key}/levels", get(levels))
        .route("/metrics", get(crate::probes::metrics))
        .route_layer(middleware::from_fn_with_state(app.clone(), require_token));
    Router::new()
        .merge(api)
        .route("/healthz", get(crate::probes::healthz))
        .route("/readyz", get(crate::probes::readyz))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .with_state(app)
}

/// Who made an admin request, for the `admin.action` audit event.
#[derive(Debug, Clone)]
pub struct Actor(pub &'static str);

async fn require_token(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    if app.settings.admin_token.is_none() && app.cluster_token().is_none() {
        // Only possible on loopback (config validation refuses it elsewhere).
        req.extensions_mut().insert(Actor("local"));
        return next.run(req).await;
    }
    // The admin token and, where the role has one, the cluster token (the operator and slaves
    // use it).
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let actor = if bearer_allowed(header, app.settings.admin_token.as_deref()) {
        Some("admin token")
    } else if bearer_allowed(header, app.cluster_token()) {
        Some("cluster token")
    } else {
        None
    };
    match actor {
        Some(actor) => {
            req.extensions_mut().insert(Actor(actor));
            next.run(req).await
        }
        None => {
            let mut r = ApiError(
                StatusCode::UNAUTHORIZED,
                "a valid bearer token is required".into(),
            )
            .into_response();
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            r
        }
    }
}

async fn list_streams(State(app): State<Arc<App>>) -> Json<Vec<StreamStatus>> {
    Json(app.streams().iter().map(|s| status(&app, s)).collect())
}

async fn get_stream(
    State(app): State<Arc<App>>,
    Path(key): Path<String>,
) -> Result<Json<StreamStatus>, ApiError> {
    let s = app.stream(&key).ok_or_else(|| not_found(&key))?;
    Ok(Json(status(&app, &s)))
}

/// The store configs are written to, or why this role does not write.
fn writable_store(
    app: &App,
) -> Result<std::sync::Arc<dyn crate::cluster::store::ConfigStore>, ApiError> {
    if app.role == Role::Slave {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "slaves read stream configs from the master's store; change them on the master".into(),
        ));
    }
    app.store().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "no config store yet; try again".into(),
        )
    })
}

/// Create or replace a stream's config (the same JSON as in the config file's `streams`
/// section). Applied by every role through the store, like the operator's writes.
async fn put_stream(
    State(app): State<Arc<App>>,
    Extension(actor): Extension<Actor>,
    Path(key): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<StreamConfig>, ApiError> {
    let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, m);
    validate_key(&key).map_err(|e| bad(e.to_string()))?;
    let mut config: StreamConfig =
        serde_json::from_slice(&body).map_err(|e| bad(format!("invalid stream config: {e}")))?;
    config
        .validate(&format!("streams.{key}"))
        .map_err(|e| bad(e.to_string()))?;
    // Slaves fill unset values with their own defaults: write the master's out.
    if app.role == Role::Master {
        config.rewind = config.rewind.or(Some(app.settings.rewind));
        config.burst = config.burst.or(Some(app.settings.burst));
    }
    let store = writable_store(&app)?;
    store
        .put(&key, &config)
        .await
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    info!(stream = %key, actor = actor.0, "Stream config written through the admin API.");
    audit(&app, &actor, "stream.put", &key);
    Ok(Json(config))
}

async fn delete_stream(
    State(app): State<Arc<App>>,
    Extension(actor): Extension<Actor>,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    let store = writable_store(&app)?;
    let known = store
        .watch()
        .borrow()
        .as_ref()
        .is_some_and(|c| c.contains_key(&key));
    if !known {
        return Err(not_found(&key));
    }
    store
        .delete(&key)
        .await
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    info!(stream = %key, actor = actor.0, "Stream deleted through the admin API.");
    audit(&app, &actor, "stream.delete", &key);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetadataBody {
    title: Option<String>,
    url: Option<String>,
}

async fn set_metadata(
    State(app): State<Arc<App>>,
    Extension(actor): Extension<Actor>,
    Path(key): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Meta>, ApiError> {
    let s = app.stream(&key).ok_or_else(|| not_found(&key))?;
    let b: MetadataBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))?;
    let old = s.meta();
    let meta = Meta {
        title: b.title.unwrap_or(old.title),
        url: b.url.unwrap_or(old.url),
    };
    if meta.title.len() > 4096 || meta.url.len() > 4096 {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "title and url are limited to 4096 bytes".into(),
        ));
    }
    s.set_meta(meta.clone(), "admin")
        .map_err(|e| ApiError(StatusCode::CONFLICT, e.to_string()))?;
    info!(stream = %key, title = %meta.title, actor = actor.0, "Title set through the admin API.");
    audit(&app, &actor, "metadata.set", &key);
    Ok(Json(meta))
}

/// Every change made through the admin API is an `admin.action` event (and a log line above).
fn audit(app: &App, actor: &Actor, action: &str, target: &str) {
    let stream = target.split('/').next().filter(|s| !s.is_empty());
    app.events.emit(
        stream,
        EventKind::AdminAction {
            actor: actor.0.to_string(),
            action: action.to_string(),
            target: Some(target.to_string()),
        },
    );
}

async fn list_sources(
    State(app): State<Arc<App>>,
    Path(key): Path<String>,
) -> Result<Json<Vec<SourceInfo>>, ApiError> {
    let s = app.stream(&key).ok_or_else(|| not_found(&key))?;
    Ok(Json(s.sources()))
}

async fn promote(
    State(app): State<Arc<App>>,
    Extension(actor): Extension<Actor>,
    Path((key, id)): Path<(String, u64)>,
) -> Result<Json<Vec<SourceInfo>>, ApiError> {
    let s = app.stream(&key).ok_or_else(|| not_found(&key))?;
    match s.promote_source(id) {
        Ok(()) => {
            info!(stream = %key, source_id = id, actor = actor.0, "Source promoted to live.");
            audit(&app, &actor, "source.promote", &format!("{key}/{id}"));
            Ok(Json(s.sources()))
        }
        Err(e @ StreamError::NoSuchSource(_)) => {
            Err(ApiError(StatusCode::NOT_FOUND, e.to_string()))
        }
        Err(e) => Err(ApiError(StatusCode::CONFLICT, e.to_string())),
    }
}

async fn download_rewind(
    State(app): State<Arc<App>>,
    Extension(actor): Extension<Actor>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let s = app.stream(&key).ok_or_else(|| not_found(&key))?;
    audit(&app, &actor, "rewind.download", &key);
    let chunks = s.buffer.snapshot();
    let bytes = tokio::task::spawn_blocking(move || crate::core::dump::encode(&key, &chunks))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut r = Response::new(Body::from(bytes));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}.dump\"", s.key)) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

/// Longest range one `levels` request returns (36 000 points of 100 ms).
const LEVELS_MAX_SPAN: i64 = 3600 * 1_000_000;
/// Range when `from` is not given: the last minute before `to`.
const LEVELS_DEFAULT_SPAN: i64 = 60 * 1_000_000;

#[derive(Debug, Deserialize)]
struct LevelsQuery {
    from: Option<String>,
    to: Option<String>,
}

#[derive(Debug, Serialize)]
struct LevelsReply {
    stream: String,
    from: String,
    to: String,
    window_ms: u32,
    levels: Vec<crate::core::level::chunks::TimedPoint>,
}

/// `GET /api/streams/{key}/levels?from=&to=`: the level of every 100 ms window in the buffer
/// between two RFC 3339 times (`to` defaults to the buffer's end, `from` to a minute before
/// `to`; at most an hour per request). From the levels the chunks carry: no decoding here.
async fn levels(
    State(app): State<Arc<App>>,
    Path(key): Path<String>,
    axum::extract::Query(q): axum::extract::Query<LevelsQuery>,
) -> Result<Json<LevelsReply>, ApiError> {
    let s = app.stream(&key).ok_or_else(|| not_found(&key))?;
    let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, m);
    let parse = |v: &Option<String>, name: &str| -> Result<Option<i64>, ApiError> {
        v.as_deref()
            .map(|t| {
                crate::time::parse_time(t).map_err(|_| {
                    bad(format!(
                        "`{name}` must be an RFC 3339 time such as 2026-11-26T09:00:00Z"
                    ))
                })
            })
            .transpose()
    };
    let end = s
        .buffer
        .read(|b| b.last().map(crate::core::chunk::Chunk::end))
        .unwrap_or_else(crate::time::now_micros);
    let to = parse(&q.to, "to")?.unwrap_or(end);
    let from = parse(&q.from, "from")?.unwrap_or(to - LEVELS_DEFAULT_SPAN);
    if from >= to {
        return Err(bad("`from` must be before `to`".into()));
    }
    if to - from > LEVELS_MAX_SPAN {
        return Err(bad("at most one hour of levels per request".into()));
    }
    let levels = s.buffer.read(|b| {
        // A chunk (at most 10 s) holds the windows that end in it, so a window starts at most
        // one window before its chunk.
        let window = i64::from(crate::core::level::WINDOW_MS) * 1000;
        let longest_chunk = 10_000_000;
        crate::core::level::chunks::timed_points(
            b.time_range(from - longest_chunk, to + window),
            from,
            to,
        )
    });
    Ok(Json(LevelsReply {
        stream: key,
        from: rfc3339(from),
        to: rfc3339(to),
        window_ms: crate::core::level::WINDOW_MS,
        levels,
    }))
}
