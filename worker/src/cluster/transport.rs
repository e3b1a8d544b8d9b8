//! The rewind transport: chunks over HTTP, between master and slaves, in the dump format
//! (versioned header, then length-prefixed chunk records, **oldest first**).
//!
//! Served by the master on its admin listener (the slaves' `--master`), and by slaves on their
//! listener port (a restarted master pulls newer chunks from them). Every request carries
//! `Authorization: Bearer <cluster token>`.
//!
//! - `GET /cluster/v1/streams/{key}/snapshot`: every chunk of the stream's buffer.
//! - `GET /cluster/v1/streams/{key}/chunks?from=A[&to=B]`: chunks with `A <= seq <= B` (no `to`:
//!   everything from `A`). Chunks the server does not hold are simply absent.
//!
//! Responses stream at wire speed and say what the server holds in `x-streammachine-first-seq`
//! and `x-streammachine-last-seq` (absent when the buffer is empty).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde::Deserialize;

use crate::app::App;
use crate::auth::bearer_allowed;
use crate::cluster::check::{BadChunk, check_chunk};
use crate::core::chunk::Chunk;
use crate::core::codec::Format;
use crate::core::dump::{self, DumpError};

pub const CONTENT_TYPE: &str = "application/vnd.streammachine.dump";
pub const FIRST_SEQ: &str = "x-streammachine-first-seq";
pub const LAST_SEQ: &str = "x-streammachine-last-seq";
/// Encoded bytes per body piece: large enough for wire speed, small enough to start at once.
const BATCH_BYTES: usize = 256 * 1024;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/cluster/v1/streams/{key}/snapshot", get(snapshot))
        .route("/cluster/v1/streams/{key}/chunks", get(range))
        .route_layer(middleware::from_fn_with_state(
            app.clone(),
            require_cluster_token,
        ))
        .with_state(app)
}

fn plain(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, msg.into()).into_response()
}

async fn require_cluster_token(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match bearer_allowed(header, app.cluster_token()) {
        true => next.run(req).await,
        false => {
            let mut r = plain(
                StatusCode::UNAUTHORIZED,
                "a valid cluster token is required\n",
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            r
        }
    }
}

async fn snapshot(State(app): State<Arc<App>>, Path(key): Path<String>) -> Response {
    serve(&app, &key, 0, u64::MAX)
}

#[derive(Debug, Deserialize)]
struct RangeQuery {
    from: u64,
    to: Option<u64>,
}

async fn range(
    State(app): State<Arc<App>>,
    Path(key): Path<String>,
    query: Result<Query<RangeQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        return plain(
            StatusCode::BAD_REQUEST,
            "expected ?from=SEQ[&to=SEQ] with unsigned integers\n",
        );
    };
    let to = q.to.unwrap_or(u64::MAX);
    if to < q.from {
        return plain(StatusCode::BAD_REQUEST, "`to` is below `from`\n");
    }
    serve(&app, &key, q.from, to)
}

fn serve(app: &App, key: &str, from: u64, to: u64) -> Response {
    let Some(stream) = app.stream(key) else {
        return plain(StatusCode::NOT_FOUND, format!("no stream `{key}`\n"));
    };
    // Reference-counted clones under the read lock; encoding happens as the client reads.
    let (chunks, first, last) = stream.buffer.read(|b| {
        (
            b.range(from, to).cloned().collect::<Vec<_>>(),
            b.first().map(|c| c.seq),
            b.last().map(|c| c.seq),
        )
    });
    let mut resp = Response::new(dump_body(key, chunks));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(f) = first {
        h.insert(FIRST_SEQ, HeaderValue::from(f));
    }
    if let Some(l) = last {
        h.insert(LAST_SEQ, HeaderValue::from(l));
    }
    resp
}

/// A dump of `chunks` as a streamed body, encoded in batches as the client reads.
pub fn dump_body(key: &str, chunks: Vec<Chunk>) -> Body {
    let mut header = BytesMut::new();
    dump::encode_header(key, &mut header);
    let batches = futures_util::stream::unfold(
        (chunks.into_iter(), Some(header)),
        |(mut iter, mut pending)| async move {
            let mut out = pending.take().unwrap_or_default();
            while out.len() < BATCH_BYTES {
                match iter.next() {
                    Some(c) => dump::encode_record(&c, &mut out),
                    None => break,
                }
            }
            if out.is_empty() {
                return None;
            }
            Some((Ok::<Bytes, std::io::Error>(out.freeze()), (iter, None)))
        },
    );
    Body::from_stream(batches)
}

