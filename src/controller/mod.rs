//! Reconcilers and the loop that runs them.

pub mod archive;
pub mod backup;
pub mod caches;
pub mod cluster;
pub mod common;
pub mod conditions;
pub mod context;
pub mod day2;
pub mod freshness;
pub mod hint;
pub mod hysteresis;
pub mod kinds;
pub mod named_secrets;
pub mod replace;
pub mod restore;
pub mod roles;
pub mod rollout;
pub mod schedule;
pub mod status;
pub mod validate;
pub mod volumes;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use context::{Context, Error, Settings};
use kinds::ClusterResource;

use crate::api::backup::{Backup, BackupSchedule};
use crate::api::{MySQLCluster, RedisReplication};
use crate::metrics::Metrics;
use crate::resources::labels;

/// Which namespaces to watch: all, or a list.
#[derive(Clone, Debug, Default)]
pub enum Scope {
    #[default]
    All,
    Namespaces(Vec<String>),
}

fn api_for<K>(client: &Client, ns: &Option<String>) -> Api<K>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Map a member pod to its cluster through the instance label.
fn pod_owner<K: ClusterResource>(
    app: &'static str,
) -> impl Fn(Arc<Pod>) -> Option<ObjectRef<K>> + Send + Sync + 'static {
    move |pod: Arc<Pod>| {
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

/// Map a Secret to the clusters of its namespace that name it in
/// `spec.auth.secretName` (from the clusters' store), so a changed password
/// reaches the members at once instead of at the next requeued pass.
fn naming_clusters<K: ClusterResource>(
    clusters: reflector::Store<K>,
) -> impl Fn(Arc<PartialObjectMeta<Secret>>) -> Vec<ObjectRef<K>> + Send + Sync + 'static {
    move |secret: Arc<PartialObjectMeta<Secret>>| {
        let (Some(ns), Some(name)) = (&secret.metadata.namespace, &secret.metadata.name) else {
            return Vec::new();
        };
        let naming: Vec<_> = clusters
            .state()
            .iter()
            .filter(|c| c.namespace().as_ref() == Some(ns))
            .filter(|c| c.auth().secret_name.as_ref() == Some(name))
            .map(|c| ObjectRef::from_obj(c.as_ref()))
            .collect();
        if !naming.is_empty() {
            info!(
                namespace = %ns,
                secret = %name,
                version = secret.metadata.resource_version.as_deref().unwrap_or_default(),
                clusters = naming.len(),
                "a Secret clusters name was listed or changed; passing them"
            );
        }
        naming
    }
}

/// What of a cluster object is worth a pass when it changes: its spec
/// (generation), labels, annotations, finalizers, deletion, identity, and
/// the replication state in its status. Conditions, members and positions
/// this operator writes itself do not trigger a pass (the engine's requeue
/// runs the next one); a replication state someone else changed does.
fn pass_worthy<K: ClusterResource>(obj: &K) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let meta = obj.meta();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    meta.uid.hash(&mut h);
    meta.generation.hash(&mut h);
    meta.labels.hash(&mut h);
    meta.annotations.hash(&mut h);
    meta.finalizers.hash(&mut h);
    meta.deletion_timestamp
        .as_ref()
        .map(|t| t.0.as_millisecond())
        .hash(&mut h);
    serde_json::to_string(&obj.cluster_status().map(|s| &s.replication))
        .unwrap_or_default()
        .hash(&mut h);
    Some(h.finish())
}

async fn run_kind<K: ClusterResource>(
    client: Client,
    ns: Option<String>,
    ctx: Arc<Context>,
    app: &'static str,
    triggers: caches::Subscription,
    shutdown: CancellationToken,
) {
    let (reader, writer) = reflector::store();
    let clusters = watcher(api_for::<K>(&client, &ns), watcher::Config::default())
        .default_backoff()
        .modify(|c: &mut K| c.meta_mut().managed_fields = None)
        .reflect(writer)
        .applied_objects()
        .predicate_filter(pass_worthy::<K>, Default::default());
    let naming = naming_clusters::<K>(reader.clone());
    Controller::for_stream(clusters, reader)
        .owns_shared_stream(triggers.statefulsets)
        .owns_shared_stream(triggers.services)
        .owns_shared_stream(triggers.config_maps)
        .watches_shared_stream(triggers.pods, pod_owner::<K>(app))
        .watches_shared_stream(triggers.secret_versions, naming)
        // A primary watch that broke runs that cluster's pass at once.
        .reconcile_on(
            ctx.watches
                .triggers(app, ns)
                .map(|k| ObjectRef::new(&k.name).within(&k.namespace)),
        )
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(cluster::reconcile::<K>, cluster::error_policy::<K>, ctx)
        .for_each(log_result)
        .await;
}

