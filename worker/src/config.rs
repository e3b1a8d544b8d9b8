//! Configuration: the YAML file, its per-stream section (also the JSON stored in Redis), and the
//! resolved settings the server runs with.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::core::codec::Format;
use crate::events::webhook::WebhookConfig;

pub const DEFAULT_LISTEN: &str = "0.0.0.0:8000";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8001";
pub const DEFAULT_STREAM: &str = "live";
pub const DEFAULT_REWIND: Duration = Duration::from_secs(4 * 3600);
pub const DEFAULT_BURST: Duration = Duration::from_secs(30);
pub const DEFAULT_ICY_METAINT: u32 = 16000;
pub const DEFAULT_HLS_SEGMENT: Duration = Duration::from_secs(6);
/// What the plain HLS playlist lists by default (the whole buffer stays reachable).
pub const DEFAULT_HLS_LIVE_WINDOW: Duration = Duration::from_secs(3600);
/// The live window holds at least this many target durations (the HLS minimum for a live
/// playlist a player can start in).
pub const HLS_LIVE_WINDOW_MIN_TARGETS: u64 = 3;
pub const DEFAULT_MAX_LAG: Duration = Duration::from_secs(30);

use streammachine_contract::{KeyProblem, bounds, check_key};
pub use streammachine_contract::{SilenceAction, StreamConfig};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for `{key}`: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format `{other}` (expected text or json)"
            )),
        }
    }
}

/// The config file. Every key is optional; flags and `STREAMMACHINE_*` variables override it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Listener and Icecast source address.
    pub listen: Option<SocketAddr>,
    /// Admin API address.
    pub admin_listen: Option<SocketAddr>,
    /// Bearer token for the admin API.
    pub admin_token: Option<String>,
    /// Default source password for every stream.
    pub source_password: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub rewind: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub burst: Option<Duration>,
    pub dump_dir: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    pub dump_interval: Option<Duration>,
    pub log_format: Option<LogFormat>,
    #[serde(default, with = "humantime_serde")]
    pub chunk_duration: Option<Duration>,
    /// Listeners across all streams.
    pub max_listeners: Option<u32>,
    /// Open TCP connections of any kind.
    pub max_connections: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub header_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub source_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub listener_max_lag: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub shutdown_timeout: Option<Duration>,
    /// Every stream's `hls_live_window` unless it sets its own.
    #[serde(default, with = "humantime_serde")]
    pub hls_live_window: Option<Duration>,
    /// Server-wide webhooks: every stream's events they ask for.
    pub webhooks: Option<Vec<WebhookConfig>>,
    pub streams: Option<BTreeMap<String, StreamConfig>>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    pub fn parse(text: &str) -> Result<FileConfig, String> {
        if text.trim().is_empty() {
            return Ok(FileConfig::default());
        }
        serde_saphyr::from_str(text).map_err(|e| e.to_string())
    }
}

/// Server-wide settings after merging defaults, the file, env and flags.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub admin_token: Option<String>,
    pub source_password: String,
    pub rewind: Duration,
    pub burst: Duration,
    pub dump_dir: Option<PathBuf>,
    pub dump_interval: Duration,
    pub log_format: LogFormat,
    pub chunk_duration: Duration,
    pub max_listeners: Option<u32>,
    pub max_connections: u32,
    pub header_timeout: Duration,
    pub source_timeout: Duration,
    pub listener_max_lag: Duration,
    pub shutdown_timeout: Duration,
    pub hls_live_window: Duration,
    pub webhooks: Vec<WebhookConfig>,
    pub streams: BTreeMap<String, StreamConfig>,
}

