//! The reconciler shared by `RedisReplication` and `MySQLCluster`. A pass is
//! a pipeline of named steps, each a small function:
//!
//! 1. [`dereference`]: the object to plan from — the cached one, or a fresh
//!    read when the cache is behind what the previous pass persisted; then
//!    [`pause_step`]: annotation `ordinal.dev/paused: "true"` ends the pass
//!    here once no failover/switchover runs (condition `Paused`, nothing
//!    else changes);
//! 2. [`validate`]: what the schema cannot check, and the credentials;
//! 3. [`build`]: the restore plan and the rendered configuration;
//! 4. [`apply_children`]: ConfigMap, Services, PDB, StatefulSet (a refusal
//!    becomes `Reconciled=False` and a Warning Event, and the pass goes on);
//! 5. [`observe_members`]: the pods as Kubernetes sees them;
//! 6. [`restore_step`]: a MySQL restore holds the cluster until loaded;
//!    then [`day2::step`]: member replacement, volume growth, and the
//!    rolling update (at most one pod restarted; it may ask the engine for a
//!    switchover);
//! 7. [`engine_step`]: one database step by the engine;
//! 8. [`update_status`]: persist (with a resourceVersion precondition), then
//!    move role labels.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType as KubeEventType;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use tracing::{info, instrument, warn};

use super::archive::{self, ArchiverPlan};
use super::caches::Slim;
pub use super::common::{FIELD_MANAGER, FINALIZER, publish};
use super::common::{apply_params, key_of, pod_ready};
use super::conditions::{ConditionStatus, ConditionType, Reason};
use super::context::{Context, Error, KubeContext};
use super::day2;
use super::freshness::{self, Cached, Freshness, Written};
use super::hysteresis::Verdict;
use super::kinds::ClusterResource;
use super::restore::{self, RestorePlan};
use super::roles;
use super::status::{self, Children, Observation, ReplicationReport};
use super::validate as checks;
use crate::api::{ClusterStatus, ReplicationState};
use crate::engine::{
    Credentials, Engine, EngineEvent, EngineInput, EngineOutcome, EventType, Member,
};
use crate::resources::labels::APPLIED_HASH;
use crate::resources::statefulset::InitStep;
use crate::resources::{ClusterView, RenderedConfig, labels, pdb, secret, services, statefulset};

/// Entry point called by the kube-runtime controller.
#[instrument(skip_all, fields(kind = %K::kind(&()), namespace = obj.namespace().unwrap_or_default(), name = %obj.name_any()))]
pub async fn reconcile<K: ClusterResource>(
    obj: Arc<K>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let ns = obj
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let key = key_of(&*obj);
    let labels = crate::metrics::Metrics::controller(&K::kind(&()));
    let started = std::time::Instant::now();
    let result = finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            FinalizerEvent::Apply(obj) => apply(obj, ctx.clone()).await,
            FinalizerEvent::Cleanup(obj) => cleanup(obj, ctx.clone()).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(e.to_string()));
    ctx.metrics.reconciles.get_or_create(&labels).inc();
    ctx.metrics
        .reconcile_duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    match &result {
        Ok(_) => ctx.reset_backoff(&key),
        Err(_) => {
            ctx.metrics.reconcile_errors.get_or_create(&labels).inc();
        }
    }
    result
}

/// Requeue failed reconciles with per-object exponential backoff.
pub fn error_policy<K: ClusterResource>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = key_of(&*obj);
    let delay = ctx.backoff(&key);
    ctx.forget_children(&key);
    warn!(%key, %error, error_kind = error.metric_label(), ?delay, "reconcile failed; retrying");
    Action::requeue(delay)
}

