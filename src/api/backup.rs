//! `Backup` (one run, like a Job) and `BackupSchedule` (like a CronJob).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Longest `Backup` name: its Jobs `<name>-backup`, `<name>-verify` and
/// `<name>-delete` must fit 63 characters (a Job's name is also a label value).
pub const MAX_BACKUP_NAME: usize = 56;

/// Longest `BackupSchedule` name: its Backups are `<name>-<unix time>` (10
/// digits) and must fit [`MAX_BACKUP_NAME`].
pub const MAX_SCHEDULE_NAME: usize = MAX_BACKUP_NAME - 11;

/// CEL rule: the time zone is one the operator knows (its tz database).
fn time_zone_rule() -> kube::core::cel::Rule {
    let zones = chrono_tz::TZ_VARIANTS
        .iter()
        .map(|tz| format!("'{}'", tz.name()))
        .collect::<Vec<_>>()
        .join(",");
    kube::core::cel::Rule::new(format!("self in [{zones}]")).message(
        kube::core::cel::Message::Expression(
            "'timeZone ' + self + ' is not an IANA time zone name such as Europe/Berlin, America/New_York or UTC'".into(),
        ),
    )
}

/// CEL rules for the cron syntax the operator's parser accepts: 5 fields
/// (or a nickname), each field's values in range, ranges ascending.
pub mod cron {
    use kube::core::cel::{Message, Rule};

    const NICKNAME: &str = "(?i)^ *@(yearly|annually|monthly|weekly|daily|hourly) *$";
    const FIVE: &str = "^ *[^ ]+( +[^ ]+){4} *$";
    const STEP: &str = "/[1-9][0-9]{0,3}";

    struct Field {
        name: &'static str,
        value: &'static str,
        /// Items allowed besides values, ranges and steps.
        extra: &'static str,
        /// Whole-field alternatives.
        whole: &'static str,
        allowed: &'static str,
    }

    const FIELDS: [Field; 5] = [
        Field {
            name: "minute (1st)",
            value: "[0-5]?[0-9]",
            extra: "",
            whole: "",
            allowed: "0-59",
        },
        Field {
            name: "hour (2nd)",
            value: "[01]?[0-9]|2[0-3]",
            extra: "",
            whole: "",
            allowed: "0-23",
        },
        Field {
            name: "day-of-month (3rd)",
            value: "0?[1-9]|[12][0-9]|3[01]",
            extra: "|L|LW|(0?[1-9]|[12][0-9]|3[01])W",
            whole: r"|\\?",
            allowed: "1-31, L, LW, nW or ?",
        },
        Field {
            name: "month (4th)",
            value: "0?[1-9]|1[0-2]|JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC",
            extra: "",
            whole: "",
            allowed: "1-12 or JAN-DEC",
        },
        Field {
            name: "day-of-week (5th)",
            value: "0?[0-7]|SUN|MON|TUE|WED|THU|FRI|SAT",
            extra: "|L|(0?[0-7]|SUN|MON|TUE|WED|THU|FRI|SAT)(L|#[1-5])",
            whole: r"|\\?",
            allowed: "0-7 or SUN-SAT, nL, n#k or ?",
        },
    ];

    /// Regex of one field: a comma list of `*`, `*/s`, `v`, `a-b`, `a-b/s`
    /// and the field's extras.
    fn field_regex(f: &Field) -> String {
        let v = f.value;
        let item = format!(r"\\*({STEP})?|({v})-({v})({STEP})?|{v}{}", f.extra);
        format!("(({item})(,({item}))*{})", f.whole)
    }

    /// The schedule is 5 space-separated fields or a nickname.
    pub fn shape_rule() -> Rule {
        Rule::new(format!(
            "self.trim() == '' || self.matches('{FIVE}') || self.matches('{NICKNAME}')"
        ))
        .message(
            "schedule must be a cron expression of 5 fields (minute hour day-of-month month day-of-week, e.g. '0 2 * * *') or @hourly, @daily, @weekly, @monthly, @yearly",
        )
    }

