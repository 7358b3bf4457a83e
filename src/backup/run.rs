//! What backup Jobs and restore steps run (`ordinal backup …`,
//! `ordinal restore …`): the engines' streaming dumps into a target, the
//! manifest reported through the termination message, artifact deletion, and
//! restores that verify the checksum before anything is applied.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use chrono::Utc;
use clap::{Args, Subcommand, ValueEnum};

use super::artifact::{self, DumpReport, FORMAT_VERSION, Manifest};
use super::target::{self, PVC_MOUNT, Target, TargetCredentials};
use crate::api::MySqlFlavor;
use crate::api::backup::BackupTarget;

/// Artifact names inside a backup's directory.
pub const REDIS_ARTIFACT: &str = "dump.rdb.zst";
pub const MYSQL_ARTIFACT: &str = "dump.ordinal.zst";

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

/// Where the artifact lives; the target is the Backup's `spec.target` as JSON
/// (Secret references only; the values come from the environment).
#[derive(Args, Debug, Clone)]
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

#[derive(Subcommand, Debug)]
pub enum BackupCommand {
    /// Take one backup and report its manifest.
    Run(RunArgs),
    /// Delete one backup's artifact and manifest.
    Delete(Location),
}

#[derive(Args, Debug)]
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
    #[arg(
        long,
        env = "ORDINAL_TERMINATION_LOG",
        default_value = "/dev/termination-log"
    )]
    pub termination_log: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum RestoreCommand {
    /// Restore a Redis artifact into an empty data directory (an init step).
    Redis(RestoreRedisArgs),
    /// Restore a MySQL/MariaDB artifact into an empty running server.
    Mysql(RestoreMysqlArgs),
}

#[derive(Args, Debug)]
pub struct RestoreSource {
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

#[derive(Args, Debug)]
pub struct RestoreRedisArgs {
    #[command(flatten)]
    pub source: RestoreSource,
    /// Data directory of the member.
    #[arg(long, default_value = "/data")]
    pub data_dir: PathBuf,
    /// Restore only on this ordinal (the pod's hostname ends with it); others
    /// start empty and replicate.
    #[arg(long, default_value_t = 0)]
    pub only_ordinal: i32,
}

#[derive(Args, Debug)]
pub struct RestoreMysqlArgs {
    #[command(flatten)]
    pub source: RestoreSource,
    #[arg(long)]
    pub host: String,
    #[arg(long, default_value_t = 3306)]
    pub port: u16,
    #[arg(long, default_value = "root")]
    pub user: String,
    #[arg(long, value_enum, default_value = "MariaDB")]
    pub flavor: FlavorArg,
}

fn password() -> anyhow::Result<String> {
    std::env::var(super::job::ENV_DB_PASSWORD).context("ORDINAL_DB_PASSWORD is not set")
}

fn open_target(t: &BackupTarget, pvc_root: &Path) -> anyhow::Result<Target> {
    Ok(target::open(t, &TargetCredentials::from_env(), pvc_root)?)
}

/// Write the Job's result where Kubernetes reports it (best effort: the file
/// exists only inside a pod).
fn report(path: &Path, text: &str) {
    if let Err(e) = std::fs::write(path, text) {
        tracing::debug!(path = %path.display(), error = %e, "no termination log");
    }
}

pub async fn backup(cmd: BackupCommand) -> anyhow::Result<()> {
    match cmd {
        BackupCommand::Run(args) => {
            let log = args.termination_log.clone();
            match run_backup(&args).await {
                Ok(manifest) => {
                    let json = serde_json::to_string(&manifest).context("manifest")?;
                    report(&log, &json);
                    println!("{json}");
                    Ok(())
                }
                Err(e) => {
                    report(&log, &format!("{e:#}"));
                    Err(e)
                }
            }
        }
        BackupCommand::Delete(loc) => {
            let target = open_target(&loc.target, &loc.pvc_root)?;
            let dir = target::backup_dir(&target.prefix, &loc.namespace, &loc.cluster, &loc.backup);
            let n = artifact::delete(&target, &dir).await?;
            if let Some(pvc) = &loc.target.pvc {
                // A directory is not an object: remove the emptied one too.
                let base = loc
                    .pvc_root
                    .join(pvc.path.as_deref().unwrap_or_default().trim_matches('/'));
                let _ = std::fs::remove_dir(
                    base.join(&loc.namespace)
                        .join(&loc.cluster)
                        .join(&loc.backup),
                );
            }
            println!("deleted {n} objects under {}/{dir}", target.location);
            Ok(())
        }
    }
}

async fn run_backup(args: &RunArgs) -> anyhow::Result<Manifest> {
    let loc = &args.location;
    let target = open_target(&loc.target, &loc.pvc_root)?;
    let dir = target::backup_dir(&target.prefix, &loc.namespace, &loc.cluster, &loc.backup);
    let password = password()?;
    let (engine, name) = match args.engine {
        EngineArg::Redis => ("redis", REDIS_ARTIFACT),
        EngineArg::Mysql => ("mysql", MYSQL_ARTIFACT),
    };
    let describe = |r: &DumpReport, path: &object_store::path::Path| Manifest {
        format_version: FORMAT_VERSION,
        engine: engine.into(),
        namespace: loc.namespace.clone(),
        cluster: loc.cluster.clone(),
        backup: loc.backup.clone(),
        artifact: path.to_string(),
        location: target.location.clone(),
        size_bytes: r.compressed_bytes as i64,
        raw_bytes: r.raw_bytes as i64,
        sha256: r.sha256.clone(),
        position: r.position.clone(),
        source: args.source_member.clone(),
        completed_at: Utc::now().to_rfc3339(),
    };
    let manifest = match args.engine {
        EngineArg::Redis => {
            let source = crate::redis::backup::BackupSource {
                host: args.host.clone(),
                port: args.port,
                password: Some(password),
            };
            let dump = async |w: artifact::Sink<'_>| {
                let opts = crate::redis::backup::BackupOptions::default();
                let r = crate::redis::backup_rdb(&source, w, &opts)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(DumpReport {
                    raw_bytes: r.raw_bytes,
                    compressed_bytes: r.compressed_bytes,
                    sha256: r.sha256,
                    position: format!("{}:{}", r.replid, r.offset),
                })
            };
            artifact::upload(&target, &dir, name, dump, describe).await?
        }
        EngineArg::Mysql => {
            let source = crate::mysql::backup::Endpoint {
                host: args.host.clone(),
                port: args.port,
                login: crate::mysql::observe::Login {
                    user: args.user.clone(),
                    password,
                },
                flavor: args.flavor.into(),
            };
            let dump = async |w: artifact::Sink<'_>| {
                let opts = crate::mysql::backup::BackupOptions::default();
                let r = crate::mysql::backup::backup(&source, w, &opts)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(DumpReport {
                    raw_bytes: r.raw_size,
                    compressed_bytes: r.size,
                    sha256: r.sha256,
                    position: r.gtid,
                })
            };
            artifact::upload(&target, &dir, name, dump, describe).await?
        }
    };
    Ok(manifest)
}

