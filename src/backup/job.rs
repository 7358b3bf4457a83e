//! Pure builders of the Jobs that run backups and delete artifacts. They run
//! the operator image (`ordinal backup …`) with the database password and
//! target credentials from Secret references, so neither the Job nor the
//! operator ever holds credentials in its spec, and the Job needs no API access.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    SecretKeySelector, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::target::{
    ENV_ACCESS_KEY_ID, ENV_AZURE_KEY, ENV_GCS_KEY, ENV_SECRET_ACCESS_KEY, PVC_MOUNT,
};
use crate::api::backup::{BackupTarget, SecretKeyRef};

pub const ENV_DB_PASSWORD: &str = "ORDINAL_DB_PASSWORD";
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

/// Everything a backup Job needs.
#[derive(Clone, Debug)]
pub struct BackupJob<'a> {
    pub backup: &'a str,
    pub namespace: &'a str,
    pub owner: OwnerReference,
    pub image: &'a str,
    pub engine: JobEngine,
    pub cluster: &'a str,
    /// Member to read from: its stable DNS name, port and pod name.
    pub source_host: String,
    pub source_port: u16,
    pub source_member: String,
    /// The cluster's credentials Secret and the key of the password to use.
    pub db_secret: SecretKeyRef,
    pub target: &'a BackupTarget,
    pub timeout_seconds: i64,
}

pub(crate) fn secret_env(name: &str, r: &SecretKeyRef) -> EnvVar {
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
    let mut env = Vec::new();
    if let Some(s3) = &target.s3 {
        env.push(secret_env(ENV_ACCESS_KEY_ID, &s3.access_key_id));
        env.push(secret_env(ENV_SECRET_ACCESS_KEY, &s3.secret_access_key));
    }
    if let Some(gcs) = &target.gcs {
        env.push(secret_env(ENV_GCS_KEY, &gcs.service_account_key));
    }
    if let Some(az) = &target.azure {
        env.push(secret_env(ENV_AZURE_KEY, &az.access_key));
    }
    env
}

/// Volumes and mounts a target needs (a PVC target is mounted at /backup).
pub fn target_volumes(target: &BackupTarget) -> (Vec<Volume>, Vec<VolumeMount>) {
    match &target.pvc {
        Some(pvc) => (
            vec![Volume {
                name: "backup-target".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: pvc.claim_name.clone(),
                    read_only: None,
                }),
                ..Default::default()
            }],
            vec![VolumeMount {
                name: "backup-target".into(),
                mount_path: PVC_MOUNT.into(),
                ..Default::default()
            }],
        ),
        None => (Vec::new(), Vec::new()),
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
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
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
                }),
            },
            ..Default::default()
        }),
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

fn target_json(target: &BackupTarget) -> String {
    serde_json::to_string(target).unwrap_or_default()
}

/// The Job that takes one backup.
pub fn backup_job(p: &BackupJob<'_>) -> Job {
    let mut args = vec![
        "backup".into(),
        "run".into(),
        format!("--namespace={}", p.namespace),
        format!("--cluster={}", p.cluster),
        format!("--backup={}", p.backup),
        format!("--host={}", p.source_host),
        format!("--port={}", p.source_port),
        format!("--source-member={}", p.source_member),
        format!("--target={}", target_json(p.target)),
    ];
    match &p.engine {
        JobEngine::Redis => args.push("--engine=redis".into()),
        JobEngine::MySql { user, flavor } => {
            args.push("--engine=mysql".into());
            args.push(format!("--user={user}"));
            args.push(format!("--flavor={flavor:?}"));
        }
    }
    let mut env = vec![secret_env(ENV_DB_PASSWORD, &p.db_secret)];
    env.extend(target_env(p.target));
    let labels = BTreeMap::from([
        (LABEL_BACKUP.to_string(), p.backup.to_string()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "ordinal".to_string(),
        ),
        (
            "app.kubernetes.io/component".to_string(),
            "backup".to_string(),
        ),
    ]);
    job(JobShape {
        name: job_name(p.backup, "backup"),
        namespace: p.namespace,
        owner: p.owner.clone(),
        labels,
        image: p.image,
        args,
        env,
        target: p.target,
        timeout_seconds: p.timeout_seconds,
    })
}

/// Everything a verification Job needs.
pub struct VerifyJob<'a> {
    pub backup: &'a str,
    pub namespace: &'a str,
    pub owner: OwnerReference,
    /// The operator image (restore step and checker).
    pub image: &'a str,
    /// The cluster's database image (the throwaway instance).
    pub database_image: &'a str,
    pub engine: JobEngine,
    /// The cluster's Secret key of the password the throwaway instance uses.
    pub db_secret: SecretKeyRef,
    pub source: &'a super::restore::RestoreSource,
    pub expected_rows: Option<i64>,
}

