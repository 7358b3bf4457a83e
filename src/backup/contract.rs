//! The contract between the operator and the Jobs and init steps it starts
//! (`ordinal backup …`, `ordinal restore …`): artifact names, environment
//! variable names, where a PVC target is mounted, and the command-line
//! arguments — typed once here, rendered by the Job builders
//! ([`BackupCommand::to_args`], [`RestoreCommand::to_args`]) and parsed by
//! the CLI from the same types. A leaf module: it imports only API types.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use crate::api::MySqlFlavor;
use crate::api::backup::BackupTarget;

/// Artifact of a Redis backup inside its directory.
pub const REDIS_ARTIFACT: &str = "dump.rdb.zst";
/// Artifact of a MySQL/MariaDB backup inside its directory.
pub const MYSQL_ARTIFACT: &str = "dump.ordinal.zst";
/// The manifest written after the artifact was confirmed.
pub const MANIFEST: &str = "manifest.json";

/// Password of the database user a Job logs in as.
pub const ENV_DB_PASSWORD: &str = "ORDINAL_DB_PASSWORD";
/// S3 access key id.
pub const ENV_ACCESS_KEY_ID: &str = "ORDINAL_TARGET_ACCESS_KEY_ID";
/// S3 secret access key.
pub const ENV_SECRET_ACCESS_KEY: &str = "ORDINAL_TARGET_SECRET_ACCESS_KEY";
/// GCS service account JSON key.
pub const ENV_GCS_KEY: &str = "ORDINAL_TARGET_GCS_SERVICE_ACCOUNT_KEY";
/// Azure storage account key.
pub const ENV_AZURE_KEY: &str = "ORDINAL_TARGET_AZURE_ACCESS_KEY";
/// Upper bound of the seconds a request to the target is retried (unset:
/// object_store's default of up to 3 minutes).
pub const ENV_RETRY_SECONDS: &str = "ORDINAL_TARGET_RETRY_SECONDS";
/// Where a Job reports its result (overrides `--termination-log`'s default).
pub const ENV_TERMINATION_LOG: &str = "ORDINAL_TERMINATION_LOG";
/// The pod's IP (downward API), where a throwaway instance listens.
pub const ENV_POD_IP: &str = "POD_IP";
/// Where a PVC target is mounted in Jobs and restore init containers.
pub const PVC_MOUNT: &str = "/backup";
/// Where a restore Job mounts a PVC binlog archive (the base backup's
/// target is at [`PVC_MOUNT`]).
pub const ARCHIVE_MOUNT: &str = "/archive";
/// Prefix replacing `ORDINAL_` in the names of the binlog archive target's
/// credential variables in a restore Job, which reads two targets
/// (`ORDINAL_ARCHIVE_TARGET_ACCESS_KEY_ID`, …).
pub const ARCHIVE_ENV_PREFIX: &str = "ORDINAL_ARCHIVE_";

/// A credential variable's name for the archive target of a restore Job.
pub fn archive_env(name: &str) -> String {
    format!(
        "{ARCHIVE_ENV_PREFIX}{}",
        name.strip_prefix("ORDINAL_").unwrap_or(name)
    )
}