/// The primary watch of a cluster (`app`: `redis` or `mysql`).
fn watch_key(app: &'static str, namespace: &str, name: &str) -> crate::watch::WatchKey {
    crate::watch::WatchKey {
        engine: app,
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

async fn cleanup<K: ClusterResource>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.forget(&key_of(&*obj));
    ctx.watches.forget(&watch_key(
        obj.db_kind().app(),
        &obj.namespace().unwrap_or_default(),
        &obj.name_any(),
    ));
    let retention = obj.storage().retention.when_deleted;
    ctx.metrics
        .forget_cluster(&crate::metrics::ControlledClusterLabels {
            controller: K::kind(&()).to_string(),
            namespace: obj.namespace().unwrap_or_default(),
            cluster: obj.name_any(),
        });
    publish(
        &ctx,
        &*obj,
        KubeEventType::Normal,
        "Deleting",
        format!(
            "children are removed by garbage collection; volume claims: {} (storage.retention.whenDeleted)",
            retention.as_str()
        ),
    )
    .await;
    Ok(Action::await_change())
}

/// Build the view of a cluster from its spec; errors are user errors.
fn view<K: ClusterResource>(obj: &K, ctx: &Context) -> Result<ClusterView, Error> {
    let meta = obj.meta();
    let owner = OwnerReference {
        api_version: K::api_version(&()).to_string(),
        kind: K::kind(&()).to_string(),
        name: obj.name_any(),
        uid: meta
            .uid
            .clone()
            .ok_or(Error::MissingField("metadata.uid"))?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let name = obj.name_any();
    Ok(ClusterView {
        kind: obj.db_kind(),
        namespace: obj
            .namespace()
            .ok_or(Error::MissingField("metadata.namespace"))?,
        owner,
        replicas: effective_replicas(
            obj.replicas(),
            obj.cluster_status().and_then(|s| s.replication.primary),
        ),
        template: obj.template().clone(),
        storage: obj.storage().clone(),
        secret_name: obj
            .auth()
            .secret_name
            .clone()
            .unwrap_or_else(|| ClusterView::generated_secret_name(&name)),
        cluster_domain: ctx.settings.cluster_domain.clone(),
        name,
    })
}

/// One pass over one cluster: the object planned from and what was learned.
struct Pass<K> {
    obj: Arc<K>,
    ctx: Arc<Context>,
    key: String,
    view: ClusterView,
    previous: Option<ClusterStatus>,
    /// The persisted status with this process's newest observation of the
    /// same state (see [`status::planning_view`]): what planners read.
    planning: Option<ClusterStatus>,
    /// The replication state this pass plans from.
    state: ReplicationState,
    obs: Observation,
    /// Member pods being deleted, by name: their processes may still run,
    /// so none of them counts as isolated.
    terminating: BTreeMap<String, Pod>,
}

impl<K: ClusterResource> Pass<K> {
    fn new(obj: Arc<K>, ctx: Arc<Context>) -> Result<Self, Error> {
        let view = view(&*obj, &ctx)?;
        let previous = obj.cluster_status().cloned();
        let key = key_of(&*obj);
        let observed = ctx.observed(&key);
        let planning = status::planning_view(previous.as_ref(), observed.as_ref());
        let state = planning
            .as_ref()
            .map(|s| s.replication.clone())
            .unwrap_or_else(|| status::with_observed(&Default::default(), observed.as_ref()));
        let obs = Observation {
            generation: obj.meta().generation,
            ..Default::default()
        };
        Ok(Self {
            terminating: BTreeMap::new(),
            key,
            obj,
            ctx,
            view,
            previous,
            planning,
            state,
            obs,
        })
    }

    async fn persist(&self) -> Result<Persisted, Error> {
        persist(&*self.obj, self.previous.as_ref(), &self.obs, &self.ctx).await
    }

    async fn warn_once(&self, reason: &str, note: String) {
        if self.ctx.event_is_new(&self.key, reason, &note) {
            publish(&self.ctx, &*self.obj, KubeEventType::Warning, reason, note).await;
        }
    }
}

async fn apply<K: ClusterResource>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let obj = dereference(obj, &ctx).await?;
    let mut pass = Pass::new(obj, ctx)?;
    if let Some(action) = pause_step(&pass).await? {
        return Ok(action);
    }
    let Some(credentials) = validate(&mut pass).await? else {
        return report_invalid(&mut pass).await;
    };
    let built = build(&mut pass).await?;
    apply_children(&mut pass, &built).await;
    let pods = observe_members(&mut pass).await?;
    if let Some(action) = restore_step(&mut pass, &built, &pods).await? {
        return Ok(action);
    }
    pass.obs.binlog_archive =
        archive::observe(&pass.view, &built.archiver, &pass.key, &pass.ctx).await;
    let rollout_primary = day2::step(
        &*pass.obj,
        &pass.view,
        &pods,
        pass.planning.as_ref(),
        &mut pass.obs,
        &pass.ctx,
    )
    .await?;
    let outcome = engine_step(&mut pass, &pods, credentials, rollout_primary).await?;
    update_status(&mut pass, &pods, &outcome).await
}

/// Step 1: the object to plan from. The reflector's copy, unless it is behind
/// what this operator last persisted; then a fresh read from the API server.
async fn dereference<K: ClusterResource>(obj: Arc<K>, ctx: &Context) -> Result<Arc<K>, Error> {
    let key = key_of(&*obj);
    let none = ReplicationState::default();
    let cached = Cached {
        uid: obj.meta().uid.as_deref(),
        resource_version: obj.meta().resource_version.as_deref(),
        replication: obj.cluster_status().map_or(&none, |s| &s.replication),
    };
    match freshness::judge(cached, ctx.written(&key).as_ref()) {
        Freshness::Current => Ok(obj),
        Freshness::Behind => {
            let ns = obj
                .namespace()
                .ok_or(Error::MissingField("metadata.namespace"))?;
            let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
            let fresh = api
                .get(&obj.name_any())
                .await
                .context("read the cluster again (cache behind our last status write)")?;
            info!(
                cached = ?obj.meta().resource_version,
                fresh = ?fresh.meta().resource_version,
                "cache behind the last status write; planning from a fresh read"
            );
            Ok(Arc::new(fresh))
        }
    }
}

/// Step 1, continued: a paused cluster (annotation `ordinal.dev/paused: "true"`) gets
/// condition `Paused` and nothing else: no children, no database step, no
/// label moves. A failover or switchover that is running finishes first (a
/// cluster is never left half switched). On resume the condition is dropped
/// and the next pass runs the whole pipeline.
async fn pause_step<K: ClusterResource>(pass: &Pass<K>) -> Result<Option<Action>, Error> {
    let running = (pass.state.operation.as_ref()).is_some_and(|op| !op.step.ends_with("Cooldown"));
    let paused = crate::api::is_paused(pass.obj.meta()) && !running;
    let previous = pass.previous.as_ref();
    let Some(next) = status::paused(previous, paused, pass.obj.meta().generation, Utc::now())
    else {
        return Ok(None);
    };
    if let Persisted::Written = write_status(&*pass.obj, previous, &next, &pass.ctx).await? {
        let (reason, note) = if paused {
            (
                "Paused",
                "annotation ordinal.dev/paused=true: reconciling stopped",
            )
        } else {
            (
                "Resumed",
                "annotation ordinal.dev/paused removed: reconciling resumed",
            )
        };
        publish(
            &pass.ctx,
            &*pass.obj,
            KubeEventType::Normal,
            reason,
            note.to_string(),
        )
        .await;
    }
    Ok(Some(if paused {
        Action::await_change()
    } else {
        Action::requeue(Duration::from_millis(100))
    }))
}

/// Step 2: what the API server's schema cannot check, and the credentials.
/// None when the spec cannot be used (the reason is in `obs.config_error`).
async fn validate<K: ClusterResource>(pass: &mut Pass<K>) -> Result<Option<Credentials>, Error> {
    let mut config_error = checks::config(pass.obj.config(), K::owned_keys()).err();
    // Credentials: generate once, never overwrite; a user's Secret must be usable.
    let credentials = match ensure_secret(&pass.view, &*pass.obj, &pass.ctx).await? {
        Ok(creds) => Some(creds),
        Err(msg) => {
            config_error.get_or_insert(msg);
            None
        }
    };
    pass.obs.auth_hash = credentials.as_ref().map(auth_hash);
    pass.obs.config_error = config_error;
    Ok(credentials.filter(|_| pass.obs.config_error.is_none()))
}

/// An unusable spec: say so (Event when the reason is new) and wait for a change.
async fn report_invalid<K: ClusterResource>(pass: &mut Pass<K>) -> Result<Action, Error> {
    let msg = pass.obs.config_error.clone().unwrap_or_default();
    let had = status::find(pass.previous.as_ref(), ConditionType::ConfigValid);
    if had.is_none_or(|c| c.message != msg) {
        publish(
            &pass.ctx,
            &*pass.obj,
            KubeEventType::Warning,
            "InvalidSpec",
            msg,
        )
        .await;
    }
    let (pods, _) = list_pods(&pass.view, &pass.ctx).await?;
    pass.obs.replicas_existing = pods.len() as i32;
    pass.obs.replicas_ready = pods.values().filter(|p| pod_ready(p)).count() as i32;
    pass.persist().await?;
    Ok(Action::requeue(pass.ctx.settings.resync))
}

/// What the children are built from.
struct Built {
    restore: RestorePlan,
    archiver: ArchiverPlan,
    init: InitStep,
    start_members: bool,
    rendered: RenderedConfig,
    /// Hash of everything the children depend on.
    fingerprint: String,
}

/// Step 3: the restore plan and the configuration rendered from the recorded state.
async fn build<K: ClusterResource>(pass: &mut Pass<K>) -> Result<Built, Error> {
    let restore = restore::plan(&*pass.obj, &pass.view, &pass.state, &pass.ctx).await?;
    let (init, start_members) = match &restore {
        RestorePlan::Init(step) => (step.clone(), true),
        RestorePlan::Waiting(_) => (InitStep::default(), false),
        _ => (InitStep::default(), true),
    };
    pass.obs.restore = restore.condition();
    let archiver = archive::plan(
        &pass.view,
        pass.obj.binlog_archive(),
        &pass.state,
        &pass.ctx.settings.image,
        pass.obs.auth_hash.as_deref().unwrap_or_default(),
    );
    let rendered = pass.obj.render(&pass.view, &pass.state);
    let fingerprint = crate::resources::config::sha256_hex(
        format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
            pass.obj.meta().generation,
            rendered.files,
            pass.view,
            pass.state.primary,
            restore,
            archiver
        )
        .as_bytes(),
    );
    Ok(Built {
        restore,
        archiver,
        init,
        start_members,
        rendered,
        fingerprint,
    })
}

