//! Pieces shared by the cluster resources: storage, pod overrides, auth,
//! failover settings, and the replication status every engine reports.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Persistent storage of each member (one PVC per ordinal, from the StatefulSet's
/// volumeClaimTemplates).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(
        "has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)"
    ).message("storage.storageClassName is immutable"),
    validation = Rule::new(
        "!isQuantity(self.size) || !isQuantity(oldSelf.size) || !quantity(self.size).isLessThan(quantity(oldSelf.size))"
    ).message(kube::core::cel::Message::Expression(
        "'storage.size cannot shrink (from ' + oldSelf.size + ' to ' + self.size + '): volumes only grow'".into()
    )),
)]
pub struct StorageSpec {
    /// Size of each member's volume, a positive Kubernetes quantity such as
    /// `10Gi`. It may grow but never shrink.
    #[serde(default = "default_storage_size")]
    #[x_kube(
        validation = Rule::new("isQuantity(self)").message("storage.size must be a Kubernetes quantity such as 10Gi"),
        validation = Rule::new("!isQuantity(self) || quantity(self).isGreaterThan(quantity('0'))").message("storage.size must be greater than zero"),
    )]
    #[schemars(length(max = 64))]
    pub size: String,
    /// StorageClass of the PVCs; the cluster default when absent. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// What happens to the PVCs when the resource is deleted or scaled down.
    /// Both default to `Retain`: data is never deleted unless asked for.
    #[serde(default)]
    pub retention: PvcRetention,
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            size: default_storage_size(),
            storage_class_name: None,
            retention: PvcRetention::default(),
        }
    }
}

fn default_storage_size() -> String {
    "1Gi".to_string()
}

/// PVC retention on delete and on scale-down.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcRetention {
    /// `Retain` (default) or `Delete` the PVCs when the resource is deleted.
    #[serde(default)]
    pub when_deleted: RetentionPolicy,
    /// `Retain` (default) or `Delete` the PVCs of members removed by a scale-down.
    #[serde(default)]
    pub when_scaled: RetentionPolicy,
}

/// Whether a PVC outlives its member.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RetentionPolicy {
    #[default]
    Retain,
    Delete,
}

impl RetentionPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RetentionPolicy::Retain => "Retain",
            RetentionPolicy::Delete => "Delete",
        }
    }
}

/// Where the credentials live.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Name of a Secret in the same namespace holding the passwords. When absent,
    /// Ordinal generates `<name>-auth` once and never overwrites it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')").message("auth.secretName must be a Secret name (lowercase letters, digits, '-' and '.')"))]
    #[schemars(length(max = 253))]
    pub secret_name: Option<String>,
}

/// Scheduling and metadata overrides merged into every member pod.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodOverrides {
    /// Node labels the pods must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Tolerations added to the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Affinity; replaces Ordinal's default (preferred anti-affinity across nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Topology spread constraints of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    /// PriorityClass of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Extra pod labels (Ordinal's own labels win on conflict).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Extra pod annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Automatic failover of a lost primary.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverSpec {
    /// Promote a replica when the primary is lost (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Seconds the primary must stay unreachable (or not a primary) through the
    /// database protocol before it is declared lost (default 5, 1..300).
    #[serde(default = "default_detection_seconds")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 300").message("failover.detectionSeconds must be between 1 and 300"))]
    pub detection_seconds: i32,
    /// Most data a promoted replica may be missing, measured against the last
    /// position Ordinal observed on the primary. Redis: bytes of replication
    /// stream (default 1048576; 0 with `durability`, so a write a replica
    /// acknowledged is never given up). MySQL/MariaDB: transactions (default 0: the
    /// candidate must hold every transaction seen on the primary). A lost
    /// primary whose best replica is further behind is not replaced; the
    /// reason is reported in status and Events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("failover.maxLag must not be negative"))]
    pub max_lag: Option<i64>,
}

impl Default for FailoverSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            detection_seconds: default_detection_seconds(),
            max_lag: None,
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_detection_seconds() -> i32 {
    5
}

