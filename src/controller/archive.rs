//! The binlog archiver of a MySQL/MariaDB cluster with
//! `spec.backup.binlogArchive`: a Deployment (built by
//! [`crate::backup::archive_deployment`]) applied with the other children
//! once the cluster has bootstrapped (a restore finished, a primary
//! recorded: an archive begins at a position the cluster keeps), and
//! deleted when the setting is removed.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch};

use super::common::apply_params;
use super::context::{Context, Error, KubeContext};
use crate::api::backup::SecretKeyRef;
use crate::api::mysql::BinlogArchiveSpec;
use crate::api::{BinlogArchiveStatus, ReplicationState};
use crate::backup::archive_deployment::{self, Archiver};
use crate::backup::contract::{ARCHIVE_STATUS_PATH, ARCHIVE_STATUS_PORT, ArchiveReport};
use crate::resources::{ClusterView, DbKind, secret};

/// What the archiver of a cluster should be.
#[derive(Clone, Debug, PartialEq)]
pub enum ArchiverPlan {
    /// Redis: no archiver exists.
    NotApplicable,
    /// MySQL without `binlogArchive`, or not bootstrapped yet: none runs.
    Absent,
    /// This Deployment runs.
    Run(Box<Deployment>),
}

/// `credentials_digest`: the cluster's `status.authHash`; a rotation
/// changes it and so restarts the archiver with the new password.
pub fn plan(
    view: &ClusterView,
    spec: Option<&BinlogArchiveSpec>,
    state: &ReplicationState,
    image: &str,
    credentials_digest: &str,
) -> ArchiverPlan {
    let DbKind::MySql(flavor) = view.kind else {
        return ArchiverPlan::NotApplicable;
    };
    let (Some(spec), Some(_)) = (spec, state.primary) else {
        return ArchiverPlan::Absent;
    };
    ArchiverPlan::Run(Box::new(archive_deployment::deployment(&Archiver {
        cluster: &view.name,
        namespace: &view.namespace,
        owner: view.owner.clone(),
        image,
        members: (0..view.replicas).map(|o| view.member_dns(o)).collect(),
        flavor,
        user: crate::mysql::REPLICATION_USER,
        password_secret: SecretKeyRef {
            name: view.secret_name.clone(),
            key: secret::MYSQL_REPLICATION.into(),
        },
        credentials_digest,
        spec,
    })))
}

/// How often the operator asks a cluster's archiver how far it got.
pub const POLL_EVERY: Duration = Duration::from_secs(30);

/// The archive as the archiver reports it: None when not polled in this
/// pass (not due, or the archiver did not answer: status keeps what it had),
/// Some(None) when no archiver runs.
pub async fn observe(
    view: &ClusterView,
    plan: &ArchiverPlan,
    key: &str,
    ctx: &Context,
) -> Option<Option<BinlogArchiveStatus>> {
    match plan {
        ArchiverPlan::NotApplicable => None,
        ArchiverPlan::Absent => Some(None),
        ArchiverPlan::Run(_) => {
            if !ctx.archive_poll_due(key, POLL_EVERY) {
                return None;
            }
            match ask(view, ctx).await {
                Ok(r) => Some(Some(to_status(r))),
                Err(why) => {
                    tracing::debug!(cluster = %view.name, %why, "the binlog archiver did not report");
                    None
                }
            }
        }
    }
}

fn to_status(r: ArchiveReport) -> BinlogArchiveStatus {
    BinlogArchiveStatus {
        last_gtid: r.last_gtid,
        position: r.position,
        last_commit_time: r
            .last_commit
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        archived_at: r.archived_at,
        error: r.error,
    }
}

/// `GET /status` of the running archiver pod.
async fn ask(view: &ClusterView, ctx: &Context) -> Result<ArchiveReport, String> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &view.namespace);
    let list = pods
        .list(&ListParams::default().labels(&format!(
            "{}={}",
            archive_deployment::LABEL_CLUSTER,
            view.name
        )))
        .await
        .map_err(|e| format!("list the archiver's pods: {e}"))?;
    let ip = list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.status.as_ref())
        .filter(|s| s.phase.as_deref() == Some("Running"))
        .find_map(|s| s.pod_ip.clone())
        .ok_or("no running archiver pod")?;
    let url = format!("http://{ip}:{ARCHIVE_STATUS_PORT}{ARCHIVE_STATUS_PATH}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| format!("http client: {e}"))?;
    let body = client
        .get(&url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("GET {url}: {e}"))?
        .text()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    serde_json::from_str(&body).map_err(|e| format!("GET {url}: not a report: {e}"))
}