/// Step 4: server-side apply of the children. Skipped while nothing they are
/// built from changed and the last apply is recent (the engine runs every
/// second; the children need not be re-sent as often). A refusal by the API
/// server is reported (condition and Warning Event) and the pass goes on: the
/// databases that run still need their engine step.
async fn apply_children<K: ClusterResource>(pass: &mut Pass<K>, built: &Built) {
    let previous_storage_note = || {
        status::find(pass.previous.as_ref(), ConditionType::StorageInSync)
            .filter(|c| c.status == ConditionStatus::False.as_str())
            .map(|c| c.message.clone())
    };
    if pass.ctx.children_current(&pass.key, &built.fingerprint)
        || children_in_cache(
            &pass.view,
            &built.fingerprint,
            built.start_members,
            &pass.ctx,
        ) == Some(true)
    {
        pass.obs.storage_note = previous_storage_note();
        pass.obs.children = Children::Unchanged;
        return;
    }
    let result = apply_child_objects(
        &pass.view,
        &built.rendered,
        &built.init,
        built.start_members,
        &built.fingerprint,
        &pass.ctx,
    )
    .await;
    let result = match result {
        Ok(note) => archive::apply(&pass.view, &built.archiver, &pass.ctx)
            .await
            .map(|()| note),
        Err(e) => Err(e),
    };
    match result {
        Ok(note) => {
            pass.obs.storage_note = note;
            pass.obs.children = Children::Applied;
            pass.ctx
                .children_applied(&pass.key, built.fingerprint.clone());
        }
        Err(error) => {
            let msg = error.user_message();
            warn!(%error, "applying children failed");
            pass.obs.storage_note = previous_storage_note();
            pass.obs.children = Children::Failed(msg.clone());
            pass.ctx
                .children_failed(&pass.key, built.fingerprint.clone());
            pass.warn_once(Reason::ChildApplyFailed.as_str(), msg).await;
        }
    }
}

fn stamp(meta: &mut ObjectMeta, fingerprint: &str) {
    meta.annotations
        .get_or_insert_with(Default::default)
        .insert(APPLIED_HASH.to_string(), fingerprint.to_string());
}

fn carries(meta: &ObjectMeta, fingerprint: &str) -> bool {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(APPLIED_HASH))
        .is_some_and(|h| h == fingerprint)
}

/// Whether every child in the shared stores carries `fingerprint`: then
/// nothing they are built from changed since they were applied (None: no
/// stores, the caller decides by time).
fn children_in_cache(
    view: &ClusterView,
    fingerprint: &str,
    start_members: bool,
    ctx: &Context,
) -> Option<bool> {
    use super::caches::get;
    let stores = ctx.caches.of(&view.namespace)?;
    let ns = view.namespace.as_str();
    let config_map = get(&stores.config_maps, ns, &view.config_map())
        .is_some_and(|o| carries(&o.metadata, fingerprint));
    let services = [
        services::headless(view),
        services::primary(view),
        services::read(view),
    ]
    .iter()
    .all(|svc| {
        svc.metadata
            .name
            .as_deref()
            .and_then(|name| get(&stores.services, ns, name))
            .is_some_and(|o| carries(&o.metadata, fingerprint))
    });
    let pdb = get(&stores.pdbs, ns, &view.name).is_some_and(|o| carries(&o.metadata, fingerprint));
    let statefulset = !start_members
        || get(&stores.statefulsets, ns, &view.name)
            .is_some_and(|o| carries(&o.metadata, fingerprint));
    Some(config_map && services && pdb && statefulset)
}

