//! The one definition of what the operator, the worker and the end-to-end harness exchange
//! (pure: types and constants, no IO).
//!
//! - The stored stream document: `{"schema":1,"stream":{...}}` in `{prefix}:stream:{key}`
//!   ([`Document`], [`StreamConfig`], [`SCHEMA_VERSION`]).
//! - The Redis layout and the notification channel ([`Keys`]).
//! - The stream-key rule and the reserved names ([`check_key`], [`RESERVED_KEYS`]).
//! - The numeric bounds the worker enforces ([`bounds`]); the CRD and the operator's validation
//!   use them (or stricter ones), so a Stream the CRD admits is a stream the worker serves.
//! - The master's stream report as the operator reads it ([`StreamReport`]).
//!
//! Each side keeps its own error messages; only the rules live here.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub mod duration;

/// Version of the stored JSON document. A reader refuses other versions.
pub const SCHEMA_VERSION: u64 = 1;

/// Stream keys that listener routes use (`/admin`, `/sg/<group>.m3u8`, probes, ...): a stream
/// named like one of them would be unreachable.
pub const RESERVED_KEYS: &[&str] = &[
    "admin",
    "api",
    "sg",
    "healthz",
    "readyz",
    "metrics",
    "index.html",
    "favicon.ico",
];

/// Every event type the worker raises (`source.silence.started`, ...): what webhook and event
/// filters name, exactly or by a prefix such as `source.*`.
pub const EVENT_TYPES: &[&str] = &[
    "source.connected",
    "source.disconnected",
    "source.promoted",
    "source.silence.started",
    "source.silence.ended",
    "stream.sourceless.started",
    "stream.sourceless.ended",
    "stream.metadata.changed",
    "stream.listeners.changed",
    "replica.unsynced",
    "replica.synced",
    "buffer.restored",
    "config.changed",
    "admin.action",
];

/// Longest stream key (and group name).
pub const KEY_MAX_LEN: usize = 64;

/// Why a stream key (or group name) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyProblem {
    /// Empty, too long or a character outside `A-Z a-z 0-9 - _`.
    Syntax,
    /// One of [`RESERVED_KEYS`].
    Reserved,
}

/// Stream keys become URL path segments, Redis key parts and NATS subjects.
pub fn check_key(key: &str) -> Result<(), KeyProblem> {
    let ok_chars = key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if key.is_empty() || key.len() > KEY_MAX_LEN || !ok_chars {
        return Err(KeyProblem::Syntax);
    }
    if RESERVED_KEYS.contains(&key) {
        return Err(KeyProblem::Reserved);
    }
    Ok(())
}

/// The bounds the worker enforces on a stream's settings.
pub mod bounds {
    use std::time::Duration;

    /// ICY metadata interval in bytes: the interval travels in a 16-bit field of some clients.
    pub const ICY_METAINT_MIN: u32 = 1;
    /// See [`ICY_METAINT_MIN`].
    pub const ICY_METAINT_MAX: u32 = 65535;
    /// Shortest rewind buffer.
    pub const REWIND_MIN: Duration = Duration::from_secs(1);
    /// Longest rewind buffer.
    pub const REWIND_MAX: Duration = Duration::from_secs(7 * 24 * 3600);
    /// Shortest HLS segment, in seconds.
    pub const HLS_SEGMENT_MIN_SECS: u64 = 1;
    /// Longest HLS segment, in seconds.
    pub const HLS_SEGMENT_MAX_SECS: u64 = 60;
    /// Longest title or URL, in bytes (UTF-8).
    pub const TEXT_MAX_BYTES: usize = 4096;
    /// Schemes a fallback source may use.
    pub const FALLBACK_SCHEMES: &[&str] = &["http://", "https://", "file://"];
    /// Webhooks per stream.
    pub const WEBHOOKS_MAX: usize = 16;

    /// Dead-air settings: defaults and bounds. The defaults follow the field: −50 dBFS (AWS
    /// MediaLive), trip after 20 s (Liquidsoap's `max_blank`), clear at −40 dBFS after 3 s of
    /// audio (Inovonics' hysteresis).
    pub mod silence {
        use std::time::Duration;

