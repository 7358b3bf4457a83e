//! `MySQLCluster`: one primary and N-1 GTID replicas of MySQL or MariaDB.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::backup::BackupTarget;
use super::common::{
    AuthSpec, ClusterStatus, ExporterSpec, FailoverSpec, MemberTemplate, RestoreSpec, StorageSpec,
};

/// my.cnf keys Ordinal renders itself (both spellings); users may not set them.
pub const MYSQL_OWNED_KEYS: &[&str] = &[
    "port",
    "bind-address",
    "bind_address",
    "datadir",
    "socket",
    "server-id",
    "server_id",
    "log-bin",
    "log_bin",
    "log-basename",
    "log_basename",
    "gtid-mode",
    "gtid_mode",
    "enforce-gtid-consistency",
    "enforce_gtid_consistency",
    "gtid-strict-mode",
    "gtid_strict_mode",
    "gtid-domain-id",
    "gtid_domain_id",
    "read-only",
    "read_only",
    "super-read-only",
    "super_read_only",
    "report-host",
    "report_host",
    "relay-log-recovery",
    "relay_log_recovery",
    "log-slave-updates",
    "log_slave_updates",
    "log-replica-updates",
    "log_replica_updates",
    "skip-slave-start",
    "skip_slave_start",
    "skip-replica-start",
    "skip_replica_start",
    "rpl-semi-sync-master-enabled",
    "rpl_semi_sync_master_enabled",
    "rpl-semi-sync-slave-enabled",
    "rpl_semi_sync_slave_enabled",
    "rpl-semi-sync-source-enabled",
    "rpl_semi_sync_source_enabled",
    "rpl-semi-sync-replica-enabled",
    "rpl_semi_sync_replica_enabled",
];

/// Server family; decides the SQL dialect and rendered settings.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum MySqlFlavor {
    #[default]
    MariaDB,
    MySQL,
}

/// How commits wait for replicas.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ReplicationMode {
    /// Commits return before any replica has them.
    #[default]
    Async,
    /// Lossless semi-synchronous (AFTER_SYNC): a commit returns only once
    /// `waitForReplicas` replicas hold it.
    SemiSync,
}

/// Replication settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MySqlReplication {
    /// `Async` (default) or lossless `SemiSync`.
    #[serde(default)]
    pub mode: ReplicationMode,
    /// Replicas that must acknowledge a commit in SemiSync mode (default 1).
    #[serde(default = "default_wait_for")]
    #[x_kube(
        validation = Rule::new("self >= 1").message("replication.waitForReplicas must be at least 1"),
        validation = Rule::new("self <= 99").message("replication.waitForReplicas must be at most 99"),
    )]
    pub wait_for_replicas: i32,
    /// Milliseconds a commit waits for acknowledgements. Only meaningful when
    /// `allowAsyncFallback` is true; otherwise commits wait indefinitely and
    /// nothing is acknowledged that a replica does not hold. 1..4294967295.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 4294967295").message("replication.timeoutMillis must be between 1 and 4294967295"))]
    pub timeout_millis: Option<i64>,
    /// Let the primary fall back to asynchronous replication after the timeout
    /// (default false: no silent fallback).
    #[serde(default)]
    pub allow_async_fallback: bool,
}

impl Default for MySqlReplication {
    fn default() -> Self {
        Self {
            mode: ReplicationMode::Async,
            wait_for_replicas: 1,
            timeout_millis: None,
            allow_async_fallback: false,
        }
    }
}

/// Backup settings of a MySQL/MariaDB cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MySqlBackupSpec {
    /// Stream every committed transaction's binlog events to a target, so a
    /// new cluster can be restored to any point after a base `Backup`
    /// (`spec.restore.pointInTime` / `spec.restore.gtid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binlog_archive: Option<Box<BinlogArchiveSpec>>,
}

/// Which member the archiver reads binlogs from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ArchiveSource {
    /// A replica when one answers, else the primary (default): the archive
    /// costs the primary nothing while replicas run.
    #[default]
    PreferReplica,
    /// Always the primary: nothing is archived later than it committed.
    Primary,
}