/// A metrics exporter sidecar.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExporterSpec {
    /// Run the exporter sidecar (default false).
    #[serde(default)]
    pub enabled: bool,
    /// Exporter image; a well-known exporter for the engine when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// Bootstrap the first member from a backup.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!(has(self.pointInTime) && has(self.gtid))").message("restore.pointInTime and restore.gtid are mutually exclusive"),
    validation = Rule::new("!has(self.archiveTarget) || has(self.pointInTime) || has(self.gtid)").message("restore.archiveTarget needs restore.pointInTime or restore.gtid"),
)]
pub struct RestoreSpec {
    /// Name of a Succeeded `Backup` in the same namespace.
    #[x_kube(validation = Rule::new("self != ''").message("restore.backup must name a Backup"))]
    #[schemars(length(max = 253))]
    pub backup: String,
    /// MySQLCluster only: after the backup, replay the archived binlogs of
    /// the backed-up cluster up to this time (RFC 3339, e.g.
    /// `2026-12-01T03:04:05Z`; every transaction committed at or before it,
    /// second resolution).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(
        "self.matches('^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$')"
    ).message("restore.pointInTime must be an RFC 3339 time such as 2026-12-01T03:04:05Z"))]
    #[schemars(length(max = 64))]
    pub point_in_time: Option<String>,
    /// MySQLCluster only: replay the archived binlogs up to and including
    /// this GTID (MariaDB `domain-server-seq`, MySQL `uuid:n`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(
        "self.matches('^([0-9]+-[0-9]+-[0-9]+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}:[0-9]+)$')"
    ).message("restore.gtid must be one GTID: domain-server-seq (MariaDB) or uuid:n (MySQL)"))]
    #[schemars(length(max = 64))]
    pub gtid: Option<String>,
    /// Where the binlog archive is; default: the `spec.backup.binlogArchive.target`
    /// of the cluster the Backup was taken from (which must then exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_target: Option<crate::api::backup::BackupTarget>,
}

impl RestoreSpec {
    /// Whether binlogs are replayed after the backup.
    pub fn to_a_point(&self) -> bool {
        self.point_in_time.is_some() || self.gtid.is_some()
    }
}

/// Fields every cluster spec shares; the engine specs embed it flattened.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberTemplate {
    /// Container image of the database; `redis:7.2`, `mariadb:10.11` or
    /// `mysql:8.4` by engine and flavor when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Image pull policy (`Always`, `IfNotPresent`, `Never`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self in ['Always', 'IfNotPresent', 'Never']").message("imagePullPolicy must be Always, IfNotPresent or Never"))]
    pub image_pull_policy: Option<String>,
    /// CPU/memory requests and limits of the database container (at most 6
    /// resources each): quantities not below zero, cpu and memory requests
    /// not above their limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = quantity_map_rule("requests"),
        validation = quantity_map_rule("limits"),
        validation = requests_within_limits_rule("cpu"),
        validation = requests_within_limits_rule("memory"),
    )]
    #[schemars(transform = bound_resource_maps)]
    pub resources: Option<ResourceRequirements>,
    /// Scheduling and metadata overrides of the pods.
    #[serde(default)]
    pub pod: PodOverrides,
}

/// CEL rule: every value of `resources.<map>` is a quantity not below zero.
fn quantity_map_rule(map: &str) -> kube::core::cel::Rule {
    kube::core::cel::Rule::new(format!(
        "!has(self.{map}) || self.{map}.all(k, isQuantity(string(self.{map}[k])) && !quantity(string(self.{map}[k])).isLessThan(quantity('0')))"
    ))
    .message(kube::core::cel::Message::Message(format!(
        "resources.{map} must be Kubernetes quantities not below zero, such as 500m or 1Gi"
    )))
}

/// CEL rule: the request of `resource` does not exceed its limit. Only for
/// cpu and memory: over every key, the API server's cost estimate of the
/// rule exceeds its budget.
fn requests_within_limits_rule(resource: &str) -> kube::core::cel::Rule {
    let request = format!("string(self.requests['{resource}'])");
    let limit = format!("string(self.limits['{resource}'])");
    kube::core::cel::Rule::new(format!(
        "!has(self.requests) || !has(self.limits) || !('{resource}' in self.requests) || !('{resource}' in self.limits) || !isQuantity({request}) || !isQuantity({limit}) || !quantity({request}).isGreaterThan(quantity({limit}))"
    ))
    .message(kube::core::cel::Message::Message(format!(
        "resources.requests.{resource} must not exceed resources.limits.{resource}"
    )))
}

/// Bound the maps and lists inside `resources` so the API server can
/// estimate the cost of the CEL rules over them.
fn bound_resource_maps(schema: &mut schemars::Schema) {
    fn walk(object: &mut serde_json::Map<String, serde_json::Value>) {
        if let Some(props) = object
            .get_mut("properties")
            .and_then(serde_json::Value::as_object_mut)
        {
            for (name, sub) in props.iter_mut() {
                if let Some(sub) = sub.as_object_mut() {
                    match name.as_str() {
                        "requests" | "limits" => {
                            sub.insert("maxProperties".into(), 6.into());
                        }
                        "claims" => {
                            sub.insert("maxItems".into(), 16.into());
                        }
                        _ => {}
                    }
                }
            }
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            if let Some(branches) = object
                .get_mut(key)
                .and_then(serde_json::Value::as_array_mut)
            {
                branches
                    .iter_mut()
                    .filter_map(serde_json::Value::as_object_mut)
                    .for_each(walk);
            }
        }
    }
    if let Some(object) = schema.as_object_mut() {
        walk(object);
    }
}

