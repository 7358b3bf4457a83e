//! Shared reflector stores of the children of managed clusters, so a pass
//! reads pods, StatefulSets, Services, ConfigMaps, PodDisruptionBudgets and
//! generated Secrets from memory instead of a GET/LIST per pass. One watch per
//! resource and namespace scope feeds both the store and the controllers'
//! triggers (shared streams).
//!
//! Only objects labelled `app.kubernetes.io/managed-by=ordinal` are watched
//! in full. A Secret a user names in `spec.auth.secretName` is not labelled:
//! a metadata-only watch of all Secrets tells its resourceVersion, and its
//! data is read once per version (see `named_secrets`).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, ReflectHandle, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::named_secrets::NamedSecrets;
use crate::resources::labels;

/// A Secret as the metadata-only watch holds it.
type SecretMeta = PartialObjectMeta<Secret>;

/// Events a slow subscriber may lag behind before the watch waits for it.
const SUBSCRIBE_BUFFER: usize = 1024;

/// The stores of one namespace scope (`None`: all namespaces).
#[derive(Clone)]
pub struct Stores {
    pub pods: Store<Pod>,
    pub statefulsets: Store<StatefulSet>,
    pub services: Store<Service>,
    pub config_maps: Store<ConfigMap>,
    pub pdbs: Store<PodDisruptionBudget>,
    pub secrets: Store<Secret>,
    /// Name and resourceVersion of every Secret, managed or not.
    pub secret_versions: Store<PartialObjectMeta<Secret>>,
    /// Data of the Secrets clusters name, by the version it was read at.
    pub named_secrets: Arc<NamedSecrets>,
}

impl Stores {
    /// Wait until every store holds its initial list.
    pub async fn ready(&self) -> bool {
        self.pods.wait_until_ready().await.is_ok()
            && self.statefulsets.wait_until_ready().await.is_ok()
            && self.services.wait_until_ready().await.is_ok()
            && self.config_maps.wait_until_ready().await.is_ok()
            && self.pdbs.wait_until_ready().await.is_ok()
            && self.secrets.wait_until_ready().await.is_ok()
            && self.secret_versions.wait_until_ready().await.is_ok()
    }

    /// The resourceVersion of a Secret the metadata watch holds.
    pub fn secret_version(&self, namespace: &str, name: &str) -> Option<String> {
        get(&self.secret_versions, namespace, name)
            .and_then(|m| m.metadata.resource_version.clone())
    }
}

/// Trigger streams of one controller: the changes the shared watches see.
pub struct Subscription {
    pub pods: ReflectHandle<Pod>,
    pub statefulsets: ReflectHandle<StatefulSet>,
    pub services: ReflectHandle<Service>,
    pub config_maps: ReflectHandle<ConfigMap>,
    /// Every Secret's name and version: a change of a Secret clusters name
    /// in `spec.auth.secretName` triggers their passes.
    pub secret_versions: ReflectHandle<PartialObjectMeta<Secret>>,
}

/// Every scope's stores; a lookup by namespace.
#[derive(Clone, Default)]
pub struct Caches {
    scopes: Vec<(Option<String>, Stores)>,
}

impl Caches {
    pub fn add(&mut self, namespace: Option<String>, stores: Stores) {
        self.scopes.push((namespace, stores));
    }

    /// The stores that hold objects of `namespace`, if any does.
    pub fn of(&self, namespace: &str) -> Option<&Stores> {
        self.scopes
            .iter()
            .find(|(ns, _)| ns.as_deref() == Some(namespace))
            .or_else(|| self.scopes.iter().find(|(ns, _)| ns.is_none()))
            .map(|(_, s)| s)
    }
}

/// Managed objects only.
fn managed() -> watcher::Config {
    watcher::Config::default().labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER))
}

/// Nothing a pass reads lives in managedFields; dropping them halves the
/// memory a cached object takes.
fn slim<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// Start one shared watch: its store, `subscribers` trigger streams, and the
/// task that drives it until `stop`.
fn share<K>(
    api: Api<K>,
    subscribers: usize,
    stop: &CancellationToken,
) -> (Store<K>, Vec<ReflectHandle<K>>, JoinHandle<()>)
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store_shared(SUBSCRIBE_BUFFER);
    let handles = (0..subscribers)
        .filter_map(|_| writer.subscribe())
        .collect();
    let stop = stop.clone();
    let kind = K::kind(&()).to_string();
    let task = tokio::spawn(async move {
        let events = watcher(api, managed())
            .default_backoff()
            .modify(slim::<K>)
            .reflect_shared(writer)
            .for_each(|event| {
                if let Err(error) = event {
                    warn!(%error, kind = %kind, "watch of managed objects failed; retrying");
                }
                futures::future::ready(())
            });
        tokio::select! {
            _ = events => {},
            _ = stop.cancelled() => {},
        }
    });
    (reader, handles, task)
}