impl Settings {
    pub fn defaults(source_password: String) -> Settings {
        Settings {
            listen: DEFAULT_LISTEN.parse().expect("valid default address"),
            admin_listen: DEFAULT_ADMIN_LISTEN.parse().expect("valid default address"),
            admin_token: None,
            source_password,
            rewind: DEFAULT_REWIND,
            burst: DEFAULT_BURST,
            dump_dir: None,
            dump_interval: Duration::from_secs(60),
            log_format: LogFormat::Text,
            chunk_duration: Duration::from_millis(500),
            max_listeners: None,
            max_connections: 20_000,
            header_timeout: Duration::from_secs(5),
            source_timeout: Duration::from_secs(10),
            listener_max_lag: DEFAULT_MAX_LAG,
            shutdown_timeout: Duration::from_secs(10),
            hls_live_window: DEFAULT_HLS_LIVE_WINDOW,
            webhooks: vec![],
            streams: BTreeMap::from([(DEFAULT_STREAM.to_string(), StreamConfig::default())]),
        }
    }

    /// Apply the file's values over the defaults.
    pub fn apply_file(&mut self, f: FileConfig) {
        macro_rules! take {
            ($($field:ident),*) => { $( if let Some(v) = f.$field { self.$field = v; } )* };
        }
        take!(
            listen,
            admin_listen,
            source_password,
            rewind,
            burst,
            dump_interval,
            log_format,
            chunk_duration,
            max_connections,
            header_timeout,
            source_timeout,
            listener_max_lag,
            shutdown_timeout,
            hls_live_window,
            webhooks,
            streams
        );
        if f.admin_token.is_some() {
            self.admin_token = f.admin_token;
        }
        if f.dump_dir.is_some() {
            self.dump_dir = f.dump_dir;
        }
        if f.max_listeners.is_some() {
            self.max_listeners = f.max_listeners;
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_with(false)
    }

    /// `token_elsewhere`: the admin API is guarded by another token (the cluster token of a
    /// master or slave), so it may listen beyond loopback without an admin token.
    pub fn validate_with(&self, token_elsewhere: bool) -> Result<(), ConfigError> {
        if self.source_password.is_empty() {
            return Err(invalid("source_password", "must not be empty"));
        }
        check_duration("rewind", self.rewind, Duration::from_secs(1), None)?;
        check_duration(
            "chunk_duration",
            self.chunk_duration,
            Duration::from_millis(20),
            Some(Duration::from_secs(10)),
        )?;
        check_duration(
            "dump_interval",
            self.dump_interval,
            Duration::from_secs(1),
            None,
        )?;
        check_duration(
            "header_timeout",
            self.header_timeout,
            Duration::from_millis(100),
            None,
        )?;
        check_duration(
            "source_timeout",
            self.source_timeout,
            Duration::from_millis(100),
            None,
        )?;
        if self.max_connections == 0 {
            return Err(invalid("max_connections", "must be at least 1"));
        }
        if self.streams.is_empty() {
            return Err(invalid("streams", "at least one stream is required"));
        }
        for (i, hook) in self.webhooks.iter().enumerate() {
            crate::events::webhook::validate(hook)
                .map_err(|e| invalid(format!("webhooks[{i}]"), e))?;
        }
        for (key, s) in &self.streams {
            validate_key(key)?;
            s.validate(&format!("streams.{key}"))?;
            if s.hls_live_window.is_none() {
                check_live_window("hls_live_window", self.hls_live_window, s.hls_segment)?;
            }
        }
        if !self.admin_listen.ip().is_loopback() && self.admin_token.is_none() && !token_elsewhere {
            return Err(invalid(
                "admin_token",
                format!(
                    "required when the admin API listens beyond loopback ({})",
                    self.admin_listen
                ),
            ));
        }
        Ok(())
    }

    /// A stream's effective settings.
    pub fn stream(&self, key: &str, c: &StreamConfig) -> StreamSettings {
        StreamSettings {
            key: key.to_string(),
            format: c.format,
            rewind: c.rewind.unwrap_or(self.rewind),
            burst: c.burst.unwrap_or(self.burst),
            icy_metaint: c.icy_metaint.unwrap_or(DEFAULT_ICY_METAINT) as usize,
            title: c.title.clone().unwrap_or_default(),
            url: c.url.clone().unwrap_or_default(),
            max_listeners: c.max_listeners,
            listener_max_lag: c.listener_max_lag.unwrap_or(self.listener_max_lag),
            source_password: c
                .source_password
                .clone()
                .unwrap_or_else(|| self.source_password.clone()),
            fallback: c.fallback.clone(),
            group: c.group.clone(),
            hls_segment: c.hls_segment.unwrap_or(DEFAULT_HLS_SEGMENT),
            // Longer than the buffer would only say "everything": the buffer is the limit.
            hls_live_window: c
                .hls_live_window
                .unwrap_or(self.hls_live_window)
                .min(c.rewind.unwrap_or(self.rewind)),
            silence: SilenceSettings::of(c.silence.as_ref()),
            monitored: c.monitored.unwrap_or(true),
            webhooks: c.webhooks.clone(),
        }
    }
}

fn check_duration(
    key: &str,
    d: Duration,
    min: Duration,
    max: Option<Duration>,
) -> Result<(), ConfigError> {
    if d < min {
        return Err(invalid(
            key,
            format!("must be at least {}", humantime::format_duration(min)),
        ));
    }
    if let Some(max) = max
        && d > max
    {
        return Err(invalid(
            key,
            format!("must be at most {}", humantime::format_duration(max)),
        ));
    }
    Ok(())
}

/// A live window must hold [`HLS_LIVE_WINDOW_MIN_TARGETS`] target durations of the stream's
/// segment length (`None`: the default).
fn check_live_window(
    key: &str,
    window: Duration,
    segment: Option<Duration>,
) -> Result<(), ConfigError> {
    let l = crate::serve::hls::index::segment_len_us(segment.unwrap_or(DEFAULT_HLS_SEGMENT));
    let target = crate::serve::hls::index::target_duration(l);
    let min = Duration::from_secs(HLS_LIVE_WINDOW_MIN_TARGETS * target);
    check_duration(key, window, min, None).map_err(|_| {
        invalid(
            key,
            format!(
                "must be at least {} (three target durations of {} s)",
                humantime::format_duration(min),
                target
            ),
        )
    })
}

/// Stream keys become URL path segments and NATS/Redis names (the rule is the contract's).
pub fn validate_key(key: &str) -> Result<(), ConfigError> {
    match check_key(key) {
        Ok(()) => Ok(()),
        Err(KeyProblem::Syntax) => Err(invalid(
            format!("streams.{key}"),
            format!(
                "stream keys are 1-{} characters of A-Z, a-z, 0-9, `-` and `_`",
                streammachine_contract::KEY_MAX_LEN
            ),
        )),
        Err(KeyProblem::Reserved) => Err(invalid(
            format!("streams.{key}"),
            "this name is reserved for a route",
        )),
    }
}

/// The worker's checks of a stream's settings, on the contract's bounds.
pub trait ValidateStream {
    fn validate(&self, prefix: &str) -> Result<(), ConfigError>;
}

impl ValidateStream for StreamConfig {
    fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        if let Some(r) = self.rewind {
            check_duration(
                &format!("{prefix}.rewind"),
                r,
                bounds::REWIND_MIN,
                Some(bounds::REWIND_MAX),
            )?;
        }
        if let Some(m) = self.icy_metaint
            && !(bounds::ICY_METAINT_MIN..=bounds::ICY_METAINT_MAX).contains(&m)
        {
            return Err(invalid(
                format!("{prefix}.icy_metaint"),
                format!(
                    "must be between {} and {}",
                    bounds::ICY_METAINT_MIN,
                    bounds::ICY_METAINT_MAX
                ),
            ));
        }
        if let Some(s) = self.hls_segment {
            check_duration(
                &format!("{prefix}.hls_segment"),
                s,
                Duration::from_secs(bounds::HLS_SEGMENT_MIN_SECS),
                Some(Duration::from_secs(bounds::HLS_SEGMENT_MAX_SECS)),
            )?;
        }
        if let Some(w) = self.hls_live_window {
            check_live_window(&format!("{prefix}.hls_live_window"), w, self.hls_segment)?;
        }
        if let Some(p) = &self.source_password
            && p.is_empty()
        {
            return Err(invalid(
                format!("{prefix}.source_password"),
                "must not be empty",
            ));
        }
        if let Some(f) = &self.fallback
            && !bounds::FALLBACK_SCHEMES.iter().any(|s| f.starts_with(s))
        {
            return Err(invalid(
                format!("{prefix}.fallback"),
                "must be an http://, https:// or file:// URL",
            ));
        }
        if let Some(g) = &self.group {
            validate_key(g).map_err(|_| {
                invalid(
                    format!("{prefix}.group"),
                    "group names follow the stream key rules",
                )
            })?;
        }
        if let Some(c) = &self.silence {
            validate_silence(prefix, c)?;
        }
        if self.webhooks.len() > bounds::WEBHOOKS_MAX {
            return Err(invalid(
                format!("{prefix}.webhooks"),
                format!("at most {} per stream", bounds::WEBHOOKS_MAX),
            ));
        }
        for (i, hook) in self.webhooks.iter().enumerate() {
            crate::events::webhook::validate(hook)
                .map_err(|e| invalid(format!("{prefix}.webhooks[{i}]"), e))?;
        }
        for (key, value) in [("title", &self.title), ("url", &self.url)] {
            if value
                .as_ref()
                .is_some_and(|v| v.len() > bounds::TEXT_MAX_BYTES)
            {
                return Err(invalid(
                    format!("{prefix}.{key}"),
                    format!("at most {} bytes", bounds::TEXT_MAX_BYTES),
                ));
            }
        }
        Ok(())
    }
}

