//! The `Stream` custom resource (`streams.streammachine.io/v1alpha1`).
//!
//! The doc comments on these types become the CRD descriptions that `kubectl explain` prints, and
//! the schemars / `x_kube` attributes become its OpenAPI validation and CEL rules, so the apiserver
//! rejects most bad specs before the operator sees them. `validate` re-checks what CEL cannot
//! express (it parses durations the way the worker does).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use streammachine_contract::bounds;

/// API group of the `Stream` kind.
pub const GROUP: &str = "streammachine.io";
/// Name of the CRD, `<plural>.<group>`.
pub const CRD_NAME: &str = "streams.streammachine.io";

// Go-style duration strings ("4h", "1h30m", "90s"). CEL's duration() understands exactly this
// syntax, and humantime (used by the operator and the worker) parses it too.
const DURATION_PATTERN: &str = r"^([0-9]+(h|m|s|ms))+$";
// Stream keys end up in URLs (`/<key>.m3u8`), Redis keys and NATS subjects: no dots, no slashes.
const KEY_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$";

/// Desired state of a Stream.
///
/// The operator writes the stream's configuration to the master's Redis store (so the master
/// accepts the encoder and keeps the rewind buffer) and runs a Deployment of slave pods that
/// serve listeners, with a Service, a HorizontalPodAutoscaler, a PodDisruptionBudget and,
/// when asked, Ingresses for the listener paths.
// clippy reads the repeated `type_ = "string"` of the printer columns as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "streammachine.io",
    version = "v1alpha1",
    kind = "Stream",
    namespaced,
    status = "StreamStatus",
    derive = "PartialEq",
    shortname = "sms",
    category = "streammachine",
    doc = "A live audio stream served by StreamMachine: master config, slave pods and listener ingress.",
    cel,
    printcolumn(
        name = "Format",
        type_ = "string",
        json_path = ".spec.format",
        description = "Audio format"
    ),
    printcolumn(
        name = "Source",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"SourceConnected\")].status",
        description = "Whether an encoder is connected to the master"
    ),
    printcolumn(
        name = "Silent",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"SourceSilent\")].status",
        description = "Whether the live source is in dead air"
    ),
    printcolumn(
        name = "Listeners",
        type_ = "integer",
        json_path = ".status.listeners",
        description = "Listeners across all slave pods"
    ),
    printcolumn(
        name = "Buffered",
        type_ = "string",
        json_path = ".status.buffered",
        description = "Audio held in the master's rewind buffer"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether listeners can be served"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Key",
        type_ = "string",
        json_path = ".status.key",
        description = "Stream key used in URLs and by encoders",
        priority = "1"
    ),
    printcolumn(
        name = "Slaves",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Ready slave pods",
        priority = "1"
    )
)]
#[x_kube(
    validation = Rule::new(
        "(has(self.key) ? self.key : '') == (has(oldSelf.key) ? oldSelf.key : '')"
    ).message("spec.key is immutable: it names the stream in URLs, Redis and encoder configs"),
    validation = Rule::new("duration(self.burst) <= duration(self.rewind)")
        .message("spec.burst must not be longer than spec.rewind"),
    validation = Rule::new("!self.ingress.groupPlaylist || has(self.group)")
        .message("ingress.groupPlaylist needs spec.group"),
    // The worker's reserved names (`streammachine_contract::RESERVED_KEYS`; those with a dot
    // already fail KEY_PATTERN). A test checks this list against the contract's.
    validation = Rule::new(
        "!has(self.key) || !(self.key in ['admin', 'api', 'sg', 'healthz', 'readyz', 'metrics'])"
    ).message("spec.key is reserved for a route of the worker"),
    validation = Rule::new(
        "!has(self.group) || !(self.group in ['admin', 'api', 'sg', 'healthz', 'readyz', 'metrics'])"
    ).message("spec.group is reserved for a route of the worker")
)]
#[serde(rename_all = "camelCase")]
pub struct StreamSpec {
    /// Stream key: the mount encoders connect to (`icecast://source:PASS@host:8000/<key>`) and
    /// the listener path (`/<key>`). Defaults to metadata.name. Cannot be changed later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = KEY_PATTERN))]
    pub key: Option<String>,