/// Step 5: the member pods as Kubernetes sees them.
async fn observe_members<K: ClusterResource>(
    pass: &mut Pass<K>,
) -> Result<BTreeMap<String, Pod>, Error> {
    let (pods, terminating) = list_pods(&pass.view, &pass.ctx).await?;
    pass.obs.replicas_existing = pods.len() as i32;
    pass.obs.replicas_ready = pods.values().filter(|p| pod_ready(p)).count() as i32;
    pass.terminating = terminating;
    Ok(pods)
}

/// Step 6: a restore that is not finished holds the cluster: no engine step.
async fn restore_step<K: ClusterResource>(
    pass: &mut Pass<K>,
    built: &Built,
    pods: &BTreeMap<String, Pod>,
) -> Result<Option<Action>, Error> {
    if let RestorePlan::Load(source, point) = &built.restore {
        let first_ready = pods.get(&pass.view.pod_name(0)).is_some_and(pod_ready);
        let load = restore::load(
            &*pass.obj,
            &pass.view,
            source,
            point.as_deref(),
            first_ready,
            &pass.ctx,
        )
        .await?;
        if let Some(condition) = load.hold(&source.backup) {
            pass.obs.restore = Some(condition);
            pass.persist().await?;
            return Ok(Some(Action::requeue(Duration::from_secs(5))));
        }
    }
    if !built.start_members {
        pass.persist().await?;
        return Ok(Some(Action::requeue(Duration::from_secs(10))));
    }
    Ok(None)
}

/// Step 7: one database step by the engine, from the state planned from.
async fn engine_step<K: ClusterResource>(
    pass: &mut Pass<K>,
    pods: &BTreeMap<String, Pod>,
    credentials: Credentials,
    rollout_primary: Option<i32>,
) -> Result<EngineOutcome, Error> {
    let view = &pass.view;
    let members = (0..view.replicas)
        .map(|ordinal| {
            let pod = pods.get(&view.pod_name(ordinal));
            Member {
                ordinal,
                pod: view.pod_name(ordinal),
                address: pod
                    .and_then(|p| p.status.as_ref())
                    .and_then(|s| s.pod_ip.clone()),
                port: view.kind.port(),
                dns_name: view.member_dns(ordinal),
                // A pod being deleted exists until it is gone: its old
                // process may still run (the engines count a missing pod as
                // isolated).
                pod_exists: pod.is_some() || pass.terminating.contains_key(&view.pod_name(ordinal)),
                pod_ready: pod.map(pod_ready).unwrap_or(false),
                // A pod being deleted still runs the old process until it
                // is gone: it is passed on, and does not count as isolated.
                isolated: isolation_done(
                    &pass.state,
                    ordinal,
                    pod.or_else(|| pass.terminating.get(&view.pod_name(ordinal))),
                ),
            }
        })
        .collect::<Vec<_>>();
    // With no recorded primary, the last one known outside the status is a
    // hint for adoption (src/controller/hint.rs).
    let hint = last_primary_hint(pass).await;
    let input = EngineInput {
        namespace: view.namespace.clone(),
        name: view.name.clone(),
        members,
        state: pass.state.clone(),
        desired_primary: switchover_target(
            pass.obj.desired_primary(),
            pass.obj.replicas(),
            pass.planning.as_ref(),
        )
        .or(rollout_primary),
        failover: pass.obj.failover().clone(),
        credentials,
        now: Utc::now(),
        settings: pass.obj.engine_settings(),
        hint,
    };
    let outcome = K::engine(&pass.ctx).reconcile(&input).await?;
    // Watch the primary this pass confirmed (a broken watch runs a pass at
    // once), or stop watching.
    crate::watch::follow(
        &pass.ctx.watches,
        &watch_key(view.kind.app(), &view.namespace, &view.name),
        K::engine(&pass.ctx),
        &input,
        &outcome,
    );
    for event in &outcome.events {
        // An engine may report the same standing problem every pass.
        if pass.ctx.event_is_new(&pass.key, &event.reason, &event.note) {
            publish_engine_event(&pass.ctx, &*pass.obj, event).await;
        }
    }
    pass.obs.replication = Some(ReplicationReport {
        state: outcome.state.clone(),
        members: outcome.members.clone(),
        health: outcome.health.clone(),
        writes: outcome.primary_writes.clone(),
    });
    record_metrics::<K>(view, &pass.state, &outcome, &pass.ctx);
    pass.ctx.record_observed(
        &pass.key,
        status::Observed {
            state: outcome.state.clone(),
            members: outcome.members.clone(),
        },
    );
    if pass.obs.restore.is_some() && outcome.state.primary.is_some() {
        let backup = pass
            .obj
            .restore_spec()
            .map(|r| r.backup.clone())
            .unwrap_or_default();
        pass.obs.restore = Some(restore::restore_condition(
            ConditionStatus::True,
            Reason::Restored,
            format!("bootstrapped from Backup {backup}"),
        ));
    }
    Ok(outcome)
}

/// The last-primary hint on the StatefulSet, read only while no primary is
/// recorded; from the shared store when there is one.
async fn last_primary_hint<K: ClusterResource>(
    pass: &Pass<K>,
) -> Option<crate::engine::PrimaryHint> {
    if pass.state.primary.is_some() {
        return None;
    }
    match pass.ctx.caches.of(&pass.view.namespace) {
        Some(stores) => {
            super::caches::get(&stores.statefulsets, &pass.view.namespace, &pass.view.name)
                .and_then(|sts| super::hint::from_statefulset(&sts))
        }
        None => super::hint::read_if_unrecorded(&pass.ctx.client, &pass.view, &pass.state).await,
    }
}