/// Continuous binlog archiving (a one-replica Deployment running
/// `ordinal binlog archive`): segments of whole transactions, zstd, with a
/// sha256 manifest each, under `<prefix>/<namespace>/<cluster>/binlog/` of
/// the target. It resumes from the last stored segment; segments every
/// base backup on the same target no longer needs are pruned.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BinlogArchiveSpec {
    /// Where segments go (same shape as a Backup's target; keep base backups
    /// on the same target and prefix so retention follows them).
    pub target: BackupTarget,
    /// Longest a committed transaction waits before it is stored, 1..3600
    /// seconds (default 60): the most a restore to "now" can miss.
    #[serde(default = "default_max_delay")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 3600").message("binlogArchive.maxDelaySeconds must be between 1 and 3600"))]
    pub max_delay_seconds: i32,
    /// Segment size (uncompressed) at which a segment is cut, 1..1024 MiB
    /// (default 16).
    #[serde(default = "default_segment_mib")]
    #[serde(rename = "segmentSizeMiB")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1024").message("binlogArchive.segmentSizeMiB must be between 1 and 1024"))]
    pub segment_size_mib: i32,
    /// `PreferReplica` (default) or `Primary`.
    #[serde(default)]
    pub source: ArchiveSource,
}

fn default_max_delay() -> i32 {
    60
}

fn default_segment_mib() -> i32 {
    16
}

fn default_wait_for() -> i32 {
    1
}

fn default_server_id_base() -> i64 {
    100
}

/// A replicated MySQL or MariaDB: one primary, GTID replicas, managed by Ordinal.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ordinal.dev",
    version = "v1alpha1",
    kind = "MySQLCluster",
    plural = "mysqlclusters",
    namespaced,
    status = "ClusterStatus",
    shortname = "myc",
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
    validation = Rule::new("self.serverIdBase == oldSelf.serverIdBase").message("spec.serverIdBase is immutable"),
    validation = Rule::new("self.flavor == oldSelf.flavor").message("spec.flavor is immutable"),
    validation = Rule::new("self.replication.mode != 'SemiSync' || self.replication.waitForReplicas < self.replicas").message("replication.waitForReplicas must be below spec.replicas in SemiSync mode"),
)]
#[serde(rename_all = "camelCase")]
pub struct MySQLClusterSpec {
    /// Number of members (one primary, the rest replicas), 1..100.
    pub replicas: i32,
    /// `MariaDB` (default) or `MySQL` (8.0.23+ / 8.4). Immutable.
    #[serde(default)]
    pub flavor: MySqlFlavor,
    #[serde(flatten)]
    pub template: MemberTemplate,
    /// Credentials; a Secret with `root-password`, `replication-password` and
    /// `operator-password` is generated when absent.
    #[serde(default)]
    pub auth: AuthSpec,
    /// Persistent storage of each member.
    #[serde(default)]
    pub storage: StorageSpec,
    /// Extra my.cnf settings under `[mysqld]`. Keys Ordinal manages
    /// (server-id, log-bin, gtid settings, read_only, …) are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(
        validation = super::common::owned_keys_rule(MYSQL_OWNED_KEYS),
        validation = super::common::config_key_rule(),
        validation = super::common::config_value_rule(),
    )]
    #[schemars(extend("maxProperties" = 128, "additionalProperties" = {"type": "string", "maxLength": 4096}))]
    pub config: BTreeMap<String, String>,
    /// server-id of ordinal N is `serverIdBase + N` (default 100). Immutable.
    #[serde(default = "default_server_id_base")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 4294967000").message("spec.serverIdBase must be between 1 and 4294967000"))]
    pub server_id_base: i64,
    /// Asynchronous or lossless semi-synchronous replication.
    #[serde(default)]
    pub replication: MySqlReplication,
    /// Automatic failover.
    #[serde(default)]
    pub failover: FailoverSpec,
    /// Desired primary ordinal; changing it performs a switchover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<i32>,
    /// Bootstrap the first member from a backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreSpec>,
    /// Continuous backup settings (binlog archiving for point-in-time recovery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<MySqlBackupSpec>,
    /// Metrics exporter sidecar.
    #[serde(default)]
    pub exporter: ExporterSpec,
}
