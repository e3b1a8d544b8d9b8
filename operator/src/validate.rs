//! Validation of a Stream spec (pure, no client).
//!
//! The CRD schema and its CEL rules reject most bad specs at admission. This step parses what
//! the builders need (durations, scaling) and re-checks the rules the builders rely on, so a
//! Stream stored before a CRD upgrade, or one on a cluster that skipped CEL, still gets a clear
//! `InvalidSpec` condition instead of broken children.

use std::fmt;
use std::time::Duration;

use kube::ResourceExt;

use streammachine_contract::{EVENT_TYPES, RESERVED_KEYS, SilenceConfig, bounds};

use crate::crd::{SilenceAction, SilenceSpec, Stream, WebhookSpec};

/// Shortest rewind buffer a stream may have.
pub const MIN_REWIND: Duration = Duration::from_secs(60);
/// Longest rewind buffer a stream may have.
pub const MAX_REWIND: Duration = Duration::from_secs(24 * 3600);
/// Slave pods when the spec sets neither replicas nor autoscaling: two, so one pod can drain
/// or be rescheduled while the other serves.
pub const DEFAULT_REPLICAS: i32 = 2;
/// Longest child name suffix (`-slave`, `-audio`): child names must stay DNS labels (63).
const MAX_NAME_LEN: usize = 63 - "-slave".len();

/// A spec that passed validation, with durations parsed and defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidSpec {
    /// Stream key in effect.
    pub key: String,
    /// Length of the rewind buffer.
    pub rewind: Duration,
    /// Burst sent to new listeners.
    pub burst: Duration,
    /// Allowed listener lag, when set.
    pub max_lag: Option<Duration>,
    /// How the slave pods are scaled.
    pub scaling: Scaling,
    /// Dead-air settings with durations parsed, when the spec sets any.
    pub silence: Option<SilenceConfig>,
}

/// How the slave pods are scaled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scaling {
    /// A fixed number of pods.
    Fixed(i32),
    /// A HorizontalPodAutoscaler on CPU.
    Auto {
        /// Lower bound.
        min: i32,
        /// Upper bound.
        max: i32,
        /// Target CPU use in percent of the request.
        target_cpu_percent: i32,
    },
}

impl Scaling {
    /// The fewest slave pods this scaling ever runs.
    pub fn min_replicas(self) -> i32 {
        match self {
            Scaling::Fixed(n) => n,
            Scaling::Auto { min, .. } => min,
        }
    }
}

/// Why a spec cannot be acted on: one line per problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct InvalidSpec {
    /// The problems, each naming the field.
    pub problems: Vec<String>,
}

impl fmt::Display for InvalidSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problems.join("; "))
    }
}