/// Step 8: persist the engine's step before anything else acts on it, then
/// follow it with the configuration and the role labels.
async fn update_status<K: ClusterResource>(
    pass: &mut Pass<K>,
    pods: &BTreeMap<String, Pod>,
    outcome: &EngineOutcome,
) -> Result<Action, Error> {
    if pass.persist().await? == Persisted::Conflict {
        // Someone changed the state this pass planned from: plan again.
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    super::hint::record_if_changed(&pass.ctx.client, &pass.view, &pass.state, &outcome.state).await;
    let changes = roles::plan(
        &roles::pod_roles(pods, &pass.view.name),
        &outcome.members,
        &outcome.state,
    );
    if let Err(error) = roles::apply(&pass.view.namespace, &changes, &pass.ctx).await {
        pass.warn_once("RoleLabelFailed", error.user_message())
            .await;
        return Err(error);
    }
    isolate_members(&*pass.obj, &pass.view, pods, outcome, &pass.ctx).await?;
    if outcome.state.primary != pass.state.primary {
        let rendered = pass.obj.render(&pass.view, &outcome.state);
        apply_config_map(&pass.view, &rendered.files, None, &pass.ctx).await?;
    }
    Ok(Action::requeue(
        outcome.requeue_after.min(pass.ctx.settings.resync),
    ))
}

/// Members to run: the spec's count, but never so few that the recorded
/// primary is removed — a scale-down past the primary waits for a switchover.
pub fn effective_replicas(spec_replicas: i32, primary: Option<i32>) -> i32 {
    primary.map_or(spec_replicas, |p| spec_replicas.max(p + 1))
}

/// The member to switch over to: the user's `spec.primary`, or — when a
/// scale-down would remove the primary — the most advanced healthy replica
/// that stays.
pub fn switchover_target(
    spec_primary: Option<i32>,
    spec_replicas: i32,
    status: Option<&ClusterStatus>,
) -> Option<i32> {
    if spec_primary.is_some() {
        return spec_primary;
    }
    let status = status?;
    let primary = status.replication.primary?;
    if primary < spec_replicas {
        return None;
    }
    status
        .members
        .iter()
        .filter(|m| {
            m.ordinal < spec_replicas
                && m.role == crate::api::MemberRole::Replica
                && m.link_up == Some(true)
        })
        .max_by_key(|m| (m.offset.unwrap_or(0), -m.lag.unwrap_or(0), -m.ordinal))
        .map(|m| m.ordinal)
        .or(Some(0))
}

/// sha256 over the credentials (keys and values), recorded in status so a
/// rotation is visible without exposing anything.
pub fn auth_hash(credentials: &Credentials) -> String {
    let text: String = credentials
        .0
        .iter()
        .map(|(k, v)| format!("{k}\0{v}\0"))
        .collect();
    crate::resources::config::sha256_hex(text.as_bytes())
}

/// Server-side apply of the ConfigMap, Services, PDB and StatefulSet; returns
/// why the storage could not follow the spec, if it could not.
async fn apply_child_objects(
    view: &ClusterView,
    rendered: &crate::resources::RenderedConfig,
    init: &InitStep,
    start_members: bool,
    fingerprint: &str,
    ctx: &Context,
) -> Result<Option<String>, Error> {
    let client = &ctx.client;
    let ns = view.namespace.as_str();
    apply_config_map(view, &rendered.files, Some(fingerprint), ctx).await?;
    let svc_api: Api<Service> = Api::namespaced(client.clone(), ns);
    for mut svc in [
        services::headless(view),
        services::primary(view),
        services::read(view),
    ] {
        stamp(&mut svc.metadata, fingerprint);
        let name = svc.metadata.name.clone().unwrap_or_default();
        svc_api
            .patch(&name, &apply_params(), &Patch::Apply(&svc))
            .await
            .context(format!("apply Service {name}"))?;
    }
    let pdb_api: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    let mut budget = pdb::pdb(view);
    stamp(&mut budget.metadata, fingerprint);
    pdb_api
        .patch(&view.name, &apply_params(), &Patch::Apply(&budget))
        .await
        .context(format!("apply PodDisruptionBudget {}", view.name))?;
    if !start_members {
        return Ok(None);
    }
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let existing = match ctx.caches.of(ns) {
        Some(stores) => {
            super::caches::get(&stores.statefulsets, ns, &view.name).map(|s| (*s).clone())
        }
        None => sts_api
            .get_opt(&view.name)
            .await
            .context(format!("get StatefulSet {}", view.name))?,
    };
    let (claims, storage_note) = claims_for(view, existing.as_ref());
    let mut sts = statefulset::statefulset(view, &rendered.restart_hash, claims, init.clone());
    stamp(&mut sts.metadata, fingerprint);
    sts_api
        .patch(&view.name, &apply_params(), &Patch::Apply(&sts))
        .await
        .context(format!("apply StatefulSet {}", view.name))?;
    Ok(storage_note)
}

/// The cluster's credentials Secret: a generated one from the shared store
/// of managed Secrets; one the user names (`named`) from the data kept at
/// the version the metadata watch shows, read again only when that version
/// changed; without stores, from the API server.
async fn read_secret(
    view: &ClusterView,
    named: bool,
    ctx: &Context,
    api: &Api<Secret>,
) -> Result<Option<Secret>, Error> {
    let (ns, name) = (view.namespace.as_str(), view.secret_name.as_str());
    let Some(stores) = ctx.caches.of(ns) else {
        return get_secret(api, name).await;
    };
    if let Some(s) = super::caches::get(&stores.secrets, ns, name) {
        return Ok(Some((*s).clone()));
    }
    if !named {
        return get_secret(api, name).await;
    }
    let version = stores.secret_version(ns, name);
    if let Some(s) = stores.named_secrets.fresh(ns, name, version.as_deref()) {
        return Ok(Some((*s).clone()));
    }
    let found = get_secret(api, name).await?;
    stores.named_secrets.remember(ns, name, found.as_ref());
    Ok(found)
}

async fn get_secret(api: &Api<Secret>, name: &str) -> Result<Option<Secret>, Error> {
    api.get_opt(name)
        .await
        .context(format!("get Secret {name}"))
}

/// The generated Secret is created once and never overwritten; a named Secret
/// must exist and hold usable passwords. Inner Err is a user-facing reason.
async fn ensure_secret<K: ClusterResource>(
    view: &ClusterView,
    obj: &K,
    ctx: &Context,
) -> Result<Result<Credentials, String>, Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &view.namespace);
    let named = obj.auth().secret_name.is_some();
    let found = read_secret(view, named, ctx, &api).await?;
    let found = match (found, named) {
        (Some(s), _) => s,
        (None, true) => {
            return Ok(Err(format!(
                "Secret {} named in spec.auth.secretName does not exist",
                view.secret_name
            )));
        }
        (None, false) => {
            let generated = secret::generated(view, secret::random_password);
            match api
                .create(
                    &PostParams {
                        field_manager: Some(FIELD_MANAGER.into()),
                        ..Default::default()
                    },
                    &generated,
                )
                .await
            {
                Ok(created) => {
                    publish(
                        ctx,
                        obj,
                        KubeEventType::Normal,
                        "SecretGenerated",
                        format!("generated credentials Secret {}", view.secret_name),
                    )
                    .await;
                    created
                }
                // Someone created it meanwhile: never overwrite, read it.
                Err(kube::Error::Api(e)) if e.code == 409 => api
                    .get(&view.secret_name)
                    .await
                    .context(format!("get Secret {}", view.secret_name))?,
                Err(e) => return Err(e).context(format!("create Secret {}", view.secret_name)),
            }
        }
    };
    // A generated Secret outlives the resource while its volumes do.
    if obj.auth().secret_name.is_none()
        && let Some(owners) = secret::owners_to_set(view, &found)
    {
        let patch = serde_json::json!({ "metadata": { "ownerReferences": owners } });
        api.patch(
            &view.secret_name,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .context(format!(
            "release Secret {} from the cluster",
            view.secret_name
        ))?;
    }
    Ok(secret::check(view, &found).map(Credentials))
}

