//! The Backup controller: runs one backup as a Job, records the manifest the
//! Job reports, and (artifactPolicy Delete) removes the artifact with the
//! Backup. A Backup is Succeeded only when its Job reported a manifest, which
//! it writes only after the object store confirmed the complete upload.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType as KubeEventType;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use tracing::{info, instrument};

use super::cluster::{FIELD_MANAGER, publish};
use super::common::job_report;
use super::context::{Context, Error, KubeContext};
use super::kinds::ClusterResource;
use super::status::{set_condition, to_time};
use crate::api::backup::{
    ArtifactPolicy, Backup, BackupPhase, BackupStatus, ClusterKind, SecretKeyRef,
};
use crate::api::{ClusterStatus, MySQLCluster, RedisReplication};
use crate::backup::artifact::Manifest;
use crate::backup::backup_job::{BackupJob, backup_job};
use crate::backup::delete_job::delete_job;
use crate::backup::job::{self, JobEngine, JobOutcome};
use crate::backup::member::pick_member;
use crate::backup::verify_job::{VerifyJob, verify_job};
use crate::metrics::ClusterLabels;
use crate::resources::{ClusterView, DbKind, secret};

pub const FINALIZER: &str = "ordinal.dev/artifact";
/// Condition of a verified Backup.
pub const VERIFIED: &str = "Verified";

/// What the controller knows of the cluster a Backup reads from.
struct Source {
    engine: JobEngine,
    host: String,
    port: u16,
    member: String,
    db_secret: SecretKeyRef,
}

/// What a backup needs to know of its cluster.
struct ClusterFacts {
    kind: DbKind,
    image: String,
    secret_name: String,
    status: Option<ClusterStatus>,
}

async fn cluster_facts(
    backup: &Backup,
    ns: &str,
    ctx: &Context,
) -> Result<Result<ClusterFacts, String>, Error> {
    match backup.spec.cluster.kind {
        ClusterKind::RedisReplication => {
            facts_of::<RedisReplication>(&backup.spec.cluster.name, ns, ctx).await
        }
        ClusterKind::MySQLCluster => {
            facts_of::<MySQLCluster>(&backup.spec.cluster.name, ns, ctx).await
        }
    }
}

async fn facts_of<K: ClusterResource>(
    name: &str,
    ns: &str,
    ctx: &Context,
) -> Result<Result<ClusterFacts, String>, Error> {
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let kind_name = K::kind(&());
    let Some(c) = api
        .get_opt(name)
        .await
        .context(format!("get {kind_name} {name}"))?
    else {
        return Ok(Err(format!("{kind_name} {name} does not exist")));
    };
    let kind = c.db_kind();
    Ok(Ok(ClusterFacts {
        kind,
        image: c
            .template()
            .image
            .clone()
            .unwrap_or_else(|| kind.default_image().to_string()),
        secret_name: c
            .auth()
            .secret_name
            .clone()
            .unwrap_or_else(|| ClusterView::generated_secret_name(name)),
        status: c.cluster_status().cloned(),
    }))
}

fn engine_and_key(kind: DbKind) -> (JobEngine, &'static str) {
    match kind {
        DbKind::Redis => (JobEngine::Redis, secret::REDIS_PASSWORD),
        DbKind::MySql(flavor) => (
            JobEngine::MySql {
                user: "root".into(),
                flavor,
            },
            secret::MYSQL_ROOT,
        ),
    }
}

