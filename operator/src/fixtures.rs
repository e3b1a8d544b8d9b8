//! Test fixtures: a minimal Stream as the API server would return it, and worker settings.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::config::Sensitive;
use crate::crd::{
    AudioFormat, IngressSpec, ListenersSpec, OutputsSpec, SecretKeyRef, SlavesSpec, SourceSpec,
    Stream, StreamSpec,
};
use crate::resources::WorkerSettings;

/// A Stream named `name` in namespace `radio` with every default, generation 1, no status.
pub fn stream(name: &str) -> Stream {
    Stream {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some("radio".to_owned()),
            uid: Some(format!("uid-{name}")),
            generation: Some(1),
            ..ObjectMeta::default()
        },
        spec: StreamSpec {
            key: None,
            format: AudioFormat::Mp3,
            bitrate_kbps: 128,
            rewind: "4h".to_owned(),
            burst: "30s".to_owned(),
            source: SourceSpec {
                password_secret_ref: SecretKeyRef {
                    name: "encoder".to_owned(),
                    key: "password".to_owned(),
                },
            },
            fallback: None,
            stream_title: None,
            stream_url: None,
            group: None,
            outputs: OutputsSpec::default(),
            listeners: ListenersSpec::default(),
            slaves: SlavesSpec::default(),
            ingress: IngressSpec::default(),
            silence: None,
            monitored: None,
            webhooks: vec![],
        },
        status: None,
    }
}

/// Settings as the chart would pass them.
pub fn settings() -> WorkerSettings {
    WorkerSettings {
        image: "ghcr.io/streammachine/streammachine:0.1.0".to_owned(),
        image_pull_policy: "IfNotPresent".to_owned(),
        master_admin_url: "http://sm-master-admin.streaming.svc:8001".to_owned(),
        redis_url: Sensitive::new("redis://redis:6379"),
        nats_url: Sensitive::new("nats://nats:4222"),
        redis_prefix: "streammachine".to_owned(),
        nats_prefix: "streammachine".to_owned(),
        cluster_token: Sensitive::new("cluster-secret"),
        security: crate::resources::SlaveSecurity::default(),
    }
}
