//! The Job that takes one backup: `ordinal backup run` against the chosen
//! member, the database password and target credentials from Secret
//! references, the manifest reported through the termination message.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::contract::{
    BackupCommand, ENV_DB_PASSWORD, EngineArg, FlavorArg, Location, PVC_MOUNT, RunArgs,
    TERMINATION_LOG,
};
use super::job::{self, JobEngine, JobShape, LABEL_BACKUP};
use crate::api::backup::{BackupTarget, SecretKeyRef};

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

/// The command a backup Job runs.
pub fn command(p: &BackupJob<'_>) -> BackupCommand {
    let (engine, user, flavor) = match &p.engine {
        JobEngine::Redis => (EngineArg::Redis, "root".to_string(), FlavorArg::MariaDb),
        JobEngine::MySql { user, flavor } => (EngineArg::Mysql, user.clone(), (*flavor).into()),
    };
    BackupCommand::Run(RunArgs {
        location: Location {
            namespace: p.namespace.into(),
            cluster: p.cluster.into(),
            backup: p.backup.into(),
            target: p.target.clone(),
            pvc_root: PVC_MOUNT.into(),
        },
        engine,
        host: p.source_host.clone(),
        port: p.source_port,
        source_member: p.source_member.clone(),
        user,
        flavor,
        termination_log: TERMINATION_LOG.into(),
    })
}

/// The Job that takes one backup.
pub fn backup_job(p: &BackupJob<'_>) -> Job {
    let mut env = vec![job::secret_env(ENV_DB_PASSWORD, &p.db_secret)];
    env.extend(job::target_env(p.target));
    job::job(JobShape {
        name: job::job_name(p.backup, "backup"),
        namespace: p.namespace,
        owner: p.owner.clone(),
        labels: job::labels("backup", LABEL_BACKUP, p.backup),
        image: p.image,
        args: command(p).to_args(),
        env,
        target: p.target,
        timeout_seconds: p.timeout_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::contract::{ENV_ACCESS_KEY_ID, ENV_SECRET_ACCESS_KEY};
    use crate::backup::job::fixtures::{owner, s3};

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
}