// === Client ===

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot reach {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error(
        "{url} refused the cluster token (HTTP {status}): check STREAMMACHINE_CLUSTER_TOKEN on both sides"
    )]
    Unauthorized { url: String, status: u16 },
    #[error("{url} has no stream `{key}`")]
    NotFound { url: String, key: String },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("invalid rewind data from {url}: {source}")]
    Dump {
        url: String,
        #[source]
        source: DumpError,
    },
    #[error("invalid audio from {url}: {source}")]
    Audio {
        url: String,
        #[source]
        source: BadChunk,
    },
    #[error("invalid rewind data from {url}: {message}")]
    Invalid { url: String, message: String },
}

impl TransportError {
    /// Errors worth a louder log: the other side is reachable but wrong, which retrying alone
    /// will not fix.
    pub fn is_misconfiguration(&self) -> bool {
        // A missing stream is usually a moment of a config change or a master restart.
        !matches!(
            self,
            TransportError::Unreachable { .. } | TransportError::NotFound { .. }
        )
    }
}

/// Chunks received in one response, checked and in `seq` order.
#[derive(Debug, Default)]
pub struct Fetched {
    pub chunks: Vec<Chunk>,
    /// Encoded bytes received.
    pub bytes: u64,
    /// What the other side holds (from the response headers).
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub elapsed: Duration,
}

