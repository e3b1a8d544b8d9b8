//! The slave Deployment: the pods that serve listeners.
//!
//! Rolling updates and scale-down must not cut listeners off:
//! - a new pod only gets traffic once `/readyz` says its rewind buffer is loaded;
//! - `maxUnavailable: 0`, `maxSurge: 1`: capacity never drops during a rollout;
//! - on termination `preStop` sleeps a few seconds so endpoints and ingress controllers stop
//!   sending new listeners first, then SIGTERM makes the slave drain for `drainSeconds`, and
//!   `terminationGracePeriodSeconds` leaves room for both.

use std::collections::BTreeMap;
use std::hash::Hasher;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, Lifecycle, LifecycleHandler, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, ResourceRequirements, SeccompProfile, Secret, SecretKeySelector, SecurityContext,
    SleepAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::secret::{CLUSTER_TOKEN_KEY, NATS_URL_KEY, REDIS_URL_KEY};
use super::{ChildNames, Parent, SLAVE_PORT, SLAVE_PORT_NAME, WorkerSettings};
use crate::crd::Stream;
use crate::validate::{Scaling, ValidSpec};

/// Seconds `preStop` waits before the slave gets SIGTERM.
pub const PRE_STOP_SECONDS: u32 = 5;
/// Extra seconds after the drain before the kubelet kills the container.
pub const DRAIN_MARGIN_SECONDS: u32 = 10;
/// UID/GID the slave runs as by default (the image's `streammachine` user).
pub const RUN_AS_USER: i64 = 10001;
/// Security contexts of the slave pods. The chart passes its `podSecurityContext` and
/// `securityContext` values; the defaults are what the chart's defaults and the image need
/// (its non-root user, a read-only root, no capabilities).
#[derive(Clone, Debug, PartialEq)]
pub struct SlaveSecurity {
    /// The pod's security context.
    pub pod: PodSecurityContext,
    /// The `streammachine` container's security context.
    pub container: SecurityContext,
}

impl Default for SlaveSecurity {
    fn default() -> Self {
        Self {
            pod: PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(RUN_AS_USER),
                run_as_group: Some(RUN_AS_USER),
                fs_group: Some(RUN_AS_USER),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".to_owned(),
                    ..SeccompProfile::default()
                }),
                ..PodSecurityContext::default()
            },
            container: SecurityContext {
                allow_privilege_escalation: Some(false),
                read_only_root_filesystem: Some(true),
                run_as_non_root: Some(true),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".to_owned()]),
                    ..Capabilities::default()
                }),
                ..SecurityContext::default()
            },
        }
    }
}

/// Pod template annotation with a hash of the slave Secret, so new credentials roll the pods.
pub const CREDENTIALS_HASH_ANNOTATION: &str = "streammachine.io/credentials-hash";

/// Memory for the rewind buffer of one slave pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemorySizing {
    /// Bytes of audio in a full rewind buffer.
    pub buffer_bytes: u64,
    /// Memory request in MiB.
    pub request_mib: u64,
    /// Memory limit in MiB.
    pub limit_mib: u64,
}

// Chunk metadata, HLS segment index and allocator slack on top of the audio bytes.
const BUFFER_OVERHEAD_PERCENT: u64 = 25;
// The process without any audio: runtime, HTTP server, NATS and Redis clients.
const BASE_MIB: u64 = 64;
// While a slave loads the snapshot from the master it briefly holds the transfer and the
// buffer being built, so the limit sits well above the steady-state request.
const LIMIT_PERCENT: u64 = 150;
const MIB: u64 = 1024 * 1024;

/// Memory request and limit of a slave pod for a rewind length and bitrate: a 4 h 128 kbit/s
/// stream holds 14 400 s × 16 000 B/s ≈ 230 MB of audio.
pub fn slave_memory(rewind: Duration, bitrate_kbps: u32) -> MemorySizing {
    let buffer_bytes = rewind.as_secs() * u64::from(bitrate_kbps) * 1000 / 8;
    let with_overhead = buffer_bytes * (100 + BUFFER_OVERHEAD_PERCENT) / 100;
    let request_mib = with_overhead.div_ceil(MIB) + BASE_MIB;
    MemorySizing {
        buffer_bytes,
        request_mib,
        limit_mib: (request_mib * LIMIT_PERCENT).div_ceil(100),
    }
}