fn validate_silence(
    prefix: &str,
    c: &streammachine_contract::SilenceConfig,
) -> Result<(), ConfigError> {
    use bounds::silence as b;
    let key = |field: &str| format!("{prefix}.silence.{field}");
    for (field, level) in [
        ("threshold_dbfs", c.threshold_dbfs),
        ("clear_dbfs", c.clear_dbfs),
    ] {
        if let Some(v) = level
            && !(b::DBFS_MIN..=b::DBFS_MAX).contains(&v)
        {
            return Err(invalid(
                key(field),
                format!("must be between {} and {} dBFS", b::DBFS_MIN, b::DBFS_MAX),
            ));
        }
    }
    let threshold = c.threshold_dbfs.unwrap_or(b::THRESHOLD_DBFS);
    let clear = c.clear_dbfs.unwrap_or(b::CLEAR_DBFS);
    if clear < threshold {
        return Err(invalid(
            key("clear_dbfs"),
            format!("must be at least the threshold ({threshold} dBFS)"),
        ));
    }
    if let Some(d) = c.trip_after {
        check_duration(&key("trip_after"), d, b::TRIP_MIN, Some(b::TRIP_MAX))?;
    }
    if let Some(d) = c.clear_after {
        check_duration(&key("clear_after"), d, b::CLEAR_MIN, Some(b::CLEAR_MAX))?;
    }
    Ok(())
}