async fn apply_config_map(
    view: &ClusterView,
    files: &BTreeMap<String, String>,
    fingerprint: Option<&str>,
    ctx: &Context,
) -> Result<(), Error> {
    let mut cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(view.config_map()),
            namespace: Some(view.namespace.clone()),
            labels: Some(labels::common(view)),
            owner_references: Some(vec![view.owner.clone()]),
            ..Default::default()
        },
        data: Some(files.clone()),
        ..Default::default()
    };
    if let Some(f) = fingerprint {
        stamp(&mut cm.metadata, f);
    }
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &view.namespace);
    api.patch(&view.config_map(), &apply_params(), &Patch::Apply(&cm))
        .await
        .context(format!("apply ConfigMap {}", view.config_map()))?;
    Ok(())
}

/// volumeClaimTemplates are immutable: keep the existing ones and say so when
/// the spec asks for something else (volumes are never recreated).
fn claims_for(
    view: &ClusterView,
    existing: Option<&StatefulSet>,
) -> (Vec<PersistentVolumeClaim>, Option<String>) {
    let wanted = statefulset::data_claim(view);
    let current = existing
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.volume_claim_templates.clone());
    match current {
        Some(current) if !current.is_empty() => {
            let spec_of = |c: &PersistentVolumeClaim| {
                c.spec.as_ref().map(|s| {
                    (
                        s.storage_class_name.clone(),
                        s.resources.as_ref().and_then(|r| r.requests.clone()),
                    )
                })
            };
            let same = current.first().map(spec_of) == Some(spec_of(&wanted));
            let note = (!same).then(|| {
                "spec.storage differs from the existing StatefulSet's volume claims, which Kubernetes does not allow to change; existing volumes are kept and the change is not applied".to_string()
            });
            // Keep exactly what exists, minus server-populated status.
            let current = current
                .into_iter()
                .map(|mut c| {
                    c.status = None;
                    c
                })
                .collect();
            (current, note)
        }
        _ => (vec![wanted], None),
    }
}

/// The member pods by name: (live, being deleted), from the shared pod
/// cache when there is one, else listed from the API server.
async fn list_pods(
    view: &ClusterView,
    ctx: &Context,
) -> Result<(BTreeMap<String, Pod>, BTreeMap<String, Pod>), Error> {
    let pods: Vec<Pod> = if let Some(stores) = ctx.caches.of(&view.namespace) {
        super::caches::pods_matching(&stores.pods, &view.namespace, &labels::selector(view))
    } else {
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &view.namespace);
        let selector = labels::to_selector_string(&labels::selector(view));
        let mut pods = api
            .list(&ListParams::default().labels(&selector))
            .await
            .context("list member pods")?
            .items;
        // As the stores keep them (the restart digest taken of the full pod).
        pods.iter_mut().for_each(Slim::slim);
        pods
    };
    let (terminating, live): (Vec<Pod>, Vec<Pod>) = pods
        .into_iter()
        .partition(|p| p.metadata.deletion_timestamp.is_some());
    let by_name = |pods: Vec<Pod>| -> BTreeMap<String, Pod> {
        pods.into_iter().map(|p| (p.name_any(), p)).collect()
    };
    Ok((by_name(live), by_name(terminating)))
}

/// Whether a status write happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Persisted {
    Written,
    /// Nothing changed: no write.
    Unchanged,
    /// Only probe results changed, not for long enough: not written yet.
    Held,
    /// The replication state changed since this pass read it: not written.
    Conflict,
}

