//! The binlog archiver of a MySQL/MariaDB cluster: a one-replica Deployment
//! running `ordinal binlog archive` (the pod shape of the backup Jobs: the
//! operator image, non-root, read-only root filesystem, no API access),
//! as the replication user (REPLICATION SLAVE only: it reads binlogs and
//! system variables, nothing else) with that user's password and the
//! target's credentials from Secret references. `Recreate`: two archivers
//! never write one archive at once.
//! It restarts on its own after a crash or a node loss and resumes from the
//! archive, independent of the operator.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};

use super::contract::{
    ARCHIVE_STATUS_PORT, ArchiveArgs, BinlogCommand, ENV_DB_PASSWORD, PVC_MOUNT,
};
use super::job;
use crate::api::MySqlFlavor;
use crate::api::backup::SecretKeyRef;
use crate::api::mysql::BinlogArchiveSpec;

/// Component label of archiver pods.
pub const COMPONENT: &str = "binlog-archive";
/// Label naming the cluster an archiver belongs to.
pub const LABEL_CLUSTER: &str = "ordinal.dev/archive-of";

/// Everything the archiver Deployment is built from.
pub struct Archiver<'a> {
    pub cluster: &'a str,
    pub namespace: &'a str,
    pub owner: OwnerReference,
    pub image: &'a str,
    /// Stable DNS names of the members, in ordinal order.
    pub members: Vec<String>,
    pub flavor: MySqlFlavor,
    /// The MySQL user the archiver logs in as, and its password.
    pub user: &'a str,
    pub password_secret: SecretKeyRef,
    /// Digest of the cluster's credentials (`status.authHash`), on the pod
    /// template: a rotated password restarts the archiver, which reads its
    /// password from the environment once.
    pub credentials_digest: &'a str,
    pub spec: &'a BinlogArchiveSpec,
}

/// Pod template annotation holding [`Archiver::credentials_digest`].
pub const CREDENTIALS_ANNOTATION: &str = "ordinal.dev/credentials-digest";

/// Name of a cluster's archiver Deployment.
pub fn name(cluster: &str) -> String {
    job::job_name(cluster, "binlog")
}

/// The command the archiver runs.
pub fn command(a: &Archiver<'_>) -> BinlogCommand {
    BinlogCommand::Archive(ArchiveArgs {
        namespace: a.namespace.into(),
        cluster: a.cluster.into(),
        target: a.spec.target.clone(),
        pvc_root: PVC_MOUNT.into(),
        members: a.members.clone(),
        port: 3306,
        user: a.user.into(),
        flavor: a.flavor.into(),
        source: a.spec.source.into(),
        max_delay_seconds: a.spec.max_delay_seconds.max(1) as u64,
        segment_size_mib: a.spec.segment_size_mib.max(1) as u64,
        prune_interval_seconds: 600,
        status_port: ARCHIVE_STATUS_PORT,
    })
}

pub fn deployment(a: &Archiver<'_>) -> Deployment {
    let mut env = vec![job::secret_env(ENV_DB_PASSWORD, &a.password_secret)];
    env.extend(job::target_env(&a.spec.target));
    let mut labels = job::labels(COMPONENT, "app.kubernetes.io/instance", a.cluster);
    labels.insert(LABEL_CLUSTER.into(), a.cluster.into());
    let mut pod = job::pod_spec(a.image, command(a).to_args(), env, &a.spec.target);
    pod.restart_policy = Some("Always".into());
    // SIGTERM stores what is complete; give it time to upload.
    pod.termination_grace_period_seconds = Some(60);
    let mut template = job::pod_template(labels.clone(), pod);
    template.metadata.get_or_insert_default().annotations = Some(
        [(
            CREDENTIALS_ANNOTATION.to_string(),
            a.credentials_digest.to_string(),
        )]
        .into(),
    );
    Deployment {
        metadata: ObjectMeta {
            name: Some(name(a.cluster)),
            namespace: Some(a.namespace.into()),
            labels: Some(labels),
            owner_references: Some(vec![a.owner.clone()]),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some([(LABEL_CLUSTER.to_string(), a.cluster.to_string())].into()),
                ..Default::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                rolling_update: None,
            }),
            template,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::backup::{BackupTarget, PvcTarget};

    #[test]
    fn the_archiver_runs_one_pod_with_the_secrets_by_reference() {
        let spec = BinlogArchiveSpec {
            target: BackupTarget {
                s3: None,
                gcs: None,
                azure: None,
                pvc: Some(PvcTarget {
                    claim_name: "backups".into(),
                    path: Some("pitr".into()),
                }),
            },
            max_delay_seconds: 5,
            segment_size_mib: 4,
            source: Default::default(),
        };
        let d = deployment(&Archiver {
            cluster: "db",
            namespace: "shop",
            owner: OwnerReference::default(),
            image: "ordinal:dev",
            members: vec!["db-0.x".into(), "db-1.x".into()],
            flavor: MySqlFlavor::MariaDB,
            user: "repl",
            password_secret: SecretKeyRef {
                name: "db-auth".into(),
                key: "replication-password".into(),
            },
            credentials_digest: "d1",
            spec: &spec,
        });
        assert_eq!(d.metadata.name.as_deref(), Some("db-binlog"));
        let s = d.spec.expect("spec");
        assert_eq!(s.replicas, Some(1));
        assert_eq!(
            s.strategy.and_then(|s| s.type_).as_deref(),
            Some("Recreate")
        );
        let pod = s.template.spec.expect("pod");
        let c = &pod.containers[0];
        let args = c.args.clone().expect("args").join(" ");
        assert!(
            args.starts_with("binlog archive")
                && args.contains("--member=db-0.x --member=db-1.x")
                && args.contains("--max-delay-seconds=5")
                && args.contains("--segment-size-mib=4")
                && args.contains("--source=PreferReplica")
                && args.contains("--user=repl"),
            "{args}"
        );
        let env = c.env.clone().expect("env");
        assert!(env.iter().all(|e| e.value.is_none()), "only references");
        let password = env
            .iter()
            .find(|e| e.name == ENV_DB_PASSWORD)
            .and_then(|e| e.value_from.as_ref()?.secret_key_ref.as_ref())
            .expect("password from a Secret");
        assert_eq!(
            (password.name.as_str(), password.key.as_str()),
            ("db-auth", "replication-password")
        );
        assert!(
            pod.volumes
                .unwrap_or_default()
                .iter()
                .any(|v| v.persistent_volume_claim.is_some())
        );
    }
}