async fn log_result<K: kube::Resource, E: std::fmt::Display>(
    result: Result<(ObjectRef<K>, Action), E>,
) {
    match result {
        Ok((obj, _)) => tracing::debug!(name = %obj.name, "reconciled"),
        Err(error) => warn!(%error, "reconcile error"),
    }
}

async fn run_backups(
    client: Client,
    ns: Option<String>,
    ctx: Arc<Context>,
    shutdown: CancellationToken,
) {
    let jobs =
        watcher::Config::default().labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER));
    Controller::new(api_for::<Backup>(&client, &ns), watcher::Config::default())
        .owns(api_for::<Job>(&client, &ns), jobs)
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(backup::reconcile, backup::error_policy, ctx)
        .for_each(log_result)
        .await;
}

async fn run_schedules(
    client: Client,
    ns: Option<String>,
    ctx: Arc<Context>,
    shutdown: CancellationToken,
) {
    let scheduled = watcher::Config::default().labels(schedule::LABEL_SCHEDULE);
    let to_schedule = |b: Backup| {
        let name = b.labels().get(schedule::LABEL_SCHEDULE)?.clone();
        Some(ObjectRef::<BackupSchedule>::new(&name).within(&b.namespace()?))
    };
    Controller::new(
        api_for::<BackupSchedule>(&client, &ns),
        watcher::Config::default(),
    )
    .watches(api_for::<Backup>(&client, &ns), scheduled, to_schedule)
    .graceful_shutdown_on(async move { shutdown.cancelled().await })
    .run(schedule::reconcile, schedule::error_policy, ctx)
    .for_each(log_result)
    .await;
}

/// Run every controller until `shutdown` is cancelled.
pub async fn run(
    client: Client,
    settings: Settings,
    scope: Scope,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
) {
    let namespaces: Vec<Option<String>> = match &scope {
        Scope::All => vec![None],
        Scope::Namespaces(list) => list.iter().cloned().map(Some).collect(),
    };
    // One shared watch per child resource and scope: the stores passes read
    // from, and the triggers of both cluster controllers.
    let mut all = caches::Caches::default();
    let mut watches = Vec::new();
    let mut scopes = Vec::new();
    for ns in namespaces {
        let (stores, subscriptions, tasks) = caches::start(&client, &ns, 2, &shutdown);
        watches.extend(tasks);
        all.add(ns.clone(), stores.clone());
        scopes.push((ns, stores, subscriptions));
    }
    for (ns, stores, _) in &scopes {
        tokio::select! {
            ready = stores.ready() => if !ready {
                warn!(namespace = ?ns, "a shared watch stopped before its first list");
            },
            _ = shutdown.cancelled() => return,
        }
    }
    info!("caches of managed objects filled");
    let ctx = Arc::new(Context::new(client.clone(), settings, metrics).with_caches(all));
    let mut tasks = Vec::new();
    for (ns, _, mut subscriptions) in scopes {
        let (Some(redis), Some(mysql)) = (subscriptions.pop(), subscriptions.pop()) else {
            warn!(namespace = ?ns, "no trigger subscriptions; cluster controllers not started");
            continue;
        };
        let (c, x, s) = (client.clone(), ctx.clone(), shutdown.clone());
        tasks.push(tokio::spawn(run_kind::<RedisReplication>(
            c,
            ns.clone(),
            x,
            "redis",
            redis,
            s,
        )));
        let (c, x, s) = (client.clone(), ctx.clone(), shutdown.clone());
        tasks.push(tokio::spawn(run_kind::<MySQLCluster>(
            c,
            ns.clone(),
            x,
            "mysql",
            mysql,
            s,
        )));
        let (c, x, s) = (client.clone(), ctx.clone(), shutdown.clone());
        tasks.push(tokio::spawn(run_backups(c, ns.clone(), x, s)));
        let (c, x, s) = (client.clone(), ctx.clone(), shutdown.clone());
        tasks.push(tokio::spawn(run_schedules(c, ns, x, s)));
    }
    info!(controllers = tasks.len(), "controllers started");
    for task in tasks {
        if let Err(error) = task.await {
            warn!(%error, "controller task ended abnormally");
        }
    }
    shutdown.cancel();
    for task in watches {
        if let Err(error) = task.await {
            warn!(%error, "shared watch task ended abnormally");
        }
    }
}