fn pod_ip_env() -> EnvVar {
    EnvVar {
        name: "POD_IP".into(),
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

/// The Job that restores a backup into a throwaway instance in the same pod
/// and checks it against the manifest: Redis loads the verified RDB (restore
/// init step) and must finish loading; MySQL loads the verified dump and must
/// find as many rows as the dump held. The checker stops the instance at the
/// end so the Job completes.
pub fn verify_job(p: &VerifyJob<'_>) -> Job {
    let source_args = |args: &mut Vec<String>| {
        args.push(format!("--target={}", target_json(&p.source.target)));
        args.push(format!("--artifact={}", p.source.key));
        args.push(format!("--sha256={}", p.source.sha256));
    };
    let mut args = vec!["backup".to_string(), "verify".to_string()];
    let (db_command, db_env, port) = match &p.engine {
        JobEngine::Redis => {
            args.extend(["--engine=redis".to_string(), "--port=6379".to_string()]);
            let script = r#"printf 'port 6379\nbind %s\ndir /data\nappendonly no\nrequirepass "%s"\n' "$POD_IP" "$REDIS_PASSWORD" | redis-server -"#;
            (
                script.to_string(),
                vec![secret_env("REDIS_PASSWORD", &p.db_secret), pod_ip_env()],
                6379,
            )
        }
        JobEngine::MySql { user, flavor } => {
            args.extend([
                "--engine=mysql".to_string(),
                "--port=3306".to_string(),
                format!("--user={user}"),
                format!("--flavor={flavor:?}"),
            ]);
            source_args(&mut args);
            if let Some(rows) = p.expected_rows {
                args.push(format!("--expect-rows={rows}"));
            }
            let (server, root_env) = match flavor {
                crate::api::MySqlFlavor::MariaDB => ("mariadbd", "MARIADB_ROOT_PASSWORD"),
                crate::api::MySqlFlavor::MySQL => ("mysqld", "MYSQL_ROOT_PASSWORD"),
            };
            let script = format!(
                "exec docker-entrypoint.sh {server} --server-id=1 --log-bin=mysql-bin --binlog-format=ROW --bind-address=\"$POD_IP\""
            );
            (
                script,
                vec![secret_env(root_env, &p.db_secret), pod_ip_env()],
                3306,
            )
        }
    };
    let mut env = vec![secret_env(ENV_DB_PASSWORD, &p.db_secret), pod_ip_env()];
    env.extend(target_env(&p.source.target));
    let labels = BTreeMap::from([
        (LABEL_BACKUP.to_string(), p.backup.to_string()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "ordinal".to_string(),
        ),
        (
            "app.kubernetes.io/component".to_string(),
            "backup-verify".to_string(),
        ),
    ]);
    let mut job = job(JobShape {
        name: job_name(p.backup, "verify"),
        namespace: p.namespace,
        owner: p.owner.clone(),
        labels,
        image: p.image,
        args,
        env,
        target: &p.source.target,
        timeout_seconds: DEFAULT_TIMEOUT_SECONDS,
    });
    let data = VolumeMount {
        name: "data".into(),
        mount_path: "/data".into(),
        ..Default::default()
    };
    if let Some(pod) = job.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        pod.volumes.get_or_insert_with(Vec::new).push(Volume {
            name: "data".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        });
        // The throwaway instance runs as the image's database user, like the members.
        pod.security_context = None;
        pod.containers.push(Container {
            name: "database".into(),
            image: Some(p.database_image.into()),
            command: Some(vec!["sh".into(), "-c".into(), db_command]),
            env: Some(db_env),
            ports: Some(vec![k8s_openapi::api::core::v1::ContainerPort {
                container_port: port,
                ..Default::default()
            }]),
            volume_mounts: Some(vec![if matches!(p.engine, JobEngine::Redis) {
                data.clone()
            } else {
                VolumeMount {
                    name: "data".into(),
                    mount_path: "/var/lib/mysql".into(),
                    ..Default::default()
                }
            }]),
            ..Default::default()
        });
        if matches!(p.engine, JobEngine::Redis) {
            let step = super::restore::redis_init_step(p.image, p.source, "/data");
            let mut init = step.containers;
            for c in &mut init {
                if let Some(args) = c.args.as_mut() {
                    args.push("--any-member".into());
                }
                // The init step mounts the Job's own data volume.
                if let Some(mounts) = c.volume_mounts.as_mut() {
                    for m in mounts.iter_mut().filter(|m| m.mount_path == "/data") {
                        m.name = "data".into();
                    }
                }
            }
            pod.init_containers = Some(init);
        }
    }
    job
}

/// The Job that deletes one backup's artifact and manifest.
pub fn delete_job(
    backup: &str,
    namespace: &str,
    cluster: &str,
    owner: OwnerReference,
    image: &str,
    target: &BackupTarget,
) -> Job {
    let args = vec![
        "backup".into(),
        "delete".into(),
        format!("--namespace={namespace}"),
        format!("--cluster={cluster}"),
        format!("--backup={backup}"),
        format!("--target={}", target_json(target)),
    ];
    let labels = BTreeMap::from([
        (LABEL_BACKUP.to_string(), backup.to_string()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "ordinal".to_string(),
        ),
        (
            "app.kubernetes.io/component".to_string(),
            "backup-cleanup".to_string(),
        ),
    ]);
    job(JobShape {
        name: job_name(backup, "delete"),
        namespace,
        owner,
        labels,
        image,
        args,
        env: target_env(target),
        target,
        timeout_seconds: 600,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::backup::{PvcTarget, S3Target};

    fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "ordinal.dev/v1alpha1".into(),
            kind: "Backup".into(),
            name: "b".into(),
            uid: "u".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn s3() -> BackupTarget {
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

    #[test]
    fn backup_job_takes_credentials_only_from_secrets_and_never_retries() {
        let target = s3();
        let job = backup_job(&BackupJob {
            backup: "nightly-1",
            namespace: "shop",
            owner: owner(),
            image: "ordinal:dev",
            engine: JobEngine::Redis,
            cluster: "cache",
            source_host: "cache-1.cache-headless.shop.svc.cluster.local".into(),
            source_port: 6379,
            source_member: "cache-1".into(),
            db_secret: SecretKeyRef {
                name: "cache-auth".into(),
                key: "password".into(),
            },
            target: &target,
            timeout_seconds: 900,
        });
        assert_eq!(job.metadata.name.as_deref(), Some("nightly-1-backup"));
        let spec = job.spec.expect("spec");
        assert_eq!(spec.backoff_limit, Some(0));
        assert_eq!(spec.active_deadline_seconds, Some(900));
        let pod = spec.template.spec.expect("pod");
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.automount_service_account_token, Some(false));
        let c = &pod.containers[0];
        assert!(c.command.is_none(), "the image's entrypoint runs");
        let args = c.args.clone().expect("args").join(" ");
        assert!(
            args.starts_with("backup run")
                && args.contains("--host=cache-1.cache-headless")
                && args.contains("--engine=redis")
        );
        let env = c.env.clone().expect("env");
        assert!(env.iter().all(|e| {
            e.value.is_none()
                && e.value_from
                    .as_ref()
                    .and_then(|v| v.secret_key_ref.as_ref())
                    .is_some()
        }));
        let names: Vec<_> = env.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [ENV_DB_PASSWORD, ENV_ACCESS_KEY_ID, ENV_SECRET_ACCESS_KEY]
        );
        assert_eq!(
            c.security_context
                .clone()
                .and_then(|s| s.read_only_root_filesystem),
            Some(true)
        );
    }

    #[test]
    fn verify_job_runs_a_throwaway_instance_beside_the_checker() {
        use crate::backup::restore::RestoreSource;
        let source = RestoreSource {
            backup: "b".into(),
            target: s3(),
            key: "ns/c/b/dump.rdb.zst".into(),
            sha256: "ab".repeat(32),
        };
        let verify = |engine: JobEngine| {
            verify_job(&VerifyJob {
                backup: "b",
                namespace: "ns",
                owner: owner(),
                image: "ordinal:dev",
                database_image: "redis:7.2",
                engine,
                db_secret: SecretKeyRef {
                    name: "c-auth".into(),
                    key: "password".into(),
                },
                source: &source,
                expected_rows: Some(42),
            })
        };
        let redis = verify(JobEngine::Redis)
            .spec
            .expect("spec")
            .template
            .spec
            .expect("pod");
        assert_eq!(redis.containers.len(), 2, "checker and throwaway database");
        let init = redis.init_containers.expect("restore step");
        let init_args = init[0].args.clone().expect("args").join(" ");
        assert!(init_args.contains("--any-member") && init_args.contains("--sha256="));
        assert!(
            redis.containers[1]
                .command
                .clone()
                .expect("cmd")
                .join(" ")
                .contains("redis-server -")
        );
        let mysql = verify(JobEngine::MySql {
            user: "root".into(),
            flavor: crate::api::MySqlFlavor::MariaDB,
        })
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod");
        assert!(
            mysql.init_containers.is_none(),
            "MySQL loads into the running instance"
        );
        let args = mysql.containers[0].args.clone().expect("args").join(" ");
        assert!(
            args.contains("backup verify")
                && args.contains("--expect-rows=42")
                && args.contains("--artifact=ns/c/b/dump.rdb.zst")
        );
    }

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

    #[test]
    fn pvc_targets_are_mounted_and_names_fit() {
        let target = BackupTarget {
            s3: None,
            gcs: None,
            azure: None,
            pvc: Some(PvcTarget {
                claim_name: "backups".into(),
                path: None,
            }),
        };
        let long = "x".repeat(80);
        let job = delete_job(&long, "shop", "cache", owner(), "ordinal:dev", &target);
        let name = job.metadata.name.clone().expect("name");
        assert!(name.len() <= 63 && name.ends_with("-delete"), "{name}");
        let pod = job.spec.expect("spec").template.spec.expect("pod");
        let vol = pod
            .volumes
            .expect("volumes")
            .into_iter()
            .find(|v| v.name == "backup-target")
            .expect("target volume");
        assert_eq!(
            vol.persistent_volume_claim.expect("pvc").claim_name,
            "backups"
        );
        let mounts = pod.containers[0].volume_mounts.clone().expect("mounts");
        assert!(mounts.iter().any(|m| m.mount_path == PVC_MOUNT));
    }
}
