//! Ingresses for the listener paths.
//!
//! Long-lived audio and HLS want opposite proxy behaviour, and ingress controllers take such
//! settings per Ingress object, so there are two: `<name>-audio` for `/<key>` (ICY/raw audio
//! and pump downloads: no response buffering, read/send timeouts of hours) and `<name>-hls` for
//! the playlists and HLS segments (short requests that proxies and CDNs may buffer and cache;
//! cache headers come from the slave). The paths are the slave's own routes.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};

use super::{ChildNames, Parent, SLAVE_PORT_NAME};
use crate::crd::{IngressController, Stream};
use crate::validate::ValidSpec;

/// ingress-nginx settings for audio: stream bytes as they come, and keep slow or paused
/// listeners connected for hours (the timeouts are between two reads/writes, not per request).
pub const NGINX_AUDIO_ANNOTATIONS: [(&str, &str); 3] = [
    ("nginx.ingress.kubernetes.io/proxy-buffering", "off"),
    ("nginx.ingress.kubernetes.io/proxy-read-timeout", "21600"),
    ("nginx.ingress.kubernetes.io/proxy-send-timeout", "21600"),
];

/// ingress-nginx settings for playlists and segments: ordinary short, bufferable responses.
pub const NGINX_HLS_ANNOTATIONS: [(&str, &str); 3] = [
    ("nginx.ingress.kubernetes.io/proxy-buffering", "on"),
    ("nginx.ingress.kubernetes.io/proxy-read-timeout", "30"),
    ("nginx.ingress.kubernetes.io/proxy-send-timeout", "30"),
];

type Annotations = &'static [(&'static str, &'static str)];

/// Builds (audio, hls); only called when the ingress is enabled.
pub(super) fn build(
    parent: &Parent,
    names: &ChildNames,
    valid: &ValidSpec,
    stream: &Stream,
) -> (Ingress, Ingress) {
    let key = &valid.key;
    let audio_paths = vec![("Exact", format!("/{key}"))];
    let mut hls_paths = vec![
        ("Exact", format!("/{key}.m3u8")),
        ("Exact", format!("/{key}.pls")),
        ("Exact", format!("/{key}.m3u")),
        // Segments. Prefix matching ignores the trailing slash, so this also matches `/<key>`;
        // the audio Ingress's Exact path takes precedence for that one.
        ("Prefix", format!("/{key}/")),
    ];
    let ingress = &stream.spec.ingress;
    if ingress.group_playlist
        && let Some(group) = &stream.spec.group
    {
        hls_paths.push(("Exact", format!("/sg/{group}.m3u8")));
    }
    let (audio_defaults, hls_defaults): (Annotations, Annotations) = match ingress.controller {
        IngressController::Nginx => (&NGINX_AUDIO_ANNOTATIONS, &NGINX_HLS_ANNOTATIONS),
        IngressController::None => (&[], &[]),
    };
    (
        one(
            parent,
            names,
            stream,
            &names.audio_ingress,
            audio_defaults,
            audio_paths,
        ),
        one(
            parent,
            names,
            stream,
            &names.hls_ingress,
            hls_defaults,
            hls_paths,
        ),
    )
}