/// Whether the isolation the engine asked for (`EngineOutcome::isolate`)
/// of the old primary `ordinal` of the persisted failover is done: the pod
/// that ran it is gone — no pod, or a pod created after the failover started
/// (it boots read-only) that carries no role label.
fn isolation_done(state: &crate::api::ReplicationState, ordinal: i32, pod: Option<&Pod>) -> bool {
    let Some(op) = state
        .operation
        .as_ref()
        .filter(|op| op.kind == crate::api::OperationKind::Failover && op.from == ordinal)
    else {
        return false;
    };
    let Some(pod) = pod else { return true };
    pod.labels().get(labels::ROLE).is_none()
        && pod.metadata.deletion_timestamp.is_none()
        && pod
            .metadata
            .creation_timestamp
            .as_ref()
            .is_some_and(|t| t.0 > op.started_at.0)
}

/// Make the members the engine lists in `outcome.isolate` unreachable for
/// clients: their role label is already gone (the engine reports them
/// non-primary, `move_role_labels` ran first); delete the pod that still runs
/// the old process, once. A pod stuck terminating on a lost node is never
/// counted as isolated: the failover then waits, and is abandoned at its
/// deadline.
async fn isolate_members<K: ClusterResource>(
    obj: &K,
    view: &ClusterView,
    pods: &BTreeMap<String, Pod>,
    outcome: &crate::engine::EngineOutcome,
    ctx: &Context,
) -> Result<(), Error> {
    let Some(op) = outcome.state.operation.as_ref() else {
        return Ok(());
    };
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &view.namespace);
    for &ordinal in &outcome.isolate {
        let name = view.pod_name(ordinal);
        let Some(pod) = pods.get(&name) else { continue };
        let old = pod
            .metadata
            .creation_timestamp
            .as_ref()
            .is_none_or(|t| t.0 <= op.started_at.0);
        if !old || pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        warn!(pod = %name, "deleting the pod of an unreachable primary before its replacement is promoted");
        // The pod comes from the shared cache, which may not have seen an
        // earlier pass's deletion yet: a pod already gone is isolated.
        match api.delete(&name, &Default::default()).await {
            Err(kube::Error::Api(e)) if e.code == 404 => continue,
            other => other.context(format!("delete pod {name} to isolate it"))?,
        };
        let event = EngineEvent {
            type_: EventType::Warning,
            reason: "Isolated".into(),
            note: format!(
                "{name} does not answer and is being replaced: its role label was removed and its pod deleted (it comes back read-only) before a replica is promoted"
            ),
        };
        publish_engine_event(ctx, obj, &event).await;
    }
    Ok(())
}

/// Write the status computed from this pass, server-side applied with the
/// resourceVersion planned from as a precondition. On a conflict the object
/// is read again: when only something else changed (metadata, spec,
/// conditions) the write is retried on the new version; when the replication
/// state changed, nothing is written and the caller plans again.
async fn persist<K: ClusterResource>(
    obj: &K,
    previous: Option<&ClusterStatus>,
    obs: &Observation,
    ctx: &Context,
) -> Result<Persisted, Error> {
    let next = status::compute(previous, obj.replicas(), obs, Utc::now());
    write_status(obj, previous, &next, ctx).await
}

/// Write `next` unless it equals `previous`, differs from it only in details
/// (positions, offsets, lag), or differs only in probe results that have not
/// stood for [`super::hysteresis::HOLD`] yet (server-side apply with a
/// resourceVersion precondition; a conflict re-reads and retries while the
/// replication state is unchanged).
async fn write_status<K: ClusterResource>(
    obj: &K,
    previous: Option<&ClusterStatus>,
    next: &ClusterStatus,
    ctx: &Context,
) -> Result<Persisted, Error> {
    let key = key_of(obj);
    if previous == Some(next) {
        ctx.hysteresis.settle(&key);
        return Ok(Persisted::Unchanged);
    }
    // Positions, offsets and lag alone are not written (they have metrics):
    // they go out with the next change a person acts on; the next pass
    // still plans from the newest position (Context::observed).
    if previous.is_some_and(|p| status::differs_only_in_details(p, next)) {
        ctx.hysteresis.settle(&key);
        return Ok(Persisted::Unchanged);
    }
    // A change confined to probe results waits out the hysteresis, unless
    // it clears everything (a recovery is written at once).
    if let Some(p) = previous
        && status::differs_only_in_probes(p, next)
        && !status::all_clear(next)
    {
        match ctx.hysteresis.judge(&key, std::time::Instant::now()) {
            Verdict::Hold => return Ok(Persisted::Held),
            Verdict::Write => {}
        }
    } else {
        ctx.hysteresis.settle(&key);
    }
    let ns = obj
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = obj.name_any();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let planned_from = previous.map(|s| s.replication.clone()).unwrap_or_default();
    let mut resource_version = obj.meta().resource_version.clone();
    for _ in 0..3 {
        // Server-side apply: fields this manager stops sending (e.g. a
        // finished operation) are removed, which a merge patch would leave.
        let patch = StatusApply {
            api_version: K::api_version(&()).to_string(),
            kind: K::kind(&()).to_string(),
            metadata: Precondition {
                resource_version: resource_version.as_deref(),
            },
            status: next,
        };
        match api
            .patch_status(&name, &apply_params(), &Patch::Apply(&patch))
            .await
        {
            Ok(written) => {
                if let (Some(uid), Some(rv)) = (
                    written.meta().uid.clone(),
                    written.meta().resource_version.clone(),
                ) {
                    ctx.record_written(
                        &key,
                        Written {
                            uid,
                            resource_version: rv,
                            replication: next.replication.clone(),
                        },
                    );
                }
                return Ok(Persisted::Written);
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let fresh = api
                    .get(&name)
                    .await
                    .context("read the cluster after a status conflict")?;
                let fresh_state = fresh
                    .cluster_status()
                    .map(|s| s.replication.clone())
                    .unwrap_or_default();
                if fresh_state != planned_from {
                    warn!(
                        planned_term = planned_from.term,
                        found_term = fresh_state.term,
                        "replication state changed since this pass read it; planning again"
                    );
                    return Ok(Persisted::Conflict);
                }
                resource_version = fresh.meta().resource_version.clone();
            }
            Err(e) => return Err(e).context("apply status"),
        }
    }
    Ok(Persisted::Conflict)
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct StatusApply<'a> {
    api_version: String,
    kind: String,
    metadata: Precondition<'a>,
    status: &'a ClusterStatus,
}