pub(super) fn build(
    parent: &Parent,
    names: &ChildNames,
    valid: &ValidSpec,
    stream: &Stream,
    settings: &WorkerSettings,
    secret: &Secret,
) -> Deployment {
    let slaves = &stream.spec.slaves;
    let replicas = match valid.scaling {
        Scaling::Fixed(n) => Some(n),
        // The HPA owns spec.replicas; leaving it out of the apply hands the field over instead
        // of resetting the pod count on every reconcile.
        Scaling::Auto { .. } => None,
    };
    let termination_grace =
        i64::from(PRE_STOP_SECONDS + slaves.drain_seconds + DRAIN_MARGIN_SECONDS);

    Deployment {
        metadata: parent.metadata(&names.slave),
        spec: DeploymentSpec {
            replicas,
            selector: LabelSelector {
                match_labels: Some(parent.selector_labels()),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            revision_history_limit: Some(5),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(parent.labels()),
                    annotations: Some(BTreeMap::from([(
                        CREDENTIALS_HASH_ANNOTATION.to_owned(),
                        credentials_hash(secret),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container(names, valid, stream, settings)],
                    // Slaves never talk to the Kubernetes API.
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(termination_grace),
                    security_context: Some(settings.security.pod.clone()),
                    volumes: Some(vec![Volume {
                        name: "tmp".to_owned(),
                        empty_dir: Some(EmptyDirVolumeSource {
                            size_limit: Some(Quantity("64Mi".to_owned())),
                            ..EmptyDirVolumeSource::default()
                        }),
                        ..Volume::default()
                    }]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

fn container(
    names: &ChildNames,
    valid: &ValidSpec,
    stream: &Stream,
    settings: &WorkerSettings,
) -> Container {
    let slaves = &stream.spec.slaves;
    let from_secret = |env: &str, key: &str| EnvVar {
        name: env.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: names.slave.clone(),
                key: key.to_owned(),
                ..SecretKeySelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    let plain = |env: &str, value: String| EnvVar {
        name: env.to_owned(),
        value: Some(value),
        ..EnvVar::default()
    };
    let http_probe = |path: &str| HTTPGetAction {
        path: Some(path.to_owned()),
        port: IntOrString::String(SLAVE_PORT_NAME.to_owned()),
        ..HTTPGetAction::default()
    };

    Container {
        name: "slave".to_owned(),
        image: Some(settings.image.clone()),
        image_pull_policy: Some(settings.image_pull_policy.clone()),
        command: Some(vec!["streammachine".to_owned()]),
        // URLs may carry credentials: they come from the Secret through `$(VAR)` expansion
        // instead of being written into the pod spec.
        args: Some(
            [
                "slave",
                "--redis",
                "$(STREAMMACHINE_REDIS_URL)",
                "--nats",
                "$(STREAMMACHINE_NATS_URL)",
                "--master",
                &settings.master_admin_url,
                "--streams",
                &valid.key,
                "--listen",
                &format!("0.0.0.0:{SLAVE_PORT}"),
                "--log-format",
                "json",
            ]
            .map(str::to_owned)
            .to_vec(),
        ),
        env: Some(vec![
            from_secret("STREAMMACHINE_CLUSTER_TOKEN", CLUSTER_TOKEN_KEY),
            from_secret("STREAMMACHINE_REDIS_URL", REDIS_URL_KEY),
            from_secret("STREAMMACHINE_NATS_URL", NATS_URL_KEY),
            plain("STREAMMACHINE_REDIS_PREFIX", settings.redis_prefix.clone()),
            plain("STREAMMACHINE_NATS_PREFIX", settings.nats_prefix.clone()),
            plain(
                "STREAMMACHINE_DRAIN_TIMEOUT",
                format!("{}s", slaves.drain_seconds),
            ),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some(SLAVE_PORT_NAME.to_owned()),
            container_port: SLAVE_PORT,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        // Ready only once the rewind buffer is loaded, and not ready again while draining.
        readiness_probe: Some(Probe {
            http_get: Some(http_probe("/readyz")),
            period_seconds: Some(5),
            timeout_seconds: Some(2),
            failure_threshold: Some(2),
            ..Probe::default()
        }),
        // Generous: a pod busy loading hours of audio must not be restarted.
        liveness_probe: Some(Probe {
            http_get: Some(http_probe("/healthz")),
            initial_delay_seconds: Some(10),
            period_seconds: Some(10),
            timeout_seconds: Some(3),
            failure_threshold: Some(6),
            ..Probe::default()
        }),
        lifecycle: Some(Lifecycle {
            // The kubelet's own `sleep` action (GA in Kubernetes 1.30, the chart's minimum): the
            // image has no shell or coreutils to `exec sleep` with.
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction {
                    seconds: i64::from(PRE_STOP_SECONDS),
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        resources: Some(resources(valid, stream)),
        security_context: Some(settings.security.container.clone()),
        volume_mounts: Some(vec![VolumeMount {
            name: "tmp".to_owned(),
            mount_path: "/tmp".to_owned(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    }
}

/// Derived defaults, with whatever the spec sets taking precedence per resource name (so
/// `limits.cpu` alone keeps the derived memory).
fn resources(valid: &ValidSpec, stream: &Stream) -> ResourceRequirements {
    let memory = slave_memory(valid.rewind, stream.spec.bitrate_kbps);
    let mut requests = BTreeMap::from([
        ("cpu".to_owned(), Quantity("100m".to_owned())),
        (
            "memory".to_owned(),
            Quantity(format!("{}Mi", memory.request_mib)),
        ),
    ]);
    let mut limits = BTreeMap::from([(
        "memory".to_owned(),
        Quantity(format!("{}Mi", memory.limit_mib)),
    )]);
    if let Some(custom) = &stream.spec.slaves.resources {
        requests.extend(custom.requests.clone().unwrap_or_default());
        limits.extend(custom.limits.clone().unwrap_or_default());
    }
    ResourceRequirements {
        requests: Some(requests),
        limits: Some(limits),
        ..ResourceRequirements::default()
    }
}

/// Stable across Rust releases (unlike `DefaultHasher`), so operator upgrades do not roll
/// every slave pod.
fn credentials_hash(secret: &Secret) -> String {
    let mut hasher = fnv::FnvHasher::default();
    for (key, value) in secret.data.iter().flatten() {
        hasher.write(key.as_bytes());
        hasher.write_u8(0);
        hasher.write(&value.0);
        hasher.write_u8(0);
    }
    format!("{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{settings, stream};
    use crate::resources::secret;
    use crate::validate::validate;

    fn deployment_of(s: &Stream) -> Deployment {
        let parent = Parent::of(s).unwrap();
        let names = ChildNames::of(s);
        let secret = secret::build(&parent, &names, &settings());
        build(
            &parent,
            &names,
            &validate(s).unwrap(),
            s,
            &settings(),
            &secret,
        )
    }

    fn container_of(d: &Deployment) -> &Container {
        &d.spec.template.spec.as_ref().unwrap().containers[0]
    }

    #[test]
    fn four_hours_at_128_kbps_is_about_230_mb_plus_headroom() {
        let m = slave_memory(Duration::from_secs(4 * 3600), 128);
        assert_eq!(m.buffer_bytes, 230_400_000);
        // 230.4 MB = 219.7 MiB; + 25 % = 274.7 MiB; + 64 MiB base.
        assert_eq!(m.request_mib, 339);
        assert_eq!(m.limit_mib, 509);
    }

    #[test]
    fn memory_grows_with_rewind_and_bitrate() {
        let small = slave_memory(Duration::from_secs(3600), 64);
        let large = slave_memory(Duration::from_secs(8 * 3600), 320);
        assert!(small.request_mib < large.request_mib);
        assert_eq!(
            slave_memory(Duration::from_secs(60), 8).request_mib,
            BASE_MIB + 1
        );
    }

    #[test]
    fn selector_matches_the_pod_labels() {
        let d = deployment_of(&stream("live"));
        let selector = d.spec.selector.match_labels.as_ref().unwrap();
        let pod_labels = d
            .spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        for (k, v) in selector {
            assert_eq!(pod_labels.get(k), Some(v), "{k}");
        }
        assert_eq!(d.metadata.name.as_deref(), Some("live-slave"));
    }

    #[test]
    fn rolling_update_never_reduces_capacity() {
        let d = deployment_of(&stream("live"));
        let rolling = d.spec.strategy.unwrap().rolling_update.unwrap();
        assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(0)));
        assert_eq!(rolling.max_surge, Some(IntOrString::Int(1)));
    }

    #[test]
    fn probes_and_drain_timing() {
        let mut s = stream("live");
        s.spec.slaves.drain_seconds = 45;
        let d = deployment_of(&s);
        let pod = d.spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.termination_grace_period_seconds, Some(5 + 45 + 10));
        let c = container_of(&d);
        let readiness = c
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(readiness.path.as_deref(), Some("/readyz"));
        assert_eq!(readiness.port, IntOrString::String("http".into()));
        let liveness = c
            .liveness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(liveness.path.as_deref(), Some("/healthz"));
        let pre_stop = c.lifecycle.as_ref().unwrap().pre_stop.as_ref().unwrap();
        assert_eq!(pre_stop.sleep.as_ref().unwrap().seconds, 5);
        assert!(pre_stop.exec.is_none(), "the image has no `sleep` to exec");
        let drain = c
            .env
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.name == "STREAMMACHINE_DRAIN_TIMEOUT")
            .unwrap();
        assert_eq!(drain.value.as_deref(), Some("45s"));
    }

    #[test]
    fn command_line_follows_the_worker_contract() {
        let mut s = stream("live");
        s.spec.key = Some("kpcc".into());
        let d = deployment_of(&s);
        let c = container_of(&d);
        assert_eq!(c.command, Some(vec!["streammachine".to_owned()]));
        assert_eq!(
            c.args.as_ref().unwrap().join(" "),
            "slave --redis $(STREAMMACHINE_REDIS_URL) --nats $(STREAMMACHINE_NATS_URL) \
             --master http://sm-master-admin.streaming.svc:8001 --streams kpcc \
             --listen 0.0.0.0:8000 --log-format json"
        );
        let env = c.env.as_ref().unwrap();
        let token = env
            .iter()
            .find(|e| e.name == "STREAMMACHINE_CLUSTER_TOKEN")
            .unwrap();
        let selector = token
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(selector.name, "live-slave");
        assert_eq!(selector.key, "cluster-token");
        assert!(
            token.value.is_none(),
            "the token never sits in the pod spec"
        );
    }

    #[test]
    fn runs_non_root_with_a_read_only_root() {
        let d = deployment_of(&stream("live"));
        let pod = d.spec.template.spec.as_ref().unwrap();
        assert_eq!(
            pod.security_context.as_ref().unwrap().run_as_non_root,
            Some(true)
        );
        let sc = container_of(&d).security_context.as_ref().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(pod.automount_service_account_token, Some(false));
    }

    #[test]
    fn security_contexts_follow_the_settings() {
        let s = stream("live");
        let parent = Parent::of(&s).unwrap();
        let names = ChildNames::of(&s);
        let mut custom = settings();
        custom.security.pod.run_as_user = Some(2000);
        custom.security.pod.fs_group = Some(3000);
        custom.security.container.read_only_root_filesystem = Some(false);
        let secret = secret::build(&parent, &names, &custom);
        let d = build(
            &parent,
            &names,
            &validate(&s).unwrap(),
            &s,
            &custom,
            &secret,
        );
        let pod = d.spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.security_context.as_ref(), Some(&custom.security.pod));
        assert_eq!(
            container_of(&d).security_context.as_ref(),
            Some(&custom.security.container)
        );

        // The defaults are the image's user, as before the setting existed.
        let defaults = SlaveSecurity::default();
        assert_eq!(defaults.pod.run_as_user, Some(10001));
        assert_eq!(defaults.pod.run_as_group, Some(10001));
        assert_eq!(defaults.pod.fs_group, Some(10001));
        assert_eq!(
            defaults.container.capabilities.unwrap().drop,
            Some(vec!["ALL".to_owned()])
        );
    }

    #[test]
    fn fixed_replicas_are_set_and_autoscaled_ones_left_to_the_hpa() {
        let mut s = stream("live");
        s.spec.slaves.replicas = Some(3);
        assert_eq!(deployment_of(&s).spec.replicas, Some(3));
        s.spec.slaves.replicas = None;
        s.spec.slaves.autoscaling = Some(crate::crd::AutoscalingSpec {
            min_replicas: 2,
            max_replicas: 6,
            target_cpu_utilization_percentage: 60,
        });
        assert_eq!(deployment_of(&s).spec.replicas, None);
    }

    #[test]
    fn resources_are_derived_and_overridable_per_resource() {
        let d = deployment_of(&stream("live"));
        let r = container_of(&d).resources.clone().unwrap();
        assert_eq!(
            r.requests.as_ref().unwrap()["memory"],
            Quantity("339Mi".into())
        );
        assert_eq!(r.requests.as_ref().unwrap()["cpu"], Quantity("100m".into()));
        assert_eq!(
            r.limits.as_ref().unwrap()["memory"],
            Quantity("509Mi".into())
        );
        assert!(!r.limits.as_ref().unwrap().contains_key("cpu"));

        let mut s = stream("live");
        s.spec.slaves.resources = Some(ResourceRequirements {
            limits: Some(BTreeMap::from([("cpu".into(), Quantity("2".into()))])),
            requests: Some(BTreeMap::from([("memory".into(), Quantity("1Gi".into()))])),
            ..ResourceRequirements::default()
        });
        let d = deployment_of(&s);
        let r = container_of(&d).resources.clone().unwrap();
        assert_eq!(
            r.requests.as_ref().unwrap()["memory"],
            Quantity("1Gi".into())
        );
        assert_eq!(r.limits.as_ref().unwrap()["cpu"], Quantity("2".into()));
        assert_eq!(
            r.limits.as_ref().unwrap()["memory"],
            Quantity("509Mi".into())
        );
    }

    #[test]
    fn new_credentials_change_the_pod_template() {
        let s = stream("live");
        let parent = Parent::of(&s).unwrap();
        let names = ChildNames::of(&s);
        let a = secret::build(&parent, &names, &settings());
        let mut other = settings();
        other.cluster_token = crate::config::Sensitive::new("rotated");
        let b = secret::build(&parent, &names, &other);
        assert_ne!(credentials_hash(&a), credentials_hash(&b));
        assert_eq!(credentials_hash(&a), credentials_hash(&a.clone()));
    }
}
