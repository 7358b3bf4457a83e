//! `ordinal binlog archive`: the long-running process of a cluster's binlog
//! archiver Deployment. It picks a member (a read-only one first for
//! `PreferReplica`), streams its binlogs into the archive
//! ([`super::binlog_archive::archive`]) until the stream ends or SIGTERM
//! arrives, and starts again — on the next candidate after a failure —
//! resuming from the last stored segment. An empty archive starts at the
//! source's current GTID position. Every `--prune-interval-seconds` it
//! deletes the leading segments the oldest base backup stored on the same
//! target (its `manifest.json` under `<prefix>/<namespace>/<cluster>/`) no
//! longer needs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use mysql_async::prelude::Queryable;
use object_store::path::Path;
use tokio_util::sync::CancellationToken;

use super::artifact;
use super::binlog::{self, ARCHIVE_DIR};
use super::binlog_archive::{ArchiveOptions, archive};
use super::contract::{
    ARCHIVE_STATUS_PATH, ArchiveArgs, ArchiveReport, ArchiveSourceArg, ENV_DB_PASSWORD,
};
use super::target::{self, Target, TargetCredentials};
use crate::api::MySqlFlavor;
use crate::mysql::backup::Endpoint;
use crate::mysql::observe::{Login, connect};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed or ended run before the next candidate is tried.
const RETRY: Duration = Duration::from_secs(2);

/// Run until SIGTERM / SIGINT; returns after storing what is complete.
pub async fn run(args: ArchiveArgs) -> anyhow::Result<()> {
    let password =
        std::env::var(ENV_DB_PASSWORD).with_context(|| format!("{ENV_DB_PASSWORD} is not set"))?;
    let login = Login {
        user: args.user.clone(),
        password,
    };
    let flavor: MySqlFlavor = args.flavor.into();
    let target = target::open(&args.target, &TargetCredentials::from_env(), &args.pvc_root)?;
    let dir = binlog::archive_dir(&target.prefix, &args.namespace, &args.cluster);
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            crate::shutdown::wait_for_signal().await;
            tracing::info!("stopping: storing what is complete");
            stop.cancel();
        });
    }
    {
        let (target, stop, args) = (target.clone(), stop.clone(), args.clone());
        tokio::spawn(async move { prune_loop(&target, &args, flavor, stop).await });
    }
    let report = Arc::new(Mutex::new(ArchiveReport::default()));
    let last = binlog::list_manifests(&target, &dir)
        .await
        .ok()
        .and_then(|m| m.into_values().next_back());
    let (progress, mut stored) = tokio::sync::watch::channel(last);
    {
        let report = report.clone();
        tokio::spawn(async move {
            loop {
                if let Some(m) = stored.borrow_and_update().clone() {
                    let mut r = report.lock().unwrap_or_else(|e| e.into_inner());
                    *r = ArchiveReport {
                        last_segment: Some(m.number),
                        last_gtid: Some(m.last_gtid),
                        position: Some(m.end_position),
                        last_commit: Some(m.last_timestamp),
                        archived_at: Some(m.archived_at),
                        error: None,
                    };
                }
                if stored.changed().await.is_err() {
                    return;
                }
            }
        });
    }
    if args.status_port != 0 {
        serve_status(args.status_port, report.clone(), stop.clone()).await?;
    }
    let opts = ArchiveOptions {
        max_delay: Duration::from_secs(args.max_delay_seconds.max(1)),
        max_segment_bytes: (args.segment_size_mib.max(1) as usize) << 20,
        progress: Some(Arc::new(progress)),
        ..Default::default()
    };
    let failed = |why: String| {
        report.lock().unwrap_or_else(|e| e.into_inner()).error = Some(why);
    };
    let mut failures = 0usize;
    while !stop.is_cancelled() {
        let candidates = candidates(&args, &login).await;
        let Some(host) = candidates.get(failures % candidates.len().max(1)).cloned() else {
            tracing::warn!(members = ?args.members, "no member answers; retrying");
            failed(format!("no member answers as a source ({:?})", args.source));
            sleep_or_stop(RETRY, &stop).await;
            continue;
        };
        let source = Endpoint {
            host: host.clone(),
            port: args.port,
            login: login.clone(),
            flavor,
        };
        let start = match current_position(&source).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(%host, error = format!("{e:#}"), "cannot read the GTID position");
                failed(format!("{host}: {e:#}"));
                failures += 1;
                sleep_or_stop(RETRY, &stop).await;
                continue;
            }
        };
        tracing::info!(%host, "archiving binlogs");
        match archive(&source, &target, &dir, Some(&start), &opts, stop.clone()).await {
            Ok(s) => {
                failures = 0;
                tracing::info!(%host, segments = s.segments, transactions = s.transactions, position = %s.position, "archive run ended");
            }
            Err(e) => {
                failures += 1;
                failed(format!("{host}: {e}"));
                tracing::warn!(%host, error = %e, "archive run failed; resuming from the archive");
            }
        }
        sleep_or_stop(RETRY, &stop).await;
    }
    Ok(())
}

