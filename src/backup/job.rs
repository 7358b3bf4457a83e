//! What every Job and restore step the operator starts shares: the pod shape
//! (the operator image, non-root, read-only root filesystem, no API access,
//! never retried), credentials from Secret references only, the target's
//! volume, names that fit, and the outcome read from the Job's conditions.
//! The builders per Job kind are in `backup_job`, `verify_job`, `delete_job`
//! and `restore`.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    SecretKeySelector, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::contract::{
    ARCHIVE_MOUNT, ENV_ACCESS_KEY_ID, ENV_AZURE_KEY, ENV_GCS_KEY, ENV_POD_IP,
    ENV_SECRET_ACCESS_KEY, PVC_MOUNT, archive_env,
};
use crate::api::backup::{BackupTarget, SecretKeyRef};

pub const LABEL_BACKUP: &str = "ordinal.dev/backup";
pub const DEFAULT_TIMEOUT_SECONDS: i64 = 3600;
const JOB_UID: i64 = 65532;

/// Which engine a Job talks to.
#[derive(Clone, Debug, PartialEq)]
pub enum JobEngine {
    Redis,
    MySql {
        user: String,
        flavor: crate::api::MySqlFlavor,
    },
}

pub fn secret_env(name: &str, r: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: r.name.clone(),
                key: r.key.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Env vars carrying the target's credentials (from its Secret references).
pub fn target_env(target: &BackupTarget) -> Vec<EnvVar> {
    target_env_named(target, |k| k.to_string())
}

/// Env vars carrying a binlog archive target's credentials next to a base
/// backup's in a restore Job ([`archive_env`] names).
pub fn archive_target_env(target: &BackupTarget) -> Vec<EnvVar> {
    target_env_named(target, archive_env)
}

fn target_env_named(target: &BackupTarget, name: impl Fn(&str) -> String) -> Vec<EnvVar> {
    let mut env = Vec::new();
    if let Some(s3) = &target.s3 {
        env.push(secret_env(&name(ENV_ACCESS_KEY_ID), &s3.access_key_id));
        env.push(secret_env(
            &name(ENV_SECRET_ACCESS_KEY),
            &s3.secret_access_key,
        ));
    }
    if let Some(gcs) = &target.gcs {
        env.push(secret_env(&name(ENV_GCS_KEY), &gcs.service_account_key));
    }
    if let Some(az) = &target.azure {
        env.push(secret_env(&name(ENV_AZURE_KEY), &az.access_key));
    }
    env
}

/// Volumes and mounts a target needs (a PVC target is mounted at /backup).
pub fn target_volumes(target: &BackupTarget) -> (Vec<Volume>, Vec<VolumeMount>) {
    pvc_volume(target, "backup-target", PVC_MOUNT)
}

/// Volumes and mounts a binlog archive target needs next to a base
/// backup's (a PVC target is mounted at /archive).
pub fn archive_volumes(target: &BackupTarget) -> (Vec<Volume>, Vec<VolumeMount>) {
    pvc_volume(target, "archive-target", ARCHIVE_MOUNT)
}

fn pvc_volume(target: &BackupTarget, name: &str, at: &str) -> (Vec<Volume>, Vec<VolumeMount>) {
    match &target.pvc {
        Some(pvc) => (
            vec![Volume {
                name: name.into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: pvc.claim_name.clone(),
                    read_only: None,
                }),
                ..Default::default()
            }],
            vec![VolumeMount {
                name: name.into(),
                mount_path: at.into(),
                ..Default::default()
            }],
        ),
        None => (Vec::new(), Vec::new()),
    }
}

/// Add volumes and their mounts (in the first container) to a Job's pod.
pub(crate) fn add_volumes(job: &mut Job, (volumes, mounts): (Vec<Volume>, Vec<VolumeMount>)) {
    let Some(pod) = job.spec.as_mut().and_then(|s| s.template.spec.as_mut()) else {
        return;
    };
    pod.volumes.get_or_insert_with(Vec::new).extend(volumes);
    if let Some(c) = pod.containers.first_mut() {
        c.volume_mounts.get_or_insert_with(Vec::new).extend(mounts);
    }
}

/// The parts in which backup and cleanup Jobs differ.
pub(crate) struct JobShape<'a> {
    pub(crate) name: String,
    pub(crate) namespace: &'a str,
    pub(crate) owner: OwnerReference,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) image: &'a str,
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<EnvVar>,
    pub(crate) target: &'a BackupTarget,
    pub(crate) timeout_seconds: i64,
}

