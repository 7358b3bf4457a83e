//! `Backup` (one run, like a Job) and `BackupSchedule` (like a CronJob).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Kind of the cluster a backup reads from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ClusterKind {
    RedisReplication,
    MySQLCluster,
}

/// The cluster a backup reads from (same namespace).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRef {
    /// `RedisReplication` or `MySQLCluster`.
    pub kind: ClusterKind,
    /// Name of the cluster.
    #[x_kube(validation = Rule::new("self != ''").message("cluster.name must not be empty"))]
    pub name: String,
}

/// A key of a Secret in the backup's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    pub name: String,
    /// Key in the Secret's data.
    pub key: String,
}

/// An S3-compatible bucket.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Target {
    /// Bucket name.
    #[x_kube(validation = Rule::new("self != ''").message("s3.bucket must not be empty"))]
    pub bucket: String,
    /// Key prefix of the artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Endpoint URL for S3-compatible stores; AWS when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Region (default `us-east-1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Use path-style addressing (most S3-compatible servers need it).
    #[serde(default)]
    pub force_path_style: bool,
    /// Access key id.
    pub access_key_id: SecretKeyRef,
    /// Secret access key.
    pub secret_access_key: SecretKeyRef,
}

/// A Google Cloud Storage bucket.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GcsTarget {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix of the artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Service account JSON key.
    pub service_account_key: SecretKeyRef,
}

/// An Azure Blob Storage container.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureTarget {
    /// Storage account name.
    pub account: String,
    /// Blob container name.
    pub container: String,
    /// Blob name prefix of the artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Storage account access key.
    pub access_key: SecretKeyRef,
}

/// A directory on a PersistentVolumeClaim.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcTarget {
    /// Name of the PVC in the backup's namespace.
    #[x_kube(validation = Rule::new("self != ''").message("pvc.claimName must not be empty"))]
    pub claim_name: String,
    /// Directory inside the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// Where artifacts go: exactly one of `s3`, `gcs`, `azure`, `pvc`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "(has(self.s3) ? 1 : 0) + (has(self.gcs) ? 1 : 0) + (has(self.azure) ? 1 : 0) + (has(self.pvc) ? 1 : 0) == 1"
).message("target must set exactly one of s3, gcs, azure, pvc"))]
pub struct BackupTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Target>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs: Option<GcsTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc: Option<PvcTarget>,
}

/// What happens to the artifact when its Backup object is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ArtifactPolicy {
    /// Keep the artifact (default).
    #[default]
    Retain,
    /// Delete the artifact with the Backup.
    Delete,
}

/// One backup run of a cluster.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ordinal.dev",
    version = "v1alpha1",
    kind = "Backup",
    namespaced,
    status = "BackupStatus",
    shortname = "obk",
    category = "ordinal",
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".spec.cluster.name"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Size","type":"integer","format":"int64","jsonPath":".status.sizeBytes"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    cel
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("a Backup's spec is immutable; create a new Backup"))]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// The cluster to back up.
    pub cluster: ClusterRef,
    /// Where the artifact goes.
    pub target: BackupTarget,
    /// Restore the artifact into a throwaway instance and compare it with the
    /// manifest before reporting `Verified`.
    #[serde(default)]
    pub verify: bool,
    /// `Retain` (default) or `Delete` the artifact when this object is deleted.
    #[serde(default)]
    pub artifact_policy: ArtifactPolicy,
    /// Seconds the backup may run before it is Failed (default 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
}

/// Phase of a backup run.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum BackupPhase {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
}

/// What a backup produced.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// Pending, Running, Succeeded (the store confirmed the artifact and the
    /// manifest was written) or Failed.
    #[serde(default)]
    pub phase: BackupPhase,
    /// When the backup Job was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the backup Succeeded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Location of the artifact (no credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    /// Size of the stored (compressed) artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    /// sha256 of the stored artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Replication position of the snapshot: Redis offset or MySQL GTID set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
    /// MySQL/MariaDB: rows in the dump (a verification restore must find as many).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<i64>,
    /// Member the backup was read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// What happened, in a sentence (the failure reason when Failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `Verified` when `spec.verify` is set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Whether a new run may start while one is still running.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ConcurrencyPolicy {
    #[default]
    Forbid,
    Allow,
}

fn delete_artifacts() -> ArtifactPolicy {
    ArtifactPolicy::Delete
}

/// Which backups to keep.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionSpec {
    /// Keep at most this many successful backups (and their artifacts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("retention.keepLast must be at least 1"))]
    pub keep_last: Option<i32>,
    /// Delete backups older than this duration, e.g. `168h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(s|m|h|d))+$')").message("retention.maxAge must be a duration such as 30d or 168h"))]
    #[schemars(length(max = 32))]
    pub max_age: Option<String>,
}

/// Backups of a cluster on a cron schedule.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ordinal.dev",
    version = "v1alpha1",
    kind = "BackupSchedule",
    namespaced,
    status = "BackupScheduleStatus",
    shortname = "obs",
    category = "ordinal",
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".spec.cluster.name"}"#,
    printcolumn = r#"{"name":"Schedule","type":"string","jsonPath":".spec.schedule"}"#,
    printcolumn = r#"{"name":"Suspend","type":"boolean","jsonPath":".spec.suspend"}"#,
    printcolumn = r#"{"name":"Last","type":"date","jsonPath":".status.lastScheduleTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    cel
)]
#[serde(rename_all = "camelCase")]
pub struct BackupScheduleSpec {
    /// Cron expression (5 fields, as in CronJob).
    #[x_kube(validation = Rule::new("self.trim() != ''").message("schedule must not be empty"))]
    #[schemars(length(max = 128))]
    pub schedule: String,
    /// IANA time zone of the schedule (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Stop creating new backups.
    #[serde(default)]
    pub suspend: bool,
    /// `Forbid` (default) or `Allow` overlapping runs.
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    /// The cluster to back up.
    pub cluster: ClusterRef,
    /// Where artifacts go.
    pub target: BackupTarget,
    /// Verify every backup by restoring it.
    #[serde(default)]
    pub verify: bool,
    /// Artifact policy of the Backups created: `Delete` (default) removes an
    /// artifact when retention removes its Backup; `Retain` keeps it.
    #[serde(default = "delete_artifacts")]
    pub artifact_policy: ArtifactPolicy,
    /// Which successful backups to keep (default: the last 3).
    #[serde(default)]
    pub retention: RetentionSpec,
    /// Successful Backup objects kept; the smaller of this and
    /// `retention.keepLast` applies (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successful_backups_history_limit: Option<i32>,
    /// Failed Backup objects kept (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_backups_history_limit: Option<i32>,
}

/// What the schedule last did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupScheduleStatus {
    /// Scheduled time of the last Backup created (or run skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// Newest Backup of this schedule that Succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_backup: Option<String>,
    /// When the next Backup is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// Backups of this schedule still Pending or Running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<String>,
    /// `Scheduling` (True while the schedule is valid and running).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
