//! The HorizontalPodAutoscaler of the slave Deployment (CPU-based, `autoscaling/v2`).

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerSpec, MetricSpec, MetricTarget,
    ResourceMetricSource,
};

use super::{ChildNames, Parent};
use crate::validate::Scaling;

/// Built only for `Scaling::Auto`.
pub(super) fn build(
    parent: &Parent,
    names: &ChildNames,
    scaling: Scaling,
) -> Option<HorizontalPodAutoscaler> {
    let Scaling::Auto {
        min,
        max,
        target_cpu_percent,
    } = scaling
    else {
        return None;
    };
    Some(HorizontalPodAutoscaler {
        metadata: parent.metadata(&names.slave),
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_owned()),
                kind: "Deployment".to_owned(),
                name: names.slave.clone(),
            },
            min_replicas: Some(min),
            max_replicas: max,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".to_owned(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".to_owned(),
                    target: MetricTarget {
                        type_: "Utilization".to_owned(),
                        average_utilization: Some(target_cpu_percent),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            // Removing a pod makes its listeners reconnect elsewhere, so scale down slowly: one
            // pod per two minutes after five quiet minutes. Scaling up keeps the defaults.
            behavior: Some(HorizontalPodAutoscalerBehavior {
                scale_down: Some(HPAScalingRules {
                    stabilization_window_seconds: Some(300),
                    policies: Some(vec![HPAScalingPolicy {
                        type_: "Pods".to_owned(),
                        value: 1,
                        period_seconds: 120,
                    }]),
                    ..HPAScalingRules::default()
                }),
                ..HorizontalPodAutoscalerBehavior::default()
            }),
        },
        ..HorizontalPodAutoscaler::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::stream;

    #[test]
    fn targets_the_slave_deployment_with_the_spec_bounds() {
        let s = stream("live");
        let scaling = Scaling::Auto {
            min: 2,
            max: 8,
            target_cpu_percent: 65,
        };
        let hpa = build(&Parent::of(&s).unwrap(), &ChildNames::of(&s), scaling).unwrap();
        assert_eq!(hpa.metadata.name.as_deref(), Some("live-slave"));
        assert_eq!(hpa.spec.scale_target_ref.kind, "Deployment");
        assert_eq!(hpa.spec.scale_target_ref.name, "live-slave");
        assert_eq!(hpa.spec.min_replicas, Some(2));
        assert_eq!(hpa.spec.max_replicas, 8);
        let metric = &hpa.spec.metrics.unwrap()[0];
        let resource = metric.resource.as_ref().unwrap();
        assert_eq!(resource.name, "cpu");
        assert_eq!(resource.target.average_utilization, Some(65));
    }

    #[test]
    fn fixed_replicas_have_no_autoscaler() {
        let s = stream("live");
        assert!(
            build(
                &Parent::of(&s).unwrap(),
                &ChildNames::of(&s),
                Scaling::Fixed(3)
            )
            .is_none()
        );
    }
}