/// The condition types Ordinal sets on clusters.
pub mod condition {
    pub const READY: &str = "Ready";
    pub const REPLICATION_HEALTHY: &str = "ReplicationHealthy";
    pub const FAILOVER_IN_PROGRESS: &str = "FailoverInProgress";
    pub const CONFIG_VALID: &str = "ConfigValid";
    pub const STORAGE_IN_SYNC: &str = "StorageInSync";
    pub const RESTORED: &str = "Restored";
    /// True while annotation `ordinal.dev/paused: "true"` stops reconciling.
    pub const PAUSED: &str = "Paused";
    pub const UPDATING: &str = "Updating";
    pub const REPLACING: &str = "Replacing";
}

/// Lifecycle phase of a cluster, for humans and printer columns.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ClusterPhase {
    /// Accepted, children not created yet.
    #[default]
    Pending,
    /// Children created, members not all ready or replication not set up yet.
    Provisioning,
    /// Every member ready and replicating from the primary.
    Running,
    /// Serving, but a member is missing, lagging or quarantined.
    Degraded,
    /// A failover or switchover is in progress.
    Reconfiguring,
    /// The spec cannot be applied; see the conditions.
    Failed,
}

/// The role Ordinal observed or assigned to a member.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum MemberRole {
    /// The single writable member.
    Primary,
    /// Replicating from the primary.
    Replica,
    /// Holding data the primary lacks (errant transactions) or otherwise unsafe;
    /// excluded from Services and from promotion until a person decides.
    Quarantined,
    /// Not reachable or not yet classified.
    #[default]
    Unknown,
}

impl MemberRole {
    /// Value of the pod role label, when the member should serve traffic.
    pub fn label(self) -> Option<&'static str> {
        match self {
            MemberRole::Primary => Some("primary"),
            MemberRole::Replica => Some("replica"),
            MemberRole::Quarantined | MemberRole::Unknown => None,
        }
    }
}

/// What Ordinal last observed of one member through the database protocol.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// Ordinal of the pod.
    pub ordinal: i32,
    /// Pod name.
    pub pod: String,
    /// Role as observed (and confirmed) by Ordinal.
    pub role: MemberRole,
    /// Whether the database answered the last probe.
    pub reachable: bool,
    /// Ordinal of the member it replicates from, when it is a replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<i32>,
    /// Whether the replication link to the source is up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_up: Option<bool>,
    /// Redis replication offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// MySQL/MariaDB executed GTID set / position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
    /// Lag behind the primary: bytes (Redis) or seconds (MySQL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<i64>,
    /// Why the member is not healthy, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Kind of a topology change.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum OperationKind {
    Failover,
    Switchover,
}

/// A failover or switchover in progress, persisted after every step so a
/// restarted operator resumes it instead of starting over.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    pub kind: OperationKind,
    /// Primary being replaced.
    pub from: i32,
    /// Member being promoted, once chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<i32>,
    /// Engine-defined step name, e.g. `FenceOldPrimary`, `Promote`, `Repoint`.
    pub step: String,
    /// Term the operation will establish.
    pub term: i64,
    /// When the operation started.
    pub started_at: Time,
    /// When the operation is abandoned (and rolled back where possible).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Time>,
    /// Why it started.
    pub reason: String,
    /// Engine-defined data carried between steps (e.g. the position to wait for).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_operation_data"
    )]
    pub data: Option<OperationData>,
}

/// Data an operation carries between its steps; every field optional, each
/// engine uses the ones it needs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationData {
    /// Replication position to reach (Redis offset, MySQL GTID set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
    /// MySQL: the transactions the chosen candidate received (relay log
    /// included); it is promoted only once it applied all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<String>,
    /// Address (`host:port`) an operation targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Why the operation failed or waits, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl OperationData {
    pub fn position(position: impl Into<String>) -> Self {
        Self {
            position: Some(position.into()),
            ..Default::default()
        }
    }

    pub fn endpoint(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: Some(endpoint.into()),
            ..Default::default()
        }
    }

    pub fn note(note: impl Into<String>) -> Self {
        Self {
            note: Some(note.into()),
            ..Default::default()
        }
    }
}