    /// Audio format the encoder sends: `mp3` or `aac` (ADTS).
    pub format: AudioFormat,

    /// Expected bitrate of the encoder in kbit/s. Only used to size the slave pods' memory:
    /// the rewind buffer holds rewind × bitrate bytes.
    #[serde(default = "default_bitrate_kbps")]
    #[schemars(range(min = 8, max = 640))]
    pub bitrate_kbps: u32,

    /// How much audio the rewind buffer keeps, as a duration such as `4h` or `90m`
    /// (between 1m and 24h).
    #[serde(default = "default_rewind")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 32))]
    #[x_kube(
        validation = Rule::new("duration(self) >= duration('1m') && duration(self) <= duration('24h')")
            .message("rewind must be between 1m and 24h")
    )]
    pub rewind: String,

    /// Audio sent at once to a new listener so playback starts immediately, e.g. `30s`.
    #[serde(default = "default_burst")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 32))]
    pub burst: String,

    /// Where the encoder's credentials come from.
    pub source: SourceSpec,

    /// Source used while no encoder is connected: an `http(s)://` stream to relay or a
    /// `file://` path on the master.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(https?|file)://.+"), length(max = 2048))]
    pub fallback: Option<String>,

    /// Initial ICY StreamTitle, until the encoder sends metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub stream_title: Option<String>,

    /// ICY StreamUrl announced to listeners (usually the station's web site).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub stream_url: Option<String>,

    /// HLS stream group: streams with the same group are the variants of one multivariant
    /// playlist at `/sg/<group>.m3u8` (for example the same programme at several bitrates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = KEY_PATTERN))]
    pub group: Option<String>,

    /// Output settings.
    #[serde(default)]
    pub outputs: OutputsSpec,

    /// Per-listener limits.
    #[serde(default)]
    pub listeners: ListenersSpec,

    /// The slave pods that serve listeners.
    #[serde(default)]
    pub slaves: SlavesSpec,

    /// Ingress for the listener paths.
    #[serde(default)]
    pub ingress: IngressSpec,

    /// Dead-air detection on the stream's sources: a source quieter than the threshold for
    /// `tripAfter` raises `source.silence.started` (and, with `action: failover`, is replaced
    /// by a standby with audio or the fallback). The worker's defaults apply when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silence: Option<SilenceSpec>,

    /// Raise `stream.sourceless.started` / `.ended` events when the stream has no source.
    /// Default true; set false for streams that are off air on purpose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitored: Option<bool>,

    /// Webhooks that receive this stream's events (besides the server-wide ones), as signed
    /// CloudEvents.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = bounds::WEBHOOKS_MAX))]
    pub webhooks: Vec<WebhookSpec>,
}

fn default_bitrate_kbps() -> u32 {
    128
}
fn default_rewind() -> String {
    "4h".to_owned()
}
fn default_burst() -> String {
    "30s".to_owned()
}

/// Audio format of a stream.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AudioFormat {
    /// MPEG-1/2 Layer III.
    Mp3,
    /// AAC in ADTS frames.
    Aac,
}

impl AudioFormat {
    /// The name used in the worker's config (`mp3` / `aac`).
    pub fn as_str(self) -> &'static str {
        match self {
            AudioFormat::Mp3 => "mp3",
            AudioFormat::Aac => "aac",
        }
    }
}

/// Source (encoder) settings.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SourceSpec {
    /// Secret key holding the password encoders use (`icecast://source:<password>@...`).
    /// The password itself never appears in a Stream.
    pub password_secret_ref: SecretKeyRef,
}

