//! Custom resource types of group `ordinal.dev`, version `v1alpha1`.

pub mod backup;
pub mod common;
pub mod mysql;
pub mod redis;

pub use backup::{Backup, BackupSchedule, BackupScheduleSpec, BackupSpec, BackupStatus};
pub use common::*;
pub use mysql::{MySQLCluster, MySQLClusterSpec, MySqlFlavor};
pub use redis::{RedisReplication, RedisReplicationSpec};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// API group of every Ordinal resource.
pub const GROUP: &str = "ordinal.dev";

/// Annotation on a `RedisReplication` or `MySQLCluster`: `"true"` makes the
/// operator skip the cluster (no child, database or label changes) and report
/// condition `Paused`; removing it (or any other value) resumes.
pub const PAUSED_ANNOTATION: &str = "ordinal.dev/paused";

/// Whether a cluster's annotations pause it.
pub fn is_paused(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(PAUSED_ANNOTATION))
        .is_some_and(|v| v == "true")
}

/// Every CRD Ordinal serves, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        RedisReplication::crd(),
        MySQLCluster::crd(),
        Backup::crd(),
        BackupSchedule::crd(),
    ]
}

/// All CRDs as one multi-document YAML stream, as committed in `crds/`.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}
