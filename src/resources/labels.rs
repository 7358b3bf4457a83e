//! Labels and annotations on Ordinal's children.

use std::collections::BTreeMap;

use super::ClusterView;

pub const NAME: &str = "app.kubernetes.io/name";
pub const INSTANCE: &str = "app.kubernetes.io/instance";
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const COMPONENT: &str = "app.kubernetes.io/component";
/// Role label the operator moves after confirming a member's role; the write
/// and read Services select on it.
pub const ROLE: &str = "ordinal.dev/role";
pub const ROLE_PRIMARY: &str = "primary";
pub const ROLE_REPLICA: &str = "replica";
/// Pod template annotation: hash of the restart-relevant configuration.
pub const CONFIG_HASH: &str = "ordinal.dev/config-hash";
/// Annotation on every child: the hash of what it was last applied from.
pub const APPLIED_HASH: &str = "ordinal.dev/applied-hash";
pub const MANAGER: &str = "ordinal";

/// Labels selecting every member of one cluster (stable: the StatefulSet
/// selector is immutable).
pub fn selector(view: &ClusterView) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME.to_string(), view.kind.app().to_string()),
        (INSTANCE.to_string(), view.name.clone()),
        (MANAGED_BY.to_string(), MANAGER.to_string()),
    ])
}

/// Labels on every child object.
pub fn common(view: &ClusterView) -> BTreeMap<String, String> {
    let mut labels = selector(view);
    labels.insert(COMPONENT.to_string(), "database".to_string());
    labels
}

/// Selector of the members holding one role.
pub fn with_role(view: &ClusterView, role: &str) -> BTreeMap<String, String> {
    let mut labels = selector(view);
    labels.insert(ROLE.to_string(), role.to_string());
    labels
}

/// `k=v,k=v` form for list calls.
pub fn to_selector_string(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