        pub const THRESHOLD_DBFS: i16 = -50;
        pub const CLEAR_DBFS: i16 = -40;
        pub const TRIP_AFTER: Duration = Duration::from_secs(20);
        pub const CLEAR_AFTER: Duration = Duration::from_secs(3);
        /// Levels are whole dBFS in this range.
        pub const DBFS_MIN: i16 = -119;
        pub const DBFS_MAX: i16 = 0;
        pub const TRIP_MIN: Duration = Duration::from_secs(1);
        pub const TRIP_MAX: Duration = Duration::from_secs(3600);
        /// One level window.
        pub const CLEAR_MIN: Duration = Duration::from_millis(100);
        pub const CLEAR_MAX: Duration = Duration::from_secs(600);
    }
}

/// The container formats a stream can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Mp3,
    Aac,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Mp3 => "audio/mpeg",
            Format::Aac => "audio/aac",
        }
    }

    /// File extension used for playlists and HLS segments; also the name in configs.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Mp3 => "mp3",
            Format::Aac => "aac",
        }
    }

    /// Whether an encoder's `Content-Type` header announces this format.
    pub fn accepts_content_type(self, content_type: &str) -> bool {
        let mime = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match self {
            Format::Mp3 => matches!(mime.as_str(), "audio/mpeg" | "audio/mp3" | "audio/mpeg3"),
            Format::Aac => matches!(
                mime.as_str(),
                "audio/aac" | "audio/aacp" | "audio/x-aac" | "audio/adts"
            ),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.extension())
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "mp3" | "mpeg" => Ok(Format::Mp3),
            "aac" | "adts" => Ok(Format::Aac),
            other => Err(format!("unknown format `{other}` (expected mp3 or aac)")),
        }
    }
}

/// One stream's settings: the `stream` object of the stored document, also a stream's section of
/// the worker's config file. Unset values are omitted (never `null`) and fall back to the
/// worker's server-wide ones; durations are humantime strings; unknown fields are refused, so a
/// typo or a field of a newer schema is an error rather than silently ignored.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    #[serde(default)]
    pub format: Format,
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    pub rewind: Option<std::time::Duration>,
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    pub burst: Option<std::time::Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icy_metaint: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Listener limit (per slave pod in a cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_listeners: Option<u32>,
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    pub listener_max_lag: Option<std::time::Duration>,
    /// Encoder password. Kept out of `Debug`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_password: Option<String>,
    /// Relay (`http(s)://`) or file (`file://`) used while no encoder is connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// HLS stream group; follows the stream-key rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    pub hls_segment: Option<std::time::Duration>,
    /// What the plain media playlist (and its delta updates) lists: this much of the newest
    /// audio. `?window=` and `?at=` still reach the whole buffer.
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    pub hls_live_window: Option<std::time::Duration>,
    /// Dead-air detection and what to do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silence: Option<SilenceConfig>,
    /// Raise `stream.sourceless.*` events when the stream has no source (default: true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitored: Option<bool>,
    /// This stream's webhooks (besides the server-wide ones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<WebhookConfig>,
}

/// What a stream does about dead air on its sources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SilenceAction {
    /// Events and metrics only.
    #[default]
    Alert,
    /// Also promote the next standby with audio, else the fallback; never a silent one.
    Failover,
}

/// A stream's dead-air settings; unset values take the defaults in [`bounds::silence`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceConfig {
    /// Under this level (loudest channel's RMS, whole dBFS) counts as silence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_dbfs: Option<i16>,
    /// Silence ends only at or above this level (at least the threshold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_dbfs: Option<i16>,
    /// Silent this long trips the alarm.
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    pub trip_after: Option<std::time::Duration>,
    /// Audio this long clears it.
    #[serde(default, with = "duration", skip_serializing_if = "Option::is_none")]
    pub clear_after: Option<std::time::Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<SilenceAction>,
}

/// One webhook: server-wide in the config file's `webhooks:`, or in a stream's settings.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://` endpoint.
    pub url: String,
    /// Event types wanted (exact, or a prefix like `source.*`); empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    /// Signing secret: `whsec_<base64>` as Standard Webhooks issues them, or any other string of
    /// at least 16 bytes (used as it is). Without one, deliveries are not signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

// By hand, so the signing secret never reaches a log line.
impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("types", &self.types)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

// By hand, so the source password never reaches a log line.
impl fmt::Debug for StreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamConfig")
            .field("format", &self.format)
            .field("rewind", &self.rewind)
            .field("burst", &self.burst)
            .field("icy_metaint", &self.icy_metaint)
            .field("title", &self.title)
            .field("url", &self.url)
            .field("max_listeners", &self.max_listeners)
            .field("listener_max_lag", &self.listener_max_lag)
            .field(
                "source_password",
                &self.source_password.as_ref().map(|_| "<redacted>"),
            )
            .field("fallback", &self.fallback)
            .field("group", &self.group)
            .field("hls_segment", &self.hls_segment)
            .field("hls_live_window", &self.hls_live_window)
            .field("silence", &self.silence)
            .field("monitored", &self.monitored)
            .field("webhooks", &self.webhooks)
            .finish()
    }
}