/// A stream's settings with every default filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSettings {
    pub key: String,
    pub format: Format,
    pub rewind: Duration,
    pub burst: Duration,
    pub icy_metaint: usize,
    pub title: String,
    pub url: String,
    pub max_listeners: Option<u32>,
    pub listener_max_lag: Duration,
    pub source_password: String,
    pub fallback: Option<String>,
    pub group: Option<String>,
    pub hls_segment: Duration,
    /// What the plain HLS playlist lists (at most the rewind buffer).
    pub hls_live_window: Duration,
    pub silence: SilenceSettings,
    /// Raise `stream.sourceless.*` when the stream has no source for 30 s.
    pub monitored: bool,
    /// The stream's own webhooks.
    pub webhooks: Vec<WebhookConfig>,
}

/// Dead-air detection of a stream's sources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SilenceSettings {
    pub detect: crate::core::level::silence::Settings,
    pub action: SilenceAction,
}

impl SilenceSettings {
    /// A stream's configured values over the defaults.
    pub fn of(c: Option<&streammachine_contract::SilenceConfig>) -> SilenceSettings {
        let d = crate::core::level::silence::Settings::default();
        let Some(c) = c else {
            return SilenceSettings::default();
        };
        SilenceSettings {
            detect: crate::core::level::silence::Settings {
                threshold_dbfs: c.threshold_dbfs.unwrap_or(d.threshold_dbfs),
                clear_dbfs: c.clear_dbfs.unwrap_or(d.clear_dbfs),
                trip_after: c.trip_after.unwrap_or(d.trip_after),
                clear_after: c.clear_after.unwrap_or(d.clear_after),
            },
            action: c.action.unwrap_or_default(),
        }
    }
}

