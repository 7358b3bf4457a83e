//! What backup Jobs and restore steps run (`ordinal backup …`,
//! `ordinal restore …`): the engines' streaming dumps into a target, the
//! manifest reported through the termination message, artifact deletion, and
//! restores that verify the checksum before anything is applied.

use std::path::Path;

use anyhow::{Context as _, bail};
use chrono::Utc;

use super::artifact::{self, DumpReport, FORMAT_VERSION, Manifest};
use super::binlog_replay::StopAt;
use super::contract::{
    BackupCommand, ENV_DB_PASSWORD, EngineArg, MYSQL_ARTIFACT, PointArgs, REDIS_ARTIFACT,
    RestoreCommand, RestoreMysqlArgs, RunArgs, VerifyArgs,
};
use super::target::{self, Target, TargetCredentials};
use crate::api::backup::BackupTarget;

fn password() -> anyhow::Result<String> {
    std::env::var(ENV_DB_PASSWORD).with_context(|| format!("{ENV_DB_PASSWORD} is not set"))
}

/// Open a stored artifact afresh (a verified restore reads it twice: once
/// to check it, once to load it).
async fn read_stored(
    target: Target,
    path: object_store::path::Path,
) -> std::io::Result<impl tokio::io::AsyncRead + Unpin + use<>> {
    artifact::open_artifact(&target, &path)
        .await
        .map_err(std::io::Error::other)
}

