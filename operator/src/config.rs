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
