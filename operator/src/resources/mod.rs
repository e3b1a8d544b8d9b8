//! Desired Kubernetes objects for a Stream, built by pure functions (no client).
//!
//! One module per kind. Every child carries the Stream as its controller owner reference (so
//! Kubernetes garbage-collects it with the Stream and the controller hears about its changes),
//! the recommended `app.kubernetes.io/*` labels, and a name derived from the Stream's name.

mod autoscaler;
mod deployment;
pub use deployment::SlaveSecurity;
mod disruption_budget;
mod ingress;
mod secret;
mod service;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

pub use deployment::{MemorySizing, slave_memory};

use crate::config::{Sensitive, StreamConfig, StreamSecrets};
use crate::crd::Stream;
use crate::validate::ValidSpec;

/// Port the slave serves listeners (and probes and metrics) on.
pub const SLAVE_PORT: i32 = 8000;
/// Name of that port in the pod and the Service.
pub const SLAVE_PORT_NAME: &str = "http";
/// `app.kubernetes.io/name` of everything StreamMachine runs.
pub const APP_NAME: &str = "streammachine";
/// `app.kubernetes.io/managed-by` of the operator's children.
pub const MANAGED_BY: &str = "streammachine-operator";
/// Label naming the Stream a child belongs to.
pub const STREAM_LABEL: &str = "streammachine.io/stream";

/// Operator-wide settings the slave pods are built with (from the operator's command line).
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// Image of the `streammachine` binary.
    pub image: String,
    /// Pull policy of that image.
    pub image_pull_policy: String,
    /// Master admin/transport URL the slaves load the rewind buffer from.
    pub master_admin_url: String,
    /// Redis URL (may hold a password, so it goes into the per-stream Secret).
    pub redis_url: Sensitive,
    /// NATS URL (may hold credentials, so it goes into the per-stream Secret).
    pub nats_url: Sensitive,
    /// Redis key prefix.
    pub redis_prefix: String,
    /// NATS subject prefix.
    pub nats_prefix: String,
    /// Shared secret between master, slaves and operator.
    pub cluster_token: Sensitive,
    /// Pod and container security contexts of the slave pods (the chart's values).
    pub security: SlaveSecurity,
}

/// Everything the operator wants to exist for one Stream. Deliberately not `Debug`: the Secret
/// holds the cluster token and URLs in plain bytes.
#[derive(Clone)]
pub struct Desired {
    /// The config for the master's Redis store.
    pub config: StreamConfig,
    /// Credentials of the slave pods (cluster token, Redis and NATS URLs).
    pub secret: Secret,
    /// Listener Service in front of the slave pods.
    pub service: Service,
    /// The slave pods.
    pub deployment: Deployment,
    /// Autoscaler, when the spec asks for autoscaling.
    pub autoscaler: Option<HorizontalPodAutoscaler>,
    /// Disruption budget, when at least two slave pods run.
    pub disruption_budget: Option<PodDisruptionBudget>,
    /// Ingress for long-lived audio, when the ingress is enabled.
    pub audio_ingress: Option<Ingress>,
    /// Ingress for HLS and playlists, when the ingress is enabled.
    pub hls_ingress: Option<Ingress>,
}

/// A Stream read from the API always has these; a hand-made one may not.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// No namespace or uid, so no children or owner reference can be built.
    #[error("Stream has no {0}")]
    MissingMetadata(&'static str),
}

/// Names of a Stream's children; deterministic so the operator can find (and prune) them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildNames {
    /// Deployment, Service, Secret, HPA and PDB (different kinds may share a name).
    pub slave: String,
    /// Ingress for audio.
    pub audio_ingress: String,
    /// Ingress for HLS.
    pub hls_ingress: String,
}

impl ChildNames {
    /// Child names of a Stream.
    pub fn of(stream: &Stream) -> Self {
        let name = stream.name_any();
        Self {
            slave: format!("{name}-slave"),
            audio_ingress: format!("{name}-audio"),
            hls_ingress: format!("{name}-hls"),
        }
    }
}

/// Builds every desired object of a validated Stream.
pub fn build(
    stream: &Stream,
    valid: &ValidSpec,
    settings: &WorkerSettings,
    secrets: &StreamSecrets,
) -> Result<Desired, BuildError> {
    let parent = Parent::of(stream)?;
    let names = ChildNames::of(stream);
    let secret = secret::build(&parent, &names, settings);
    let spec = &stream.spec;
    let (audio_ingress, hls_ingress) = if spec.ingress.enabled {
        let (audio, hls) = ingress::build(&parent, &names, valid, stream);
        (Some(audio), Some(hls))
    } else {
        (None, None)
    };
    Ok(Desired {
        config: StreamConfig::build(stream, valid, secrets),
        deployment: deployment::build(&parent, &names, valid, stream, settings, &secret),
        service: service::build(&parent, &names),
        autoscaler: autoscaler::build(&parent, &names, valid.scaling),
        disruption_budget: disruption_budget::build(&parent, &names, valid.scaling),
        audio_ingress,
        hls_ingress,
        secret,
    })
}