/// The server a restore or a verify loads into, with the password from the
/// environment.
fn mysql_endpoint(
    host: &str,
    port: u16,
    user: &str,
    flavor: crate::api::MySqlFlavor,
) -> anyhow::Result<crate::mysql::backup::Endpoint> {
    Ok(crate::mysql::backup::Endpoint {
        host: host.to_string(),
        port,
        login: crate::mysql::observe::Login {
            user: user.to_string(),
            password: password()?,
        },
        flavor,
    })
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

/// Report a failure as the Job's termination message (one line, the error
/// with its causes), which is what the cluster's or the Backup's condition
/// shows; a success is reported by the caller.
fn report_failure<T>(path: &Path, result: anyhow::Result<T>) -> anyhow::Result<T> {
    if let Err(e) = &result {
        report(path, &format!("{e:#}"));
    }
    result
}

pub async fn backup(cmd: BackupCommand) -> anyhow::Result<()> {
    match cmd {
        BackupCommand::Run(args) => {
            let log = args.termination_log.clone();
            let manifest = report_failure(&log, run_backup(&args).await)?;
            let json = serde_json::to_string(&manifest).context("manifest")?;
            report(&log, &json);
            println!("{json}");
            Ok(())
        }
        BackupCommand::Verify(args) => {
            let log = args.termination_log.clone();
            let result = match args.engine {
                EngineArg::Redis => verify_redis(&args).await,
                EngineArg::Mysql => verify_mysql(&args).await,
            };
            let summary = report_failure(&log, result)?;
            report(&log, &summary);
            println!("{summary}");
            Ok(())
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
            check_sha(&args.artifact.sha256)?;
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
            let target = open_target(&args.artifact.target, &args.artifact.pvc_root)?;
            let path = object_store::path::Path::from(args.artifact.artifact.as_str());
            let reader = artifact::open_artifact(&target, &path).await?;
            let r =
                crate::redis::restore_rdb(reader, &args.artifact.sha256, &args.data_dir).await?;
            println!(
                "restored {} bytes (sha256 {}) into {}",
                r.raw_bytes,
                r.sha256,
                r.path.display()
            );
            Ok(())
        }
        RestoreCommand::Mysql(args) => {
            let log = args.termination_log.clone();
            report_failure(&log, restore_mysql(args).await)
        }
    }
}

async fn restore_mysql(args: RestoreMysqlArgs) -> anyhow::Result<()> {
    check_sha(&args.artifact.sha256)?;
    let target = open_target(&args.artifact.target, &args.artifact.pvc_root)?;
    let path = object_store::path::Path::from(args.artifact.artifact.as_str());
    let endpoint = mysql_endpoint(&args.host, args.port, &args.user, args.flavor.into())?;
    let open = || read_stored(target.clone(), path.clone());
    let opts = crate::mysql::backup::RestoreOptions::default();
    // A point the archive cannot reach is refused before anything is
    // loaded: the server stays empty.
    let replay = match replay_plan(&args.point, endpoint.flavor)? {
        Some((target, dir, stop)) => {
            let header = crate::mysql::backup::read_header(open().await?)
                .await
                .context("read the base backup's header")?;
            let plan = super::binlog_replay::prepare(
                endpoint.flavor,
                &target,
                &dir,
                &header.gtid,
                &stop,
            )
            .await
            // One line: the termination message is what the
            // cluster's condition shows.
            .map_err(|e| {
                anyhow::anyhow!(
                    "{e}; nothing was restored (the binlog archive {dir} was checked from the base backup's GTID position {} before loading)",
                    header.gtid
                )
            })?;
            println!(
                "the binlog archive {dir} reaches {stop:?} from the base backup ({} segments)",
                plan.segments()
            );
            Some((target, dir, stop, plan))
        }
        None => None,
    };
    let r = crate::mysql::backup::restore_verified(open, &args.artifact.sha256, &endpoint, &opts)
        .await?;
    println!("restored {} rows; GTID position {}", r.rows, r.gtid);
    if let Some((target, dir, stop, plan)) = replay {
        if !plan.starts_at(&r.gtid)? {
            bail!(
                "the restored base is at GTID position {} but its header said otherwise; no binlog replayed",
                r.gtid
            );
        }
        let done =
            super::binlog_replay::apply_plan(&endpoint, &target, &dir, &plan, &Default::default())
                .await
                .with_context(|| format!("replay the binlog archive {dir} to {stop:?}"))?;
        println!(
            "replayed {} transactions from {} segments ({} already in the base); last GTID {}, GTID position {}",
            done.transactions,
            done.segments,
            done.skipped,
            done.last_gtid.as_deref().unwrap_or("-"),
            done.position
        );
    }
    Ok(())
}

/// The archive and the stop point of a point-in-time restore (None: the
/// base backup only).
fn replay_plan(
    p: &PointArgs,
    flavor: crate::api::MySqlFlavor,
) -> anyhow::Result<Option<(Target, object_store::path::Path, StopAt)>> {
    let stop = match (&p.point_in_time, &p.gtid) {
        (Some(t), _) => StopAt::Time(
            chrono::DateTime::parse_from_rfc3339(t)
                .with_context(|| format!("--point-in-time {t:?} is not an RFC 3339 time"))?
                .with_timezone(&Utc),
        ),
        (None, Some(g)) => {
            super::binlog::normalize(flavor, g)
                .with_context(|| format!("--gtid {g:?} is not a {flavor:?} GTID"))?;
            StopAt::Gtid(g.clone())
        }
        (None, None) => return Ok(None),
    };
    let (Some(t), Some(cluster), Some(ns)) =
        (&p.archive_target, &p.archive_cluster, &p.archive_namespace)
    else {
        bail!(
            "a restore to a point needs --archive-target, --archive-cluster and --archive-namespace"
        );
    };
    let target = target::open(
        t,
        &TargetCredentials::from_archive_env(),
        &p.archive_pvc_root,
    )?;
    let dir = super::binlog::archive_dir(&target.prefix, ns, cluster);
    Ok(Some((target, dir, stop)))
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
    let Some(stored) = &args.stored() else {
        bail!("--target, --artifact and --sha256 are required for MySQL verification");
    };
    let (target, artifact, sha) = (&stored.target, &stored.artifact, &stored.sha256);
    check_sha(sha)?;
    let endpoint = mysql_endpoint(&args.host, args.port, &args.user, args.flavor.into())?;
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
    let store = open_target(target, &stored.pvc_root)?;
    let path = object_store::path::Path::from(artifact.as_str());
    let open = || read_stored(store.clone(), path.clone());
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