/// A key in a Secret in the Stream's namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Output settings.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OutputsSpec {
    /// Bytes of audio between two ICY metadata blocks for listeners that ask for metadata.
    #[serde(default = "default_icy_meta_interval")]
    // The worker's maximum (`streammachine_contract::bounds`); 256 is the operator's own floor.
    #[schemars(range(min = 256, max = bounds::ICY_METAINT_MAX))]
    pub icy_meta_interval: u32,

    /// Length of an HLS segment in seconds.
    #[serde(default = "default_hls_segment_seconds")]
    #[schemars(range(min = bounds::HLS_SEGMENT_MIN_SECS, max = bounds::HLS_SEGMENT_MAX_SECS))]
    pub hls_segment_seconds: u32,
}

impl Default for OutputsSpec {
    fn default() -> Self {
        Self {
            icy_meta_interval: default_icy_meta_interval(),
            hls_segment_seconds: default_hls_segment_seconds(),
        }
    }
}

fn default_icy_meta_interval() -> u32 {
    16000
}
fn default_hls_segment_seconds() -> u32 {
    6
}

/// Per-listener limits.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListenersSpec {
    /// Maximum listeners per slave pod; further listeners are refused (and load-balanced to
    /// another pod on retry). Unlimited when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_listeners: Option<u32>,

    /// How far behind live a listener may fall (slow network) before it is disconnected,
    /// e.g. `2m`. The worker's default applies when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 32))]
    pub max_lag: Option<String>,
}

/// The slave pods that serve listeners.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("!(has(self.replicas) && has(self.autoscaling))")
        .message("set either slaves.replicas or slaves.autoscaling, not both")
)]
#[serde(rename_all = "camelCase")]
pub struct SlavesSpec {
    /// Fixed number of slave pods (default 2). Leave unset when autoscaling is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,

    /// Scale the slave pods with a HorizontalPodAutoscaler on CPU use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,

    /// Resources of the slave container (`requests` / `limits` of `cpu` and `memory`). By
    /// default memory is derived from rewind × bitrate plus headroom, and CPU requests 100m with
    /// no limit (throttling a process that streams audio causes audible gaps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "resources_schema")]
    pub resources: Option<ResourceRequirements>,

    /// Seconds a terminating slave keeps serving its listeners before it exits (rolling updates
    /// and scale-down drain listeners instead of cutting them).
    #[serde(default = "default_drain_seconds")]
    #[schemars(range(min = 0, max = 3600))]
    pub drain_seconds: u32,
}

impl Default for SlavesSpec {
    fn default() -> Self {
        Self {
            replicas: None,
            autoscaling: None,
            resources: None,
            drain_seconds: default_drain_seconds(),
        }
    }
}

fn default_drain_seconds() -> u32 {
    30
}

/// HorizontalPodAutoscaler settings for the slave pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("self.minReplicas <= self.maxReplicas")
        .message("autoscaling.minReplicas must not exceed autoscaling.maxReplicas")
)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingSpec {
    /// Lower bound of slave pods.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,

    /// Upper bound of slave pods.
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,

    /// Average CPU use, in percent of the CPU request, the autoscaler aims for.
    #[serde(default = "default_target_cpu")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: i32,
}

fn default_min_replicas() -> i32 {
    2
}
fn default_target_cpu() -> i32 {
    70
}