/// Checks a Stream and parses what the builders need.
pub fn validate(stream: &Stream) -> Result<ValidSpec, InvalidSpec> {
    let spec = &stream.spec;
    let mut problems = Vec::new();

    let name = stream.name_any();
    if !is_dns_label(&name) || name.len() > MAX_NAME_LEN {
        problems.push(format!(
            "metadata.name {name:?} must be a DNS label (lower-case letters, digits, '-', starting \
             with a letter) of at most {MAX_NAME_LEN} characters, because it names the slave \
             Service"
        ));
    }

    let key = stream.key().to_owned();
    if !is_stream_key(&key) {
        problems.push(format!(
            "spec.key {key:?} must be 1-63 letters, digits, '_' or '-', starting with a letter or digit"
        ));
    } else if RESERVED_KEYS.contains(&key.as_str()) {
        // The key defaults to metadata.name, which the CRD's CEL rules cannot see.
        problems.push(format!(
            "stream key {key:?} (spec.key or metadata.name) is reserved for a route of the worker"
        ));
    }
    // CEL keeps spec.key immutable; this also covers Streams admitted without CEL. A changed key
    // would leave the old key's config in Redis and break every encoder and listener URL.
    if let Some(old) = stream.status.as_ref().and_then(|s| s.key.as_deref())
        && old != key
    {
        problems.push(format!(
            "spec.key cannot change (it was {old:?}); create a new Stream instead"
        ));
    }

    let rewind = parse_duration("spec.rewind", &spec.rewind, &mut problems);
    if let Some(rewind) = rewind
        && !(MIN_REWIND..=MAX_REWIND).contains(&rewind)
    {
        problems.push(format!(
            "spec.rewind {:?} must be between 1m and 24h",
            spec.rewind
        ));
    }
    let burst = parse_duration("spec.burst", &spec.burst, &mut problems);
    if let (Some(burst), Some(rewind)) = (burst, rewind)
        && burst > rewind
    {
        problems.push("spec.burst must not be longer than spec.rewind".to_owned());
    }
    let max_lag = spec
        .listeners
        .max_lag
        .as_deref()
        .and_then(|lag| parse_duration("spec.listeners.maxLag", lag, &mut problems));

    if let Some(fallback) = &spec.fallback
        && !["http://", "https://", "file://"]
            .iter()
            .any(|scheme| fallback.starts_with(scheme))
    {
        problems.push("spec.fallback must be an http://, https:// or file:// URL".to_owned());
    }
    if let Some(group) = &spec.group {
        if !is_stream_key(group) {
            problems.push(format!(
                "spec.group {group:?} must be 1-63 letters, digits, '_' or '-'"
            ));
        } else if RESERVED_KEYS.contains(&group.as_str()) {
            problems.push(format!(
                "spec.group {group:?} is reserved for a route of the worker"
            ));
        }
    }
    let metaint = spec.outputs.icy_meta_interval;
    if !(bounds::ICY_METAINT_MIN..=bounds::ICY_METAINT_MAX).contains(&metaint) {
        problems.push(format!(
            "spec.outputs.icyMetaInterval {metaint} must be at most {}",
            bounds::ICY_METAINT_MAX
        ));
    }
    let segment = u64::from(spec.outputs.hls_segment_seconds);
    if !(bounds::HLS_SEGMENT_MIN_SECS..=bounds::HLS_SEGMENT_MAX_SECS).contains(&segment) {
        problems.push(format!(
            "spec.outputs.hlsSegmentSeconds must be between {} and {}",
            bounds::HLS_SEGMENT_MIN_SECS,
            bounds::HLS_SEGMENT_MAX_SECS
        ));
    }
    // The CRD counts characters, the worker bytes: a long non-ASCII title passes one and not
    // the other.
    for (field, value) in [
        ("spec.streamTitle", &spec.stream_title),
        ("spec.streamUrl", &spec.stream_url),
    ] {
        if value
            .as_ref()
            .is_some_and(|v| v.len() > bounds::TEXT_MAX_BYTES)
        {
            problems.push(format!(
                "{field} must be at most {} bytes of UTF-8",
                bounds::TEXT_MAX_BYTES
            ));
        }
    }

    let slaves = &spec.slaves;
    let scaling = match (slaves.replicas, &slaves.autoscaling) {
        (Some(_), Some(_)) => {
            problems.push("set either slaves.replicas or slaves.autoscaling, not both".to_owned());
            None
        }
        (Some(n), None) if n < 0 => {
            problems.push("slaves.replicas must not be negative".to_owned());
            None
        }
        (Some(n), None) => Some(Scaling::Fixed(n)),
        (None, None) => Some(Scaling::Fixed(DEFAULT_REPLICAS)),
        (None, Some(a)) if a.min_replicas < 1 || a.min_replicas > a.max_replicas => {
            problems.push("slaves.autoscaling needs 1 <= minReplicas <= maxReplicas".to_owned());
            None
        }
        (None, Some(a)) => Some(Scaling::Auto {
            min: a.min_replicas,
            max: a.max_replicas,
            target_cpu_percent: a.target_cpu_utilization_percentage,
        }),
    };

    let ingress = &spec.ingress;
    if ingress.enabled && ingress.host.as_deref().is_none_or(str::is_empty) {
        problems.push("ingress.host is required when the ingress is enabled".to_owned());
    }
    if ingress.group_playlist && spec.group.is_none() {
        problems.push("ingress.groupPlaylist needs spec.group".to_owned());
    }

    let silence = spec
        .silence
        .as_ref()
        .map(|silence| validate_silence(silence, &mut problems));
    validate_webhooks(&spec.webhooks, &mut problems);

    match (rewind, burst, scaling) {
        (Some(rewind), Some(burst), Some(scaling)) if problems.is_empty() => Ok(ValidSpec {
            key,
            rewind,
            burst,
            max_lag,
            scaling,
            silence,
        }),
        _ => Err(InvalidSpec { problems }),
    }
}