pub async fn restore(cmd: RestoreCommand) -> anyhow::Result<()> {
    match cmd {
        RestoreCommand::Redis(args) => {
            check_sha(&args.source.sha256)?;
            let ordinal = hostname_ordinal();
            if ordinal != Some(args.only_ordinal) {
                println!(
                    "ordinal {ordinal:?} starts empty and replicates; restore runs on ordinal {}",
                    args.only_ordinal
                );
                return Ok(());
            }
            if has_data(&args.data_dir)? {
                println!(
                    "{} already holds data; nothing restored",
                    args.data_dir.display()
                );
                return Ok(());
            }
            let target = open_target(&args.source.target, &args.source.pvc_root)?;
            let path = object_store::path::Path::from(args.source.artifact.as_str());
            let reader = artifact::open_artifact(&target, &path).await?;
            let r = crate::redis::restore_rdb(reader, &args.source.sha256, &args.data_dir).await?;
            println!(
                "restored {} bytes (sha256 {}) into {}",
                r.raw_bytes,
                r.sha256,
                r.path.display()
            );
            Ok(())
        }
        RestoreCommand::Mysql(args) => {
            check_sha(&args.source.sha256)?;
            let target = open_target(&args.source.target, &args.source.pvc_root)?;
            let path = object_store::path::Path::from(args.source.artifact.as_str());
            let endpoint = crate::mysql::backup::Endpoint {
                host: args.host.clone(),
                port: args.port,
                login: crate::mysql::observe::Login {
                    user: args.user.clone(),
                    password: password()?,
                },
                flavor: args.flavor.into(),
            };
            let open = || {
                let (target, path) = (target.clone(), path.clone());
                async move {
                    artifact::open_artifact(&target, &path)
                        .await
                        .map_err(std::io::Error::other)
                }
            };
            let opts = crate::mysql::backup::RestoreOptions::default();
            let r =
                crate::mysql::backup::restore_verified(open, &args.source.sha256, &endpoint, &opts)
                    .await?;
            println!("restored {} rows; GTID position {}", r.rows, r.gtid);
            Ok(())
        }
    }
}

/// The ordinal at the end of the pod's hostname (`<name>-<ordinal>`).
fn hostname_ordinal() -> Option<i32> {
    let host = std::env::var("HOSTNAME").ok()?;
    host.rsplit('-').next()?.parse().ok()
}

fn has_data(dir: &Path) -> anyhow::Result<bool> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("read {}", dir.display())),
    };
    for entry in entries {
        let name = entry?.file_name();
        if name != "lost+found" {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Refuse a restore whose expected checksum is not a sha256.
fn check_sha(sha: &str) -> anyhow::Result<()> {
    if sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("--sha256 must be 64 hex digits");
    }
    Ok(())
}