/// Kubernetes' termination message file.
pub const TERMINATION_LOG: &str = "/dev/termination-log";

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum EngineArg {
    Redis,
    Mysql,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum FlavorArg {
    #[value(name = "MariaDB")]
    MariaDb,
    #[value(name = "MySQL")]
    MySql,
}

impl From<FlavorArg> for MySqlFlavor {
    fn from(f: FlavorArg) -> Self {
        match f {
            FlavorArg::MariaDb => MySqlFlavor::MariaDB,
            FlavorArg::MySql => MySqlFlavor::MySQL,
        }
    }
}

impl From<MySqlFlavor> for FlavorArg {
    fn from(f: MySqlFlavor) -> Self {
        match f {
            MySqlFlavor::MariaDB => FlavorArg::MariaDb,
            MySqlFlavor::MySQL => FlavorArg::MySql,
        }
    }
}

/// Where one backup lives; the target is the Backup's `spec.target` as JSON
/// (Secret references only; the values come from the environment).
#[derive(Args, Debug, Clone, PartialEq)]
pub struct Location {
    #[arg(long)]
    pub namespace: String,
    #[arg(long)]
    pub cluster: String,
    #[arg(long)]
    pub backup: String,
    #[arg(long, value_parser = parse_target)]
    pub target: BackupTarget,
    /// Where a PVC target is mounted.
    #[arg(long, default_value = PVC_MOUNT)]
    pub pvc_root: PathBuf,
}

fn parse_target(s: &str) -> Result<BackupTarget, String> {
    serde_json::from_str(s).map_err(|e| format!("--target is not a backup target: {e}"))
}

#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum BackupCommand {
    /// Take one backup and report its manifest.
    Run(RunArgs),
    /// Delete one backup's artifact and manifest.
    Delete(Location),
    /// Check a restored throwaway instance against the manifest, then stop it.
    Verify(VerifyArgs),
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct VerifyArgs {
    #[arg(long, value_enum)]
    pub engine: EngineArg,
    /// Address of the throwaway database (this pod's IP).
    #[arg(long, env = ENV_POD_IP)]
    pub host: String,
    #[arg(long)]
    pub port: u16,
    #[arg(long, default_value = "root")]
    pub user: String,
    #[arg(long, value_enum, default_value = "MariaDB")]
    pub flavor: FlavorArg,
    /// MySQL: the artifact to load and its checksum (Redis was installed by
    /// the restore init step before the server started).
    #[arg(long, value_parser = parse_target)]
    pub target: Option<BackupTarget>,
    #[arg(long)]
    pub artifact: Option<String>,
    #[arg(long)]
    pub sha256: Option<String>,
    #[arg(long, default_value = PVC_MOUNT)]
    pub pvc_root: PathBuf,
    /// MySQL: rows the dump held; the restore must load exactly as many.
    #[arg(long)]
    pub expect_rows: Option<i64>,
    /// How long to wait for the throwaway database to start.
    #[arg(long, default_value_t = 300)]
    pub wait_seconds: u64,
    #[arg(long, env = ENV_TERMINATION_LOG, default_value = TERMINATION_LOG)]
    pub termination_log: PathBuf,
}

impl VerifyArgs {
    /// The artifact to load, when all of `--target`, `--artifact` and
    /// `--sha256` are given.
    pub fn stored(&self) -> Option<ArtifactArgs> {
        Some(ArtifactArgs {
            target: self.target.clone()?,
            artifact: self.artifact.clone()?,
            sha256: self.sha256.clone()?,
            pvc_root: self.pvc_root.clone(),
        })
    }
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct RunArgs {
    #[command(flatten)]
    pub location: Location,
    #[arg(long, value_enum)]
    pub engine: EngineArg,
    /// Member to read from (stable DNS name or address).
    #[arg(long)]
    pub host: String,
    #[arg(long)]
    pub port: u16,
    /// Pod name of that member, for the manifest.
    #[arg(long)]
    pub source_member: String,
    /// MySQL user (the password is in ORDINAL_DB_PASSWORD).
    #[arg(long, default_value = "root")]
    pub user: String,
    #[arg(long, value_enum, default_value = "MariaDB")]
    pub flavor: FlavorArg,
    /// Where the Job reports its result (Kubernetes termination message).
    #[arg(long, env = ENV_TERMINATION_LOG, default_value = TERMINATION_LOG)]
    pub termination_log: PathBuf,
}

/// Port of the archiver's `GET /status` ([`ArchiveReport`] as JSON).
pub const ARCHIVE_STATUS_PORT: u16 = 8090;
/// Path of the archiver's report.
pub const ARCHIVE_STATUS_PATH: &str = "/status";

/// What the archiver reports at `GET /status`: the last segment stored and
/// the last run's error, if the archive is not advancing.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveReport {
    pub last_segment: Option<u64>,
    /// GTID of the last archived transaction.
    pub last_gtid: Option<String>,
    /// GTID position the archive ends at.
    pub position: Option<String>,
    /// Unix seconds of the last archived transaction's commit.
    pub last_commit: Option<i64>,
    /// RFC 3339 time the last segment was stored.
    pub archived_at: Option<String>,
    /// Why the last run failed, until a segment is stored again.
    pub error: Option<String>,
}

/// Continuous binlog archiving (a one-replica Deployment per cluster).
#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum BinlogCommand {
    /// Stream binlogs from a member into the archive until stopped (SIGTERM
    /// stores what is complete), resuming from the last stored segment.
    Archive(ArchiveArgs),
}