async fn resolve_source(
    backup: &Backup,
    ns: &str,
    ctx: &Context,
) -> Result<Result<Source, String>, Error> {
    let name = &backup.spec.cluster.name;
    let facts = match cluster_facts(backup, ns, ctx).await? {
        Ok(f) => f,
        Err(why) => return Ok(Err(why)),
    };
    let (kind, secret_name, status) = (facts.kind, Some(facts.secret_name), facts.status);
    let Some(ordinal) = status.as_ref().and_then(|s| pick_member(&s.members)) else {
        return Ok(Err(format!(
            "cluster {name} has no reachable primary or healthy replica yet"
        )));
    };
    let pod = format!("{name}-{ordinal}");
    let host = format!(
        "{pod}.{name}-headless.{ns}.svc.{}",
        ctx.settings.cluster_domain
    );
    let secret_name = secret_name.unwrap_or_else(|| ClusterView::generated_secret_name(name));
    let (engine, key) = engine_and_key(kind);
    Ok(Ok(Source {
        engine,
        host,
        port: kind.port(),
        member: pod,
        db_secret: SecretKeyRef {
            name: secret_name,
            key: key.into(),
        },
    }))
}

fn owner(backup: &Backup) -> Result<OwnerReference, Error> {
    Ok(OwnerReference {
        api_version: Backup::api_version(&()).to_string(),
        kind: Backup::kind(&()).to_string(),
        name: backup.name_any(),
        uid: backup.uid().ok_or(Error::MissingField("metadata.uid"))?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

#[instrument(skip_all, fields(namespace = backup.namespace().unwrap_or_default(), name = %backup.name_any()))]
pub async fn reconcile(backup: Arc<Backup>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = backup
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<Backup> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, backup, |event| async {
        match event {
            FinalizerEvent::Apply(b) => apply(&b, &ns, &ctx).await,
            FinalizerEvent::Cleanup(b) => cleanup(&b, &ns, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(e.to_string()))
}

pub fn error_policy(_b: Arc<Backup>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "backup reconcile failed");
    Action::requeue(Duration::from_secs(10))
}

async fn apply(backup: &Backup, ns: &str, ctx: &Context) -> Result<Action, Error> {
    let status = backup.status.clone().unwrap_or_default();
    if status.phase == BackupPhase::Succeeded {
        restore_timestamps(backup, &status, ns, ctx);
    }
    match status.phase {
        BackupPhase::Succeeded if backup.spec.verify => verify(backup, status, ns, ctx).await,
        BackupPhase::Succeeded | BackupPhase::Failed => Ok(Action::await_change()),
        BackupPhase::Pending => start(backup, status, ns, ctx).await,
        BackupPhase::Running => follow(backup, status, ns, ctx).await,
    }
}

/// The last-success and last-verified gauges from a Succeeded Backup's
/// status, so they survive an operator restart or a leader hand-over (alerts
/// on backup age read them).
fn restore_timestamps(backup: &Backup, status: &BackupStatus, ns: &str, ctx: &Context) {
    let labels = ClusterLabels {
        namespace: ns.into(),
        cluster: backup.spec.cluster.name.clone(),
    };
    let raise = |gauge: &prometheus_client::metrics::gauge::Gauge, at: i64| {
        if gauge.get() < at {
            gauge.set(at);
        }
    };
    if let Some(done) = &status.completion_time {
        raise(
            &ctx.metrics.backup_last_success.get_or_create(&labels),
            done.0.as_second(),
        );
    }
    if let Some(verified) = status
        .conditions
        .iter()
        .find(|c| c.type_ == VERIFIED && c.status == "True")
    {
        raise(
            &ctx.metrics.backup_last_verified.get_or_create(&labels),
            verified.last_transition_time.0.as_second(),
        );
    }
}

async fn start(
    backup: &Backup,
    mut status: BackupStatus,
    ns: &str,
    ctx: &Context,
) -> Result<Action, Error> {
    let timeout = backup
        .spec
        .timeout_seconds
        .unwrap_or(job::DEFAULT_TIMEOUT_SECONDS);
    let source = match resolve_source(backup, ns, ctx).await? {
        Ok(source) => source,
        Err(reason) => {
            let created = backup
                .meta()
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_second())
                .unwrap_or(0);
            if Utc::now().timestamp() - created > timeout {
                return fail(
                    backup,
                    status,
                    ns,
                    ctx,
                    format!("gave up waiting: {reason}"),
                )
                .await;
            }
            if status.message.as_deref() != Some(reason.as_str()) {
                status.message = Some(reason);
                write_status(backup, &status, ns, ctx).await?;
            }
            return Ok(Action::requeue(Duration::from_secs(10)));
        }
    };
    let job = backup_job(&BackupJob {
        backup: &backup.name_any(),
        namespace: ns,
        owner: owner(backup)?,
        image: &ctx.settings.image,
        engine: source.engine,
        cluster: &backup.spec.cluster.name,
        source_host: source.host,
        source_port: source.port,
        source_member: source.member.clone(),
        db_secret: source.db_secret,
        target: &backup.spec.target,
        timeout_seconds: timeout,
    });
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let name = job.metadata.name.clone().unwrap_or_default();
    match jobs
        .create(
            &PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            },
            &job,
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e).context(format!("create Job {name}")),
    }
    status.phase = BackupPhase::Running;
    status.start_time = Some(to_time(Utc::now()));
    status.source = Some(source.member.clone());
    status.message = Some(format!(
        "backing up {} from {} to {}",
        backup.spec.cluster.name,
        source.member,
        crate::backup::target::location(&backup.spec.target)
    ));
    write_status(backup, &status, ns, ctx).await?;
    publish(
        ctx,
        backup,
        KubeEventType::Normal,
        "BackupStarted",
        format!("Job {name} reads from {}", source.member),
    )
    .await;
    Ok(Action::requeue(Duration::from_secs(5)))
}

async fn follow(
    backup: &Backup,
    mut status: BackupStatus,
    ns: &str,
    ctx: &Context,
) -> Result<Action, Error> {
    let name = job::job_name(&backup.name_any(), "backup");
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let Some(job) = jobs
        .get_opt(&name)
        .await
        .context(format!("get Job {name}"))?
    else {
        return fail(
            backup,
            status,
            ns,
            ctx,
            format!("backup Job {name} disappeared before it finished; nothing was recorded"),
        )
        .await;
    };
    let outcome = job::outcome(&job);
    if outcome == JobOutcome::Complete {
        let report = job_report(&name, ns, ctx).await?;
        let manifest = report
            .as_deref()
            .and_then(|r| serde_json::from_str::<Manifest>(r.trim()).ok());
        let Some(m) = manifest else {
            return fail(
                backup,
                status,
                ns,
                ctx,
                format!(
                    "Job {name} finished without reporting a manifest; the backup is not trusted"
                ),
            )
            .await;
        };
        let now = Utc::now();
        status.phase = BackupPhase::Succeeded;
        status.completion_time = Some(to_time(now));
        status.artifact = Some(format!(
            "{}/{}",
            m.location.trim_end_matches('/'),
            m.artifact
        ));
        status.size_bytes = Some(m.size_bytes);
        status.sha256 = Some(m.sha256.clone());
        status.position = Some(m.position.clone());
        status.rows = m.rows;
        status.source = Some(m.source.clone());
        status.message = Some(format!("{} bytes uploaded and confirmed", m.size_bytes));
        write_status(backup, &status, ns, ctx).await?;
        let labels = ClusterLabels {
            namespace: ns.into(),
            cluster: backup.spec.cluster.name.clone(),
        };
        ctx.metrics
            .backup_bytes
            .get_or_create(&labels)
            .set(m.size_bytes);
        ctx.metrics
            .backup_last_success
            .get_or_create(&labels)
            .set(now.timestamp());
        if let Some(start) = &status.start_time {
            let secs = (now.timestamp_millis() - start.0.as_millisecond()) as f64 / 1000.0;
            ctx.metrics.backup_duration.get_or_create(&labels).set(secs);
        }
        info!(size = m.size_bytes, "backup succeeded");
        publish(
            ctx,
            backup,
            KubeEventType::Normal,
            "BackupSucceeded",
            format!(
                "{} bytes, sha256 {}, position {}",
                m.size_bytes, m.sha256, m.position
            ),
        )
        .await;
        return Ok(Action::await_change());
    }
    if let JobOutcome::Failed(why) = outcome {
        let report = job_report(&name, ns, ctx).await?.unwrap_or_default();
        let detail = report
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message")
            .trim()
            .to_string();
        return fail(
            backup,
            status,
            ns,
            ctx,
            format!("Job {name} failed ({why}): {detail}"),
        )
        .await;
    }
    Ok(Action::requeue(Duration::from_secs(5)))
}

/// Restore the artifact into a throwaway instance (a Job) and compare it with
/// the manifest; condition `Verified` says how it went.
async fn verify(
    backup: &Backup,
    mut status: BackupStatus,
    ns: &str,
    ctx: &Context,
) -> Result<Action, Error> {
    let done = status
        .conditions
        .iter()
        .any(|c| c.type_ == VERIFIED && c.status != "Unknown");
    if done {
        return Ok(Action::await_change());
    }
    let now = Utc::now();
    let generation = backup.meta().generation;
    let name = job::job_name(&backup.name_any(), "verify");
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let Some(existing) = jobs
        .get_opt(&name)
        .await
        .context(format!("get Job {name}"))?
    else {
        let facts = match cluster_facts(backup, ns, ctx).await? {
            Ok(f) => f,
            Err(why) => {
                set_condition(
                    &mut status.conditions,
                    VERIFIED,
                    "False",
                    "ClusterGone",
                    &format!("cannot verify: {why}"),
                    generation,
                    now,
                );
                write_status(backup, &status, ns, ctx).await?;
                return Ok(Action::await_change());
            }
        };
        let kind = match facts.kind {
            DbKind::Redis => ClusterKind::RedisReplication,
            DbKind::MySql(_) => ClusterKind::MySQLCluster,
        };
        let source = match crate::backup::restore::source_of(backup, ns, kind) {
            Ok(s) => s,
            Err(why) => {
                set_condition(
                    &mut status.conditions,
                    VERIFIED,
                    "False",
                    "NotRestorable",
                    &why,
                    generation,
                    now,
                );
                write_status(backup, &status, ns, ctx).await?;
                return Ok(Action::await_change());
            }
        };
        let (engine, key) = engine_and_key(facts.kind);
        let job = verify_job(&VerifyJob {
            backup: &backup.name_any(),
            namespace: ns,
            owner: owner(backup)?,
            image: &ctx.settings.image,
            database_image: &facts.image,
            engine,
            db_secret: SecretKeyRef {
                name: facts.secret_name,
                key: key.into(),
            },
            source: &source,
            expected_rows: status.rows,
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
        set_condition(
            &mut status.conditions,
            VERIFIED,
            "Unknown",
            "Verifying",
            &format!("Job {name} restores the artifact into a throwaway instance"),
            generation,
            now,
        );
        write_status(backup, &status, ns, ctx).await?;
        return Ok(Action::requeue(Duration::from_secs(5)));
    };
    match job::outcome(&existing) {
        JobOutcome::Running => Ok(Action::requeue(Duration::from_secs(5))),
        JobOutcome::Complete => {
            let report = job_report(&name, ns, ctx).await?.unwrap_or_default();
            let message = format!("restored into a throwaway instance: {}", report.trim());
            set_condition(
                &mut status.conditions,
                VERIFIED,
                "True",
                "Restored",
                &message,
                generation,
                now,
            );
            write_status(backup, &status, ns, ctx).await?;
            let labels = ClusterLabels {
                namespace: ns.into(),
                cluster: backup.spec.cluster.name.clone(),
            };
            ctx.metrics
                .backup_last_verified
                .get_or_create(&labels)
                .set(now.timestamp());
            publish(
                ctx,
                backup,
                KubeEventType::Normal,
                "BackupVerified",
                message,
            )
            .await;
            Ok(Action::await_change())
        }
        JobOutcome::Failed(why) => {
            let report = job_report(&name, ns, ctx).await?.unwrap_or_default();
            let detail = report
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no message")
                .trim()
                .to_string();
            let message = format!("verification Job {name} failed ({why}): {detail}");
            set_condition(
                &mut status.conditions,
                VERIFIED,
                "False",
                "RestoreFailed",
                &message,
                generation,
                now,
            );
            write_status(backup, &status, ns, ctx).await?;
            ctx.metrics
                .backup_verify_failures
                .get_or_create(&ClusterLabels {
                    namespace: ns.into(),
                    cluster: backup.spec.cluster.name.clone(),
                })
                .inc();
            publish(
                ctx,
                backup,
                KubeEventType::Warning,
                "BackupVerificationFailed",
                message,
            )
            .await;
            Ok(Action::await_change())
        }
    }
}

async fn fail(
    backup: &Backup,
    mut status: BackupStatus,
    ns: &str,
    ctx: &Context,
    message: String,
) -> Result<Action, Error> {
    status.phase = BackupPhase::Failed;
    status.completion_time = Some(to_time(Utc::now()));
    status.message = Some(message.clone());
    write_status(backup, &status, ns, ctx).await?;
    ctx.metrics
        .backup_failures
        .get_or_create(&ClusterLabels {
            namespace: ns.into(),
            cluster: backup.spec.cluster.name.clone(),
        })
        .inc();
    publish(ctx, backup, KubeEventType::Warning, "BackupFailed", message).await;
    Ok(Action::await_change())
}

async fn cleanup(backup: &Backup, ns: &str, ctx: &Context) -> Result<Action, Error> {
    let succeeded = backup
        .status
        .as_ref()
        .map(|s| s.phase == BackupPhase::Succeeded)
        .unwrap_or(false);
    if backup.spec.artifact_policy != ArtifactPolicy::Delete || !succeeded {
        return Ok(Action::await_change());
    }
    let job = delete_job(
        &backup.name_any(),
        ns,
        &backup.spec.cluster.name,
        owner(backup)?,
        &ctx.settings.image,
        &backup.spec.target,
    );
    let name = job.metadata.name.clone().unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let existing = match jobs
        .get_opt(&name)
        .await
        .context(format!("get Job {name}"))?
    {
        Some(j) => j,
        None => {
            publish(
                ctx,
                backup,
                KubeEventType::Normal,
                "DeletingArtifact",
                format!("Job {name} deletes the artifact"),
            )
            .await;
            jobs.create(
                &PostParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..Default::default()
                },
                &job,
            )
            .await
            .context(format!("create Job {name}"))?
        }
    };
    let outcome = job::outcome(&existing);
    if outcome == JobOutcome::Complete {
        return Ok(Action::await_change());
    }
    if let JobOutcome::Failed(_) = outcome {
        let detail = job_report(&name, ns, ctx).await?.unwrap_or_default();
        publish(
            ctx,
            backup,
            KubeEventType::Warning,
            "ArtifactDeleteFailed",
            format!(
                "Job {name} could not delete the artifact: {}; delete the Job to retry",
                detail.trim()
            ),
        )
        .await;
        return Err(Error::Finalizer(format!(
            "artifact of {} not deleted yet",
            backup.name_any()
        )));
    }
    Err(Error::Finalizer(format!(
        "waiting for Job {name} to delete the artifact"
    )))
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct StatusApply<'a> {
    api_version: &'static str,
    kind: &'static str,
    status: &'a BackupStatus,
}

async fn write_status(
    backup: &Backup,
    status: &BackupStatus,
    ns: &str,
    ctx: &Context,
) -> Result<(), Error> {
    if backup.status.as_ref() == Some(status) {
        return Ok(());
    }
    let api: Api<Backup> = Api::namespaced(ctx.client.clone(), ns);
    let patch = StatusApply {
        api_version: "ordinal.dev/v1alpha1",
        kind: "Backup",
        status,
    };
    api.patch_status(
        &backup.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .context("apply Backup status")?;
    Ok(())
}
