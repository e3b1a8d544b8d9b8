//! Webhooks: every event a hook wants, POSTed as a CloudEvents 1.0 structured JSON event and
//! signed the Standard Webhooks way (`webhook-id`, `webhook-timestamp`, `webhook-signature:
//! v1,<base64 HMAC-SHA256 of "id.timestamp.body">`).
//!
//! Each endpoint has its own bounded queue and its own task, so a slow, failing or unreachable
//! endpoint delays only itself: never ingest, listeners or the other endpoints. A delivery is
//! retried with backoff and jitter until it succeeds or [`Retry::give_up_after`] has passed;
//! what a full queue drops and what is given up on are counted in `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Event, EventMetrics, Events, Filter};
use crate::retry::{Backoff, Repeated};

/// Events waiting per endpoint; beyond that new ones are dropped (and counted).
const QUEUE: usize = 1024;
/// One delivery attempt may take this long.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

pub use streammachine_contract::WebhookConfig;

/// Check a hook; the error names what is wrong (the caller adds the config key).
pub fn validate(hook: &WebhookConfig) -> Result<(), String> {
    let url =
        reqwest::Url::parse(&hook.url).map_err(|e| format!("`url` is not a valid URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("`url` must be an http:// or https:// URL with a host".into());
    }
    Filter {
        types: hook.types.clone(),
        streams: vec![],
    }
    .validate()
    .map_err(|e| format!("`types`: {e}"))?;
    if let Some(secret) = &hook.secret {
        signing_key(secret).map_err(|e| format!("`secret`: {e}"))?;
    }
    Ok(())
}

/// The HMAC key of a secret: the bytes after `whsec_` base64-decoded, or the string itself.
pub fn signing_key(secret: &str) -> Result<Vec<u8>, String> {
    let key = match secret.strip_prefix("whsec_") {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| "a `whsec_` secret must be base64 after the prefix".to_string())?,
        None => secret.as_bytes().to_vec(),
    };
    if key.len() < 16 {
        return Err("too short (at least 16 bytes)".into());
    }
    Ok(key)
}

/// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(id.as_bytes());
    ctx.update(b".");
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
    )
}

/// The CloudEvents 1.0 structured-mode body of an event.
pub fn cloudevent(event: &Event) -> Vec<u8> {
    let data = serde_json::to_value(&event.kind)
        .ok()
        .and_then(|v| v.get("data").cloned())
        .unwrap_or(serde_json::Value::Null);
    let mut body = serde_json::json!({
        "specversion": "1.0",
        "id": event.id,
        "source": format!("urn:streammachine:{}", event.node),
        "type": format!("io.streammachine.{}", event.kind_name()),
        "time": event.time,
        "datacontenttype": "application/json",
        "data": data,
    });
    if let Some(stream) = &event.stream {
        body["subject"] = serde_json::Value::String(stream.clone());
    }
    body.to_string().into_bytes()
}

/// How long deliveries are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub first: Duration,
    pub max_delay: Duration,
    pub give_up_after: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            first: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            give_up_after: Duration::from_secs(3600),
        }
    }
}

/// An endpoint and the stream it belongs to (`None`: server-wide, every stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub stream: Option<String>,
    pub config: WebhookConfig,
}

struct Endpoint {
    hook: Hook,
    filter: Filter,
    queue: mpsc::Sender<Arc<Event>>,
    stop: CancellationToken,
}

/// The running webhooks; [`Webhooks::set`] makes them match the config.
pub struct Webhooks {
    endpoints: std::sync::Mutex<Vec<Endpoint>>,
    client: reqwest::Client,
    metrics: EventMetrics,
    retry: Retry,
    shutdown: CancellationToken,
}

impl Webhooks {
    /// Start delivering `events` to the hooks given later by [`Webhooks::set`].
    pub fn start(
        events: &Events,
        metrics: EventMetrics,
        retry: Retry,
        shutdown: CancellationToken,
    ) -> Arc<Webhooks> {
        crate::install_tls_provider();
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .connect_timeout(ATTEMPT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("StreamMachine/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        let hooks = Arc::new(Webhooks {
            endpoints: std::sync::Mutex::new(vec![]),
            client,
            metrics,
            retry,
            shutdown,
        });
        let mut rx = events.subscribe();
        let dispatcher = hooks.clone();
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    r = rx.recv() => r,
                    _ = dispatcher.shutdown.cancelled() => return,
                };
                match event {
                    Ok(event) => dispatcher.dispatch(&event),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        dispatcher.metrics.webhook_dropped.inc_by(n);
                        warn!(
                            dropped = n,
                            "Webhook dispatch fell behind the event bus; events dropped."
                        );
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        hooks
    }

    /// Run exactly `hooks`: unchanged ones keep their queue, removed ones stop, new ones start.
    pub fn set(&self, hooks: Vec<Hook>) {
        let mut endpoints = self
            .endpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        endpoints.retain(|e| {
            let keep = hooks.contains(&e.hook);
            if !keep {
                e.stop.cancel();
            }
            keep
        });
        for hook in hooks {
            if endpoints.iter().any(|e| e.hook == hook) {
                continue;
            }
            let key = hook
                .config
                .secret
                .as_deref()
                .and_then(|s| signing_key(s).ok());
            let (tx, rx) = mpsc::channel(QUEUE);
            let stop = self.shutdown.child_token();
            let delivery = Delivery {
                client: self.client.clone(),
                url: hook.config.url.clone(),
                key,
                metrics: self.metrics.clone(),
                retry: self.retry,
            };
            info!(url = %redact(&hook.config.url), stream = hook.stream.as_deref().unwrap_or("*"), "Webhook active.");
            tokio::spawn(delivery.run(rx, stop.clone()));
            endpoints.push(Endpoint {
                filter: Filter {
                    types: hook.config.types.clone(),
                    streams: hook.stream.iter().cloned().collect(),
                },
                hook,
                queue: tx,
                stop,
            });
        }
    }

