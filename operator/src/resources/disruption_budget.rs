//! The PodDisruptionBudget of the slave pods.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{ChildNames, Parent};
use crate::validate::Scaling;

/// Built when at least two slave pods always run: node drains then evict one pod at a time.
/// With a single pod a budget would either block drains forever or protect nothing.
pub(super) fn build(
    parent: &Parent,
    names: &ChildNames,
    scaling: Scaling,
) -> Option<PodDisruptionBudget> {
    if scaling.min_replicas() < 2 {
        return None;
    }
    Some(PodDisruptionBudget {
        metadata: parent.metadata(&names.slave),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(parent.selector_labels()),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::stream;

    #[test]
    fn only_with_two_or_more_pods() {
        let s = stream("live");
        let (parent, names) = (Parent::of(&s).unwrap(), ChildNames::of(&s));
        assert!(build(&parent, &names, Scaling::Fixed(1)).is_none());
        assert!(build(&parent, &names, Scaling::Fixed(0)).is_none());
        let auto_from_one = Scaling::Auto {
            min: 1,
            max: 4,
            target_cpu_percent: 70,
        };
        assert!(build(&parent, &names, auto_from_one).is_none());

        let pdb = build(&parent, &names, Scaling::Fixed(2)).unwrap();
        let spec = pdb.spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(
            spec.selector.unwrap().match_labels.unwrap(),
            parent.selector_labels()
        );
    }
}
