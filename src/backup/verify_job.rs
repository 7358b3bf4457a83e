//! The Job that verifies a backup: the artifact restored into a throwaway
//! instance in the same pod (the cluster's database image) and checked
//! against the manifest by `ordinal backup verify`.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, EmptyDirVolumeSource, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::contract::{
    BackupCommand, ENV_DB_PASSWORD, EngineArg, FlavorArg, PVC_MOUNT, TERMINATION_LOG, VerifyArgs,
};
use super::job::{self, DEFAULT_TIMEOUT_SECONDS, JobEngine, JobShape, LABEL_BACKUP};
use super::restore::{self, StoredArtifact};
use crate::api::backup::SecretKeyRef;

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
    pub source: &'a StoredArtifact,
    pub expected_rows: Option<i64>,
}

/// The checker's command: Redis waits for the instance to finish loading
/// what the init step installed; MySQL loads the artifact itself.
pub fn command(p: &VerifyJob<'_>) -> BackupCommand {
    let (engine, port, user, flavor, load) = match &p.engine {
        JobEngine::Redis => (
            EngineArg::Redis,
            6379,
            "root".to_string(),
            FlavorArg::MariaDb,
            false,
        ),
        JobEngine::MySql { user, flavor } => {
            (EngineArg::Mysql, 3306, user.clone(), (*flavor).into(), true)
        }
    };
    let src = p.source;
    BackupCommand::Verify(VerifyArgs {
        engine,
        // Kubernetes expands the pod's own IP from the env var of that name.
        host: "$(POD_IP)".into(),
        port,
        user,
        flavor,
        target: load.then(|| src.target.clone()),
        artifact: load.then(|| src.key.clone()),
        sha256: load.then(|| src.sha256.clone()),
        pvc_root: PVC_MOUNT.into(),
        expect_rows: p.expected_rows.filter(|_| load),
        wait_seconds: 300,
        termination_log: TERMINATION_LOG.into(),
    })
}

/// The Job that restores a backup into a throwaway instance in the same pod
/// and checks it against the manifest: Redis loads the verified RDB (restore
/// init step) and must finish loading; MySQL loads the verified dump and must
/// find as many rows as the dump held. The checker stops the instance at the
/// end so the Job completes.
pub fn verify_job(p: &VerifyJob<'_>) -> Job {
    let (db_command, db_env, port) = match &p.engine {
        JobEngine::Redis => {
            let script = r#"printf 'port 6379\nbind %s\ndir /data\nappendonly no\nrequirepass "%s"\n' "$POD_IP" "$REDIS_PASSWORD" | redis-server -"#;
            (
                script.to_string(),
                vec![
                    job::secret_env("REDIS_PASSWORD", &p.db_secret),
                    job::pod_ip_env(),
                ],
                6379,
            )
        }
        JobEngine::MySql { flavor, .. } => {
            let (server, root_env) = match flavor {
                crate::api::MySqlFlavor::MariaDB => ("mariadbd", "MARIADB_ROOT_PASSWORD"),
                crate::api::MySqlFlavor::MySQL => ("mysqld", "MYSQL_ROOT_PASSWORD"),
            };
            let script = format!(
                "exec docker-entrypoint.sh {server} --server-id=1 --log-bin=mysql-bin --binlog-format=ROW --bind-address=\"$POD_IP\""
            );
            (
                script,
                vec![job::secret_env(root_env, &p.db_secret), job::pod_ip_env()],
                3306,
            )
        }
    };
    let mut env = vec![
        job::secret_env(ENV_DB_PASSWORD, &p.db_secret),
        job::pod_ip_env(),
    ];
    env.extend(job::target_env(&p.source.target));
    let mut job = job::job(JobShape {
        name: job::job_name(p.backup, "verify"),
        namespace: p.namespace,
        owner: p.owner.clone(),
        labels: job::labels("backup-verify", LABEL_BACKUP, p.backup),
        image: p.image,
        args: command(p).to_args(),
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
            let step = restore::redis_init_step(p.image, p.source, "/data", true);
            let mut init = step.containers;
            // The init step mounts the Job's own data volume.
            for c in &mut init {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::job::fixtures::{owner, s3};

    #[test]
    fn verify_job_runs_a_throwaway_instance_beside_the_checker() {
        let source = StoredArtifact {
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
}