    /// Field `index` (0 = minute) of a 5-field schedule is in range.
    pub fn field_rule(index: usize) -> Rule {
        let f = &FIELDS[index];
        let before = "[^ ]+ +".repeat(index);
        let after = if index == 4 { " *$" } else { " " };
        let regex = format!("(?i)^ *{before}{}{after}", field_regex(f));
        Rule::new(format!("!self.matches('{FIVE}') || self.matches('{regex}')")).message(
            Message::Message(format!(
                "schedule: the {} field must be *, values {}, lists a,b, ranges a-b or steps */n and a-b/n",
                f.name, f.allowed
            )),
        )
    }

    /// The schedule with month and weekday names replaced by their numbers
    /// as the operator's parser does (`-SUN` ending a range is 7).
    fn numbered() -> String {
        let mut expr = "self.upperAscii().replace('-SUN', '-7')".to_string();
        for (i, day) in ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
            .iter()
            .enumerate()
        {
            expr.push_str(&format!(".replace('{day}', '{i}')"));
        }
        let months = [
            "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
        ];
        for (i, month) in months.iter().enumerate() {
            expr.push_str(&format!(".replace('{month}', '{}')", i + 1));
        }
        expr
    }

    /// Ranges `a-b` ascend (names count as their numbers).
    pub fn range_rule() -> Rule {
        let ranges = format!("{}.findAll('[0-9]{{1,4}}-[0-9]{{1,4}}')", numbered());
        let ascending = "int(r.split('-')[0]) <= int(r.split('-')[1])";
        Rule::new(format!("{ranges}.all(r, {ascending})")).message(Message::Expression(format!(
            "'schedule: range ' + {ranges}.filter(r, !({ascending}))[0] + ' must ascend (a-b with a <= b; names count as their numbers)'"
        )))
    }
}

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
    /// Base URL of a GCS-compatible server (an emulator or a private
    /// endpoint, e.g. `http://fake-gcs:4443`); Google Cloud Storage when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
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
    /// Blob service URL including the account, for Azurite or a private
    /// endpoint (e.g. `http://azurite:10000/devstoreaccount1`);
    /// `https://<account>.blob.core.windows.net` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
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
    validation = super::common::name_length_rule(MAX_BACKUP_NAME, "its Jobs are named <name>-backup, <name>-verify and <name>-delete, at most 63 characters"),
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
    /// Seconds the backup may run before it is Failed (default 3600,
    /// 1..604800).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 604800").message("timeoutSeconds must be between 1 and 604800 (7 days)"))]
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
    /// Keep at most this many successful backups (and their artifacts), 1..1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = Rule::new("self >= 1").message("retention.keepLast must be at least 1"),
        validation = Rule::new("self <= 1000").message("retention.keepLast must be at most 1000"),
    )]
    pub keep_last: Option<i32>,
    /// Delete backups older than this duration, e.g. `168h` (greater than zero).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = Rule::new("self.matches('^([0-9]{1,9}(s|m|h|d))+$')").message("retention.maxAge must be a duration such as 30d or 168h"),
        validation = Rule::new("!self.matches('^([0-9]{1,9}(s|m|h|d))+$') || self.matches('[1-9]')").message("retention.maxAge must be greater than zero"),
    )]
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
    validation = super::common::name_length_rule(MAX_SCHEDULE_NAME, "its Backups are named <name>-<10-digit unix time>, at most 56 characters"),
    cel
)]
#[serde(rename_all = "camelCase")]
pub struct BackupScheduleSpec {
    /// Cron expression of 5 fields (minute hour day-of-month month
    /// day-of-week, as in CronJob) or `@hourly`, `@daily`, `@weekly`,
    /// `@monthly`, `@yearly`.
    #[x_kube(
        validation = Rule::new("self.trim() != ''").message("schedule must not be empty"),
        validation = cron::shape_rule(),
        validation = cron::field_rule(0),
        validation = cron::field_rule(1),
        validation = cron::field_rule(2),
        validation = cron::field_rule(3),
        validation = cron::field_rule(4),
        validation = cron::range_rule(),
    )]
    #[schemars(length(max = 128))]
    pub schedule: String,
    /// IANA time zone of the schedule, e.g. `Europe/Berlin` (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = time_zone_rule())]
    #[schemars(length(max = 64))]
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
    /// `retention.keepLast` applies (default 3, 1..1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1000").message("successfulBackupsHistoryLimit must be between 1 and 1000"))]
    pub successful_backups_history_limit: Option<i32>,
    /// Failed Backup objects kept (default 1, 0..1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 1000").message("failedBackupsHistoryLimit must be between 0 and 1000"))]
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