/// Apply the archiver, or delete one no longer asked for.
pub async fn apply(view: &ClusterView, plan: &ArchiverPlan, ctx: &Context) -> Result<(), Error> {
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &view.namespace);
    let name = archive_deployment::name(&view.name);
    match plan {
        ArchiverPlan::NotApplicable => Ok(()),
        ArchiverPlan::Run(d) => {
            api.patch(&name, &apply_params(), &Patch::Apply(&**d))
                .await
                .context(format!("apply Deployment {name}"))?;
            Ok(())
        }
        ArchiverPlan::Absent => match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => {
                tracing::info!(deployment = %name, "binlog archiver removed");
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e).context(format!("delete Deployment {name}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MySqlFlavor;
    use crate::api::backup::{BackupTarget, PvcTarget};

    fn view(kind: DbKind, replicas: i32) -> ClusterView {
        ClusterView {
            kind,
            name: "db".into(),
            namespace: "shop".into(),
            owner: Default::default(),
            replicas,
            template: serde_json::from_value(serde_json::json!({})).expect("template"),
            storage: serde_json::from_value(serde_json::json!({})).expect("storage"),
            secret_name: "db-auth".into(),
            cluster_domain: "cluster.local".into(),
        }
    }

    fn spec() -> BinlogArchiveSpec {
        BinlogArchiveSpec {
            target: BackupTarget {
                s3: None,
                gcs: None,
                azure: None,
                pvc: Some(PvcTarget {
                    claim_name: "backups".into(),
                    path: None,
                }),
            },
            max_delay_seconds: 60,
            segment_size_mib: 16,
            source: Default::default(),
        }
    }

    #[test]
    fn an_archiver_runs_only_for_a_bootstrapped_mysql_cluster_that_asks_for_one() {
        let bootstrapped = ReplicationState {
            primary: Some(1),
            ..Default::default()
        };
        let mysql = view(DbKind::MySql(MySqlFlavor::MariaDB), 3);
        assert_eq!(
            plan(
                &view(DbKind::Redis, 3),
                Some(&spec()),
                &bootstrapped,
                "i",
                "d1"
            ),
            ArchiverPlan::NotApplicable
        );
        assert_eq!(
            plan(&mysql, None, &bootstrapped, "i", "d1"),
            ArchiverPlan::Absent,
            "not asked for: removed"
        );
        assert_eq!(
            plan(
                &mysql,
                Some(&spec()),
                &ReplicationState::default(),
                "i",
                "d1"
            ),
            ArchiverPlan::Absent,
            "not before bootstrap (a restore would move the GTID position under it)"
        );
        let ArchiverPlan::Run(d) = plan(&mysql, Some(&spec()), &bootstrapped, "i", "d1") else {
            panic!("runs");
        };
        let args = d
            .spec
            .and_then(|s| s.template.spec)
            .map(|p| p.containers[0].args.clone().unwrap_or_default())
            .unwrap_or_default();
        let members: Vec<&String> = args.iter().filter(|a| a.starts_with("--member=")).collect();
        assert_eq!(
            members,
            [
                "--member=db-0.db-headless.shop.svc.cluster.local",
                "--member=db-1.db-headless.shop.svc.cluster.local",
                "--member=db-2.db-headless.shop.svc.cluster.local"
            ],
            "every member a candidate, whatever the roles (no rollout on a failover)"
        );
        let digest = |p: ArchiverPlan| match p {
            ArchiverPlan::Run(d) => d
                .spec
                .and_then(|s| s.template.metadata)
                .and_then(|m| m.annotations)
                .and_then(|a| a.get(archive_deployment::CREDENTIALS_ANNOTATION).cloned()),
            _ => None,
        };
        assert_eq!(
            digest(plan(&mysql, Some(&spec()), &bootstrapped, "i", "d2")).as_deref(),
            Some("d2"),
            "rotated credentials change the pod template: the archiver restarts with them"
        );
    }
}
