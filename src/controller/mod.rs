//! Reconcilers and the loop that runs them.

pub mod cluster;
pub mod context;
pub mod kinds;
pub mod status;
pub mod validate;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tracing::{info, warn};

pub use context::{Context, Error, Settings};
use kinds::ClusterResource;

use crate::resources::labels;

/// Which namespaces to watch: all, or a list.
#[derive(Clone, Debug, Default)]
pub enum Scope {
    #[default]
    All,
    Namespaces(Vec<String>),
}

fn apis<K>(client: &Client, scope: &Scope) -> Vec<Api<K>>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
{
    match scope {
        Scope::All => vec![Api::all(client.clone())],
        Scope::Namespaces(list) => list
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect(),
    }
}

/// Map a member pod to its cluster through the instance label.
fn pod_owner<K: ClusterResource>(
    app: &'static str,
) -> impl Fn(Pod) -> Option<ObjectRef<K>> + Send + Sync + 'static {
    move |pod: Pod| {
        let l = pod.labels();
        if l.get(labels::NAME).map(String::as_str) != Some(app)
            || l.get(labels::MANAGED_BY).map(String::as_str) != Some(labels::MANAGER)
        {
            return None;
        }
        let instance = l.get(labels::INSTANCE)?;
        Some(ObjectRef::new(instance).within(&pod.namespace()?))
    }
}

async fn run_kind<K: ClusterResource>(
    api: Api<K>,
    client: Client,
    ns: Option<String>,
    ctx: Arc<Context>,
    app: &'static str,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let child = |c: &Client| -> (Api<StatefulSet>, Api<Service>, Api<ConfigMap>, Api<Pod>) {
        match &ns {
            Some(ns) => (
                Api::namespaced(c.clone(), ns),
                Api::namespaced(c.clone(), ns),
                Api::namespaced(c.clone(), ns),
                Api::namespaced(c.clone(), ns),
            ),
            None => (
                Api::all(c.clone()),
                Api::all(c.clone()),
                Api::all(c.clone()),
                Api::all(c.clone()),
            ),
        }
    };
    let (sts, svc, cm, pods) = child(&client);
    let managed =
        watcher::Config::default().labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER));
    Controller::new(api, watcher::Config::default())
        .owns(sts, managed.clone())
        .owns(svc, managed.clone())
        .owns(cm, managed.clone())
        .watches(pods, managed, pod_owner::<K>(app))
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(cluster::reconcile::<K>, cluster::error_policy::<K>, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(name = %obj.name, "reconciled"),
                Err(error) => warn!(%error, "reconcile error"),
            }
        })
        .await;
}

/// Run every controller until `shutdown` is cancelled.
pub async fn run(
    client: Client,
    settings: Settings,
    scope: Scope,
    shutdown: tokio_util::sync::CancellationToken,
    metrics: Arc<crate::metrics::Metrics>,
) {
    let ctx = Arc::new(Context::new(client.clone(), settings, metrics));
    let mut tasks = Vec::new();
    let namespaces: Vec<Option<String>> = match &scope {
        Scope::All => vec![None],
        Scope::Namespaces(list) => list.iter().cloned().map(Some).collect(),
    };
    for (i, ns) in namespaces.into_iter().enumerate() {
        let redis_api = apis::<crate::api::RedisReplication>(&client, &scope).swap_remove(i);
        let mysql_api = apis::<crate::api::MySQLCluster>(&client, &scope).swap_remove(i);
        tasks.push(tokio::spawn(run_kind(
            redis_api,
            client.clone(),
            ns.clone(),
            ctx.clone(),
            "redis",
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(run_kind(
            mysql_api,
            client.clone(),
            ns,
            ctx.clone(),
            "mysql",
            shutdown.clone(),
        )));
    }
    info!(controllers = tasks.len(), "controllers started");
    for task in tasks {
        if let Err(error) = task.await {
            warn!(%error, "controller task ended abnormally");
        }
    }
}