/// `Operation.data` as an object; the `key=value;` strings older versions
/// persisted are read as no data (the step they belong to starts its wait
/// again).
fn lenient_operation_data<'de, D>(d: D) -> Result<Option<OperationData>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Typed(OperationData),
        Legacy(serde::de::IgnoredAny),
    }
    Ok(match Option::<Either>::deserialize(d)? {
        Some(Either::Typed(t)) => Some(t),
        Some(Either::Legacy(_)) | None => None,
    })
}

/// A member being re-seeded from a dump of the primary; recorded before
/// anything on it is dropped, so a restarted operator seeds it again instead
/// of taking its GTID position (without the data) for the real thing.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReseedRecord {
    /// Ordinal of the member being seeded.
    pub ordinal: i32,
    /// When the re-seed was decided.
    pub started_at: Time,
}

/// A completed primary change.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverRecord {
    /// `Failover` or `Switchover`.
    pub kind: OperationKind,
    /// Ordinal of the replaced primary.
    pub from: i32,
    /// Ordinal of the new primary.
    pub to: i32,
    /// When the change completed.
    pub time: Time,
    /// Why it happened.
    pub reason: String,
}

/// The replication state the engine owns; persisted in status.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationState {
    /// Ordinal of the confirmed primary. Absent until bootstrap confirmed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<i32>,
    /// Increases by one with every primary change; rendered configuration
    /// follows the primary of the current term.
    #[serde(default)]
    pub term: i64,
    /// Operation in progress, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
    /// First time the primary was seen unhealthy in the current streak.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_unhealthy_since: Option<Time>,
    /// Last replication position observed on the primary (Redis offset or
    /// MySQL GTID set), the yardstick for `failover.maxLag`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_position: Option<String>,
    /// Identity of the primary process last seen (Redis run id / MySQL server uuid),
    /// to recognise a primary that came back empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_identity: Option<String>,
    /// Last completed failover or switchover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<FailoverRecord>,
    /// MySQL/MariaDB members whose re-seed is decided and not finished.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reseeds: Vec<ReseedRecord>,
    /// MySQL/MariaDB members a failover replaced as primary that have not
    /// replicated from a later primary since: what such a member holds
    /// beyond the primary was written while it was the primary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replaced_primaries: Vec<i32>,
}

/// The binlog archive as its archiver last reported (MySQLCluster with
/// `spec.backup.binlogArchive`). Polled about twice a minute; written with
/// other status changes, when the archive starts or stops failing, and when
/// its last commit moved into a later ten minutes — not with every segment.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BinlogArchiveStatus {
    /// GTID of the last archived transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_gtid: Option<String>,
    /// GTID position the archive ends at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
    /// Commit time of the last archived transaction (RFC 3339): the latest
    /// `restore.pointInTime` the archive reaches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_commit_time: Option<String>,
    /// When the last segment was stored (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived_at: Option<String>,
    /// Why the archiver's last run failed, until it stores a segment again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Status shared by `RedisReplication` and `MySQLCluster`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// Lifecycle phase.
    #[serde(default)]
    pub phase: ClusterPhase,
    #[serde(flatten)]
    pub replication: ReplicationState,
    /// Members whose pods are Ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Members that exist.
    #[serde(default)]
    pub replicas: i32,
    /// Per-member observation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberStatus>,
    /// Ready, ReplicationHealthy, FailoverInProgress, ConfigValid, StorageInSync.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// sha256 of the credentials Secret's data Ordinal currently uses (changes
    /// when a password is rotated; never the passwords themselves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_hash: Option<String>,
    /// The rolling update Ordinal is driving, while one is needed: members
    /// whose pods run an older StatefulSet revision are restarted one at a
    /// time, replicas first, the primary after a switchover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
    /// A member being wiped and re-seeded (annotation `ordinal.dev/replace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement: Option<ReplacementStatus>,
    /// MySQLCluster: the binlog archive (`spec.backup.binlogArchive`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binlog_archive: Option<BinlogArchiveStatus>,
}

/// A member replacement in progress.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplacementStatus {
    /// The member being replaced.
    pub ordinal: i32,
    /// uid of the volume claim that was deleted (a new claim has another).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_uid: Option<String>,
    pub started_at: Time,
}

