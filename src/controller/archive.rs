//! The binlog archiver of a MySQL/MariaDB cluster with
//! `spec.backup.binlogArchive`: a Deployment (built by
//! [`crate::backup::archive_deployment`]) applied with the other children
//! once the cluster has bootstrapped (a restore finished, a primary
//! recorded: an archive begins at a position the cluster keeps), and
//! deleted when the setting is removed.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DeleteParams, Patch};

use super::common::apply_params;
use super::context::{Context, Error, KubeContext};
use crate::api::ReplicationState;
use crate::api::backup::SecretKeyRef;
use crate::api::mysql::BinlogArchiveSpec;
use crate::backup::archive_deployment::{self, Archiver};
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

pub fn plan(
    view: &ClusterView,
    spec: Option<&BinlogArchiveSpec>,
    state: &ReplicationState,
    image: &str,
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
        root_secret: SecretKeyRef {
            name: view.secret_name.clone(),
            key: secret::MYSQL_ROOT.into(),
        },
        spec,
    })))
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