/// `metadata.resourceVersion` in an apply patch is a precondition.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct Precondition<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_version: Option<&'a str>,
}

fn cluster_labels<K: ClusterResource>(
    view: &ClusterView,
) -> crate::metrics::ControlledClusterLabels {
    crate::metrics::ControlledClusterLabels {
        controller: K::kind(&()).to_string(),
        namespace: view.namespace.clone(),
        cluster: view.name.clone(),
    }
}

fn record_metrics<K: ClusterResource>(
    view: &ClusterView,
    before: &crate::api::ReplicationState,
    outcome: &crate::engine::EngineOutcome,
    ctx: &Context,
) {
    use crate::api::MemberRole;
    use crate::metrics::{MemberSample, PrimaryChangeLabels};
    let members: Vec<MemberSample> = outcome
        .members
        .iter()
        .map(|m| MemberSample {
            pod: m.pod.clone(),
            primary: m.role == MemberRole::Primary,
            replicating: m.role == MemberRole::Replica && m.link_up == Some(true),
            lag: m.lag,
        })
        .collect();
    ctx.metrics
        .record_cluster(&cluster_labels::<K>(view), &members);
    if let Some(change) = &outcome.state.last_failover
        && before.last_failover.as_ref() != Some(change)
    {
        let labels = PrimaryChangeLabels {
            controller: K::kind(&()).to_string(),
            namespace: view.namespace.clone(),
            cluster: view.name.clone(),
            kind: format!("{:?}", change.kind),
            reason: change.reason.clone(),
        };
        ctx.metrics.primary_changes.get_or_create(&labels).inc();
    }
}

async fn publish_engine_event<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    event: &EngineEvent,
) {
    let type_ = match event.type_ {
        EventType::Normal => KubeEventType::Normal,
        EventType::Warning => KubeEventType::Warning,
    };
    publish(ctx, obj, type_, &event.reason, event.note.clone()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ClusterStatus, MemberRole, MemberStatus};

    #[test]
    fn isolation_is_done_once_the_old_pod_is_gone() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        use k8s_openapi::jiff::Timestamp;
        let at = |ms: i64| Time(Timestamp::from_millisecond(ms).unwrap());
        let state = crate::api::ReplicationState {
            primary: Some(0),
            term: 1,
            operation: Some(crate::api::Operation {
                kind: crate::api::OperationKind::Failover,
                from: 0,
                to: Some(1),
                step: "AwaitingIsolation".into(),
                term: 2,
                started_at: at(10_000),
                deadline: None,
                reason: "lost".into(),
                data: None,
            }),
            ..Default::default()
        };
        let pod = |created: i64, role: Option<&str>| {
            let mut p = Pod::default();
            p.metadata.creation_timestamp = Some(at(created));
            if let Some(r) = role {
                p.metadata.labels = Some([(labels::ROLE.to_string(), r.to_string())].into());
            }
            p
        };
        assert!(
            !isolation_done(&state, 0, Some(&pod(5_000, None))),
            "the old pod"
        );
        assert!(
            isolation_done(&state, 0, Some(&pod(12_000, None))),
            "a new pod"
        );
        assert!(!isolation_done(
            &state,
            0,
            Some(&pod(12_000, Some("primary")))
        ));
        assert!(isolation_done(&state, 0, None), "no pod");
        assert!(!isolation_done(&state, 1, None), "not the old primary");
        let mut terminating = pod(12_000, None);
        terminating.metadata.deletion_timestamp = Some(at(13_000));
        assert!(!isolation_done(&state, 0, Some(&terminating)));
        let steady = crate::api::ReplicationState::default();
        assert!(!isolation_done(&steady, 0, None), "no operation");
    }

    #[test]
    fn scale_down_keeps_the_primary_until_a_switchover() {
        assert_eq!(effective_replicas(2, Some(4)), 5);
        assert_eq!(effective_replicas(5, Some(1)), 5);
        assert_eq!(effective_replicas(3, None), 3);
        let member = |ordinal: i32, role, offset| MemberStatus {
            ordinal,
            pod: format!("c-{ordinal}"),
            role,
            link_up: Some(role == MemberRole::Replica),
            offset: Some(offset),
            ..Default::default()
        };
        let mut status = ClusterStatus {
            members: vec![
                member(0, MemberRole::Replica, 90),
                member(1, MemberRole::Replica, 100),
                member(2, MemberRole::Replica, 120),
                member(3, MemberRole::Primary, 120),
            ],
            ..Default::default()
        };
        status.replication.primary = Some(3);
        assert_eq!(
            switchover_target(None, 2, Some(&status)),
            Some(1),
            "best replica that stays"
        );
        assert_eq!(
            switchover_target(None, 4, Some(&status)),
            None,
            "primary stays: nothing to do"
        );
        assert_eq!(
            switchover_target(Some(0), 4, Some(&status)),
            Some(0),
            "the user's choice wins"
        );
    }

    #[test]
    fn auth_hash_changes_with_a_rotation_and_hides_the_passwords() {
        let creds = |pw: &str| Credentials([("password".to_string(), pw.to_string())].into());
        let a = auth_hash(&creds("old-secret"));
        assert_eq!(a, auth_hash(&creds("old-secret")));
        assert_ne!(a, auth_hash(&creds("new-secret")));
        assert!(!a.contains("secret") && a.len() == 64);
    }
}
