//! The BackupSchedule controller: creates Backups on the cron schedule, at
//! most one per scheduled time (deterministic names), and deletes the Backups
//! retention removes (their finalizer deletes the artifacts).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType as KubeEventType;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use tracing::{info, instrument};

use super::cluster::{FIELD_MANAGER, publish};
use super::context::{Context, Error, KubeContext};
use super::status::{set_condition, to_time};
use crate::api::backup::{Backup, BackupSchedule, BackupScheduleStatus, BackupSpec};
use crate::backup::schedule::{ScheduleInput, ScheduledBackup, plan};

/// Label on Backups created by a schedule.
pub const LABEL_SCHEDULE: &str = "ordinal.dev/schedule";

fn time_of(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.0.as_millisecond()).unwrap_or_default()
}

/// Name of the Backup for one scheduled time (idempotent across restarts).
pub fn backup_name(schedule: &str, at: DateTime<Utc>) -> String {
    let suffix = at.timestamp().to_string();
    let base: String = schedule.chars().take(62 - suffix.len()).collect();
    format!("{}-{suffix}", base.trim_end_matches('-'))
}

#[instrument(skip_all, fields(namespace = schedule.namespace().unwrap_or_default(), name = %schedule.name_any()))]
pub async fn reconcile(schedule: Arc<BackupSchedule>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = schedule
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = schedule.name_any();
    let backups_api: Api<Backup> = Api::namespaced(ctx.client.clone(), &ns);
    let owned = backups_api
        .list(&ListParams::default().labels(&format!("{LABEL_SCHEDULE}={name}")))
        .await
        .context("list scheduled Backups")?;
    let backups: Vec<ScheduledBackup> = owned
        .items
        .iter()
        .filter(|b| b.meta().deletion_timestamp.is_none())
        .map(|b| ScheduledBackup {
            name: b.name_any(),
            created: b
                .meta()
                .creation_timestamp
                .as_ref()
                .map(time_of)
                .unwrap_or_default(),
            phase: b.status.as_ref().map(|s| s.phase).unwrap_or_default(),
        })
        .collect();
    let previous = schedule.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    let now = Utc::now();
    let created = schedule
        .meta()
        .creation_timestamp
        .as_ref()
        .map(time_of)
        .unwrap_or(now);
    let last_run = previous
        .last_schedule_time
        .as_ref()
        .map(time_of)
        .unwrap_or(created);
    let spec = &schedule.spec;
    let input = ScheduleInput {
        cron: &spec.schedule,
        time_zone: spec.time_zone.as_deref(),
        suspend: spec.suspend,
        concurrency: spec.concurrency_policy,
        retention: &spec.retention,
        successful_history: spec.successful_backups_history_limit,
        failed_history: spec.failed_backups_history_limit,
        last_run,
        now,
        backups: &backups,
    };
    let generation = schedule.meta().generation;
    let decided = match plan(&input) {
        Ok(p) => p,
        Err(e) => {
            set_condition(
                &mut status.conditions,
                "Scheduling",
                "False",
                "InvalidSchedule",
                &e.to_string(),
                generation,
                now,
            );
            write_status(&schedule, &previous, &status, &ns, &ctx).await?;
            return Ok(Action::requeue(ctx.settings.resync));
        }
    };

    if let Some(at) = decided.run {
        let backup_name = backup_name(&name, at);
        let backup = Backup {
            metadata: kube::api::ObjectMeta {
                name: Some(backup_name.clone()),
                namespace: Some(ns.clone()),
                labels: Some(BTreeMap::from([(LABEL_SCHEDULE.to_string(), name.clone())])),
                ..Default::default()
            },
            spec: BackupSpec {
                cluster: spec.cluster.clone(),
                target: spec.target.clone(),
                verify: spec.verify,
                artifact_policy: spec.artifact_policy,
                timeout_seconds: None,
            },
            status: None,
        };
        match backups_api
            .create(
                &PostParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..Default::default()
                },
                &backup,
            )
            .await
        {
            Ok(_) => {
                info!(backup = %backup_name, "scheduled backup created");
                publish(
                    &ctx,
                    &*schedule,
                    KubeEventType::Normal,
                    "BackupCreated",
                    format!("created Backup {backup_name} for {at}"),
                )
                .await;
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e).context(format!("create Backup {backup_name}")),
        }
        status.last_schedule_time = Some(to_time(at));
    } else if let Some(reason) = &decided.skipped {
        publish(
            &ctx,
            &*schedule,
            KubeEventType::Normal,
            "BackupSkipped",
            reason.clone(),
        )
        .await;
        // A skipped time is consumed, like a CronJob's missed run.
        status.last_schedule_time = Some(to_time(now));
    }

    for old in &decided.delete {
        match backups_api.delete(old, &DeleteParams::default()).await {
            Ok(_) => {
                publish(
                    &ctx,
                    &*schedule,
                    KubeEventType::Normal,
                    "RetentionDeleted",
                    format!("deleted Backup {old} (retention)"),
                )
                .await
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e).context(format!("delete Backup {old}")),
        }
    }

    let mut by_age = backups.clone();
    by_age.sort_by_key(|b| std::cmp::Reverse(b.created));
    status.last_successful_backup = by_age
        .iter()
        .find(|b| b.phase == crate::api::backup::BackupPhase::Succeeded)
        .map(|b| b.name.clone())
        .or(previous.last_successful_backup.clone());
    status.active = by_age
        .iter()
        .filter(|b| {
            matches!(
                b.phase,
                crate::api::backup::BackupPhase::Pending | crate::api::backup::BackupPhase::Running
            )
        })
        .map(|b| b.name.clone())
        .collect();
    status.next_schedule_time = Some(to_time(decided.next));
    let (state, reason, message) = if spec.suspend {
        ("False", "Suspended", "schedule is suspended".to_string())
    } else {
        (
            "True",
            "Scheduled",
            format!("next backup at {}", decided.next),
        )
    };
    set_condition(
        &mut status.conditions,
        "Scheduling",
        state,
        reason,
        &message,
        generation,
        now,
    );
    write_status(&schedule, &previous, &status, &ns, &ctx).await?;

    let wait = (decided.next - Utc::now()).to_std().unwrap_or_default();
    Ok(Action::requeue(
        wait.clamp(Duration::from_secs(1), Duration::from_secs(300)),
    ))
}

pub fn error_policy(_s: Arc<BackupSchedule>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "backup schedule reconcile failed");
    Action::requeue(Duration::from_secs(15))
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct StatusApply<'a> {
    api_version: &'static str,
    kind: &'static str,
    status: &'a BackupScheduleStatus,
}

async fn write_status(
    schedule: &BackupSchedule,
    previous: &BackupScheduleStatus,
    status: &BackupScheduleStatus,
    ns: &str,
    ctx: &Context,
) -> Result<(), Error> {
    if previous == status {
        return Ok(());
    }
    let api: Api<BackupSchedule> = Api::namespaced(ctx.client.clone(), ns);
    let patch = StatusApply {
        api_version: "ordinal.dev/v1alpha1",
        kind: "BackupSchedule",
        status,
    };
    api.patch_status(
        &schedule.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .context("apply BackupSchedule status")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_names_are_deterministic_and_fit() {
        let at = DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        assert_eq!(backup_name("nightly", at), "nightly-1800000000");
        let long = "n".repeat(80);
        let name = backup_name(&long, at);
        assert!(name.len() <= 63 && name.ends_with("-1800000000"), "{name}");
    }
}