    fn dispatch(&self, event: &Arc<Event>) {
        let endpoints = self
            .endpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for e in endpoints.iter().filter(|e| e.filter.matches(event)) {
            if e.queue.try_send(event.clone()).is_err() {
                self.metrics.webhook_dropped.inc();
                debug!(url = %redact(&e.hook.config.url), "Webhook queue full; event dropped.");
            }
        }
    }
}

/// The URL without credentials or query (tokens live there), for logs.
fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            format!(
                "{}://{}{}",
                u.scheme(),
                u.host_str().unwrap_or(""),
                u.port().map(|p| format!(":{p}")).unwrap_or_default()
            ) + u.path()
        }
        Err(_) => "<invalid url>".into(),
    }
}

struct Delivery {
    client: reqwest::Client,
    url: String,
    key: Option<Vec<u8>>,
    metrics: EventMetrics,
    retry: Retry,
}

impl Delivery {
    async fn run(self, mut rx: mpsc::Receiver<Arc<Event>>, stop: CancellationToken) {
        let mut errors = Repeated::default();
        loop {
            let event = tokio::select! {
                e = rx.recv() => match e { Some(e) => e, None => return },
                _ = stop.cancelled() => return,
            };
            let body = cloudevent(&event);
            let started = tokio::time::Instant::now();
            let mut backoff = Backoff::new(self.retry.first, self.retry.max_delay);
            loop {
                match self.attempt(&event.id, &body).await {
                    Ok(()) => {
                        self.metrics.webhook_delivered.inc();
                        if errors.clear() {
                            info!(url = %redact(&self.url), "Webhook delivering again.");
                        }
                        break;
                    }
                    Err(e) => {
                        let delay = backoff.next_delay();
                        if started.elapsed() + delay > self.retry.give_up_after {
                            self.metrics.webhook_failed.inc();
                            warn!(url = %redact(&self.url), event = %event.id, error = %e,
                                "Webhook delivery given up after retrying.");
                            break;
                        }
                        self.metrics.webhook_retries.inc();
                        if errors.should_log(&e) {
                            warn!(url = %redact(&self.url), error = %e, retry_in = ?delay,
                                "Webhook delivery failed; retrying.");
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = stop.cancelled() => return,
                        }
                    }
                }
            }
        }
    }

    async fn attempt(&self, id: &str, body: &[u8]) -> Result<(), String> {
        let timestamp = crate::time::now_micros() / 1_000_000;
        let mut req = self
            .client
            .post(&self.url)
            .header("content-type", "application/cloudevents+json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string());
        if let Some(key) = &self.key {
            req = req.header("webhook-signature", signature(key, id, timestamp, body));
        }
        let resp = req.body(body.to_vec()).send().await.map_err(|e| {
            if e.is_timeout() {
                "timed out".to_string()
            } else if e.is_connect() {
                "cannot connect".to_string()
            } else {
                "request failed".to_string()
            }
        })?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("answered {}", resp.status().as_u16()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{EventKind, Promotion};

    #[test]
    fn standard_webhooks_signature() {
        // The example of the Standard Webhooks spec's reference libraries.
        let key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert!(signing_key("whsec_not base64!").is_err());
        assert!(signing_key("short").is_err());
        assert_eq!(
            signing_key("a-long-enough-plain-secret").unwrap(),
            b"a-long-enough-plain-secret"
        );
    }

    #[test]
    fn cloudevents_body() {
        let events = Events::new("pod-a", EventMetrics::default());
        let e = events.emit(
            Some("live"),
            EventKind::SourcePromoted {
                source_id: 2,
                by: Promotion::Failover,
            },
        );
        let v: serde_json::Value = serde_json::from_slice(&cloudevent(&e)).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["type"], "io.streammachine.source.promoted");
        assert_eq!(v["source"], "urn:streammachine:pod-a");
        assert_eq!(v["subject"], "live");
        assert_eq!(v["id"], e.id);
        assert_eq!(v["data"]["by"], "failover");
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn config_is_checked() {
        let hook = |url: &str, types: &[&str], secret: Option<&str>| WebhookConfig {
            url: url.into(),
            types: types.iter().map(|s| s.to_string()).collect(),
            secret: secret.map(String::from),
        };
        assert!(
            validate(&hook(
                "https://hooks.example/x",
                &["source.*"],
                Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            ))
            .is_ok()
        );
        assert!(
            validate(&hook("ftp://x/", &[], None))
                .unwrap_err()
                .contains("`url`")
        );
        assert!(
            validate(&hook("not a url", &[], None))
                .unwrap_err()
                .contains("`url`")
        );
        assert!(
            validate(&hook("http://x/", &["nope"], None))
                .unwrap_err()
                .contains("`types`")
        );
        assert!(
            validate(&hook("http://x/", &[], Some("x")))
                .unwrap_err()
                .contains("`secret`")
        );
        assert_eq!(
            redact("https://u:p@hooks.example:8443/a/b?token=s3cret"),
            "https://hooks.example:8443/a/b"
        );
    }
}
