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
    /// Check a restored throwaway instance against the manifest, then stop it.
    Verify(VerifyArgs),
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[arg(long, value_enum)]
    pub engine: EngineArg,
    /// Address of the throwaway database (this pod's IP).
    #[arg(long, env = "POD_IP")]
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
    #[arg(
        long,
        env = "ORDINAL_TERMINATION_LOG",
        default_value = "/dev/termination-log"
    )]
    pub termination_log: PathBuf,
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
    /// Restore whatever the hostname (a throwaway verification instance).
    #[arg(long)]
    pub any_member: bool,
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
        BackupCommand::Verify(args) => {
            let log = args.termination_log.clone();
            let result = match args.engine {
                EngineArg::Redis => verify_redis(&args).await,
                EngineArg::Mysql => verify_mysql(&args).await,
            };
            match result {
                Ok(summary) => {
                    report(&log, &summary);
                    println!("{summary}");
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
        rows: r.rows,
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
                    rows: None,
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
                    rows: Some(r.rows as i64),
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
            if !args.any_member && ordinal != Some(args.only_ordinal) {
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

async fn verify_redis(args: &VerifyArgs) -> anyhow::Result<String> {
    let source = crate::redis::backup::BackupSource {
        host: args.host.clone(),
        port: args.port,
        password: Some(password()?),
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(args.wait_seconds);
    let keys = loop {
        match crate::redis::backup::loaded_keys(&source).await {
            Ok(Some(keys)) => break keys,
            Ok(None) | Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Ok(None) => bail!(
                "the restored server was still loading after {} s",
                args.wait_seconds
            ),
            Err(e) => return Err(e).context("the restored server never answered"),
        }
    };
    crate::redis::backup::shutdown_nosave(&source).await;
    Ok(format!("{keys} keys loaded"))
}

async fn verify_mysql(args: &VerifyArgs) -> anyhow::Result<String> {
    let (Some(target), Some(artifact), Some(sha)) = (&args.target, &args.artifact, &args.sha256)
    else {
        bail!("--target, --artifact and --sha256 are required for MySQL verification");
    };
    check_sha(sha)?;
    let endpoint = crate::mysql::backup::Endpoint {
        host: args.host.clone(),
        port: args.port,
        login: crate::mysql::observe::Login {
            user: args.user.clone(),
            password: password()?,
        },
        flavor: args.flavor.into(),
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(args.wait_seconds);
    while crate::mysql::backup::ping(&endpoint).await.is_err() {
        if std::time::Instant::now() >= deadline {
            bail!(
                "the throwaway server did not start within {} s",
                args.wait_seconds
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let store = open_target(target, &args.pvc_root)?;
    let path = object_store::path::Path::from(artifact.as_str());
    let open = || {
        let (store, path) = (store.clone(), path.clone());
        async move {
            artifact::open_artifact(&store, &path)
                .await
                .map_err(std::io::Error::other)
        }
    };
    let opts = crate::mysql::backup::RestoreOptions::default();
    let restored = crate::mysql::backup::restore_verified(open, sha, &endpoint, &opts).await?;
    let rows = restored.rows as i64;
    crate::mysql::backup::shutdown(&endpoint).await;
    if let Some(expected) = args.expect_rows
        && expected != rows
    {
        bail!("the restore loaded {rows} rows, the backup recorded {expected}");
    }
    Ok(format!(
        "{rows} rows loaded at GTID position {}",
        restored.gtid
    ))
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