/// Which member an archiver reads from.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum ArchiveSourceArg {
    /// A read-only member (a replica) that answers, else the writable one.
    #[value(name = "PreferReplica")]
    PreferReplica,
    /// Only the writable member (the primary).
    #[value(name = "Primary")]
    Primary,
}

impl From<crate::api::mysql::ArchiveSource> for ArchiveSourceArg {
    fn from(s: crate::api::mysql::ArchiveSource) -> Self {
        match s {
            crate::api::mysql::ArchiveSource::PreferReplica => ArchiveSourceArg::PreferReplica,
            crate::api::mysql::ArchiveSource::Primary => ArchiveSourceArg::Primary,
        }
    }
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct ArchiveArgs {
    #[arg(long)]
    pub namespace: String,
    /// The cluster whose binlogs are archived (names the archive directory).
    #[arg(long)]
    pub cluster: String,
    #[arg(long, value_parser = parse_target)]
    pub target: BackupTarget,
    #[arg(long, default_value = PVC_MOUNT)]
    pub pvc_root: PathBuf,
    /// Members (stable DNS names), each a candidate source; repeated.
    #[arg(long = "member", required = true)]
    pub members: Vec<String>,
    #[arg(long, default_value_t = 3306)]
    pub port: u16,
    /// MySQL user (the password is in ORDINAL_DB_PASSWORD).
    #[arg(long, default_value = "root")]
    pub user: String,
    #[arg(long, value_enum, default_value = "MariaDB")]
    pub flavor: FlavorArg,
    #[arg(long, value_enum, default_value = "PreferReplica")]
    pub source: ArchiveSourceArg,
    /// Longest a committed transaction waits before its segment is stored.
    #[arg(long, default_value_t = 60)]
    pub max_delay_seconds: u64,
    /// Uncompressed size at which a segment is cut.
    #[arg(long, default_value_t = 16)]
    pub segment_size_mib: u64,
    /// How often segments no base backup needs are pruned.
    #[arg(long, default_value_t = 600)]
    pub prune_interval_seconds: u64,
    /// Port of `GET /status` (0: none).
    #[arg(long, default_value_t = ARCHIVE_STATUS_PORT)]
    pub status_port: u16,
}

/// Where a restore replays archived binlogs to, after loading the base.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct PointArgs {
    /// Replay every archived transaction committed at or before this RFC
    /// 3339 time.
    #[arg(long, conflicts_with = "gtid")]
    pub point_in_time: Option<String>,
    /// Replay up to and including this GTID.
    #[arg(long)]
    pub gtid: Option<String>,
    /// The binlog archive's target (credentials in ORDINAL_ARCHIVE_* variables).
    #[arg(long, value_parser = parse_target)]
    pub archive_target: Option<BackupTarget>,
    /// The cluster whose archive is read (the backed-up cluster).
    #[arg(long)]
    pub archive_cluster: Option<String>,
    #[arg(long)]
    pub archive_namespace: Option<String>,
    /// Where a PVC archive target is mounted.
    #[arg(long, default_value = ARCHIVE_MOUNT)]
    pub archive_pvc_root: PathBuf,
}

