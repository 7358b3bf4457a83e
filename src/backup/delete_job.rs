//! The Job that deletes one backup's artifact and manifest
//! (`artifactPolicy: Delete`).

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::contract::{BackupCommand, Location, PVC_MOUNT};
use super::job::{self, JobShape, LABEL_BACKUP};
use crate::api::backup::BackupTarget;

/// The Job that deletes one backup's artifact and manifest.
pub fn delete_job(
    backup: &str,
    namespace: &str,
    cluster: &str,
    owner: OwnerReference,
    image: &str,
    target: &BackupTarget,
) -> Job {
    let command = BackupCommand::Delete(Location {
        namespace: namespace.into(),
        cluster: cluster.into(),
        backup: backup.into(),
        target: target.clone(),
        pvc_root: PVC_MOUNT.into(),
    });
    job::job(JobShape {
        name: job::job_name(backup, "delete"),
        namespace,
        owner,
        labels: job::labels("backup-cleanup", LABEL_BACKUP, backup),
        image,
        args: command.to_args(),
        env: job::target_env(target),
        target,
        timeout_seconds: 600,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::backup::PvcTarget;
    use crate::backup::job::fixtures::owner;

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
