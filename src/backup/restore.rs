//! Pure builders of restore steps: which artifact a `spec.restore` names, the
//! init container that puts a Redis dump in place before redis starts, and the
//! Job that loads a MySQL/MariaDB dump into a fresh first member.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, VolumeMount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::contract::{
    ARCHIVE_MOUNT, ArtifactArgs, ENV_DB_PASSWORD, MYSQL_ARTIFACT, PVC_MOUNT, PointArgs,
    REDIS_ARTIFACT, RestoreCommand, RestoreMysqlArgs, RestoreRedisArgs, TERMINATION_LOG,
};
use super::job::{self, JobShape};
use super::target;
use crate::api::MySqlFlavor;
use crate::api::backup::{Backup, BackupPhase, BackupTarget, ClusterKind, SecretKeyRef};
use crate::resources::statefulset::{DATA_VOLUME, InitStep};

/// A Succeeded Backup's artifact: what a restore or a verification reads.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredArtifact {
    pub backup: String,
    pub target: BackupTarget,
    /// Object key relative to the target.
    pub key: String,
    pub sha256: String,
}

/// Resolve a Backup into what a restore needs; the reason when it cannot be used.
pub fn source_of(
    backup: &Backup,
    namespace: &str,
    want: ClusterKind,
) -> Result<StoredArtifact, String> {
    let name = backup.metadata.name.clone().unwrap_or_default();
    if backup.spec.cluster.kind != want {
        return Err(format!(
            "Backup {name} holds a {:?}, not a {want:?}",
            backup.spec.cluster.kind
        ));
    }
    let status = backup.status.clone().unwrap_or_default();
    if status.phase != BackupPhase::Succeeded {
        return Err(format!(
            "Backup {name} is {:?}, not Succeeded",
            status.phase
        ));
    }
    let sha256 = status
        .sha256
        .ok_or_else(|| format!("Backup {name} records no sha256"))?;
    let file = match want {
        ClusterKind::RedisReplication => REDIS_ARTIFACT,
        ClusterKind::MySQLCluster => MYSQL_ARTIFACT,
    };
    let dir = target::backup_dir(
        &target::prefix(&backup.spec.target),
        namespace,
        &backup.spec.cluster.name,
        &name,
    );
    Ok(StoredArtifact {
        backup: name,
        target: backup.spec.target.clone(),
        key: dir.clone().join(file).to_string(),
        sha256,
    })
}

impl StoredArtifact {
    /// The arguments naming it, read where a PVC target is mounted.
    pub fn args(&self) -> ArtifactArgs {
        ArtifactArgs {
            target: self.target.clone(),
            artifact: self.key.clone(),
            sha256: self.sha256.clone(),
            pvc_root: PVC_MOUNT.into(),
        }
    }
}

/// Init container restoring a Redis dump into ordinal 0's empty data
/// directory (other ordinals start empty and replicate); `any_member`
/// restores whatever the pod's name (a throwaway verification instance).
pub fn redis_init_step(
    image: &str,
    src: &StoredArtifact,
    data_dir: &str,
    any_member: bool,
) -> InitStep {
    let (volumes, mut mounts) = job::target_volumes(&src.target);
    mounts.push(VolumeMount {
        name: DATA_VOLUME.into(),
        mount_path: data_dir.into(),
        ..Default::default()
    });
    let args = RestoreCommand::Redis(RestoreRedisArgs {
        artifact: src.args(),
        data_dir: data_dir.into(),
        only_ordinal: 0,
        any_member,
    })
    .to_args();
    InitStep {
        containers: vec![Container {
            name: "restore".into(),
            image: Some(image.into()),
            args: Some(args),
            env: Some(job::target_env(&src.target)),
            volume_mounts: Some(mounts),
            termination_message_policy: Some("FallbackToLogsOnError".into()),
            ..Default::default()
        }],
        volumes,
    }
}

/// Where a point-in-time restore replays archived binlogs to, and from
/// which archive.
#[derive(Clone, Debug, PartialEq)]
pub struct RestorePoint {
    /// RFC 3339 time, or
    pub point_in_time: Option<String>,
    /// one GTID.
    pub gtid: Option<String>,
    pub archive_target: BackupTarget,
    /// The cluster whose archive is read (the one the Backup was taken of).
    pub archive_cluster: String,
}