/// `GET /status` on all addresses: the [`ArchiveReport`] as JSON.
async fn serve_status(
    port: u16,
    report: Arc<Mutex<ArchiveReport>>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port))
        .await
        .with_context(|| format!("bind the status port {port}"))?;
    let app = axum::Router::new().route(
        ARCHIVE_STATUS_PATH,
        axum::routing::get(move || {
            let report = report.clone();
            async move {
                let r = report.lock().unwrap_or_else(|e| e.into_inner()).clone();
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    serde_json::to_string(&r).unwrap_or_default(),
                )
            }
        }),
    );
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "the status endpoint stopped");
        }
    });
    Ok(())
}

/// Members in the order they are tried: for `PreferReplica` the read-only
/// members that answer, then the writable one; for `Primary` only the
/// writable one.
async fn candidates(args: &ArchiveArgs, login: &Login) -> Vec<String> {
    let mut read_only = Vec::new();
    let mut writable = Vec::new();
    for host in &args.members {
        let Ok(mut c) = connect(host, args.port, login, CONNECT_TIMEOUT).await else {
            continue;
        };
        let ro: Result<Option<i64>, _> = c.query_first("SELECT @@GLOBAL.read_only").await;
        let _ = c.disconnect().await;
        match ro {
            Ok(Some(0)) => writable.push(host.clone()),
            Ok(Some(_)) => read_only.push(host.clone()),
            _ => {}
        }
    }
    match args.source {
        ArchiveSourceArg::PreferReplica => read_only.into_iter().chain(writable).collect(),
        ArchiveSourceArg::Primary => writable,
    }
}

/// The source's GTID position: where an empty archive starts.
async fn current_position(source: &Endpoint) -> anyhow::Result<String> {
    let mut c = connect(&source.host, source.port, &source.login, CONNECT_TIMEOUT).await?;
    let sql = match source.flavor {
        MySqlFlavor::MariaDB => "SELECT @@GLOBAL.gtid_binlog_pos",
        MySqlFlavor::MySQL => "SELECT @@GLOBAL.gtid_executed",
    };
    let pos: Option<String> = c
        .query_first(sql)
        .await
        .with_context(|| format!("{sql} on {}", source.host))?;
    let _ = c.disconnect().await;
    Ok(pos.unwrap_or_default().replace(['\n', ' '], ""))
}

