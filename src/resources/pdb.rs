//! PodDisruptionBudget: voluntary disruptions take at most one member at a time.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{ClusterView, labels};

pub fn pdb(view: &ClusterView) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some(view.name.clone()),
            namespace: Some(view.namespace.clone()),
            labels: Some(labels::common(view)),
            owner_references: Some(vec![view.owner.clone()]),
            ..Default::default()
        },
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(labels::selector(view)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
