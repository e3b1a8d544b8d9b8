//! Command line of `streammachine-operator`. Every flag has an environment variable, which is
//! how the chart configures it (secrets come from a Secret, namespace and pod name from the
//! Downward API).

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use k8s_openapi::api::core::v1::{PodSecurityContext, SecurityContext};

use crate::config::Sensitive;

/// Kubernetes operator for StreamMachine: reconciles Stream resources into the master's config
/// and per-stream slave Deployments, Services, autoscalers, disruption budgets and Ingresses.
#[derive(Parser, Debug, Clone)]
#[command(name = "streammachine-operator", version)]
pub struct Args {
    /// Redis URL of the master's config store (also given to the slave pods).
    #[arg(long, env = "STREAMMACHINE_REDIS_URL", hide_env_values = true, value_parser = sensitive)]
    pub redis_url: Sensitive,

    /// Prefix of the Redis keys.
    #[arg(
        long,
        env = "STREAMMACHINE_REDIS_PREFIX",
        default_value = "streammachine"
    )]
    pub redis_prefix: String,

    /// NATS URL the slave pods receive live audio from.
    #[arg(long, env = "STREAMMACHINE_NATS_URL", hide_env_values = true, value_parser = sensitive)]
    pub nats_url: Sensitive,

    /// Prefix of the NATS subjects.
    #[arg(
        long,
        env = "STREAMMACHINE_NATS_PREFIX",
        default_value = "streammachine"
    )]
    pub nats_prefix: String,

    /// URL of the master's admin API and rewind transport, reachable from every namespace
    /// (e.g. `http://streammachine-master-admin.radio.svc:8001`).
    #[arg(long, env = "STREAMMACHINE_MASTER_ADMIN_URL")]
    pub master_admin_url: String,

    /// Shared secret of master, slaves and operator.
    #[arg(long, env = "STREAMMACHINE_CLUSTER_TOKEN", hide_env_values = true, value_parser = sensitive)]
    pub cluster_token: Sensitive,

    /// Image of the slave pods (the `streammachine` binary).
    #[arg(long, env = "STREAMMACHINE_SLAVE_IMAGE")]
    pub slave_image: String,

    /// Pull policy of the slave image.
    #[arg(
        long,
        env = "STREAMMACHINE_SLAVE_IMAGE_PULL_POLICY",
        default_value = "IfNotPresent"
    )]
    pub slave_image_pull_policy: String,

    /// Pod security context of the slave pods, as JSON (the chart's `podSecurityContext`);
    /// the image's non-root user 10001 with the RuntimeDefault seccomp profile when unset.
    #[arg(long, env = "STREAMMACHINE_SLAVE_POD_SECURITY_CONTEXT", value_parser = json::<PodSecurityContext>)]
    pub slave_pod_security_context: Option<PodSecurityContext>,

    /// Container security context of the slaves, as JSON (the chart's `securityContext`); no
    /// privilege escalation, read-only root, no capabilities when unset.
    #[arg(long, env = "STREAMMACHINE_SLAVE_SECURITY_CONTEXT", value_parser = json::<SecurityContext>)]
    pub slave_security_context: Option<SecurityContext>,

    /// Only watch Streams in this namespace; all namespaces when unset.
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,

    /// Address of the probe and metrics server (`/healthz`, `/readyz`, `/metrics`).
    #[arg(
        long,
        env = "STREAMMACHINE_OPERATOR_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    pub listen: SocketAddr,

    /// How often a healthy Stream is reconciled to refresh listeners and buffered seconds.
    #[arg(long, env = "STREAMMACHINE_STATUS_REFRESH", default_value = "30s", value_parser = humantime::parse_duration)]
    pub status_refresh: Duration,

    /// Timeout of calls to the master's admin API.
    #[arg(long, env = "STREAMMACHINE_MASTER_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration)]
    pub master_timeout: Duration,

    /// Elect a leader through a Lease, so only one replica writes. Keep it on: it also stops
    /// two operators writing during a rolling update of a single replica.
    #[arg(long, env = "STREAMMACHINE_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// Name of the leader Lease.
    #[arg(
        long,
        env = "STREAMMACHINE_LEASE_NAME",
        default_value = "streammachine-operator"
    )]
    pub lease_name: String,

    /// Namespace of the leader Lease; the operator's own namespace.
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// Identity in the Lease and in events; the pod name.
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,

    /// Log format.
    #[arg(
        long,
        env = "STREAMMACHINE_LOG_FORMAT",
        value_enum,
        default_value = "json"
    )]
    pub log_format: LogFormat,

    /// Log filter in `RUST_LOG` syntax.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log_filter: String,
}

/// Log output format.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

// URLs may carry passwords: keep them out of `Debug` output like the token.
fn sensitive(value: &str) -> Result<Sensitive, std::convert::Infallible> {
    Ok(Sensitive::new(value))
}

/// A Kubernetes object from JSON (the chart renders its values with `toJson`).
fn json<T: serde::de::DeserializeOwned>(value: &str) -> Result<T, serde_json::Error> {
    serde_json::from_str(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUIRED: [&str; 11] = [
        "streammachine-operator",
        "--redis-url=redis://redis:6379",
        "--nats-url=nats://nats:4222",
        "--master-admin-url=http://master:8001",
        "--cluster-token=t",
        "--slave-image=img:1",
        "--leader-election=false",
        "--log-format=text",
        "--status-refresh=1m",
        "--listen=127.0.0.1:9090",
        "--watch-namespace=radio",
    ];

    #[test]
    fn parses_flags_and_defaults() {
        let args = Args::try_parse_from(REQUIRED).unwrap();
        assert_eq!(args.redis_prefix, "streammachine");
        assert!(!args.leader_election);
        assert_eq!(args.status_refresh, Duration::from_secs(60));
        assert_eq!(args.master_timeout, Duration::from_secs(3));
        assert_eq!(args.log_format, LogFormat::Text);
        assert_eq!(args.watch_namespace.as_deref(), Some("radio"));
    }

    #[test]
    fn slave_security_contexts_come_as_json_from_the_chart() {
        let args = Args::try_parse_from(REQUIRED).unwrap();
        assert!(args.slave_pod_security_context.is_none());
        assert!(args.slave_security_context.is_none());

        let args = Args::try_parse_from(REQUIRED.iter().copied().chain([
            r#"--slave-pod-security-context={"runAsNonRoot":true,"runAsUser":2000,"fsGroup":2000}"#,
            r#"--slave-security-context={"readOnlyRootFilesystem":true,"capabilities":{"drop":["ALL"]}}"#,
        ]))
        .unwrap();
        let pod = args.slave_pod_security_context.unwrap();
        assert_eq!(pod.run_as_user, Some(2000));
        assert_eq!(pod.fs_group, Some(2000));
        let container = args.slave_security_context.unwrap();
        assert_eq!(container.read_only_root_filesystem, Some(true));
        assert_eq!(
            container.capabilities.unwrap().drop,
            Some(vec!["ALL".to_owned()])
        );

        let bad = REQUIRED
            .iter()
            .copied()
            .chain([r#"--slave-pod-security-context={"runAsUser":"#]);
        assert!(Args::try_parse_from(bad).is_err());
    }

    #[test]
    fn debug_output_hides_the_token_and_urls() {
        let args = Args::try_parse_from(REQUIRED).unwrap();
        assert_eq!(args.cluster_token.expose(), "t");
        let debug = format!("{args:?}");
        assert!(!debug.contains("redis://"), "{debug}");
        assert!(!debug.contains("cluster_token: \"t\""), "{debug}");
    }
}
