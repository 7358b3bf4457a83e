//! `RedisReplication`: one primary and N-1 replicas of Redis.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{
    AuthSpec, ClusterStatus, ExporterSpec, FailoverSpec, MemberTemplate, RestoreSpec, StorageSpec,
};

/// redis.conf keys Ordinal renders itself; users may not set them in `spec.config`.
pub const REDIS_OWNED_KEYS: &[&str] = &[
    "port",
    "bind",
    "dir",
    "daemonize",
    "include",
    "unixsocket",
    "pidfile",
    "aclfile",
    "replicaof",
    "slaveof",
    "masterauth",
    "masteruser",
    "requirepass",
    "replica-read-only",
    "slave-read-only",
    "replica-announce-ip",
    "slave-announce-ip",
    "replica-announce-port",
    "min-replicas-to-write",
    "min-slaves-to-write",
    "min-replicas-max-lag",
    "min-slaves-max-lag",
    "cluster-enabled",
];

/// A replicated Redis: one primary, the rest replicas, managed by Ordinal.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ordinal.dev",
    version = "v1alpha1",
    kind = "RedisReplication",
    namespaced,
    status = "ClusterStatus",
    shortname = "rr",
    category = "ordinal",
    printcolumn = r#"{"name":"Primary","type":"integer","jsonPath":".status.primary","description":"Ordinal of the primary"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".status.readyReplicas","priority":1}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = super::common::cluster_name_length_rule(),
    validation = super::common::cluster_name_format_rule(),
    cel
)]
#[x_kube(
    validation = Rule::new("self.replicas >= 1").message("spec.replicas must be at least 1"),
    validation = Rule::new("self.replicas <= 100").message("spec.replicas must be at most 100"),
    validation = Rule::new("!has(self.primary) || (self.primary >= 0 && self.primary < self.replicas)").message("spec.primary must be an ordinal below spec.replicas"),
    validation = Rule::new("!has(self.durability) || self.durability.minReplicasToWrite < self.replicas").message("durability.minReplicasToWrite must be below spec.replicas: the primary counts connected replicas, and with fewer it refuses every write"),
    validation = Rule::new("!has(self.restore) || (!has(self.restore.pointInTime) && !has(self.restore.gtid) && !has(self.restore.archiveTarget))").message("restore.pointInTime, restore.gtid and restore.archiveTarget are for MySQLCluster only: a Redis cluster's recovery point is its backup"),
)]
#[serde(rename_all = "camelCase")]
pub struct RedisReplicationSpec {
    /// Number of members (one primary, the rest replicas), 1..100.
    pub replicas: i32,
    #[serde(flatten)]
    pub template: MemberTemplate,
    /// Credentials; a Secret with key `password` is generated when absent.
    #[serde(default)]
    pub auth: AuthSpec,
    /// Persistent storage of each member.
    #[serde(default)]
    pub storage: StorageSpec,
    /// Extra redis.conf settings. Keys Ordinal manages (port, dir, replicaof,
    /// masterauth, requirepass, …) are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(
        validation = super::common::owned_keys_rule(REDIS_OWNED_KEYS),
        validation = super::common::config_key_rule(),
        validation = super::common::config_value_rule(),
    )]
    #[schemars(extend("maxProperties" = 128, "additionalProperties" = {"type": "string", "maxLength": 4096}))]
    pub config: BTreeMap<String, String>,
    /// Automatic failover.
    #[serde(default)]
    pub failover: FailoverSpec,
    /// Desired primary ordinal; changing it performs a switchover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<i32>,
    /// Durable writes: the primary refuses writes unless enough replicas are
    /// connected and recent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durability: Option<RedisDurability>,
    /// Bootstrap the first member from a backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreSpec>,
    /// Metrics exporter sidecar.
    #[serde(default)]
    pub exporter: ExporterSpec,
}

/// `min-replicas-to-write` / `min-replicas-max-lag` on the primary.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisDurability {
    /// Replicas that must be connected for the primary to accept writes
    /// (at least 1, below `spec.replicas`).
    #[x_kube(validation = Rule::new("self >= 1").message("durability.minReplicasToWrite must be at least 1"))]
    pub min_replicas_to_write: i32,
    /// Seconds since a replica's last acknowledgement for it to count
    /// (default 10, 1..3600).
    #[serde(default = "default_max_lag")]
    #[x_kube(
        validation = Rule::new("self >= 1").message("durability.minReplicasMaxLag must be at least 1"),
        validation = Rule::new("self <= 3600").message("durability.minReplicasMaxLag must be at most 3600"),
    )]
    pub min_replicas_max_lag: i32,
}

fn default_max_lag() -> i32 {
    10
}