/// Ingress for the listener paths of the stream.
///
/// Two Ingresses are made, because long-lived audio and HLS need different proxy settings:
/// `<name>-audio` for `/<key>` (buffering off, timeouts of hours) and `<name>-hls` for the
/// playlists and segments (`/<key>.m3u8`, `/<key>/...`, `.pls`, `.m3u`, `/sg/<group>.m3u8`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(
    validation = Rule::new("!self.enabled || has(self.host)")
        .message("ingress.host is required when the ingress is enabled")
)]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    /// Create the Ingresses.
    #[serde(default)]
    pub enabled: bool,

    /// IngressClass to use; the cluster's default class when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,

    /// Host name listeners use, e.g. `radio.example.org`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub host: Option<String>,

    /// TLS for the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<IngressTlsSpec>,

    /// Which ingress controller's annotations to add by default: `nginx` (ingress-nginx:
    /// buffering off and hour-long timeouts for audio) or `none` (add your own in
    /// `annotations`).
    #[serde(default)]
    pub controller: IngressController,

    /// Also route the group's multivariant playlist `/sg/<group>.m3u8` to this stream's slaves.
    /// Set it on one stream of the group only: two Ingresses must not claim the same path.
    #[serde(default)]
    pub group_playlist: bool,

    /// Extra annotations for both Ingresses; they override the defaults of `controller`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// TLS settings of the Ingresses.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IngressTlsSpec {
    /// Secret holding the certificate for the host.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

/// Ingress controller whose default annotations are added.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum IngressController {
    /// ingress-nginx.
    #[default]
    Nginx,
    /// No default annotations.
    None,
}

/// Dead-air settings of a stream. Levels are whole dBFS of the loudest channel's RMS.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(
    validation = Rule::new(silence_levels_rule())
        .message("silence.clearDbfs must be at least silence.thresholdDbfs")
)]
#[serde(rename_all = "camelCase")]
pub struct SilenceSpec {
    /// Below this level counts as silence (default -50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = bounds::silence::DBFS_MIN, max = bounds::silence::DBFS_MAX))]
    pub threshold_dbfs: Option<i16>,

    /// Silence ends only at or above this level, at least thresholdDbfs (default -40).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = bounds::silence::DBFS_MIN, max = bounds::silence::DBFS_MAX))]
    pub clear_dbfs: Option<i16>,

    /// Silent this long trips the alarm, e.g. `20s` (default; between 1s and 1h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 32))]
    #[x_kube(
        validation = Rule::new(duration_between(bounds::silence::TRIP_MIN, bounds::silence::TRIP_MAX))
            .message("silence.tripAfter must be between 1s and 1h")
    )]
    pub trip_after: Option<String>,

    /// Audio above clearDbfs this long clears it, e.g. `3s` (default; between 100ms and 10m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 32))]
    #[x_kube(
        validation = Rule::new(duration_between(bounds::silence::CLEAR_MIN, bounds::silence::CLEAR_MAX))
            .message("silence.clearAfter must be between 100ms and 10m")
    )]
    pub clear_after: Option<String>,

    /// `alert` (events and metrics only, the default) or `failover` (also switch to the next
    /// standby source with audio, else the fallback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<SilenceAction>,
}

/// What a stream does about dead air.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SilenceAction {
    /// Events and metrics only.
    #[default]
    Alert,
    /// Also promote the next standby with audio, else the fallback; never a silent one.
    Failover,
}

/// One webhook of a stream.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSpec {
    /// `http://` or `https://` endpoint the events are POSTed to.
    #[schemars(regex(pattern = r"^https?://[^/?#]+"), length(max = 2048))]
    pub url: String,

    /// Event types to send: exact names such as `source.silence.started`, prefixes such as
    /// `source.*`, or `*`. All events when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "event_types_schema")]
    pub types: Vec<String>,

    /// Secret key holding the signing secret (`whsec_<base64>` as Standard Webhooks issues
    /// them, or any string of at least 16 bytes). Deliveries are unsigned without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
}

/// What a webhook's `types` may hold: `*`, every event type, and `<prefix>.*` for every prefix
/// of one at a dot (`source.*`, `source.silence.*`), the patterns the worker accepts; sorted.
pub fn event_type_patterns() -> Vec<String> {
    let mut patterns = std::collections::BTreeSet::from(["*".to_owned()]);
    for name in streammachine_contract::EVENT_TYPES {
        patterns.insert((*name).to_owned());
        for (i, _) in name.match_indices('.') {
            patterns.insert(format!("{}.*", &name[..i]));
        }
    }
    patterns.into_iter().collect()
}

