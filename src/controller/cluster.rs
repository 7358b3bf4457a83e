//! The reconciler shared by `RedisReplication` and `MySQLCluster`:
//! observe → validate → build → server-side apply → database step → status.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType as KubeEventType};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde_json::json;
use tracing::{info, instrument, warn};

use super::context::{Context, Error, KubeContext};
use super::kinds::ClusterResource;
use super::restore::{self, LoadState, RestorePlan};
use super::status::{self, Observation, ReplicationReport};
use super::validate;
use crate::api::ClusterStatus;
use crate::engine::{Credentials, Engine, EngineEvent, EngineInput, EventType, Member};
use crate::resources::statefulset::InitStep;
use crate::resources::{ClusterView, labels, pdb, secret, services, statefulset};

pub const FINALIZER: &str = "ordinal.dev/cleanup";
pub const FIELD_MANAGER: &str = "ordinal";

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

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
    let key = format!("{}/{}/{}", K::kind(&()), ns, obj.name_any());
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
    let key = format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    );
    let delay = ctx.backoff(&key);
    ctx.forget_children(&key);
    warn!(%key, %error, ?delay, "reconcile failed; retrying");
    Action::requeue(delay)
}

async fn cleanup<K: ClusterResource>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let retention = obj.storage().retention.when_deleted;
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