/// Parse `KEY` or `KEY:mp3` / `KEY:aac` as given to `--stream`.
pub fn parse_stream_flag(s: &str) -> Result<(String, StreamConfig), String> {
    let (key, format) = match s.split_once(':') {
        Some((k, f)) => (k, f.parse::<Format>()?),
        None => (s, Format::Mp3),
    };
    validate_key(key).map_err(|e| e.to_string())?;
    Ok((
        key.to_string(),
        StreamConfig {
            format,
            ..StreamConfig::default()
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_example_file() {
        let text = include_str!("../../examples/streammachine.yaml");
        let f = FileConfig::parse(text).unwrap();
        let mut s = Settings::defaults("pw".into());
        s.apply_file(f);
        s.validate().unwrap();
        assert!(s.streams.len() >= 2);
    }

    #[test]
    fn per_stream_silence_monitoring_and_webhooks() {
        let yaml = "streams:\n  live:\n    monitored: false\n    silence:\n      threshold_dbfs: -60\n      trip_after: 5s\n      action: failover\n    webhooks:\n      - url: http://127.0.0.1:9/hook\n        types: [source.silence.*]\n";
        let mut s = Settings::defaults("pw".into());
        s.apply_file(FileConfig::parse(yaml).unwrap());
        s.validate().unwrap();
        let live = s.stream("live", &s.streams["live"]);
        assert!(!live.monitored);
        assert_eq!(live.silence.action, SilenceAction::Failover);
        assert_eq!(live.silence.detect.threshold_dbfs, -60);
        assert_eq!(
            live.silence.detect.clear_dbfs, -40,
            "unset values take the defaults"
        );
        assert_eq!(live.silence.detect.trip_after, Duration::from_secs(5));
        assert_eq!(live.webhooks.len(), 1);
        // Defaults when unset.
        let plain = s.stream("x", &StreamConfig::default());
        assert!(plain.monitored);
        assert_eq!(plain.silence, SilenceSettings::default());

        let refused = |yaml: &str| {
            let mut s = Settings::defaults("pw".into());
            s.apply_file(FileConfig::parse(yaml).unwrap());
            s.validate().unwrap_err().to_string()
        };
        let err = refused("streams:\n  live:\n    webhooks:\n      - url: not-a-url\n");
        assert!(
            err.contains("streams.live.webhooks[0]") && err.contains("url"),
            "{err}"
        );
        let err = refused("streams:\n  live:\n    silence:\n      threshold_dbfs: 3\n");
        assert!(err.contains("streams.live.silence.threshold_dbfs"), "{err}");
        let err = refused(
            "streams:\n  live:\n    silence:\n      threshold_dbfs: -30\n      clear_dbfs: -45\n",
        );
        assert!(err.contains("streams.live.silence.clear_dbfs"), "{err}");
        let err = refused("streams:\n  live:\n    silence:\n      trip_after: 10ms\n");
        assert!(err.contains("streams.live.silence.trip_after"), "{err}");
        assert!(
            FileConfig::parse("streams:\n  live:\n    silence:\n      action: panic\n").is_err()
        );
    }

    #[test]
    fn hls_live_window_defaults_overrides_bounds_and_clamp() {
        let settings = |yaml: &str| {
            let mut s = Settings::defaults("pw".into());
            s.apply_file(FileConfig::parse(yaml).unwrap());
            s
        };
        let s = settings("streams:\n  live: {}\n");
        s.validate().unwrap();
        let live = s.stream("live", &s.streams["live"]);
        assert_eq!(live.hls_live_window, DEFAULT_HLS_LIVE_WINDOW);
        // Server-wide, per stream, and never longer than the stream's buffer.
        let s = settings(
            "hls_live_window: 10m\nstreams:\n  a: {}\n  b:\n    hls_live_window: 2h\n  c:\n    rewind: 30m\n    hls_live_window: 2h\n",
        );
        s.validate().unwrap();
        let w = |k: &str| s.stream(k, &s.streams[k]).hls_live_window;
        assert_eq!(w("a"), Duration::from_secs(600));
        assert_eq!(w("b"), Duration::from_secs(7200));
        assert_eq!(w("c"), Duration::from_secs(1800));
        // At least three target durations: 39 s for 6 s segments, 63 s for 10 s ones.
        settings("streams:\n  live:\n    hls_live_window: 39s\n")
            .validate()
            .unwrap();
        let err = settings("streams:\n  live:\n    hls_live_window: 38s\n")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("streams.live.hls_live_window") && err.contains("39s"),
            "{err}"
        );
        let err = settings("hls_live_window: 60s\nstreams:\n  live:\n    hls_segment: 10s\n")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`hls_live_window`") && err.contains("1m 3s"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = FileConfig::parse("listen: 0.0.0.0:8000\nlisten_port: 3\n").unwrap_err();
        assert!(err.contains("listen_port"), "{err}");
        let err = FileConfig::parse("streams:\n  live:\n    formatt: mp3\n").unwrap_err();
        assert!(err.contains("formatt"), "{err}");
    }

    #[test]
    fn invalid_values_are_named() {
        let err = FileConfig::parse("rewind: forever\n").unwrap_err();
        assert!(err.contains("rewind"), "{err}");
        let f = FileConfig::parse("streams:\n  live:\n    icy_metaint: 0\n").unwrap();
        let mut s = Settings::defaults("pw".into());
        s.apply_file(f);
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("streams.live.icy_metaint"), "{err}");
        let mut s = Settings::defaults("pw".into());
        s.admin_listen = "0.0.0.0:8001".parse().unwrap();
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("admin_token")
        );
        assert!(validate_key("sg").is_err());
        assert!(validate_key("a/b").is_err());
    }

    #[test]
    fn webhooks_are_checked_at_config_time() {
        let yaml = "webhooks:\n  - url: https://hooks.example.net/sm\n    types: [source.*]\n    secret: whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3\n  - url: ftp://nope\n";
        let mut s = Settings::defaults("pw".into());
        s.apply_file(FileConfig::parse(yaml).unwrap());
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("webhooks[1]") && err.contains("http"), "{err}");
        s.webhooks.truncate(1);
        s.validate().unwrap();
        s.webhooks[0].types = vec!["source.exploded".into()];
        let err = s.validate().unwrap_err().to_string();
        assert!(
            err.contains("webhooks[0]") && err.contains("source.exploded"),
            "{err}"
        );
    }

    #[test]
    fn stream_flag() {
        let (k, c) = parse_stream_flag("news:aac").unwrap();
        assert_eq!((k.as_str(), c.format), ("news", Format::Aac));
        assert!(parse_stream_flag("news:ogg").is_err());
        assert_eq!(parse_stream_flag("x").unwrap().1.format, Format::Mp3);
    }

    #[test]
    fn stream_config_json_round_trip() {
        let c = StreamConfig {
            format: Format::Aac,
            rewind: Some(Duration::from_secs(7200)),
            title: Some("t".into()),
            ..StreamConfig::default()
        };
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, r#"{"format":"aac","rewind":"2h","title":"t"}"#);
        assert_eq!(serde_json::from_str::<StreamConfig>(&json).unwrap(), c);
        assert!(serde_json::from_str::<StreamConfig>(r#"{"format":"mp3","nope":1}"#).is_err());
    }
}
