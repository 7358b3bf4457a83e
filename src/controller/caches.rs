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
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerStatus, Pod, PodSpec, PodStatus, Secret, Service,
};
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
use crate::resources::statefulset::{CONTAINER, RESTART_DIGEST, restart_digest};

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

/// What a store keeps of an object: what passes and the controllers'
/// triggers read (owner references, labels, annotations such as
/// `ordinal.dev/applied-hash`), not the rest. A store holds one copy of
/// every managed child of every cluster, so what is dropped here is dropped
/// per cluster.
pub trait Slim {
    fn slim(&mut self);
}

/// Nothing a pass reads lives in managedFields; dropping them halves the
/// memory a cached object takes.
fn drop_managed_fields(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
}

/// Passes read a pod's labels, timestamps, readiness, IP, and for the
/// rolling update the database container's image and status and what a
/// restart would change (`statefulset::restart_digest`: the database container,
/// the configuration hash, node selector and affinity). That is kept as its
/// digest, in an annotation of the stored copy (`statefulset::RESTART_DIGEST`),
/// taken here of the full object; the containers, volumes, tolerations and
/// the rest of the status are dropped.
fn slim_pod_spec(spec: &mut PodSpec, meta: &mut ObjectMeta) {
    let annotations = meta.annotations.get_or_insert_default();
    // A stored digest is only ever the one taken here.
    annotations.remove(RESTART_DIGEST);
    if let Some(digest) = restart_digest(Some(spec), Some(annotations)) {
        annotations.insert(RESTART_DIGEST.to_string(), digest);
    }
    let image = spec
        .containers
        .iter_mut()
        .find(|c| c.name == CONTAINER)
        .and_then(|c| c.image.take());
    *spec = PodSpec {
        containers: image
            .map(|image| Container {
                name: CONTAINER.to_string(),
                image: Some(image),
                ..Default::default()
            })
            .into_iter()
            .collect(),
        ..Default::default()
    };
}

impl Slim for Pod {
    fn slim(&mut self) {
        drop_managed_fields(&mut self.metadata);
        if let Some(spec) = self.spec.as_mut() {
            slim_pod_spec(spec, &mut self.metadata);
        }
        if let Some(status) = self.status.as_mut() {
            *status = PodStatus {
                conditions: status.conditions.take(),
                container_statuses: status.container_statuses.take().map(|cs| {
                    cs.into_iter()
                        .filter(|c| c.name == CONTAINER)
                        .map(|c| ContainerStatus {
                            name: c.name,
                            restart_count: c.restart_count,
                            ready: c.ready,
                            image: c.image,
                            image_id: c.image_id,
                            ..Default::default()
                        })
                        .collect()
                }),
                pod_ip: status.pod_ip.take(),
                phase: status.phase.take(),
                ..Default::default()
            };
        }
    }
}

/// Passes read the annotations (applied hash, last-primary hint), the
/// volume claim templates (kept as they are: they are immutable and
/// re-applied as found), the status, and of the pod template what the
/// rolling update compares with the pods: its restart digest (as for a pod)
/// and the database container's image. The template's labels and other
/// annotations are dropped.
impl Slim for StatefulSet {
    fn slim(&mut self) {
        drop_managed_fields(&mut self.metadata);
        if let Some(template) = self.spec.as_mut().map(|s| &mut s.template) {
            let mut meta = template.metadata.take().unwrap_or_default();
            // Only a digest taken here is kept, never one the template carried.
            let digest = template.spec.as_mut().and_then(|spec| {
                slim_pod_spec(spec, &mut meta);
                meta.annotations.as_mut()?.remove_entry(RESTART_DIGEST)
            });
            template.metadata = Some(ObjectMeta {
                annotations: digest.map(|entry| [entry].into()),
                ..Default::default()
            });
        }
    }
}

/// Generated credentials: their data is read.
impl Slim for Secret {
    fn slim(&mut self) {
        drop_managed_fields(&mut self.metadata);
    }
}

/// What a pass reads of a child it only applies (`children_in_cache`):
/// whether it carries the applied hash. What the stores and the
/// controllers' triggers need is kept with it: name, namespace, uid,
/// resourceVersion and owner references. Labels, other annotations, the
/// spec, data and status are dropped.
fn applied_only(meta: &mut ObjectMeta) {
    *meta = ObjectMeta {
        owner_references: meta.owner_references.take(),
        annotations: meta
            .annotations
            .take()
            .and_then(|mut a| a.remove_entry(labels::APPLIED_HASH))
            .map(|entry| [entry].into()),
        ..identity(meta)
    };
}