async fn prune_loop(
    target: &Target,
    args: &ArchiveArgs,
    flavor: MySqlFlavor,
    stop: CancellationToken,
) {
    let every = Duration::from_secs(args.prune_interval_seconds.max(10));
    loop {
        match prune_once(target, args, flavor).await {
            Ok(Some((base, n))) if n > 0 => {
                tracing::info!(pruned = n, oldest_base = %base, "pruned binlog segments no base backup needs")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(
                error = format!("{e:#}"),
                "pruning the binlog archive failed"
            ),
        }
        if sleep_or_stop(every, &stop).await {
            return;
        }
    }
}

/// Prune before the oldest MySQL base backup of the cluster on the target;
/// nothing without one. Returns that backup's position and the count.
async fn prune_once(
    target: &Target,
    args: &ArchiveArgs,
    flavor: MySqlFlavor,
) -> anyhow::Result<Option<(String, u64)>> {
    let cluster_dir = cluster_dir(&target.prefix, &args.namespace, &args.cluster);
    let listing = target
        .store
        .list_with_delimiter(Some(&cluster_dir))
        .await
        .with_context(|| format!("list {cluster_dir}"))?;
    let mut oldest: Option<artifact::Manifest> = None;
    for dir in listing.common_prefixes {
        if dir.filename() == Some(ARCHIVE_DIR) {
            continue;
        }
        let Ok(m) = artifact::read_manifest(target, &dir).await else {
            continue;
        };
        if m.engine != "mysql" || m.position.is_empty() {
            continue;
        }
        if oldest
            .as_ref()
            .is_none_or(|o| m.completed_at < o.completed_at)
        {
            oldest = Some(m);
        }
    }
    let Some(base) = oldest else {
        return Ok(None);
    };
    let dir = binlog::archive_dir(&target.prefix, &args.namespace, &args.cluster);
    let n = binlog::prune(target, &dir, flavor, &base.position).await?;
    Ok(Some((base.position, n)))
}

/// `<prefix>/<namespace>/<cluster>`: where the cluster's backups and archive live.
fn cluster_dir(prefix: &Path, namespace: &str, cluster: &str) -> Path {
    let mut parts: Vec<String> = prefix.parts().map(|p| p.as_ref().to_string()).collect();
    parts.extend([namespace.to_string(), cluster.to_string()]);
    Path::from_iter(parts)
}

/// Sleep; true when stopped meanwhile.
async fn sleep_or_stop(d: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => stop.is_cancelled(),
        _ = stop.cancelled() => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::backup::{BackupTarget, PvcTarget};
    use crate::backup::binlog::{SegmentManifest, list_manifests, put_segment, segment_name};
    use crate::backup::contract::FlavorArg;
    use object_store::{ObjectStoreExt, PutPayload};

    fn args(target: BackupTarget) -> ArchiveArgs {
        ArchiveArgs {
            namespace: "shop".into(),
            cluster: "db".into(),
            target,
            pvc_root: PVC_ROOT_UNUSED.into(),
            members: vec!["db-0".into()],
            port: 3306,
            user: "root".into(),
            flavor: FlavorArg::MariaDb,
            source: ArchiveSourceArg::PreferReplica,
            max_delay_seconds: 1,
            segment_size_mib: 1,
            prune_interval_seconds: 60,
            status_port: 0,
        }
    }
    const PVC_ROOT_UNUSED: &str = "/nonexistent";

    /// Segment n holds the transactions seq 10n-9 ..= 10n of domain 0.
    async fn segment(target: &Target, dir: &Path, n: u64) {
        let pos = |s: u64| format!("0-100-{s}");
        put_segment(target, dir, n, b"\xfebin", |sha256, size| SegmentManifest {
            format_version: crate::backup::binlog::SEGMENT_FORMAT,
            flavor: "MariaDB".into(),
            number: n,
            object: segment_name(n),
            start_position: pos(10 * (n - 1)),
            end_position: pos(10 * n),
            first_gtid: pos(10 * n - 9),
            last_gtid: pos(10 * n),
            first_timestamp: 0,
            last_timestamp: 0,
            transactions: 10,
            events: 1,
            raw_bytes: 4,
            size_bytes: size,
            sha256,
            source: "db-1:3306".into(),
            archived_at: "2026-12-01T00:00:00Z".into(),
        })
        .await
        .expect("segment");
    }

    async fn base(target: &Target, name: &str, engine: &str, position: &str, completed: &str) {
        let dir = target::backup_dir(&target.prefix, "shop", "db", name);
        let m = artifact::Manifest {
            format_version: 1,
            engine: engine.into(),
            namespace: "shop".into(),
            cluster: "db".into(),
            backup: name.into(),
            artifact: "x".into(),
            location: "pvc".into(),
            size_bytes: 1,
            raw_bytes: 1,
            sha256: "ab".repeat(32),
            position: position.into(),
            source: "db-1".into(),
            rows: Some(1),
            completed_at: completed.into(),
        };
        target
            .store
            .put(
                &dir.join(artifact::MANIFEST),
                PutPayload::from(serde_json::to_vec(&m).expect("json")),
            )
            .await
            .expect("manifest");
    }

    #[tokio::test]
    async fn segments_before_the_oldest_base_backup_on_the_target_are_pruned() {
        let root = tempfile::tempdir().expect("dir");
        let spec = BackupTarget {
            s3: None,
            gcs: None,
            azure: None,
            pvc: Some(PvcTarget {
                claim_name: "backups".into(),
                path: Some("manual".into()),
            }),
        };
        let target =
            target::open(&spec, &TargetCredentials::default(), root.path()).expect("target");
        let a = args(spec);
        let dir = binlog::archive_dir(&target.prefix, "shop", "db");
        for n in 1..=5 {
            segment(&target, &dir, n).await;
        }
        // No base backup: nothing goes.
        assert_eq!(
            prune_once(&target, &a, MySqlFlavor::MariaDB)
                .await
                .expect("prune"),
            None
        );
        assert_eq!(list_manifests(&target, &dir).await.expect("list").len(), 5);
        // The oldest MySQL base (by completion) is at seq 25: segments 1 and
        // 2 end at or before it; 3 holds transactions after it and stays.
        // A Redis backup of the same name is no base.
        base(
            &target,
            "newer",
            "mysql",
            "0-100-41",
            "2026-12-01T02:00:00Z",
        )
        .await;
        base(
            &target,
            "older",
            "mysql",
            "0-100-25",
            "2026-12-01T01:00:00Z",
        )
        .await;
        base(&target, "cache", "redis", "abc:1", "2026-11-01T00:00:00Z").await;
        assert_eq!(
            prune_once(&target, &a, MySqlFlavor::MariaDB)
                .await
                .expect("prune"),
            Some(("0-100-25".into(), 2))
        );
        let left: Vec<u64> = list_manifests(&target, &dir)
            .await
            .expect("list")
            .into_keys()
            .collect();
        assert_eq!(left, [3, 4, 5]);
        let segments = std::fs::read_dir(root.path().join("manual/shop/db/binlog"))
            .expect("archive dir")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".zst"))
            })
            .count();
        assert_eq!(segments, 3, "each pruned manifest's segment went too");
    }
}
