//! Bootstrapping a new cluster from a Backup (`spec.restore`). Redis: an init
//! container puts the verified dump into ordinal 0's empty data directory
//! before redis starts. MySQL/MariaDB: a Job loads the verified dump into
//! ordinal 0 before replication is set up. Either way the restore happens
//! only before the first primary is recorded: an established cluster is
//! never overwritten by an old backup.

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::{Api, PostParams};

use super::common::FIELD_MANAGER;
use super::conditions::{Cond, ConditionStatus, ConditionType, Reason};
use super::context::{Context, Error, KubeContext};
use super::kinds::ClusterResource;
use crate::api::backup::{Backup, ClusterKind, SecretKeyRef};
use crate::api::{MySQLCluster, ReplicationState, RestoreSpec};
use crate::backup::job::JobOutcome;
use crate::backup::restore::{self, MySqlRestore, RestorePoint, StoredArtifact};
use crate::resources::statefulset::InitStep;
use crate::resources::{ClusterView, DbKind, secret};

/// What the restore needs from this pass.
#[derive(Clone, Debug, PartialEq)]
pub enum RestorePlan {
    /// No `spec.restore`.
    NotRequested,
    /// The cluster already bootstrapped; nothing is restored any more.
    Bootstrapped,
    /// The Backup cannot be used yet; members are not started.
    Waiting(String),
    /// Redis: start the members with this init step.
    Init(InitStep),
    /// MySQL: load this artifact into ordinal 0 before replication, then
    /// replay archived binlogs to the point, if one is asked for.
    Load(Box<StoredArtifact>, Option<Box<RestorePoint>>),
}

impl RestorePlan {
    /// Condition `Restored` while the restore matters.
    pub fn condition(&self) -> Option<Cond> {
        match self {
            RestorePlan::NotRequested | RestorePlan::Bootstrapped => None,
            RestorePlan::Waiting(why) => Some(restore_condition(
                ConditionStatus::False,
                Reason::BackupNotReady,
                why.clone(),
            )),
            RestorePlan::Init(_) | RestorePlan::Load(..) => Some(restore_condition(
                ConditionStatus::False,
                Reason::Restoring,
                "restoring the backup into ordinal 0 before replication starts",
            )),
        }
    }
}

/// A `Restored` condition.
pub fn restore_condition(
    status: ConditionStatus,
    reason: Reason,
    message: impl Into<String>,
) -> Cond {
    Cond::new(ConditionType::Restored, status, reason, message)
}

pub async fn plan<K: ClusterResource>(
    obj: &K,
    view: &ClusterView,
    state: &ReplicationState,
    ctx: &Context,
) -> Result<RestorePlan, Error> {
    let Some(spec) = obj.restore_spec() else {
        return Ok(RestorePlan::NotRequested);
    };
    if state.primary.is_some() {
        return Ok(RestorePlan::Bootstrapped);
    }
    let api: Api<Backup> = Api::namespaced(ctx.client.clone(), &view.namespace);
    let Some(backup) = api
        .get_opt(&spec.backup)
        .await
        .context(format!("get Backup {}", spec.backup))?
    else {
        return Ok(RestorePlan::Waiting(format!(
            "Backup {} does not exist",
            spec.backup
        )));
    };
    let kind = match view.kind {
        DbKind::Redis => ClusterKind::RedisReplication,
        DbKind::MySql(_) => ClusterKind::MySQLCluster,
    };
    let source = match restore::source_of(&backup, &view.namespace, kind) {
        Ok(s) => s,
        Err(reason) => return Ok(RestorePlan::Waiting(reason)),
    };
    Ok(match view.kind {
        DbKind::Redis => RestorePlan::Init(restore::redis_init_step(
            &ctx.settings.image,
            &source,
            view.kind.data_dir(),
            false,
        )),
        DbKind::MySql(_) => {
            let point = match restore_point(spec, &backup, &view.namespace, ctx).await? {
                Ok(p) => p.map(Box::new),
                Err(why) => return Ok(RestorePlan::Waiting(why)),
            };
            RestorePlan::Load(Box::new(source), point)
        }
    })
}