pub(crate) fn job(shape: JobShape<'_>) -> Job {
    let JobShape {
        name,
        namespace,
        owner,
        labels,
        image,
        args,
        env,
        target,
        timeout_seconds,
    } = shape;
    let mut pod = pod_spec(image, args, env, target);
    pod.restart_policy = Some("Never".into());
    Job {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace.into()),
            labels: Some(labels.clone()),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(JobSpec {
            // A failed backup is reported Failed, not retried into a second artifact.
            backoff_limit: Some(0),
            active_deadline_seconds: Some(timeout_seconds),
            template: pod_template(labels, pod),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The pod template of a Job or of the archiver Deployment: the pod with
/// the workload's labels (the selector matches them).
pub(crate) fn pod_template(labels: BTreeMap<String, String>, pod: PodSpec) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            ..Default::default()
        }),
        spec: Some(pod),
    }
}

/// The pod every Job and the binlog archiver run: the operator image as a
/// non-root user, read-only root filesystem, no API access, the target's
/// volume and a scratch /tmp.
pub(crate) fn pod_spec(
    image: &str,
    args: Vec<String>,
    env: Vec<EnvVar>,
    target: &BackupTarget,
) -> PodSpec {
    let (mut volumes, mut mounts) = target_volumes(target);
    volumes.push(Volume {
        name: "tmp".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    });
    mounts.push(VolumeMount {
        name: "tmp".into(),
        mount_path: "/tmp".into(),
        ..Default::default()
    });
    PodSpec {
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(JOB_UID),
            fs_group: Some(JOB_UID),
            ..Default::default()
        }),
        containers: vec![Container {
            name: "ordinal".into(),
            image: Some(image.into()),
            args: Some(args),
            env: Some(env),
            volume_mounts: Some(mounts),
            termination_message_policy: Some("FallbackToLogsOnError".into()),
            security_context: Some(SecurityContext {
                allow_privilege_escalation: Some(false),
                read_only_root_filesystem: Some(true),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".into()]),
                    add: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }],
        volumes: Some(volumes),
        ..Default::default()
    }
}

/// Where a Job stands, from its conditions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    Running,
    Complete,
    /// Failed, with the condition's reason (e.g. `DeadlineExceeded`).
    Failed(String),
}

pub fn outcome(job: &Job) -> JobOutcome {
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_ref());
    let true_condition =
        |t: &str| conditions.and_then(|cs| cs.iter().find(|c| c.type_ == t && c.status == "True"));
    if true_condition("Complete").is_some() {
        JobOutcome::Complete
    } else if let Some(c) = true_condition("Failed") {
        JobOutcome::Failed(c.reason.clone().unwrap_or_default())
    } else {
        JobOutcome::Running
    }
}

/// Kubernetes names are at most 63 characters; keep the suffix readable.
pub fn job_name(backup: &str, suffix: &str) -> String {
    let max = 63 - suffix.len() - 1;
    let base: String = backup.chars().take(max).collect();
    format!("{}-{suffix}", base.trim_end_matches('-'))
}

pub(crate) fn pod_ip_env() -> EnvVar {
    EnvVar {
        name: ENV_POD_IP.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(k8s_openapi::api::core::v1::ObjectFieldSelector {
                field_path: "status.podIP".into(),
                api_version: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Labels of a Job and its pod: managed by Ordinal, the component, and the
/// object it works for.
pub(crate) fn labels(component: &str, key: &str, value: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (key.to_string(), value.to_string()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "ordinal".to_string(),
        ),
        (
            "app.kubernetes.io/component".to_string(),
            component.to_string(),
        ),
    ])
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use crate::api::backup::S3Target;

    pub(crate) fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "ordinal.dev/v1alpha1".into(),
            kind: "Backup".into(),
            name: "b".into(),
            uid: "u".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    pub(crate) fn s3() -> BackupTarget {
        BackupTarget {
            s3: Some(S3Target {
                bucket: "bk".into(),
                prefix: None,
                endpoint: None,
                region: None,
                force_path_style: false,
                access_key_id: SecretKeyRef {
                    name: "s3".into(),
                    key: "id".into(),
                },
                secret_access_key: SecretKeyRef {
                    name: "s3".into(),
                    key: "secret".into(),
                },
            }),
            gcs: None,
            azure: None,
            pvc: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_outcome_reads_true_conditions_only() {
        use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
        let with = |t: &str, status: &str, reason: Option<&str>| Job {
            status: Some(JobStatus {
                conditions: Some(vec![JobCondition {
                    type_: t.into(),
                    status: status.into(),
                    reason: reason.map(String::from),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(outcome(&Job::default()), JobOutcome::Running);
        assert_eq!(
            outcome(&with("Complete", "True", None)),
            JobOutcome::Complete
        );
        assert_eq!(
            outcome(&with("Complete", "False", None)),
            JobOutcome::Running
        );
        assert_eq!(
            outcome(&with("Failed", "True", Some("DeadlineExceeded"))),
            JobOutcome::Failed("DeadlineExceeded".into())
        );
    }
}