async fn apply<K: ClusterResource>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let now = Utc::now();
    let view = view(&*obj, &ctx)?;
    let previous = obj.cluster_status().cloned();
    let state = previous
        .as_ref()
        .map(|s| s.replication.clone())
        .unwrap_or_default();
    let mut obs = Observation {
        generation: obj.meta().generation,
        ..Default::default()
    };

    // Validate what the API server's schema cannot.
    let mut config_error = validate::config(obj.config(), K::owned_keys()).err();

    // Credentials: generate once, never overwrite; a user's Secret must be usable.
    let credentials = match ensure_secret(&view, &*obj, &ctx).await? {
        Ok(creds) => Some(creds),
        Err(msg) => {
            config_error.get_or_insert(msg);
            None
        }
    };
    obs.auth_hash = credentials.as_ref().map(auth_hash);

    if let Some(msg) = &config_error {
        obs.config_error = Some(msg.clone());
        let had = previous.as_ref().and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.type_ == "ConfigValid")
                .cloned()
        });
        if had.map(|c| c.message != *msg).unwrap_or(true) {
            publish(
                &ctx,
                &*obj,
                KubeEventType::Warning,
                "InvalidSpec",
                msg.clone(),
            )
            .await;
        }
        let (existing, ready) = count_pods(&view, &ctx).await?;
        obs.replicas_existing = existing;
        obs.replicas_ready = ready;
        write_status(&*obj, previous.as_ref(), &obs, &ctx).await?;
        return Ok(Action::requeue(ctx.settings.resync));
    }

    // A new cluster bootstrapped from a backup.
    let restore_plan = restore::plan(&*obj, &view, &state, &ctx).await?;
    let (init, start_members) = match &restore_plan {
        RestorePlan::Init(step) => (step.clone(), true),
        RestorePlan::Waiting(_) => (InitStep::default(), false),
        _ => (InitStep::default(), true),
    };
    obs.restore = match &restore_plan {
        RestorePlan::NotRequested | RestorePlan::Bootstrapped => None,
        RestorePlan::Waiting(why) => Some(("False", "BackupNotReady", why.clone())),
        RestorePlan::Init(_) | RestorePlan::Load(_) => Some((
            "False",
            "Restoring",
            "restoring the backup into ordinal 0 before replication starts".into(),
        )),
    };

    // Children, from the recorded state. Applying them is skipped while
    // nothing they are built from changed and the last apply is recent: the
    // engine runs every second, the children need not be re-sent as often.
    let rendered = obj.render(&view, &state);
    let fingerprint = crate::resources::config::sha256_hex(
        format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}",
            obj.meta().generation,
            rendered.files,
            view,
            state.primary,
            restore_plan
        )
        .as_bytes(),
    );
    if ctx.children_current(&key_of(&*obj), &fingerprint) {
        obs.storage_note = previous
            .as_ref()
            .and_then(|s| {
                s.conditions
                    .iter()
                    .find(|c| c.type_ == "StorageInSync" && c.status == "False")
            })
            .map(|c| c.message.clone());
    } else {
        obs.storage_note = apply_children(&view, &rendered, &init, start_members, &ctx).await?;
        ctx.children_applied(&key_of(&*obj), fingerprint);
    }

    // Members as Kubernetes sees them.
    let pods = list_pods(&view, &ctx).await?;
    obs.replicas_existing = pods.len() as i32;
    obs.replicas_ready = pods.values().filter(|p| pod_ready(p)).count() as i32;
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
                pod_exists: pod.is_some(),
                pod_ready: pod.map(pod_ready).unwrap_or(false),
            }
        })
        .collect::<Vec<_>>();

    // A MySQL restore loads ordinal 0 before replication is set up.
    if let RestorePlan::Load(source) = &restore_plan {
        let first_ready = pods.get(&view.pod_name(0)).is_some_and(pod_ready);
        let hold = match restore::load(&*obj, &view, source, first_ready, &ctx).await? {
            LoadState::Done => None,
            LoadState::WaitingForMember => Some((
                "False",
                "Restoring",
                "waiting for ordinal 0 to start".to_string(),
            )),
            LoadState::Running => Some((
                "False",
                "Restoring",
                format!("loading Backup {} into ordinal 0", source.backup),
            )),
            LoadState::Failed(why) => Some(("False", "RestoreFailed", why)),
        };
        if let Some(condition) = hold {
            obs.restore = Some(condition);
            write_status(&*obj, previous.as_ref(), &obs, &ctx).await?;
            return Ok(Action::requeue(std::time::Duration::from_secs(5)));
        }
    }
    if !start_members {
        write_status(&*obj, previous.as_ref(), &obs, &ctx).await?;
        return Ok(Action::requeue(std::time::Duration::from_secs(10)));
    }

    // Database step. With no recorded primary, the last one known outside
    // the status is a hint for adoption (src/controller/hint.rs).
    let hint = super::hint::read_if_unrecorded(&ctx.client, &view, &state).await;
    let input = EngineInput {
        namespace: view.namespace.clone(),
        name: view.name.clone(),
        members,
        state: state.clone(),
        desired_primary: switchover_target(
            obj.desired_primary(),
            obj.replicas(),
            previous.as_ref(),
        ),
        failover: obj.failover().clone(),
        credentials: credentials.unwrap_or_default(),
        now,
        settings: obj.engine_settings(),
        hint,
    };
    let outcome = K::engine(&ctx).reconcile(&input).await?;
    for event in &outcome.events {
        // An engine may report the same standing problem every pass.
        if ctx.event_is_new(&key_of(&*obj), &event.reason, &event.note) {
            publish_engine_event(&ctx, &*obj, event).await;
        }
    }
    obs.replication = Some(ReplicationReport {
        state: outcome.state.clone(),
        members: outcome.members.clone(),
        health: outcome.health.clone(),
    });
    record_metrics::<K>(&view, &state, &outcome, &ctx);
    if obs.restore.is_some() && outcome.state.primary.is_some() {
        let backup = obj
            .restore_spec()
            .map(|r| r.backup.clone())
            .unwrap_or_default();
        obs.restore = Some((
            "True",
            "Restored",
            format!("bootstrapped from Backup {backup}"),
        ));
    }
    // Persist the engine's step before anything else acts on it.
    write_status(&*obj, previous.as_ref(), &obs, &ctx).await?;
    super::hint::record_if_changed(&ctx.client, &view, &state, &outcome.state).await;
    if outcome.state.primary != state.primary {
        let rendered = obj.render(&view, &outcome.state);
        apply_config_map(&view, &rendered.files, &ctx).await?;
    }
    move_role_labels(&view, &pods, &outcome.members, &ctx).await?;

    Ok(Action::requeue(
        outcome.requeue_after.min(ctx.settings.resync),
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

fn key_of<K: ClusterResource>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

/// Server-side apply of the ConfigMap, Services, PDB and StatefulSet; returns
/// why the storage could not follow the spec, if it could not.
async fn apply_children(
    view: &ClusterView,
    rendered: &crate::resources::RenderedConfig,
    init: &InitStep,
    start_members: bool,
    ctx: &Context,
) -> Result<Option<String>, Error> {
    let client = &ctx.client;
    let ns = view.namespace.as_str();
    apply_config_map(view, &rendered.files, ctx).await?;
    let svc_api: Api<Service> = Api::namespaced(client.clone(), ns);
    for svc in [
        services::headless(view),
        services::primary(view),
        services::read(view),
    ] {
        let name = svc.metadata.name.clone().unwrap_or_default();
        svc_api
            .patch(&name, &apply_params(), &Patch::Apply(&svc))
            .await
            .context(format!("apply Service {name}"))?;
    }
    let pdb_api: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    pdb_api
        .patch(&view.name, &apply_params(), &Patch::Apply(&pdb::pdb(view)))
        .await
        .context(format!("apply PodDisruptionBudget {}", view.name))?;
    if !start_members {
        return Ok(None);
    }
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let existing = sts_api
        .get_opt(&view.name)
        .await
        .context(format!("get StatefulSet {}", view.name))?;
    let (claims, storage_note) = claims_for(view, existing.as_ref());
    let sts = statefulset::statefulset(view, &rendered.restart_hash, claims, init.clone());
    sts_api
        .patch(&view.name, &apply_params(), &Patch::Apply(&sts))
        .await
        .context(format!("apply StatefulSet {}", view.name))?;
    Ok(storage_note)
}

/// The generated Secret is created once and never overwritten; a named Secret
/// must exist and hold usable passwords. Inner Err is a user-facing reason.
async fn ensure_secret<K: ClusterResource>(
    view: &ClusterView,
    obj: &K,
    ctx: &Context,
) -> Result<Result<Credentials, String>, Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &view.namespace);
    let found = api
        .get_opt(&view.secret_name)
        .await
        .context(format!("get Secret {}", view.secret_name))?;
    let found = match (found, obj.auth().secret_name.is_some()) {
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
        let patch = json!({ "metadata": { "ownerReferences": owners } });
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
    ctx: &Context,
) -> Result<(), Error> {
    let cm = ConfigMap {
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

async fn list_pods(view: &ClusterView, ctx: &Context) -> Result<BTreeMap<String, Pod>, Error> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &view.namespace);
    let selector = labels::to_selector_string(&labels::selector(view));
    let pods = api
        .list(&ListParams::default().labels(&selector))
        .await
        .context("list member pods")?;
    Ok(pods
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| (p.name_any(), p))
        .collect())
}

