//! The listener Service in front of the slave pods.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{ChildNames, Parent, SLAVE_PORT, SLAVE_PORT_NAME};

pub(super) fn build(parent: &Parent, names: &ChildNames) -> Service {
    Service {
        metadata: parent.metadata(&names.slave),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(parent.selector_labels()),
            ports: Some(vec![ServicePort {
                name: Some(SLAVE_PORT_NAME.to_owned()),
                port: SLAVE_PORT,
                target_port: Some(IntOrString::String(SLAVE_PORT_NAME.to_owned())),
                protocol: Some("TCP".to_owned()),
                app_protocol: Some("http".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::stream;

    #[test]
    fn selects_the_slave_pods_on_the_named_port() {
        let s = stream("live");
        let service = build(&Parent::of(&s).unwrap(), &ChildNames::of(&s));
        assert_eq!(service.metadata.name.as_deref(), Some("live-slave"));
        let spec = service.spec.unwrap();
        let selector = spec.selector.unwrap();
        assert_eq!(selector.len(), 3);
        assert_eq!(selector["app.kubernetes.io/component"], "slave");
        assert_eq!(selector["app.kubernetes.io/instance"], "live");
        let port = &spec.ports.unwrap()[0];
        assert_eq!(port.port, 8000);
        assert_eq!(port.target_port, Some(IntOrString::String("http".into())));
    }
}
