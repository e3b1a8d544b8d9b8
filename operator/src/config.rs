//! The stream config the operator writes to Redis for the master and slaves (pure).
//!
//! The document is the contract crate's [`Document`]: the worker parses the very type this
//! module fills in.

use std::fmt;
use std::time::Duration;

use base64::Engine;
use serde::{Serialize, Serializer};
use streammachine_contract::{Document, Format, WebhookConfig};

use crate::crd::{AudioFormat, Stream};
use crate::validate::ValidSpec;

/// Version of the stored JSON document.
pub use streammachine_contract::SCHEMA_VERSION;

/// A string that must not show up in logs: `Debug` and `Display` print a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Sensitive(String);

impl Sensitive {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value, for the few places that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Sensitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Sensitive {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// The Secret values a Stream's config carries, read from Secrets in the Stream's namespace.
/// `Debug` shows placeholders only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSecrets {
    /// The encoder password (`spec.source.passwordSecretRef`).
    pub source_password: Sensitive,
    /// The signing secret of each `spec.webhooks` entry, in order; `None` for a hook without
    /// a `secretKeyRef`.
    pub webhook_secrets: Vec<Option<Sensitive>>,
}

impl StreamSecrets {
    /// Only a source password: for Streams without signed webhooks.
    pub fn new(source_password: Sensitive) -> Self {
        Self {
            source_password,
            webhook_secrets: vec![],
        }
    }
}

/// Whether the worker accepts `secret` as a webhook signing secret: `whsec_` and base64, or
/// any other string, either way at least 16 bytes of key (the worker's `signing_key`). The
/// message never quotes the secret.
pub fn check_webhook_secret(secret: &str) -> Result<(), &'static str> {
    let key_len = match secret.strip_prefix("whsec_") {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| "a `whsec_` secret must be base64 after the prefix")?
            .len(),
        None => secret.len(),
    };
    if key_len < 16 {
        return Err("the signing secret is too short (at least 16 bytes of key)");
    }
    Ok(())
}

/// The inner `stream` object of the stored document, built from a validated Stream. Its
/// `Debug` hides the source password.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig(pub streammachine_contract::StreamConfig);

impl StreamConfig {
    /// Builds the config of a validated Stream.
    pub fn build(stream: &Stream, valid: &ValidSpec, secrets: &StreamSecrets) -> Self {
        let spec = &stream.spec;
        let webhooks = spec
            .webhooks
            .iter()
            .enumerate()
            .map(|(i, hook)| WebhookConfig {
                url: hook.url.clone(),
                types: hook.types.clone(),
                secret: secrets
                    .webhook_secrets
                    .get(i)
                    .cloned()
                    .flatten()
                    .map(|secret| secret.expose().to_owned()),
            })
            .collect();
        Self(streammachine_contract::StreamConfig {
            format: match spec.format {
                AudioFormat::Mp3 => Format::Mp3,
                AudioFormat::Aac => Format::Aac,
            },
            // Always written, so every slave runs with the operator's values rather than its
            // own defaults.
            rewind: Some(valid.rewind),
            burst: Some(valid.burst),
            icy_metaint: Some(spec.outputs.icy_meta_interval),
            title: spec.stream_title.clone(),
            url: spec.stream_url.clone(),
            max_listeners: spec.listeners.max_listeners,
            listener_max_lag: valid.max_lag,
            source_password: Some(secrets.source_password.expose().to_owned()),
            fallback: spec.fallback.clone(),
            group: spec.group.clone(),
            hls_segment: Some(Duration::from_secs(spec.outputs.hls_segment_seconds.into())),
            // Not in the Stream resource (yet): slaves use their server-wide `hls_live_window`.
            hls_live_window: None,
            silence: valid.silence.clone(),
            monitored: spec.monitored,
            webhooks,
        })
    }