/// Only what finds a Secret and tells its version: annotations (such as
/// `kubectl.kubernetes.io/last-applied-configuration`, which holds the data
/// of an applied Secret), labels and managedFields are not kept.
fn names_only(obj: &mut PartialObjectMeta<Secret>) {
    let meta = &mut obj.metadata;
    *meta = ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        resource_version: meta.resource_version.take(),
        uid: meta.uid.take(),
        ..Default::default()
    };
}

/// Start the metadata-only watch of every Secret in scope, with
/// `subscribers` trigger streams; a deleted Secret's data leaves `named`.
fn watch_secret_versions(
    api: Api<PartialObjectMeta<Secret>>,
    named: Arc<NamedSecrets>,
    subscribers: usize,
    stop: &CancellationToken,
) -> (
    Store<SecretMeta>,
    Vec<ReflectHandle<SecretMeta>>,
    JoinHandle<()>,
) {
    let (reader, writer) = reflector::store_shared(SUBSCRIBE_BUFFER);
    let handles = (0..subscribers)
        .filter_map(|_| writer.subscribe())
        .collect();
    let stop = stop.clone();
    let task = tokio::spawn(async move {
        let events = watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(names_only)
            .reflect_shared(writer)
            .for_each(|event| {
                match event {
                    Ok(watcher::Event::Delete(meta)) => {
                        if let (Some(ns), Some(name)) =
                            (&meta.metadata.namespace, &meta.metadata.name)
                        {
                            named.forget(ns, name);
                        }
                    }
                    Ok(_) => {}
                    Err(error) => warn!(%error, "metadata watch of Secrets failed; retrying"),
                }
                futures::future::ready(())
            });
        tokio::select! {
            _ = events => {},
            _ = stop.cancelled() => {},
        }
    });
    (reader, handles, task)
}

fn api_for<K>(client: &Client, ns: &Option<String>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Start the shared watches of one namespace scope, with one trigger
/// subscription per controller.
pub fn start(
    client: &Client,
    ns: &Option<String>,
    controllers: usize,
    stop: &CancellationToken,
) -> (Stores, Vec<Subscription>, Vec<JoinHandle<()>>) {
    let (pods, mut pod_subs, t1) = share::<Pod>(api_for(client, ns), controllers, stop);
    let (statefulsets, mut sts_subs, t2) =
        share::<StatefulSet>(api_for(client, ns), controllers, stop);
    let (services, mut svc_subs, t3) = share::<Service>(api_for(client, ns), controllers, stop);
    let (config_maps, mut cm_subs, t4) = share::<ConfigMap>(api_for(client, ns), controllers, stop);
    let (pdbs, _, t5) = share::<PodDisruptionBudget>(api_for(client, ns), 0, stop);
    let (secrets, _, t6) = share::<Secret>(api_for(client, ns), 0, stop);
    let named_secrets = Arc::new(NamedSecrets::default());
    let (secret_versions, mut version_subs, t7) = watch_secret_versions(
        api_for(client, ns),
        named_secrets.clone(),
        controllers,
        stop,
    );
    let mut subscriptions = Vec::new();
    while let (
        Some(pods),
        Some(statefulsets),
        Some(services),
        Some(config_maps),
        Some(secret_versions),
    ) = (
        pod_subs.pop(),
        sts_subs.pop(),
        svc_subs.pop(),
        cm_subs.pop(),
        version_subs.pop(),
    ) {
        subscriptions.push(Subscription {
            pods,
            statefulsets,
            services,
            config_maps,
            secret_versions,
        });
    }
    let stores = Stores {
        pods,
        statefulsets,
        services,
        config_maps,
        pdbs,
        secrets,
        secret_versions,
        named_secrets,
    };
    (stores, subscriptions, vec![t1, t2, t3, t4, t5, t6, t7])
}

/// The member pods of a cluster (`selector`: its labels) from a store,
/// those being deleted included (their processes may still run).
pub fn pods_matching(
    store: &Store<Pod>,
    namespace: &str,
    selector: &BTreeMap<String, String>,
) -> Vec<Pod> {
    store
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(namespace))
        .filter(|p| {
            let l = p.labels();
            selector.iter().all(|(k, v)| l.get(k) == Some(v))
        })
        .map(|p| (*p).clone())
        .collect()
}

/// One object of a store by namespace and name.
pub fn get<K>(store: &Store<K>, namespace: &str, name: &str) -> Option<std::sync::Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store.get(&ObjectRef::new(name).within(namespace))
}