impl RestorePoint {
    /// The point as a user names it.
    pub fn describe(&self) -> String {
        match (&self.point_in_time, &self.gtid) {
            (Some(t), _) => t.clone(),
            (None, Some(g)) => format!("GTID {g}"),
            (None, None) => "the end of the archive".into(),
        }
    }
}

/// Everything the MySQL restore Job needs.
pub struct MySqlRestore<'a> {
    pub cluster: &'a str,
    pub namespace: &'a str,
    pub owner: OwnerReference,
    pub image: &'a str,
    /// First member's stable DNS name.
    pub host: String,
    pub flavor: MySqlFlavor,
    pub root_secret: SecretKeyRef,
    pub source: &'a StoredArtifact,
    /// Replay archived binlogs after the base, up to this point.
    pub point: Option<&'a RestorePoint>,
}

/// Job name of a cluster's restore.
pub fn mysql_job_name(cluster: &str) -> String {
    job::job_name(cluster, "restore")
}

/// The Job loading a dump into the first member before replication starts.
pub fn mysql_restore_job(p: &MySqlRestore<'_>) -> Job {
    // An archive on the claim the base backup is read from is read through
    // the same mount.
    let shared_claim = p.point.is_some_and(|pt| {
        matches!((&pt.archive_target.pvc, &p.source.target.pvc),
            (Some(a), Some(b)) if a.claim_name == b.claim_name)
    });
    let archive_root = if shared_claim {
        PVC_MOUNT
    } else {
        ARCHIVE_MOUNT
    };
    let args = RestoreCommand::Mysql(RestoreMysqlArgs {
        artifact: p.source.args(),
        host: p.host.clone(),
        port: 3306,
        user: "root".into(),
        flavor: p.flavor.into(),
        point: Box::new(
            p.point
                .map(|pt| PointArgs {
                    point_in_time: pt.point_in_time.clone(),
                    gtid: pt.gtid.clone(),
                    archive_target: Some(pt.archive_target.clone()),
                    archive_cluster: Some(pt.archive_cluster.clone()),
                    archive_namespace: Some(p.namespace.to_string()),
                    archive_pvc_root: archive_root.into(),
                })
                .unwrap_or_default(),
        ),
        termination_log: TERMINATION_LOG.into(),
    })
    .to_args();
    let mut env = vec![job::secret_env(ENV_DB_PASSWORD, &p.root_secret)];
    env.extend(job::target_env(&p.source.target));
    if let Some(pt) = p.point {
        env.extend(job::archive_target_env(&pt.archive_target));
    }
    let labels = job::labels("restore", "app.kubernetes.io/instance", p.cluster);
    let mut restore = job::job(JobShape {
        name: mysql_job_name(p.cluster),
        namespace: p.namespace,
        owner: p.owner.clone(),
        labels,
        image: p.image,
        args,
        env,
        target: &p.source.target,
        timeout_seconds: job::DEFAULT_TIMEOUT_SECONDS * 6,
    });
    if let Some(pt) = p.point
        && !shared_claim
    {
        job::add_volumes(&mut restore, job::archive_volumes(&pt.archive_target));
    }
    restore
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::backup::{BackupSpec, BackupStatus, ClusterRef, PvcTarget};

    fn backup(phase: BackupPhase) -> Backup {
        let mut b = Backup::new(
            "nightly-1",
            BackupSpec {
                cluster: ClusterRef {
                    kind: ClusterKind::RedisReplication,
                    name: "cache".into(),
                },
                target: BackupTarget {
                    s3: None,
                    gcs: None,
                    azure: None,
                    pvc: Some(PvcTarget {
                        claim_name: "backups".into(),
                        path: None,
                    }),
                },
                verify: false,
                artifact_policy: Default::default(),
                timeout_seconds: None,
            },
        );
        b.status = Some(BackupStatus {
            phase,
            sha256: Some("ab".repeat(32)),
            ..Default::default()
        });
        b
    }

    #[test]
    fn a_point_in_time_restore_job_reads_the_archive_with_its_own_credentials() {
        use crate::api::backup::{S3Target, SecretKeyRef};
        let mut b = backup(BackupPhase::Succeeded);
        b.spec.cluster.kind = ClusterKind::MySQLCluster;
        let src = source_of(&b, "shop", ClusterKind::MySQLCluster).expect("usable");
        let s3 = BackupTarget {
            s3: Some(S3Target {
                bucket: "archive".into(),
                prefix: None,
                endpoint: None,
                region: None,
                force_path_style: false,
                access_key_id: SecretKeyRef {
                    name: "a".into(),
                    key: "id".into(),
                },
                secret_access_key: SecretKeyRef {
                    name: "a".into(),
                    key: "secret".into(),
                },
            }),
            gcs: None,
            azure: None,
            pvc: None,
        };
        let job_with = |archive_target: BackupTarget| {
            let point = RestorePoint {
                point_in_time: Some("2026-12-01T03:04:05Z".into()),
                gtid: None,
                archive_target,
                archive_cluster: "cache".into(),
            };
            let job = mysql_restore_job(&MySqlRestore {
                cluster: "copy",
                namespace: "shop",
                owner: Default::default(),
                image: "ordinal:dev",
                host: "copy-0".into(),
                flavor: MySqlFlavor::MariaDB,
                root_secret: SecretKeyRef {
                    name: "copy-auth".into(),
                    key: "root-password".into(),
                },
                source: &src,
                point: Some(&point),
            });
            job.spec.and_then(|s| s.template.spec).expect("pod")
        };
        let pod = job_with(s3);
        let c = &pod.containers[0];
        let args = c.args.clone().expect("args").join(" ");
        assert!(
            args.contains("--point-in-time=2026-12-01T03:04:05Z")
                && args.contains("--archive-cluster=cache")
                && args.contains("--archive-namespace=shop"),
            "{args}"
        );
        let env: Vec<String> = c
            .env
            .clone()
            .expect("env")
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert!(
            env.contains(&"ORDINAL_ARCHIVE_TARGET_ACCESS_KEY_ID".to_string()),
            "{env:?}"
        );
        // The same claim as the base backup: one volume, read at /backup.
        let pvc = b.spec.target.clone();
        let pod = job_with(pvc);
        let args = pod.containers[0].args.clone().expect("args").join(" ");
        assert!(args.contains("--archive-pvc-root=/backup"), "{args}");
        assert_eq!(
            pod.volumes
                .unwrap_or_default()
                .iter()
                .filter(|v| v.persistent_volume_claim.is_some())
                .count(),
            1
        );
    }

    #[test]
    fn only_a_succeeded_backup_of_the_same_kind_restores() {
        let src = source_of(
            &backup(BackupPhase::Succeeded),
            "shop",
            ClusterKind::RedisReplication,
        )
        .expect("usable");
        assert_eq!(src.key, "shop/cache/nightly-1/dump.rdb.zst");
        assert!(
            source_of(
                &backup(BackupPhase::Running),
                "shop",
                ClusterKind::RedisReplication
            )
            .unwrap_err()
            .contains("not Succeeded")
        );
        assert!(
            source_of(
                &backup(BackupPhase::Succeeded),
                "shop",
                ClusterKind::MySQLCluster
            )
            .unwrap_err()
            .contains("not a MySQLCluster")
        );
    }

    #[test]
    fn redis_init_step_restores_only_ordinal_zero_with_the_checksum() {
        let src = source_of(
            &backup(BackupPhase::Succeeded),
            "shop",
            ClusterKind::RedisReplication,
        )
        .expect("usable");
        let step = redis_init_step("ordinal:dev", &src, "/data", false);
        let c = &step.containers[0];
        let args = c.args.clone().expect("args").join(" ");
        assert!(
            args.starts_with("restore redis")
                && args.contains("--only-ordinal=0")
                && args.contains(&format!("--sha256={}", "ab".repeat(32)))
        );
        let mounts = c.volume_mounts.clone().expect("mounts");
        assert!(
            mounts
                .iter()
                .any(|m| m.name == DATA_VOLUME && m.mount_path == "/data")
        );
        assert!(step.volumes.iter().any(|v| {
            v.persistent_volume_claim
                .as_ref()
                .is_some_and(|p| p.claim_name == "backups")
        }));
    }
}
