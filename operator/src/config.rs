//! The stream config the operator writes to Redis for the master and slaves (pure).
//!
//! Contract with the worker: the value of `{prefix}:stream:{key}` is
//! `{"schema":1,"stream":{...}}`, the inner object in snake_case, unset fields omitted (never
//! `null`), durations as humantime strings, and the worker rejects unknown fields.

use std::fmt;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::crd::Stream;
use crate::validate::ValidSpec;

/// Version of the stored JSON document.
pub const SCHEMA_VERSION: u32 = 1;

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

/// The inner `stream` object of the stored document.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct StreamConfig {
    /// `mp3` or `aac`.
    pub format: &'static str,
    /// Rewind buffer length.
    pub rewind: String,
    /// Burst for new listeners.
    pub burst: String,
    /// ICY metadata interval in bytes.
    pub icy_metaint: u32,
    /// Initial StreamTitle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// StreamUrl.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Listener limit per slave pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_listeners: Option<u32>,
    /// Allowed listener lag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listener_max_lag: Option<String>,
    /// Encoder password, resolved from the Stream's Secret. Redis is internal to the install.
    pub source_password: Sensitive,
    /// Relay or file used while no encoder is connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// HLS stream group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// HLS segment length.
    pub hls_segment: String,
}

#[derive(Serialize)]
struct Document<'a> {
    schema: u32,
    stream: &'a StreamConfig,
}

impl StreamConfig {
    /// Builds the config of a validated Stream.
    pub fn build(stream: &Stream, valid: &ValidSpec, source_password: Sensitive) -> Self {
        let spec = &stream.spec;
        Self {
            format: spec.format.as_str(),
            rewind: duration_string(valid.rewind),
            burst: duration_string(valid.burst),
            icy_metaint: spec.outputs.icy_meta_interval,
            title: spec.stream_title.clone(),
            url: spec.stream_url.clone(),
            max_listeners: spec.listeners.max_listeners,
            listener_max_lag: valid.max_lag.map(duration_string),
            source_password,
            fallback: spec.fallback.clone(),
            group: spec.group.clone(),
            hls_segment: duration_string(Duration::from_secs(
                spec.outputs.hls_segment_seconds.into(),
            )),
        }
    }

    /// The JSON document stored in Redis.
    pub fn to_document(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(&Document {
            schema: SCHEMA_VERSION,
            stream: self,
        })
    }
}

/// Canonical humantime form ("4h", "1h 30m"), which the worker parses with humantime.
fn duration_string(d: Duration) -> String {
    humantime::format_duration(d).to_string()
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
        let config = StreamConfig::build(&s, &validate(&s).unwrap(), Sensitive::new("hackme"));
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
        let config = StreamConfig::build(&s, &validate(&s).unwrap(), Sensitive::new("pw"));
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
        let config = StreamConfig::build(&s, &validate(&s).unwrap(), Sensitive::new("hackme"));
        assert!(!format!("{config:?}").contains("hackme"));
    }
}