fn one(
    parent: &Parent,
    names: &ChildNames,
    stream: &Stream,
    name: &str,
    default_annotations: Annotations,
    paths: Vec<(&str, String)>,
) -> Ingress {
    let spec = &stream.spec.ingress;
    let mut annotations: BTreeMap<String, String> = default_annotations
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    annotations.extend(spec.annotations.clone());

    let backend = IngressBackend {
        service: Some(IngressServiceBackend {
            name: names.slave.clone(),
            port: Some(ServiceBackendPort {
                name: Some(SLAVE_PORT_NAME.to_owned()),
                ..ServiceBackendPort::default()
            }),
        }),
        ..IngressBackend::default()
    };
    let mut metadata = parent.metadata(name);
    metadata.annotations = (!annotations.is_empty()).then_some(annotations);

    Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: spec.class_name.clone(),
            rules: Some(vec![IngressRule {
                host: spec.host.clone(),
                http: Some(HTTPIngressRuleValue {
                    paths: paths
                        .into_iter()
                        .map(|(path_type, path)| HTTPIngressPath {
                            path: Some(path),
                            path_type: path_type.to_owned(),
                            backend: backend.clone(),
                        })
                        .collect(),
                }),
            }]),
            tls: spec.tls.as_ref().map(|tls| {
                vec![IngressTLS {
                    hosts: spec.host.clone().map(|h| vec![h]),
                    secret_name: Some(tls.secret_name.clone()),
                }]
            }),
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::IngressTlsSpec;
    use crate::fixtures::stream;
    use crate::validate::validate;

    fn ingresses(s: &Stream) -> (Ingress, Ingress) {
        build(
            &Parent::of(s).unwrap(),
            &ChildNames::of(s),
            &validate(s).unwrap(),
            s,
        )
    }

    fn with_ingress() -> Stream {
        let mut s = stream("live");
        s.spec.key = Some("kpcc".into());
        s.spec.ingress.enabled = true;
        s.spec.ingress.host = Some("radio.example.org".into());
        s
    }

    fn paths(i: &Ingress) -> Vec<(String, String)> {
        let rule = &i.spec.as_ref().unwrap().rules.as_ref().unwrap()[0];
        rule.http
            .as_ref()
            .unwrap()
            .paths
            .iter()
            .map(|p| (p.path_type.clone(), p.path.clone().unwrap()))
            .collect()
    }

    #[test]
    fn audio_path_gets_unbuffered_hour_long_proxying() {
        let (audio, _) = ingresses(&with_ingress());
        assert_eq!(audio.metadata.name.as_deref(), Some("live-audio"));
        assert_eq!(paths(&audio), vec![("Exact".into(), "/kpcc".into())]);
        let annotations = audio.metadata.annotations.unwrap();
        assert_eq!(
            annotations["nginx.ingress.kubernetes.io/proxy-buffering"],
            "off"
        );
        assert_eq!(
            annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"],
            "21600"
        );
        let rule = &audio.spec.as_ref().unwrap().rules.as_ref().unwrap()[0];
        assert_eq!(rule.host.as_deref(), Some("radio.example.org"));
        let backend = rule.http.as_ref().unwrap().paths[0]
            .backend
            .service
            .clone()
            .unwrap();
        assert_eq!(backend.name, "live-slave");
    }

    #[test]
    fn hls_paths_cover_playlists_and_segments() {
        let (_, hls) = ingresses(&with_ingress());
        assert_eq!(hls.metadata.name.as_deref(), Some("live-hls"));
        assert_eq!(
            paths(&hls),
            vec![
                ("Exact".into(), "/kpcc.m3u8".into()),
                ("Exact".into(), "/kpcc.pls".into()),
                ("Exact".into(), "/kpcc.m3u".into()),
                ("Prefix".into(), "/kpcc/".into()),
            ]
        );
        let annotations = hls.metadata.annotations.unwrap();
        assert_eq!(
            annotations["nginx.ingress.kubernetes.io/proxy-buffering"],
            "on"
        );
    }

    #[test]
    fn group_playlist_only_when_asked() {
        let mut s = with_ingress();
        s.spec.group = Some("kpcc-group".into());
        assert_eq!(paths(&ingresses(&s).1).len(), 4);
        s.spec.ingress.group_playlist = true;
        assert!(paths(&ingresses(&s).1).contains(&("Exact".into(), "/sg/kpcc-group.m3u8".into())));
    }

    #[test]
    fn user_annotations_override_defaults_and_none_drops_them() {
        let mut s = with_ingress();
        s.spec.ingress.annotations = BTreeMap::from([(
            "nginx.ingress.kubernetes.io/proxy-read-timeout".into(),
            "3600".into(),
        )]);
        let (audio, _) = ingresses(&s);
        let annotations = audio.metadata.annotations.unwrap();
        assert_eq!(
            annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"],
            "3600"
        );
        assert_eq!(
            annotations["nginx.ingress.kubernetes.io/proxy-buffering"],
            "off"
        );

        s.spec.ingress.annotations.clear();
        s.spec.ingress.controller = IngressController::None;
        assert!(ingresses(&s).0.metadata.annotations.is_none());
    }

    #[test]
    fn class_and_tls_are_passed_through() {
        let mut s = with_ingress();
        s.spec.ingress.class_name = Some("nginx".into());
        s.spec.ingress.tls = Some(IngressTlsSpec {
            secret_name: "radio-tls".into(),
        });
        for ingress in <[Ingress; 2]>::from(ingresses(&s)) {
            let spec = ingress.spec.unwrap();
            assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
            let tls = &spec.tls.unwrap()[0];
            assert_eq!(tls.secret_name.as_deref(), Some("radio-tls"));
            assert_eq!(tls.hosts, Some(vec!["radio.example.org".to_owned()]));
        }
    }
}