/// What children need from their Stream: where they live, who owns them, how they are labelled.
struct Parent {
    namespace: String,
    owner: OwnerReference,
    name: String,
}

impl Parent {
    fn of(stream: &Stream) -> Result<Self, BuildError> {
        Ok(Self {
            namespace: stream
                .namespace()
                .ok_or(BuildError::MissingMetadata("namespace"))?,
            owner: stream
                .controller_owner_ref(&())
                .ok_or(BuildError::MissingMetadata("uid"))?,
            name: stream.name_any(),
        })
    }

    /// Labels that select the slave pods. They never change for a Stream, because a
    /// Deployment's selector is immutable.
    fn selector_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".to_owned(), APP_NAME.to_owned()),
            ("app.kubernetes.io/instance".to_owned(), self.name.clone()),
            ("app.kubernetes.io/component".to_owned(), "slave".to_owned()),
        ])
    }

    /// Labels of every child.
    fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels();
        labels.insert("app.kubernetes.io/part-of".to_owned(), APP_NAME.to_owned());
        labels.insert(
            "app.kubernetes.io/managed-by".to_owned(),
            MANAGED_BY.to_owned(),
        );
        labels.insert(STREAM_LABEL.to_owned(), self.name.clone());
        labels
    }

    fn metadata(&self, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels()),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{settings, stream};
    use crate::validate::validate;

    fn desired(stream: &Stream) -> Desired {
        build(
            stream,
            &validate(stream).unwrap(),
            &settings(),
            &StreamSecrets::new(Sensitive::new("pw")),
        )
        .unwrap()
    }

    #[test]
    fn every_child_is_owned_by_the_stream_and_labelled() {
        let s = stream("live");
        let mut with_all = s.clone();
        with_all.spec.ingress.enabled = true;
        with_all.spec.ingress.host = Some("radio.example.org".into());
        let d = desired(&with_all);
        let metas = [
            &d.secret.metadata,
            &d.service.metadata,
            &d.deployment.metadata,
            &d.disruption_budget.as_ref().unwrap().metadata,
            &d.audio_ingress.as_ref().unwrap().metadata,
            &d.hls_ingress.as_ref().unwrap().metadata,
        ];
        for meta in metas {
            let owners = meta.owner_references.as_ref().unwrap();
            assert_eq!(owners.len(), 1);
            assert_eq!(owners[0].kind, "Stream");
            assert_eq!(owners[0].name, "live");
            assert_eq!(owners[0].uid, s.metadata.uid.clone().unwrap());
            assert_eq!(owners[0].controller, Some(true));
            assert_eq!(meta.namespace.as_deref(), Some("radio"));
            let labels = meta.labels.as_ref().unwrap();
            assert_eq!(labels["app.kubernetes.io/name"], "streammachine");
            assert_eq!(labels["app.kubernetes.io/instance"], "live");
            assert_eq!(
                labels["app.kubernetes.io/managed-by"],
                "streammachine-operator"
            );
            assert_eq!(labels[STREAM_LABEL], "live");
        }
    }

    #[test]
    fn child_names_derive_from_the_stream_name_not_the_key() {
        let mut s = stream("morning");
        s.spec.key = Some("kpcc_live".into());
        assert_eq!(
            ChildNames::of(&s),
            ChildNames {
                slave: "morning-slave".into(),
                audio_ingress: "morning-audio".into(),
                hls_ingress: "morning-hls".into(),
            }
        );
    }

    #[test]
    fn optional_children_follow_the_spec() {
        let d = desired(&stream("live"));
        assert!(d.autoscaler.is_none());
        assert!(d.disruption_budget.is_some(), "two replicas by default");
        assert!(d.audio_ingress.is_none() && d.hls_ingress.is_none());

        let mut single = stream("live");
        single.spec.slaves.replicas = Some(1);
        assert!(desired(&single).disruption_budget.is_none());
    }

    #[test]
    fn a_stream_without_uid_cannot_own_children() {
        let mut s = stream("live");
        s.metadata.uid = None;
        let result = build(
            &s,
            &validate(&s).unwrap(),
            &settings(),
            &StreamSecrets::new(Sensitive::new("pw")),
        );
        assert!(matches!(result, Err(BuildError::MissingMetadata("uid"))));
    }
}