/// The stored document: the schema version around the stream's settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Document {
    pub schema: u64,
    pub stream: StreamConfig,
}

/// Just the version, read first so a newer schema is reported as such rather than as unknown
/// fields.
#[derive(Debug, Deserialize)]
pub struct SchemaOnly {
    pub schema: u64,
}

impl Document {
    /// A document of the current schema.
    pub fn new(stream: StreamConfig) -> Document {
        Document {
            schema: SCHEMA_VERSION,
            stream,
        }
    }
}

/// Default key prefix of a cluster's Redis.
pub const DEFAULT_PREFIX: &str = "streammachine";

/// Redis key names under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Keys {
        Keys {
            prefix: prefix.into(),
        }
    }
    /// SET of every stream key.
    pub fn streams(&self) -> String {
        format!("{}:streams", self.prefix)
    }
    /// STRING holding one stream's [`Document`] as JSON.
    pub fn stream(&self, key: &str) -> String {
        format!("{}:stream:{key}", self.prefix)
    }
    /// Pub/sub channel: the key of every written or deleted stream is published on it.
    pub fn channel(&self) -> String {
        format!("{}:config", self.prefix)
    }
    /// HASH stream key → `namespace/name` of the Stream that wrote it (the operator's only).
    pub fn owners(&self) -> String {
        format!("{}:stream-owners", self.prefix)
    }
    /// STRING: the newest discontinuity epoch the master has ingested for a stream (decimal),
    /// so a master restarted without a dump or peers never numbers discontinuities backwards.
    pub fn epoch(&self, key: &str) -> String {
        format!("{}:epoch:{key}", self.prefix)
    }
}

/// What the master's admin API (`GET /api/streams/{key}`) reports about one stream, as far as
/// the operator reads it. The worker serializes more fields; readers ignore unknown ones so the
/// master can add figures without breaking older operators.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamReport {
    /// Codec key of the current source, e.g. `mp3-44100-128-s`.
    pub codec: Option<String>,
    /// Whether an encoder is connected.
    pub source_connected: bool,
    /// Seconds of audio in the rewind buffer.
    pub buffer_seconds: f64,
    /// Listeners (across all slaves on a master).
    pub listeners: u64,
    /// Master only: slaves that reported within the liveness window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slaves_alive: Option<u32>,
    /// Current StreamTitle.
    pub title: String,
    /// The live source is in dead air (tripped and not yet cleared).
    pub source_silent: bool,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    #[test]
    fn keys_follow_the_layout() {
        let k = Keys::new("sm");
        assert_eq!(k.streams(), "sm:streams");
        assert_eq!(k.stream("live"), "sm:stream:live");
        assert_eq!(k.channel(), "sm:config");
        assert_eq!(k.owners(), "sm:stream-owners");
        assert_eq!(k.epoch("live"), "sm:epoch:live");
    }

    #[test]
    fn key_rule() {
        assert_eq!(check_key("kpcc_live-2"), Ok(()));
        assert_eq!(check_key(""), Err(KeyProblem::Syntax));
        assert_eq!(check_key("a/b"), Err(KeyProblem::Syntax));
        assert_eq!(check_key(&"a".repeat(65)), Err(KeyProblem::Syntax));
        for k in RESERVED_KEYS.iter().filter(|k| !k.contains('.')) {
            assert_eq!(check_key(k), Err(KeyProblem::Reserved), "{k}");
        }
    }

    #[test]
    fn document_omits_unset_fields_and_refuses_unknown_ones() {
        let doc = Document::new(StreamConfig {
            format: Format::Aac,
            rewind: Some(Duration::from_secs(5400)),
            source_password: Some("pw".into()),
            ..StreamConfig::default()
        });
        let json = serde_json::to_string(&doc).unwrap();
        assert_eq!(
            json,
            r#"{"schema":1,"stream":{"format":"aac","rewind":"1h 30m","source_password":"pw"}}"#
        );
        assert_eq!(serde_json::from_str::<Document>(&json).unwrap(), doc);
        assert!(serde_json::from_str::<Document>(r#"{"schema":1,"stream":{"nope":1}}"#).is_err());
        assert!(!format!("{doc:?}").contains("pw\""));
    }
}