/// The point and archive of a point-in-time restore: None without one; the
/// reason when the archive cannot be found.
async fn restore_point(
    spec: &RestoreSpec,
    backup: &Backup,
    namespace: &str,
    ctx: &Context,
) -> Result<Result<Option<RestorePoint>, String>, Error> {
    if !spec.to_a_point() {
        return Ok(Ok(None));
    }
    let archive_cluster = backup.spec.cluster.name.clone();
    let archive_target = match &spec.archive_target {
        Some(t) => t.clone(),
        None => {
            let api: Api<MySQLCluster> = Api::namespaced(ctx.client.clone(), namespace);
            let source = api
                .get_opt(&archive_cluster)
                .await
                .context(format!("get MySQLCluster {archive_cluster}"))?;
            match source
                .as_ref()
                .and_then(|c| c.spec.backup.as_ref())
                .and_then(|b| b.binlog_archive.as_deref())
            {
                Some(a) => a.target.clone(),
                None => {
                    return Ok(Err(format!(
                        "MySQLCluster {archive_cluster} (the cluster Backup {} was taken of) does not exist or archives no binlogs; set restore.archiveTarget to where its archive is",
                        spec.backup
                    )));
                }
            }
        }
    };
    Ok(Ok(Some(RestorePoint {
        point_in_time: spec.point_in_time.clone(),
        gtid: spec.gtid.clone(),
        archive_target,
        archive_cluster,
    })))
}

/// State of the MySQL restore Job, creating it once ordinal 0 is ready.
#[derive(Clone, Debug, PartialEq)]
pub enum LoadState {
    WaitingForMember,
    Running,
    Done,
    Failed(String),
}

impl LoadState {
    /// Condition `Restored` while the load holds the cluster back (None once done).
    pub fn hold(&self, backup: &str) -> Option<Cond> {
        let restoring = |m: String| restore_condition(ConditionStatus::False, Reason::Restoring, m);
        match self {
            LoadState::Done => None,
            LoadState::WaitingForMember => Some(restoring("waiting for ordinal 0 to start".into())),
            LoadState::Running => {
                Some(restoring(format!("loading Backup {backup} into ordinal 0")))
            }
            LoadState::Failed(why) => Some(restore_condition(
                ConditionStatus::False,
                Reason::RestoreFailed,
                why.clone(),
            )),
        }
    }
}

pub async fn load<K: ClusterResource>(
    obj: &K,
    view: &ClusterView,
    source: &StoredArtifact,
    point: Option<&RestorePoint>,
    first_ready: bool,
    ctx: &Context,
) -> Result<LoadState, Error> {
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &view.namespace);
    let name = restore::mysql_job_name(&view.name);
    let existing = jobs
        .get_opt(&name)
        .await
        .context(format!("get Job {name}"))?;
    let Some(job) = existing else {
        if !first_ready {
            return Ok(LoadState::WaitingForMember);
        }
        let DbKind::MySql(flavor) = view.kind else {
            return Ok(LoadState::Done);
        };
        let owner = view.owner.clone();
        let job = restore::mysql_restore_job(&MySqlRestore {
            cluster: &view.name,
            namespace: &view.namespace,
            owner,
            image: &ctx.settings.image,
            host: view.member_dns(0),
            flavor,
            root_secret: SecretKeyRef {
                name: view.secret_name.clone(),
                key: secret::MYSQL_ROOT.into(),
            },
            source,
            point,
        });
        jobs.create(
            &PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            },
            &job,
        )
        .await
        .context(format!("create Job {name}"))?;
        tracing::info!(cluster = %obj.name_any(), kind = %K::kind(&()), backup = %source.backup, point = ?point.map(|p| p.describe()), "restore Job created");
        return Ok(LoadState::Running);
    };
    Ok(match crate::backup::job::outcome(&job) {
        JobOutcome::Complete => LoadState::Done,
        JobOutcome::Failed(why) => {
            // The error the Job reported as its termination message (one
            // line), e.g. a gap in the binlog archive or a point past its
            // end; without one, the last line of its log.
            let report = super::common::job_report(&name, &view.namespace, ctx)
                .await?
                .and_then(|m| {
                    m.lines()
                        .rev()
                        .map(str::trim)
                        .find(|l| !l.is_empty())
                        .map(|l| format!(": {l}"))
                })
                .unwrap_or_default();
            LoadState::Failed(format!(
                "restore Job {name} failed ({why}){report}; the cluster does not serve; see the Job's logs"
            ))
        }
        JobOutcome::Running => LoadState::Running,
    })
}