/// Where a rolling update stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RolloutPhase {
    /// A member was restarted; waiting until it is back, ready, caught up and replicating.
    Restarting,
    /// Every replica is updated; the primary is being switched over to one of them.
    SwitchingOver,
    /// Waiting for the cluster to be healthy (or for an operation to end) before the next step.
    Waiting,
    /// Stopped by the `ordinal.dev/pause-rollout` annotation.
    Paused,
    /// A member did not come back; the roll does not go past it.
    Stalled,
    /// The new image is older than the running one in a way the engine cannot replicate from.
    Refused,
}

/// A rolling update in progress, persisted so a restarted operator resumes it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// StatefulSet revision the members are rolled to.
    pub revision: String,
    pub phase: RolloutPhase,
    /// Member being restarted (or switched over from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<i32>,
    /// Member being switched over to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switchover_to: Option<i32>,
    /// Members running the revision.
    pub updated: i32,
    /// Members in all.
    pub total: i32,
    /// When the current step (restart of `member`, or the switchover) began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<Time>,
    /// What is happening, in a sentence.
    pub message: String,
}

/// Longest name of a `RedisReplication` or `MySQLCluster`: its StatefulSet
/// (same name) labels every pod `controller-revision-hash=<name>-<hash>` with
/// a hash of up to 10 characters, and a label value holds at most 63. The
/// other derived names (`<name>-headless`, `<name>-primary`, `<name>-read`,
/// pods `<name>-<ordinal>`, Jobs `<name>-restore`) are shorter.
pub const MAX_CLUSTER_NAME: usize = 52;

/// Root CEL rules on a cluster's `metadata.name`: short enough for every
/// derived name, and a DNS-1035 label as Service names must be.
pub fn cluster_name_length_rule() -> kube::core::cel::Rule {
    name_length_rule(
        MAX_CLUSTER_NAME,
        "its pods carry the label controller-revision-hash=<name>-<hash of up to 10 characters>, at most 63 characters",
    )
}

pub fn cluster_name_format_rule() -> kube::core::cel::Rule {
    kube::core::cel::Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message(
        "metadata.name must start with a letter and consist of lowercase letters, digits and '-' (a DNS-1035 label): it names the Services <name>-headless, <name>-primary and <name>-read",
    )
}

/// Root CEL rule: `metadata.name` is at most `max` characters, with the
/// reason (which derived name must fit) in the message.
pub fn name_length_rule(max: usize, why: &str) -> kube::core::cel::Rule {
    // A static message: the API server's cost estimate of a root-level
    // messageExpression exceeds its budget.
    kube::core::cel::Rule::new(format!("self.metadata.name.size() <= {max}")).message(
        kube::core::cel::Message::Message(format!(
            "metadata.name must be at most {max} characters: {why}"
        )),
    )
}

/// Spelling of a config key that case and `_`/`-` variants share.
fn normal_key(key: &str) -> String {
    key.to_ascii_lowercase().replace('_', "-")
}

/// CEL rule refusing `spec.config` keys the operator renders itself (in any
/// case, `_` or `-` spelling), with a message naming the first offending key.
pub fn owned_keys_rule(keys: &[&str]) -> kube::core::cel::Rule {
    let mut normal: Vec<String> = keys.iter().map(|k| normal_key(k)).collect();
    normal.sort();
    normal.dedup();
    let list = normal
        .iter()
        .map(|k| format!("'{k}'"))
        .collect::<Vec<_>>()
        .join(",");
    let owned = format!("k.lowerAscii().replace('_', '-') in [{list}]");
    kube::core::cel::Rule::new(format!("self.all(k, !({owned}))")).message(
        kube::core::cel::Message::Expression(format!(
            "'config key ' + self.filter(k, {owned})[0] + ' is managed by Ordinal and cannot be set in spec.config'"
        )),
    )
}

/// CEL rule: `spec.config` keys are made of letters, digits, `-`, `_`, `.`.
pub fn config_key_rule() -> kube::core::cel::Rule {
    let good = "k.matches('^[A-Za-z0-9._-]+$')";
    kube::core::cel::Rule::new(format!("self.all(k, {good})")).message(
        kube::core::cel::Message::Expression(format!(
            "'config key ' + self.filter(k, !{good})[0] + ' in spec.config must consist of letters, digits, -, _ and .'"
        )),
    )
}

/// CEL rule: `spec.config` values are single lines (a newline would inject
/// a setting of its own into the rendered file).
pub fn config_value_rule() -> kube::core::cel::Rule {
    let bad = r"self[k].matches('[\\x00-\\x1f\\x7f-\\x9f]')";
    kube::core::cel::Rule::new(format!("self.all(k, !{bad})")).message(
        kube::core::cel::Message::Expression(format!(
            "'config value of ' + self.filter(k, {bad})[0] + ' in spec.config must be a single line without control characters'"
        )),
    )
}