fn event_types_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "maxItems": 64,
        "items": { "type": "string", "enum": event_type_patterns() }
    })
}

/// CEL: clearDbfs >= thresholdDbfs, each defaulting as the worker defaults it.
fn silence_levels_rule() -> String {
    format!(
        "(has(self.clearDbfs) ? self.clearDbfs : {clear}) >= \
         (has(self.thresholdDbfs) ? self.thresholdDbfs : {threshold})",
        clear = bounds::silence::CLEAR_DBFS,
        threshold = bounds::silence::THRESHOLD_DBFS,
    )
}

/// CEL: a duration string within `[min, max]`.
fn duration_between(min: std::time::Duration, max: std::time::Duration) -> String {
    format!(
        "duration(self) >= duration('{}') && duration(self) <= duration('{}')",
        go_duration(min),
        go_duration(max)
    )
}

/// A duration as CEL (Go) writes it: whole seconds, else milliseconds.
fn go_duration(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Observed state of a Stream, written by the operator.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StreamStatus {
    /// metadata.generation of the spec last applied to the cluster. The conditions carry the
    /// generation they describe, which is newer while a spec cannot be applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready` (listeners can be served), `SourceConnected` (an encoder feeds the master),
    /// `SourceSilent` (the live source is in dead air) and `Degraded` (something needs
    /// attention).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,

    /// The stream key in effect (spec.key or metadata.name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,

    /// Codec the master detected, e.g. `mp3-44100-128-s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<String>,

    /// Listeners across all slave pods, as reported by the master.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listeners: Option<u64>,

    /// Seconds of audio in the master's rewind buffer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffered_seconds: Option<f64>,

    /// bufferedSeconds for humans, e.g. `3h 59m 12s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffered: Option<String>,

    /// Slave pods that are ready (their rewind buffer is loaded).
    #[serde(default)]
    pub ready_replicas: i32,

    /// Slave pods that exist.
    #[serde(default)]
    pub replicas: i32,
}

// The conditions list is a list-map keyed by `type`, so server-side apply merges conditions per
// type instead of replacing the whole list (kube `examples/crd_derive.rs`).
fn conditions_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": {
            "type": "object",
            "properties": {
                "lastTransitionTime": { "type": "string", "format": "date-time" },
                "message": { "type": "string" },
                "observedGeneration": { "type": "integer", "format": "int64" },
                "reason": { "type": "string" },
                "status": { "type": "string", "enum": ["True", "False", "Unknown"] },
                "type": { "type": "string" }
            },
            "required": ["lastTransitionTime", "message", "reason", "status", "type"]
        }
    })
}

// The generated schema of `ResourceRequirements` repeats the long `Quantity` description for
// every map and includes `claims`, which slave pods do not use. This is the same structure,
// compact; quantities are int-or-string as in the built-in types.
fn resources_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let quantities = serde_json::json!({
        "type": "object",
        "additionalProperties": { "x-kubernetes-int-or-string": true }
    });
    schemars::json_schema!({
        "type": "object",
        "nullable": true,
        "properties": {
            "limits": quantities,
            "requests": quantities
        }
    })
}

impl Stream {
    /// The stream key in effect: spec.key, else metadata.name.
    pub fn key(&self) -> &str {
        self.spec
            .key
            .as_deref()
            .or(self.metadata.name.as_deref())
            .unwrap_or_default()
    }
}

/// The CRD as YAML, exactly as `crdgen` prints it and as committed under `crds/`.
pub fn crd_yaml() -> Result<String, serde_saphyr::SerializeError> {
    let yaml = serde_saphyr::to_string(&Stream::crd())?;
    Ok(format!(
        "# Generated by `cargo run -p streammachine-operator --bin crdgen`; do not edit.\n{yaml}"
    ))
}