/// The worker's rules (`streammachine_contract::bounds::silence`), with the CRD's field names.
fn validate_silence(spec: &SilenceSpec, problems: &mut Vec<String>) -> SilenceConfig {
    use bounds::silence as b;
    for (field, level) in [
        ("spec.silence.thresholdDbfs", spec.threshold_dbfs),
        ("spec.silence.clearDbfs", spec.clear_dbfs),
    ] {
        if let Some(level) = level
            && !(b::DBFS_MIN..=b::DBFS_MAX).contains(&level)
        {
            problems.push(format!(
                "{field} {level} must be between {} and {} dBFS",
                b::DBFS_MIN,
                b::DBFS_MAX
            ));
        }
    }
    let threshold = spec.threshold_dbfs.unwrap_or(b::THRESHOLD_DBFS);
    let clear = spec.clear_dbfs.unwrap_or(b::CLEAR_DBFS);
    if clear < threshold {
        problems.push(format!(
            "spec.silence.clearDbfs ({clear}) must be at least spec.silence.thresholdDbfs \
             ({threshold}); the defaults are {} and {}",
            b::CLEAR_DBFS,
            b::THRESHOLD_DBFS
        ));
    }
    let mut bounded = |field: &str, value: Option<&str>, min: Duration, max: Duration| {
        let parsed = parse_duration(field, value?, problems)?;
        if !(min..=max).contains(&parsed) {
            problems.push(format!(
                "{field} {:?} must be between {} and {}",
                value.unwrap_or_default(),
                humantime::format_duration(min),
                humantime::format_duration(max)
            ));
            return None;
        }
        Some(parsed)
    };
    let trip_after = bounded(
        "spec.silence.tripAfter",
        spec.trip_after.as_deref(),
        b::TRIP_MIN,
        b::TRIP_MAX,
    );
    let clear_after = bounded(
        "spec.silence.clearAfter",
        spec.clear_after.as_deref(),
        b::CLEAR_MIN,
        b::CLEAR_MAX,
    );
    SilenceConfig {
        threshold_dbfs: spec.threshold_dbfs,
        clear_dbfs: spec.clear_dbfs,
        trip_after,
        clear_after,
        action: spec.action.map(|action| match action {
            SilenceAction::Alert => streammachine_contract::SilenceAction::Alert,
            SilenceAction::Failover => streammachine_contract::SilenceAction::Failover,
        }),
    }
}