impl Default for PointArgs {
    fn default() -> Self {
        Self {
            point_in_time: None,
            gtid: None,
            archive_target: None,
            archive_cluster: None,
            archive_namespace: None,
            archive_pvc_root: ARCHIVE_MOUNT.into(),
        }
    }
}

impl PointArgs {
    /// Whether binlogs are replayed after the base.
    pub fn requested(&self) -> bool {
        self.point_in_time.is_some() || self.gtid.is_some()
    }
}

#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum RestoreCommand {
    /// Restore a Redis artifact into an empty data directory (an init step).
    Redis(RestoreRedisArgs),
    /// Restore a MySQL/MariaDB artifact into an empty running server.
    Mysql(RestoreMysqlArgs),
}

/// One stored artifact and the checksum it must have.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct ArtifactArgs {
    #[arg(long, value_parser = parse_target)]
    pub target: BackupTarget,
    /// Artifact key relative to the target (the Backup's manifest `artifact`).
    #[arg(long)]
    pub artifact: String,
    /// Expected sha256 of the artifact; a mismatch refuses the restore.
    #[arg(long)]
    pub sha256: String,
    #[arg(long, default_value = PVC_MOUNT)]
    pub pvc_root: PathBuf,
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct RestoreRedisArgs {
    #[command(flatten)]
    pub artifact: ArtifactArgs,
    /// Data directory of the member.
    #[arg(long, default_value = "/data")]
    pub data_dir: PathBuf,
    /// Restore only on this ordinal (the pod's hostname ends with it); others
    /// start empty and replicate.
    #[arg(long, default_value_t = 0)]
    pub only_ordinal: i32,
    /// Restore whatever the hostname (a throwaway verification instance).
    #[arg(long)]
    pub any_member: bool,
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct RestoreMysqlArgs {
    #[command(flatten)]
    pub artifact: ArtifactArgs,
    #[arg(long)]
    pub host: String,
    #[arg(long, default_value_t = 3306)]
    pub port: u16,
    #[arg(long, default_value = "root")]
    pub user: String,
    #[arg(long, value_enum, default_value = "MariaDB")]
    pub flavor: FlavorArg,
    /// Point-in-time recovery: replay archived binlogs after the base.
    #[command(flatten)]
    pub point: Box<PointArgs>,
    /// Where the Job reports a failure (Kubernetes termination message).
    #[arg(long, env = ENV_TERMINATION_LOG, default_value = TERMINATION_LOG)]
    pub termination_log: PathBuf,
}

fn value<T: ValueEnum>(v: T) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

fn path(p: &std::path::Path) -> String {
    p.display().to_string()
}

/// `--name=value` pairs.
struct Argv(Vec<String>);

impl Argv {
    fn new(words: &[&str]) -> Self {
        Self(words.iter().map(|w| w.to_string()).collect())
    }
    fn opt(&mut self, name: &str, value: impl std::fmt::Display) -> &mut Self {
        self.0.push(format!("--{name}={value}"));
        self
    }
    fn flag(&mut self, name: &str, on: bool) -> &mut Self {
        if on {
            self.0.push(format!("--{name}"));
        }
        self
    }
    fn location(&mut self, l: &Location) -> &mut Self {
        self.opt("namespace", &l.namespace)
            .opt("cluster", &l.cluster)
            .opt("backup", &l.backup)
            .opt("target", target_json(&l.target))
            .opt("pvc-root", path(&l.pvc_root))
    }
    fn artifact(&mut self, a: &ArtifactArgs) -> &mut Self {
        self.opt("target", target_json(&a.target))
            .opt("artifact", &a.artifact)
            .opt("sha256", &a.sha256)
            .opt("pvc-root", path(&a.pvc_root))
    }
}

fn target_json(target: &BackupTarget) -> String {
    // A struct of strings and bools always serializes.
    serde_json::to_string(target).unwrap_or_default()
}

impl BackupCommand {
    /// The container arguments that parse back into this command.
    pub fn to_args(&self) -> Vec<String> {
        let mut a;
        match self {
            BackupCommand::Run(r) => {
                a = Argv::new(&["backup", "run"]);
                a.location(&r.location)
                    .opt("engine", value(r.engine))
                    .opt("host", &r.host)
                    .opt("port", r.port)
                    .opt("source-member", &r.source_member)
                    .opt("user", &r.user)
                    .opt("flavor", value(r.flavor))
                    .opt("termination-log", path(&r.termination_log));
            }
            BackupCommand::Delete(l) => {
                a = Argv::new(&["backup", "delete"]);
                a.location(l);
            }
            BackupCommand::Verify(v) => {
                a = Argv::new(&["backup", "verify"]);
                a.opt("engine", value(v.engine))
                    .opt("host", &v.host)
                    .opt("port", v.port)
                    .opt("user", &v.user)
                    .opt("flavor", value(v.flavor));
                if let Some(target) = &v.target {
                    a.opt("target", target_json(target));
                }
                if let Some(artifact) = &v.artifact {
                    a.opt("artifact", artifact);
                }
                if let Some(sha) = &v.sha256 {
                    a.opt("sha256", sha);
                }
                a.opt("pvc-root", path(&v.pvc_root));
                if let Some(rows) = v.expect_rows {
                    a.opt("expect-rows", rows);
                }
                a.opt("wait-seconds", v.wait_seconds)
                    .opt("termination-log", path(&v.termination_log));
            }
        }
        a.0
    }
}

impl RestoreCommand {
    /// The container arguments that parse back into this command.
    pub fn to_args(&self) -> Vec<String> {
        let mut a;
        match self {
            RestoreCommand::Redis(r) => {
                a = Argv::new(&["restore", "redis"]);
                a.artifact(&r.artifact)
                    .opt("data-dir", path(&r.data_dir))
                    .opt("only-ordinal", r.only_ordinal)
                    .flag("any-member", r.any_member);
            }
            RestoreCommand::Mysql(m) => {
                a = Argv::new(&["restore", "mysql"]);
                a.artifact(&m.artifact)
                    .opt("host", &m.host)
                    .opt("port", m.port)
                    .opt("user", &m.user)
                    .opt("flavor", value(m.flavor));
                let p = &m.point;
                if let Some(t) = &p.point_in_time {
                    a.opt("point-in-time", t);
                }
                if let Some(g) = &p.gtid {
                    a.opt("gtid", g);
                }
                if let Some(t) = &p.archive_target {
                    a.opt("archive-target", target_json(t));
                }
                if let Some(c) = &p.archive_cluster {
                    a.opt("archive-cluster", c);
                }
                if let Some(n) = &p.archive_namespace {
                    a.opt("archive-namespace", n);
                }
                a.opt("archive-pvc-root", path(&p.archive_pvc_root))
                    .opt("termination-log", path(&m.termination_log));
            }
        }
        a.0
    }
}

impl BinlogCommand {
    /// The container arguments that parse back into this command.
    pub fn to_args(&self) -> Vec<String> {
        let mut a;
        match self {
            BinlogCommand::Archive(r) => {
                a = Argv::new(&["binlog", "archive"]);
                a.opt("namespace", &r.namespace)
                    .opt("cluster", &r.cluster)
                    .opt("target", target_json(&r.target))
                    .opt("pvc-root", path(&r.pvc_root));
                for m in &r.members {
                    a.opt("member", m);
                }
                a.opt("port", r.port)
                    .opt("user", &r.user)
                    .opt("flavor", value(r.flavor))
                    .opt("source", value(r.source))
                    .opt("max-delay-seconds", r.max_delay_seconds)
                    .opt("segment-size-mib", r.segment_size_mib)
                    .opt("prune-interval-seconds", r.prune_interval_seconds)
                    .opt("status-port", r.status_port);
            }
        }
        a.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::backup::{AzureTarget, PvcTarget, S3Target, SecretKeyRef};
    use clap::Parser;

    /// The two top-level commands as the operator binary declares them.
    #[derive(Parser, Debug)]
    enum Top {
        #[command(subcommand)]
        Backup(BackupCommand),
        #[command(subcommand)]
        Restore(RestoreCommand),
        #[command(subcommand)]
        Binlog(BinlogCommand),
    }

    fn parse(args: Vec<String>) -> Top {
        Top::try_parse_from(std::iter::once("ordinal".to_string()).chain(args))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn key(k: &str) -> SecretKeyRef {
        SecretKeyRef {
            name: "s".into(),
            key: k.into(),
        }
    }

    fn targets() -> Vec<BackupTarget> {
        vec![
            BackupTarget {
                s3: Some(S3Target {
                    bucket: "b".into(),
                    prefix: Some("team a/with = signs".into()),
                    endpoint: Some("http://s3:9000".into()),
                    region: Some("eu-1".into()),
                    force_path_style: true,
                    access_key_id: key("id"),
                    secret_access_key: key("secret"),
                }),
                gcs: None,
                azure: None,
                pvc: None,
            },
            BackupTarget {
                s3: None,
                gcs: None,
                azure: Some(AzureTarget {
                    account: "acct".into(),
                    container: "c".into(),
                    prefix: None,
                    endpoint: Some("http://azurite:10000/acct".into()),
                    access_key: key("k"),
                }),
                pvc: None,
            },
            BackupTarget {
                s3: None,
                gcs: None,
                azure: None,
                pvc: Some(PvcTarget {
                    claim_name: "backups".into(),
                    path: Some("x/y".into()),
                }),
            },
        ]
    }

    #[test]
    fn every_command_round_trips_through_its_arguments() {
        for target in targets() {
            let location = Location {
                namespace: "shop".into(),
                cluster: "cache".into(),
                backup: "nightly-1".into(),
                target: target.clone(),
                pvc_root: "/mnt/b".into(),
            };
            let artifact = ArtifactArgs {
                target: target.clone(),
                artifact: "shop/cache/nightly-1/dump.rdb.zst".into(),
                sha256: "ab".repeat(32),
                pvc_root: PVC_MOUNT.into(),
            };
            let backups = [
                BackupCommand::Run(RunArgs {
                    location: location.clone(),
                    engine: EngineArg::Mysql,
                    host: "cache-1.cache-headless".into(),
                    port: 3306,
                    source_member: "cache-1".into(),
                    user: "operator".into(),
                    flavor: FlavorArg::MySql,
                    termination_log: TERMINATION_LOG.into(),
                }),
                BackupCommand::Delete(location.clone()),
                BackupCommand::Verify(VerifyArgs {
                    engine: EngineArg::Mysql,
                    host: "$(POD_IP)".into(),
                    port: 3306,
                    user: "root".into(),
                    flavor: FlavorArg::MariaDb,
                    target: Some(artifact.target.clone()),
                    artifact: Some(artifact.artifact.clone()),
                    sha256: Some(artifact.sha256.clone()),
                    pvc_root: PVC_MOUNT.into(),
                    expect_rows: Some(42),
                    wait_seconds: 60,
                    termination_log: "/tmp/log".into(),
                }),
                BackupCommand::Verify(VerifyArgs {
                    engine: EngineArg::Redis,
                    host: "10.0.0.1".into(),
                    port: 6379,
                    user: "root".into(),
                    flavor: FlavorArg::MariaDb,
                    target: None,
                    artifact: None,
                    sha256: None,
                    pvc_root: "/elsewhere".into(),
                    expect_rows: None,
                    wait_seconds: 300,
                    termination_log: TERMINATION_LOG.into(),
                }),
            ];
            for cmd in backups {
                match parse(cmd.to_args()) {
                    Top::Backup(back) => assert_eq!(back, cmd),
                    other => panic!("{other:?}"),
                }
            }
            let restores = [
                RestoreCommand::Redis(RestoreRedisArgs {
                    artifact: artifact.clone(),
                    data_dir: "/data".into(),
                    only_ordinal: 0,
                    any_member: true,
                }),
                RestoreCommand::Redis(RestoreRedisArgs {
                    artifact: artifact.clone(),
                    data_dir: "/var/lib/redis".into(),
                    only_ordinal: 2,
                    any_member: false,
                }),
                RestoreCommand::Mysql(RestoreMysqlArgs {
                    artifact: artifact.clone(),
                    host: "db-0.db-headless".into(),
                    port: 3307,
                    user: "root".into(),
                    flavor: FlavorArg::MySql,
                    point: Default::default(),
                    termination_log: TERMINATION_LOG.into(),
                }),
                RestoreCommand::Mysql(RestoreMysqlArgs {
                    artifact,
                    host: "db-0.db-headless".into(),
                    port: 3306,
                    user: "root".into(),
                    flavor: FlavorArg::MariaDb,
                    point: Box::new(PointArgs {
                        point_in_time: Some("2026-12-01T03:04:05.5+01:00".into()),
                        gtid: None,
                        archive_target: Some(target.clone()),
                        archive_cluster: Some("db".into()),
                        archive_namespace: Some("shop".into()),
                        archive_pvc_root: ARCHIVE_MOUNT.into(),
                    }),
                    termination_log: "/tmp/restore-log".into(),
                }),
            ];
            for cmd in restores {
                match parse(cmd.to_args()) {
                    Top::Restore(back) => assert_eq!(back, cmd),
                    other => panic!("{other:?}"),
                }
            }
            for source in [ArchiveSourceArg::PreferReplica, ArchiveSourceArg::Primary] {
                let cmd = BinlogCommand::Archive(ArchiveArgs {
                    namespace: "shop".into(),
                    cluster: "db".into(),
                    target: target.clone(),
                    pvc_root: PVC_MOUNT.into(),
                    members: vec!["db-0.db-headless".into(), "db-1.db-headless".into()],
                    port: 3306,
                    user: "root".into(),
                    flavor: FlavorArg::MySql,
                    source,
                    max_delay_seconds: 5,
                    segment_size_mib: 1,
                    prune_interval_seconds: 60,
                    status_port: 8091,
                });
                match parse(cmd.to_args()) {
                    Top::Binlog(back) => assert_eq!(back, cmd),
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    #[test]
    fn a_restore_to_a_time_and_a_gtid_at_once_is_refused() {
        let args = RestoreCommand::Mysql(RestoreMysqlArgs {
            artifact: ArtifactArgs {
                target: targets()[2].clone(),
                artifact: "a".into(),
                sha256: "ab".repeat(32),
                pvc_root: PVC_MOUNT.into(),
            },
            host: "h".into(),
            port: 3306,
            user: "root".into(),
            flavor: FlavorArg::MariaDb,
            point: Box::new(PointArgs {
                point_in_time: Some("2026-12-01T03:04:05Z".into()),
                gtid: Some("0-1-2".into()),
                ..Default::default()
            }),
            termination_log: TERMINATION_LOG.into(),
        })
        .to_args();
        let err = Top::try_parse_from(std::iter::once("ordinal".to_string()).chain(args))
            .expect_err("exclusive");
        assert!(err.to_string().contains("--gtid"), "{err}");
    }

    #[test]
    fn archive_credentials_have_their_own_names() {
        assert_eq!(
            archive_env(ENV_ACCESS_KEY_ID),
            "ORDINAL_ARCHIVE_TARGET_ACCESS_KEY_ID"
        );
        assert_eq!(
            archive_env(ENV_AZURE_KEY),
            "ORDINAL_ARCHIVE_TARGET_AZURE_ACCESS_KEY"
        );
    }

    #[test]
    fn flavors_convert_both_ways() {
        for f in [MySqlFlavor::MariaDB, MySqlFlavor::MySQL] {
            assert_eq!(MySqlFlavor::from(FlavorArg::from(f)), f);
        }
    }
}