    /// The JSON document stored in Redis.
    pub fn to_document(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(&Document::new(self.0.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::stream;
    use crate::validate::validate;
    use serde_json::json;

    #[test]
    fn minimal_stream_document_has_only_set_fields() {
        let s = stream("live");
        let config = StreamConfig::build(
            &s,
            &validate(&s).unwrap(),
            &StreamSecrets::new(Sensitive::new("hackme")),
        );
        let doc: serde_json::Value = serde_json::from_str(&config.to_document().unwrap()).unwrap();
        assert_eq!(
            doc,
            json!({
                "schema": 1,
                "stream": {
                    "format": "mp3",
                    "rewind": "4h",
                    "burst": "30s",
                    "icy_metaint": 16000,
                    "source_password": "hackme",
                    "hls_segment": "6s"
                }
            })
        );
    }

    #[test]
    fn every_optional_field_maps_to_its_worker_name() {
        let mut s = stream("live");
        s.spec.format = crate::crd::AudioFormat::Aac;
        s.spec.rewind = "1h30m".into();
        s.spec.stream_title = Some("KPCC".into());
        s.spec.stream_url = Some("https://kpcc.org".into());
        s.spec.listeners.max_listeners = Some(500);
        s.spec.listeners.max_lag = Some("2m".into());
        s.spec.fallback = Some("https://relay.example/live".into());
        s.spec.group = Some("kpcc".into());
        s.spec.outputs.hls_segment_seconds = 10;
        s.spec.outputs.icy_meta_interval = 8192;
        let config = StreamConfig::build(
            &s,
            &validate(&s).unwrap(),
            &StreamSecrets::new(Sensitive::new("pw")),
        );
        let doc: serde_json::Value = serde_json::from_str(&config.to_document().unwrap()).unwrap();
        assert_eq!(
            doc["stream"],
            json!({
                "format": "aac",
                "rewind": "1h 30m",
                "burst": "30s",
                "icy_metaint": 8192,
                "title": "KPCC",
                "url": "https://kpcc.org",
                "max_listeners": 500,
                "listener_max_lag": "2m",
                "source_password": "pw",
                "fallback": "https://relay.example/live",
                "group": "kpcc",
                "hls_segment": "10s"
            })
        );
    }

    fn with_hooks() -> Stream {
        let mut s = stream("live");
        s.spec.silence = Some(crate::crd::SilenceSpec {
            threshold_dbfs: Some(-60),
            clear_dbfs: Some(-45),
            trip_after: Some("1m30s".into()),
            clear_after: Some("500ms".into()),
            action: Some(crate::crd::SilenceAction::Failover),
        });
        s.spec.monitored = Some(false);
        s.spec.webhooks = vec![
            crate::crd::WebhookSpec {
                url: "https://hooks.example/a".into(),
                types: vec![
                    "source.silence.*".into(),
                    "stream.sourceless.started".into(),
                ],
                secret_key_ref: Some(crate::crd::SecretKeyRef {
                    name: "hooks".into(),
                    key: "signing".into(),
                }),
            },
            crate::crd::WebhookSpec {
                url: "http://pager.internal:8080/in".into(),
                types: vec![],
                secret_key_ref: None,
            },
        ];
        s
    }

    fn hook_secrets() -> StreamSecrets {
        StreamSecrets {
            source_password: Sensitive::new("pw"),
            webhook_secrets: vec![
                Some(Sensitive::new("whsec_c2VjcmV0LXNpZ25pbmcta2V5IQ==")),
                None,
            ],
        }
    }

    #[test]
    fn silence_monitored_and_webhooks_map_to_their_worker_names() {
        let s = with_hooks();
        let config = StreamConfig::build(&s, &validate(&s).unwrap(), &hook_secrets());
        let doc: serde_json::Value = serde_json::from_str(&config.to_document().unwrap()).unwrap();
        assert_eq!(
            doc["stream"]["silence"],
            json!({
                "threshold_dbfs": -60,
                "clear_dbfs": -45,
                "trip_after": "1m 30s",
                "clear_after": "500ms",
                "action": "failover"
            })
        );
        assert_eq!(doc["stream"]["monitored"], false);
        assert_eq!(
            doc["stream"]["webhooks"],
            json!([
                {
                    "url": "https://hooks.example/a",
                    "types": ["source.silence.*", "stream.sourceless.started"],
                    "secret": "whsec_c2VjcmV0LXNpZ25pbmcta2V5IQ=="
                },
                {"url": "http://pager.internal:8080/in"}
            ])
        );
    }

    #[test]
    fn a_partial_silence_spec_leaves_the_rest_to_the_worker() {
        let mut s = stream("live");
        s.spec.silence = Some(crate::crd::SilenceSpec {
            action: Some(crate::crd::SilenceAction::Alert),
            ..Default::default()
        });
        s.spec.monitored = Some(true);
        let config = StreamConfig::build(
            &s,
            &validate(&s).unwrap(),
            &StreamSecrets::new(Sensitive::new("pw")),
        );
        let doc: serde_json::Value = serde_json::from_str(&config.to_document().unwrap()).unwrap();
        assert_eq!(doc["stream"]["silence"], json!({"action": "alert"}));
        assert_eq!(doc["stream"]["monitored"], true);
        assert!(doc["stream"].get("webhooks").is_none());
    }

    #[test]
    fn debug_output_hides_the_webhook_secrets() {
        let s = with_hooks();
        let secrets = hook_secrets();
        let config = StreamConfig::build(&s, &validate(&s).unwrap(), &secrets);
        for debug in [format!("{config:?}"), format!("{secrets:?}")] {
            assert!(!debug.contains("whsec_"), "{debug}");
            assert!(!debug.contains("pw\""), "{debug}");
        }
    }

    #[test]
    fn webhook_secrets_follow_the_workers_rule() {
        // 16 bytes raw, 16 bytes after base64: the shortest the worker signs with.
        for ok in ["0123456789abcdef", "whsec_MDEyMzQ1Njc4OWFiY2RlZg=="] {
            assert_eq!(check_webhook_secret(ok), Ok(()), "{ok}");
        }
        for bad in [
            "0123456789abcde",
            "whsec_MDEyMzQ1Njc4OWFiY2Rl",
            "whsec_not base64!!",
        ] {
            let problem = check_webhook_secret(bad).unwrap_err();
            assert!(!problem.contains(bad), "the message quotes the secret");
        }
    }

    #[test]
    fn debug_output_hides_the_password() {
        let s = stream("live");
        let config = StreamConfig::build(
            &s,
            &validate(&s).unwrap(),
            &StreamSecrets::new(Sensitive::new("hackme")),
        );
        assert!(!format!("{config:?}").contains("hackme"));
    }
}