/// The worker's webhook rules (`worker/src/events/webhook.rs`), except the secret's, which is
/// checked once it has been read.
fn validate_webhooks(hooks: &[WebhookSpec], problems: &mut Vec<String>) {
    if hooks.len() > bounds::WEBHOOKS_MAX {
        problems.push(format!(
            "spec.webhooks: at most {} per stream",
            bounds::WEBHOOKS_MAX
        ));
    }
    for (i, hook) in hooks.iter().enumerate() {
        let field = format!("spec.webhooks[{i}]");
        match url::Url::parse(&hook.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {}
            Ok(_) => problems.push(format!(
                "{field}.url must be an http:// or https:// URL with a host"
            )),
            Err(e) => problems.push(format!("{field}.url is not a valid URL ({e})")),
        }
        for pattern in &hook.types {
            if !is_event_pattern(pattern) {
                problems.push(format!(
                    "{field}.types: unknown event type {pattern:?} (known: {}, a prefix like \
                     `source.*`, or `*`)",
                    EVENT_TYPES.join(", ")
                ));
            }
        }
        if let Some(reference) = &hook.secret_key_ref
            && (reference.name.is_empty() || reference.key.is_empty())
        {
            problems.push(format!("{field}.secretKeyRef needs a Secret name and key"));
        }
    }
}

/// The worker's filter rule: `*`, an event type, or `<prefix>.*` of a type at a dot.
fn is_event_pattern(pattern: &str) -> bool {
    match pattern.strip_suffix(".*") {
        _ if pattern == "*" => true,
        Some(prefix) => EVENT_TYPES
            .iter()
            .any(|t| t.starts_with(prefix) && t[prefix.len()..].starts_with('.')),
        None => EVENT_TYPES.contains(&pattern),
    }
}

fn parse_duration(field: &str, value: &str, problems: &mut Vec<String>) -> Option<Duration> {
    match humantime::parse_duration(value) {
        Ok(d) if !d.is_zero() => Some(d),
        Ok(_) => {
            problems.push(format!("{field} must be longer than zero"));
            None
        }
        Err(e) => {
            problems.push(format!(
                "{field} {value:?} is not a duration like 30s or 4h: {e}"
            ));
            None
        }
    }
}