/// Fetches chunks from another role's transport.
#[derive(Clone)]
pub struct TransportClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl TransportClient {
    pub fn new(base_url: &str, token: &str) -> Result<TransportClient, TransportError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // A response that stalls this long is dead; a big snapshot that keeps flowing is not.
            .read_timeout(Duration::from_secs(15))
            .no_proxy()
            .build()
            .map_err(|e| TransportError::Unreachable {
                url: base_url.to_string(),
                message: e.to_string(),
            })?;
        Ok(TransportClient {
            http,
            base: base_url.trim_end_matches('/').to_string(),
            token: token.to_string(),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The whole buffer of `key`.
    pub async fn snapshot(&self, key: &str, format: Format) -> Result<Fetched, TransportError> {
        let url = format!("{}/cluster/v1/streams/{key}/snapshot", self.base);
        self.fetch(url, key, format, (0, u64::MAX)).await
    }

    /// Chunks of `key` with `from <= seq <= to` (`to` = None: everything from `from`).
    pub async fn range(
        &self,
        key: &str,
        format: Format,
        from: u64,
        to: Option<u64>,
    ) -> Result<Fetched, TransportError> {
        let mut url = format!("{}/cluster/v1/streams/{key}/chunks?from={from}", self.base);
        if let Some(to) = to {
            url.push_str(&format!("&to={to}"));
        }
        self.fetch(url, key, format, (from, to.unwrap_or(u64::MAX)))
            .await
    }

    /// All or nothing: any invalid byte fails the whole response, so a corrupt transfer never
    /// reaches a buffer.
    async fn fetch(
        &self,
        url: String,
        key: &str,
        format: Format,
        (from, to): (u64, u64),
    ) -> Result<Fetched, TransportError> {
        let started = Instant::now();
        let unreachable = |e: reqwest::Error| TransportError::Unreachable {
            url: url.clone(),
            message: e.to_string(),
        };
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(unreachable)?;
        let status = resp.status().as_u16();
        match status {
            200 => {}
            401 | 403 => return Err(TransportError::Unauthorized { url, status }),
            404 => {
                return Err(TransportError::NotFound {
                    url,
                    key: key.to_string(),
                });
            }
            _ => return Err(TransportError::Status { url, status }),
        }
        let header_seq = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
        };
        let mut fetched = Fetched {
            first_seq: header_seq(FIRST_SEQ),
            last_seq: header_seq(LAST_SEQ),
            ..Fetched::default()
        };
        let mut decoder = dump::Decoder::default();
        let mut body = resp.bytes_stream();
        let dump_err = |source| TransportError::Dump {
            url: url.clone(),
            source,
        };
        while let Some(piece) = body.next().await {
            let piece = piece.map_err(unreachable)?;
            fetched.bytes += piece.len() as u64;
            decoder.push(&piece);
            while let Some(chunk) = decoder.next_chunk().map_err(dump_err)? {
                if !(from..=to).contains(&chunk.seq) {
                    return Err(TransportError::Invalid {
                        url,
                        message: format!("chunk {} outside the requested range", chunk.seq),
                    });
                }
                check_chunk(format, &chunk).map_err(|source| TransportError::Audio {
                    url: url.clone(),
                    source,
                })?;
                fetched.chunks.push(chunk);
            }
        }
        decoder.finish().map_err(dump_err)?;
        if decoder.key() != Some(key) {
            return Err(dump_err(DumpError::WrongStream {
                found: decoder.key().unwrap_or_default().to_string(),
                expected: key.to_string(),
            }));
        }
        fetched.elapsed = started.elapsed();
        Ok(fetched)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use axum::http::Request as HttpRequest;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::app::{Cluster, Role};
    use crate::config::{Settings, StreamConfig};
    use crate::core::chunk::test_chunk;

    fn app_with_chunks(n: u64) -> Arc<App> {
        let app = App::new(
            Settings::defaults("pw".into()),
            Role::Master,
            None,
            Some(Cluster::new("tok".into())),
        );
        app.apply_streams(&BTreeMap::from([(
            "live".to_string(),
            StreamConfig::default(),
        )]));
        let chunks = (0..n)
            .map(|i| test_chunk(100 + i, i as i64 * 500_000, "t"))
            .collect();
        app.stream("live").unwrap().merge(chunks);
        app
    }

    async fn get(app: &Arc<App>, uri: &str, token: Option<&str>) -> (StatusCode, Response) {
        let mut req = HttpRequest::get(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let resp = router(app.clone())
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        (resp.status(), resp)
    }

    async fn chunks_of(resp: Response) -> Vec<Chunk> {
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        dump::decode("live", &body).unwrap()
    }

    #[tokio::test]
    async fn only_the_cluster_token_gets_in() {
        let app = app_with_chunks(3);
        for token in [None, Some("nope"), Some("")] {
            let (status, _) = get(&app, "/cluster/v1/streams/live/snapshot", token).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
    }

    #[tokio::test]
    async fn snapshot_and_ranges_are_dumps_oldest_first() {
        // More than one body batch of 256 KiB.
        let app = app_with_chunks(100);
        let (status, resp) = get(&app, "/cluster/v1/streams/live/snapshot", Some("tok")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(resp.headers()[FIRST_SEQ], "100");
        assert_eq!(resp.headers()[LAST_SEQ], "199");
        let all = chunks_of(resp).await;
        assert_eq!(all.len(), 100);
        assert_eq!(all, app.stream("live").unwrap().buffer.snapshot());

        let (_, resp) = get(
            &app,
            "/cluster/v1/streams/live/chunks?from=150&to=152",
            Some("tok"),
        )
        .await;
        let seqs: Vec<u64> = chunks_of(resp).await.iter().map(|c| c.seq).collect();
        assert_eq!(seqs, vec![150, 151, 152]);
        let (_, resp) = get(
            &app,
            "/cluster/v1/streams/live/chunks?from=198",
            Some("tok"),
        )
        .await;
        assert_eq!(chunks_of(resp).await.len(), 2);
        // Nothing held in the range: an empty dump, not an error.
        let (_, resp) = get(
            &app,
            "/cluster/v1/streams/live/chunks?from=5&to=9",
            Some("tok"),
        )
        .await;
        assert!(chunks_of(resp).await.is_empty());
    }

    #[tokio::test]
    async fn bad_requests_are_refused() {
        let app = app_with_chunks(1);
        for uri in [
            "/cluster/v1/streams/live/chunks",
            "/cluster/v1/streams/live/chunks?from=x",
            "/cluster/v1/streams/live/chunks?from=-1",
            "/cluster/v1/streams/live/chunks?from=5&to=4",
        ] {
            assert_eq!(
                get(&app, uri, Some("tok")).await.0,
                StatusCode::BAD_REQUEST,
                "{uri}"
            );
        }
        let (status, _) = get(&app, "/cluster/v1/streams/nope/snapshot", Some("tok")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