impl Slim for Service {
    fn slim(&mut self) {
        applied_only(&mut self.metadata);
        self.spec = None;
        self.status = None;
    }
}

impl Slim for ConfigMap {
    fn slim(&mut self) {
        applied_only(&mut self.metadata);
        self.data = None;
        self.binary_data = None;
    }
}

impl Slim for PodDisruptionBudget {
    fn slim(&mut self) {
        applied_only(&mut self.metadata);
        self.spec = None;
        self.status = None;
    }
}

/// Start one shared watch: its store, `subscribers` trigger streams, and the
/// task that drives it until `stop`.
fn share<K>(
    api: Api<K>,
    subscribers: usize,
    stop: &CancellationToken,
) -> (Store<K>, Vec<ReflectHandle<K>>, JoinHandle<()>)
where
    K: Resource<DynamicType = ()> + Slim + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
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
            .modify(K::slim)
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
    obj.metadata = identity(&mut obj.metadata);
}

/// What finds an object in a store and tells its version: name, namespace,
/// uid and resourceVersion, taken out of `meta`.
fn identity(meta: &mut ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        resource_version: meta.resource_version.take(),
        uid: meta.uid.take(),
        ..Default::default()
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Affinity, ServiceSpec};
    use k8s_openapi::api::core::v1::{Container, PodCondition, Toleration, Volume};

    fn member_pod() -> Pod {
        let container = |name: &str| Container {
            name: name.into(),
            image: Some(format!("{name}:1")),
            args: Some(vec!["--port".into(), "6379".into()]),
            ..Default::default()
        };
        let status = |name: &str, restarts: i32| ContainerStatus {
            name: name.into(),
            image: format!("{name}:1"),
            image_id: format!("sha256:{name}"),
            ready: true,
            restart_count: restarts,
            ..Default::default()
        };
        Pod {
            metadata: ObjectMeta {
                name: Some("r-0".into()),
                namespace: Some("ns".into()),
                labels: Some([("app".to_string(), "redis".to_string())].into()),
                annotations: Some([(labels::CONFIG_HASH.to_string(), "abc".to_string())].into()),
                managed_fields: Some(vec![Default::default()]),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![container(CONTAINER), container("exporter")],
                init_containers: Some(vec![container("init")]),
                volumes: Some(vec![Volume {
                    name: "data".into(),
                    ..Default::default()
                }]),
                node_selector: Some([("disk".to_string(), "ssd".to_string())].into()),
                affinity: Some(Affinity::default()),
                tolerations: Some(vec![Toleration::default()]),
                ..Default::default()
            }),
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                container_statuses: Some(vec![status(CONTAINER, 2), status("exporter", 5)]),
                init_container_statuses: Some(vec![status("init", 0)]),
                pod_ip: Some("10.1.2.3".into()),
                host_ip: Some("10.0.0.1".into()),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_slim_pod_keeps_what_passes_read() {
        let full = member_pod();
        let mut slim = full.clone();
        slim.slim();
        assert_eq!(slim.metadata.managed_fields, None);
        assert_eq!(slim.metadata.labels, full.metadata.labels);
        assert!(super::super::common::pod_ready(&slim));
        let spec = |p: &Pod| p.spec.clone();
        let relevant = |p: &Pod| {
            super::super::rollout::restart_relevant(
                spec(p).as_ref(),
                p.metadata.annotations.as_ref(),
            )
        };
        assert!(relevant(&full).is_some());
        assert_eq!(
            relevant(&slim),
            relevant(&full),
            "the roll sees the same pod"
        );
        let status = slim.status.as_ref().expect("status");
        assert_eq!(status.pod_ip.as_deref(), Some("10.1.2.3"));
        let kept: Vec<_> = status
            .container_statuses
            .iter()
            .flatten()
            .map(|c| (c.name.as_str(), c.restart_count))
            .collect();
        assert_eq!(kept, [(CONTAINER, 2)]);
        let spec = slim.spec.as_ref().expect("spec");
        assert_eq!(spec.containers.len(), 1);
        assert_eq!(
            (
                spec.init_containers.as_ref(),
                spec.volumes.as_ref(),
                spec.tolerations.as_ref()
            ),
            (None, None, None)
        );
    }

    #[test]
    fn a_slim_pod_keeps_only_the_digest_of_what_a_restart_would_change() {
        let digest = |p: &Pod| {
            p.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(RESTART_DIGEST))
                .cloned()
        };
        let slim = |mut p: Pod| {
            p.slim();
            p
        };
        let base = slim(member_pod());
        let container = &base.spec.as_ref().expect("spec").containers[0];
        assert_eq!(
            (container.name.as_str(), container.image.as_deref()),
            (CONTAINER, Some("database:1"))
        );
        assert_eq!((&container.args, &container.env), (&None, &None));
        // A change of the database container, the configuration hash or the
        // placement changes the digest; one of another container does not.
        let mut args = member_pod();
        args.spec.as_mut().expect("spec").containers[0].args = Some(vec!["--port".into()]);
        let mut config = member_pod();
        config
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(labels::CONFIG_HASH.to_string(), "def".to_string());
        let mut placement = member_pod();
        placement.spec.as_mut().expect("spec").node_selector = None;
        for (what, changed) in [("args", args), ("config", config), ("placement", placement)] {
            assert_ne!(digest(&slim(changed)), digest(&base), "{what}");
        }
        let mut exporter = member_pod();
        exporter.spec.as_mut().expect("spec").containers[1].args = None;
        assert_eq!(digest(&slim(exporter)), digest(&base));
        // A digest the object itself carries (say, from a pod template's
        // annotations) is replaced by the one taken of the object.
        let mut spoofed = member_pod();
        spoofed
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(RESTART_DIGEST.to_string(), "spoofed".to_string());
        assert_eq!(digest(&slim(spoofed)), digest(&base));
    }

    #[test]
    fn slim_children_keep_the_metadata_the_applied_hash_lives_in() {
        let kept = ObjectMeta {
            name: Some("r".into()),
            namespace: Some("ns".into()),
            uid: Some("u".into()),
            resource_version: Some("7".into()),
            annotations: Some([(labels::APPLIED_HASH.to_string(), "h".to_string())].into()),
            owner_references: Some(vec![Default::default()]),
            ..Default::default()
        };
        let mut meta = kept.clone();
        meta.managed_fields = Some(vec![Default::default()]);
        meta.labels = Some([(labels::MANAGED_BY.to_string(), labels::MANAGER.to_string())].into());
        meta.annotations
            .get_or_insert_default()
            .insert("team".to_string(), "db".to_string());
        let mut svc = Service {
            metadata: meta.clone(),
            spec: Some(ServiceSpec::default()),
            ..Default::default()
        };
        svc.slim();
        let mut cm = ConfigMap {
            metadata: meta.clone(),
            data: Some([("redis.conf".to_string(), "port 6379".to_string())].into()),
            ..Default::default()
        };
        cm.slim();
        let mut pdb = PodDisruptionBudget {
            metadata: meta,
            spec: Some(Default::default()),
            ..Default::default()
        };
        pdb.slim();
        assert_eq!((&svc.metadata, svc.spec), (&kept, None));
        assert_eq!((&cm.metadata, cm.data), (&kept, None));
        assert_eq!((&pdb.metadata, pdb.spec), (&kept, None));
    }

    #[test]
    fn a_slim_statefulset_keeps_claims_and_what_the_roll_compares() {
        use k8s_openapi::api::apps::v1::StatefulSetSpec;
        use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PodTemplateSpec};
        let pod = member_pod();
        let full = StatefulSet {
            metadata: pod.metadata.clone(),
            spec: Some(StatefulSetSpec {
                template: PodTemplateSpec {
                    metadata: Some(pod.metadata.clone()),
                    spec: pod.spec.clone(),
                },
                volume_claim_templates: Some(vec![PersistentVolumeClaim {
                    metadata: ObjectMeta {
                        name: Some("data".into()),
                        ..Default::default()
                    },
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut slim = full.clone();
        slim.slim();
        let template = |s: &StatefulSet| {
            let spec = s.spec.as_ref().expect("spec");
            super::super::rollout::restart_relevant(
                spec.template.spec.as_ref(),
                spec.template
                    .metadata
                    .as_ref()
                    .and_then(|m| m.annotations.as_ref()),
            )
        };
        assert!(template(&full).is_some());
        assert_eq!(template(&slim), template(&full));
        let spec = slim.spec.as_ref().expect("spec");
        assert_eq!(
            spec.volume_claim_templates,
            full.spec
                .as_ref()
                .and_then(|s| s.volume_claim_templates.clone())
        );
        let pod_spec = spec.template.spec.as_ref().expect("template spec");
        assert_eq!(
            (pod_spec.containers.len(), pod_spec.volumes.as_ref()),
            (1, None)
        );
        assert_eq!(slim.metadata.managed_fields, None);
    }
}
