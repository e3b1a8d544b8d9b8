//! Client for the master's admin API, the source of a Stream's live figures.
//!
//! `GET {admin}/api/streams/{key}` with `Authorization: Bearer <cluster token>` answers 200 with
//! a [`StreamReport`] or 404 while the master has not loaded the stream (yet). Failures are
//! reported to the caller as a [`MasterError`] that ends up in a condition, never as a
//! reconcile error: the master being away must not make the operator hot-loop.

use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;

use crate::config::Sensitive;

/// What the master reports about one stream: the worker serializes this very type (flattened
/// into its admin API's stream status); unknown fields are ignored.
pub use streammachine_contract::StreamReport;

/// Why the master could not tell.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MasterError {
    /// No connection, timeout, or a 5xx.
    #[error("master admin API unreachable: {0}")]
    Unreachable(String),
    /// 401/403: the operator's cluster token differs from the master's.
    #[error("master admin API refused the cluster token (HTTP {0})")]
    Unauthorized(u16),
    /// Any other unexpected answer.
    #[error("unexpected answer from the master admin API: {0}")]
    BadResponse(String),
}

/// Reads stream reports. A trait so reconciler tests can answer without HTTP.
pub trait MasterApi: Send + Sync {
    /// The report for `key`; `Ok(None)` when the master does not have the stream.
    fn stream_report<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<StreamReport>, MasterError>>;
}

/// HTTP client for the admin API (plain HTTP inside the cluster).
pub struct MasterClient {
    base_url: String,
    token: Sensitive,
    timeout: Duration,
    http: Client<HttpConnector, Empty<Bytes>>,
}

impl MasterClient {
    /// A client for `base_url` (e.g. `http://streammachine-master-admin.radio.svc:8001`).
    pub fn new(base_url: &str, token: Sensitive, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            token,
            timeout,
            http: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    async fn fetch(&self, key: &str) -> Result<Option<StreamReport>, MasterError> {
        let uri = format!("{}/api/streams/{key}", self.base_url);
        let request = http::Request::get(&uri)
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token.expose()),
            )
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| MasterError::BadResponse(format!("bad request URI {uri}: {e}")))?;

        let response = tokio::time::timeout(self.timeout, self.http.request(request))
            .await
            .map_err(|_| MasterError::Unreachable(format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| MasterError::Unreachable(e.to_string()))?;
        let status = response.status();
        let body = tokio::time::timeout(self.timeout, response.into_body().collect())
            .await
            .map_err(|_| MasterError::Unreachable("body timed out".into()))?
            .map_err(|e| MasterError::Unreachable(e.to_string()))?
            .to_bytes();

        match status.as_u16() {
            200 => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| MasterError::BadResponse(format!("invalid JSON: {e}"))),
            404 => Ok(None),
            code @ (401 | 403) => Err(MasterError::Unauthorized(code)),
            code if status.is_server_error() => {
                Err(MasterError::Unreachable(format!("HTTP {code}")))
            }
            code => Err(MasterError::BadResponse(format!("HTTP {code}"))),
        }
    }
}

impl MasterApi for MasterClient {
    fn stream_report<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<StreamReport>, MasterError>> {
        Box::pin(self.fetch(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::extract::Path;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::get;

    async fn serve(router: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{addr}")
    }

    fn client(url: &str) -> MasterClient {
        MasterClient::new(url, Sensitive::new("token"), Duration::from_secs(2))
    }

    #[tokio::test]
    async fn reads_a_report_with_the_bearer_token() {
        let router = Router::new().route(
            "/api/streams/{key}",
            get(|Path(key): Path<String>, headers: HeaderMap| async move {
                if headers["authorization"] != "Bearer token" {
                    return (StatusCode::UNAUTHORIZED, String::new());
                }
                if key != "live" {
                    return (
                        StatusCode::NOT_FOUND,
                        r#"{"error":"no such stream"}"#.into(),
                    );
                }
                let body = r#"{"key":"live","format":"mp3","codec":"mp3-44100-128-s",
                    "source_connected":true,"sources":[],"buffer_seconds":123.5,
                    "listeners":42,"slaves_alive":2,"title":"News","future_field":1}"#;
                (StatusCode::OK, body.into())
            }),
        );
        let url = serve(router).await;

        let report = client(&url).stream_report("live").await.unwrap().unwrap();
        assert!(report.source_connected);
        assert_eq!(report.listeners, 42);
        assert_eq!(report.buffer_seconds, 123.5);
        assert_eq!(report.codec.as_deref(), Some("mp3-44100-128-s"));

        assert_eq!(client(&url).stream_report("other").await, Ok(None));

        let wrong = MasterClient::new(&url, Sensitive::new("nope"), Duration::from_secs(2));
        assert_eq!(
            wrong.stream_report("live").await,
            Err(MasterError::Unauthorized(401))
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable_not_a_panic() {
        // Bind and drop to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let result = client(&format!("http://127.0.0.1:{port}"))
            .stream_report("live")
            .await;
        assert!(
            matches!(result, Err(MasterError::Unreachable(_))),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn server_errors_count_as_unreachable() {
        let router = Router::new().route(
            "/api/streams/{key}",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "starting") }),
        );
        let url = serve(router).await;
        let result = client(&url).stream_report("live").await;
        assert!(
            matches!(result, Err(MasterError::Unreachable(_))),
            "{result:?}"
        );
    }
}