/// RFC 1035 label: what Service names must be.
fn is_dns_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_lowercase()
        && bytes[bytes.len() - 1] != b'-'
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// Same rule as the CRD's key pattern `^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`.
fn is_stream_key(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::stream;

    #[test]
    fn a_minimal_stream_gets_the_defaults() {
        let valid = validate(&stream("live")).unwrap();
        assert_eq!(valid.key, "live");
        assert_eq!(valid.rewind, Duration::from_secs(4 * 3600));
        assert_eq!(valid.burst, Duration::from_secs(30));
        assert_eq!(valid.max_lag, None);
        assert_eq!(valid.scaling, Scaling::Fixed(DEFAULT_REPLICAS));
    }

    #[test]
    fn go_style_durations_parse() {
        let mut s = stream("live");
        s.spec.rewind = "1h30m".into();
        s.spec.listeners.max_lag = Some("90s".into());
        let valid = validate(&s).unwrap();
        assert_eq!(valid.rewind, Duration::from_secs(5400));
        assert_eq!(valid.max_lag, Some(Duration::from_secs(90)));
    }

    #[test]
    fn spec_key_overrides_the_name() {
        let mut s = stream("live");
        s.spec.key = Some("kpcc_live".into());
        assert_eq!(validate(&s).unwrap().key, "kpcc_live");
    }

    #[test]
    fn every_problem_is_reported() {
        let mut s = stream("live");
        s.spec.rewind = "forever".into();
        s.spec.listeners.max_lag = Some("0s".into());
        s.spec.fallback = Some("ftp://x".into());
        s.spec.ingress.enabled = true;
        let err = validate(&s).unwrap_err();
        assert_eq!(err.problems.len(), 4, "{err}");
        assert!(err.to_string().contains("spec.rewind"));
        assert!(err.to_string().contains("ingress.host"));
    }

    #[test]
    fn rewind_bounds() {
        for (rewind, ok) in [("59s", false), ("1m", true), ("24h", true), ("25h", false)] {
            let mut s = stream("live");
            s.spec.rewind = rewind.into();
            s.spec.burst = "10s".into();
            assert_eq!(validate(&s).is_ok(), ok, "rewind {rewind}");
        }
    }

    #[test]
    fn burst_longer_than_rewind_is_invalid() {
        let mut s = stream("live");
        s.spec.rewind = "1m".into();
        s.spec.burst = "2m".into();
        assert!(validate(&s).is_err());
    }

    #[test]
    fn names_that_cannot_name_a_service_are_invalid() {
        for name in ["Live", "9live", "live.fm", &"a".repeat(58)] {
            assert!(validate(&stream(name)).is_err(), "{name}");
        }
        assert!(validate(&stream(&"a".repeat(57))).is_ok());
    }

    #[test]
    fn keys_with_dots_or_slashes_are_invalid() {
        for key in ["a.b", "a/b", "_a", ""] {
            let mut s = stream("live");
            s.spec.key = Some(key.into());
            assert!(validate(&s).is_err(), "{key:?}");
        }
    }

    #[test]
    fn a_changed_key_is_invalid() {
        let mut s = stream("live");
        s.status = Some(crate::crd::StreamStatus {
            key: Some("old".into()),
            ..Default::default()
        });
        assert!(
            validate(&s)
                .unwrap_err()
                .to_string()
                .contains("cannot change")
        );
    }

    #[test]
    fn replicas_and_autoscaling_are_exclusive() {
        let mut s = stream("live");
        s.spec.slaves.replicas = Some(3);
        s.spec.slaves.autoscaling = Some(crate::crd::AutoscalingSpec {
            min_replicas: 2,
            max_replicas: 5,
            target_cpu_utilization_percentage: 70,
        });
        assert!(validate(&s).is_err());
        s.spec.slaves.replicas = None;
        assert_eq!(
            validate(&s).unwrap().scaling,
            Scaling::Auto {
                min: 2,
                max: 5,
                target_cpu_percent: 70
            }
        );
        s.spec.slaves.autoscaling.as_mut().unwrap().min_replicas = 6;
        assert!(validate(&s).is_err());
    }

    #[test]
    fn reserved_names_and_worker_bounds_are_invalid() {
        for key in ["admin", "api", "sg", "healthz", "readyz", "metrics"] {
            let mut s = stream("live");
            s.spec.key = Some(key.into());
            assert!(validate(&s).is_err(), "key {key}");
            assert!(validate(&stream(key)).is_err(), "name {key}");
            let mut s = stream("live");
            s.spec.group = Some(key.into());
            assert!(validate(&s).is_err(), "group {key}");
        }
        let mut s = stream("live");
        s.spec.outputs.icy_meta_interval = 65536;
        assert!(validate(&s).is_err());
        s.spec.outputs.icy_meta_interval = 65535;
        assert!(validate(&s).is_ok());
        s.spec.stream_title = Some("é".repeat(2049));
        assert!(validate(&s).is_err());
    }

    fn silence(f: impl FnOnce(&mut crate::crd::SilenceSpec)) -> Stream {
        let mut s = stream("live");
        let mut spec = crate::crd::SilenceSpec::default();
        f(&mut spec);
        s.spec.silence = Some(spec);
        s
    }

    #[test]
    fn silence_durations_parse_and_levels_pass_through() {
        let s = silence(|c| {
            c.threshold_dbfs = Some(-119);
            c.clear_dbfs = Some(0);
            c.trip_after = Some("1h".into());
            c.clear_after = Some("100ms".into());
            c.action = Some(crate::crd::SilenceAction::Failover);
        });
        let valid = validate(&s).unwrap().silence.unwrap();
        assert_eq!(valid.trip_after, Some(Duration::from_secs(3600)));
        assert_eq!(valid.clear_after, Some(Duration::from_millis(100)));
        assert_eq!(
            (valid.threshold_dbfs, valid.clear_dbfs),
            (Some(-119), Some(0))
        );
        assert_eq!(
            valid.action,
            Some(streammachine_contract::SilenceAction::Failover)
        );
        assert_eq!(validate(&stream("live")).unwrap().silence, None);
    }

    #[test]
    fn silence_bounds_are_the_workers() {
        let bad: Vec<(Stream, &str)> = vec![
            (silence(|c| c.threshold_dbfs = Some(-120)), "thresholdDbfs"),
            (silence(|c| c.clear_dbfs = Some(1)), "clearDbfs"),
            (
                silence(|c| c.trip_after = Some("999ms".into())),
                "tripAfter",
            ),
            (silence(|c| c.trip_after = Some("61m".into())), "tripAfter"),
            (
                silence(|c| c.clear_after = Some("99ms".into())),
                "clearAfter",
            ),
            (
                silence(|c| c.clear_after = Some("10m1s".into())),
                "clearAfter",
            ),
            (silence(|c| c.trip_after = Some("soon".into())), "tripAfter"),
            // The defaults take part: a threshold over the default clear level (-40).
            (silence(|c| c.threshold_dbfs = Some(-30)), "clearDbfs"),
            (silence(|c| c.clear_dbfs = Some(-55)), "clearDbfs"),
        ];
        for (s, field) in bad {
            let err = validate(&s).unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
        assert!(
            validate(&silence(|c| {
                c.threshold_dbfs = Some(-30);
                c.clear_dbfs = Some(-30);
            }))
            .is_ok()
        );
    }

    fn hook(url: &str, types: &[&str]) -> crate::crd::WebhookSpec {
        crate::crd::WebhookSpec {
            url: url.into(),
            types: types.iter().map(|t| (*t).to_owned()).collect(),
            secret_key_ref: None,
        }
    }

    #[test]
    fn webhook_urls_and_types_follow_the_worker() {
        let mut s = stream("live");
        s.spec.webhooks = vec![
            hook("https://hooks.example/a?x=1", &["*"]),
            hook("http://10.0.0.1:8080", &["source.*", "source.silence.*"]),
            hook(
                "http://pager",
                &["stream.sourceless.started", "admin.action"],
            ),
        ];
        assert!(validate(&s).is_ok(), "{:?}", validate(&s));

        for (url, types) in [
            ("ftp://hooks.example", &[][..]),
            ("http://", &[]),
            ("http://:80/x", &[]),
            ("https://exa mple.org", &[]),
            ("https://ok.example", &["source.silence"]),
            ("https://ok.example", &["source.connected.*"]),
            ("https://ok.example", &["sour.*"]),
            ("https://ok.example", &[".*"]),
            ("https://ok.example", &["listener.connected"]),
        ] {
            let mut s = stream("live");
            s.spec.webhooks = vec![hook(url, types)];
            let err = validate(&s).unwrap_err().to_string();
            assert!(err.contains("spec.webhooks[0]"), "{url} {types:?}: {err}");
        }
    }

    #[test]
    fn at_most_the_workers_number_of_webhooks() {
        let mut s = stream("live");
        s.spec.webhooks = vec![hook("https://h.example", &[]); bounds::WEBHOOKS_MAX];
        assert!(validate(&s).is_ok());
        s.spec.webhooks.push(hook("https://h.example", &[]));
        assert!(validate(&s).unwrap_err().to_string().contains("at most 16"));
    }

    #[test]
    fn the_event_pattern_rule_matches_the_crd_enum() {
        let patterns = crate::crd::event_type_patterns();
        for p in &patterns {
            assert!(is_event_pattern(p), "{p}");
        }
        for p in [
            "source",
            "source.silence",
            "x.*",
            "source.connected.*",
            "**",
        ] {
            assert!(!is_event_pattern(p), "{p}");
            assert!(!patterns.iter().any(|q| q == p), "{p}");
        }
    }

    #[test]
    fn group_playlist_needs_a_group() {
        let mut s = stream("live");
        s.spec.ingress.group_playlist = true;
        assert!(validate(&s).is_err());
        s.spec.group = Some("kpcc".into());
        assert!(validate(&s).is_ok());
    }
}