async fn count_pods(view: &ClusterView, ctx: &Context) -> Result<(i32, i32), Error> {
    let pods = list_pods(view, ctx).await?;
    Ok((
        pods.len() as i32,
        pods.values().filter(|p| pod_ready(p)).count() as i32,
    ))
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        .unwrap_or(false)
}

/// Desired role label per pod from the engine's confirmed roles.
pub fn desired_roles(
    members: &[crate::api::MemberStatus],
) -> BTreeMap<String, Option<&'static str>> {
    members
        .iter()
        .map(|m| (m.pod.clone(), m.role.label()))
        .collect()
}

/// Move role labels: first take labels away, then add, so the write Service
/// never selects two members.
async fn move_role_labels(
    view: &ClusterView,
    pods: &BTreeMap<String, Pod>,
    members: &[crate::api::MemberStatus],
    ctx: &Context,
) -> Result<(), Error> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &view.namespace);
    let wanted = desired_roles(members);
    let current = |pod: &Pod| pod.labels().get(labels::ROLE).cloned();
    let mut removals = Vec::new();
    let mut additions = Vec::new();
    for (name, pod) in pods {
        let want = wanted.get(name).copied().flatten();
        let have = current(pod);
        if have.as_deref() == want {
            continue;
        }
        match want {
            None => removals.push((name.clone(), None)),
            Some(role) if have.is_some() => removals.push((name.clone(), Some(role))),
            Some(role) => additions.push((name.clone(), role)),
        }
    }
    // A changed role is a removal followed by an addition.
    for (name, _) in &removals {
        let patch = json!({"metadata": {"labels": {labels::ROLE: serde_json::Value::Null}}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .context(format!("remove role label from {name}"))?;
    }
    additions.extend(removals.into_iter().filter_map(|(n, r)| r.map(|r| (n, r))));
    for (name, role) in additions {
        let patch = json!({"metadata": {"labels": {labels::ROLE: role}}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .context(format!("label {name} {role}"))?;
        info!(pod = %name, role, "role label set");
    }
    Ok(())
}

async fn write_status<K: ClusterResource>(
    obj: &K,
    previous: Option<&ClusterStatus>,
    obs: &Observation,
    ctx: &Context,
) -> Result<(), Error> {
    let next = status::compute(previous, obj.replicas(), obs, Utc::now());
    if previous == Some(&next) {
        return Ok(());
    }
    let ns = obj
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    // Server-side apply: fields this manager stops sending (e.g. a finished
    // operation) are removed, which a merge patch would leave behind.
    let patch = StatusApply {
        api_version: K::api_version(&()).to_string(),
        kind: K::kind(&()).to_string(),
        status: &next,
    };
    api.patch_status(&obj.name_any(), &apply_params(), &Patch::Apply(&patch))
        .await
        .context("apply status")?;
    Ok(())
}

fn record_metrics<K: ClusterResource>(
    view: &ClusterView,
    before: &crate::api::ReplicationState,
    outcome: &crate::engine::EngineOutcome,
    ctx: &Context,
) {
    use crate::metrics::{MemberLabels, PrimaryChangeLabels};
    for member in &outcome.members {
        if let Some(lag) = member.lag {
            let labels = MemberLabels {
                namespace: view.namespace.clone(),
                cluster: view.name.clone(),
                member: member.pod.clone(),
            };
            ctx.metrics.replication_lag.get_or_create(&labels).set(lag);
        }
    }
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

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct StatusApply<'a> {
    api_version: String,
    kind: String,
    status: &'a ClusterStatus,
}

pub(crate) async fn publish<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    type_: KubeEventType,
    reason: &str,
    note: String,
) {
    let event = KubeEvent {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: reason.into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        warn!(%error, reason, "could not publish event");
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

    #[test]
    fn only_confirmed_roles_get_labels() {
        let member = |ordinal: i32, role| MemberStatus {
            ordinal,
            pod: format!("c-{ordinal}"),
            role,
            ..Default::default()
        };
        let roles = desired_roles(&[
            member(0, MemberRole::Primary),
            member(1, MemberRole::Replica),
            member(2, MemberRole::Quarantined),
            member(3, MemberRole::Unknown),
        ]);
        assert_eq!(roles["c-0"], Some("primary"));
        assert_eq!(roles["c-1"], Some("replica"));
        assert_eq!(roles["c-2"], None);
        assert_eq!(roles["c-3"], None);
    }
}
