//! The Day-2 step of a reconcile pass, from one read of the StatefulSet:
//! a member replacement ([`super::replace`]), volume growth
//! ([`super::volumes`]) and the rolling update ([`super::rollout`]), in that
//! order; a replacement in progress holds the roll.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use kube::api::Api;

use super::caches::Slim;
use super::context::{Context, Error, KubeContext};
use super::kinds::ClusterResource;
use super::replace::{self, REPLACE_ANNOTATION, ReplaceMember};
use super::rollout;
use super::status::{Observation, ReplacementReport};
use super::volumes;
use crate::api::ClusterStatus;
use crate::resources::ClusterView;
use crate::resources::statefulset::DATA_VOLUME;

/// Run the Day-2 steps; returns the switchover target the roll asks the
/// engine for, if any.
pub async fn step<K: ClusterResource>(
    obj: &K,
    view: &ClusterView,
    pods: &BTreeMap<String, Pod>,
    previous: Option<&ClusterStatus>,
    obs: &mut Observation,
    ctx: &Context,
) -> Result<Option<i32>, Error> {
    // From the shared cache when there is one (no read per pass).
    let sts = match ctx.caches.of(&view.namespace) {
        Some(stores) => super::caches::get(&stores.statefulsets, &view.namespace, &view.name)
            .map(|s| (*s).clone()),
        None => Api::<StatefulSet>::namespaced(ctx.client.clone(), &view.namespace)
            .get_opt(&view.name)
            .await
            .context(format!("get StatefulSet {}", view.name))?
            // As the store keeps it (the restart digest taken of the template).
            .map(|mut sts| {
                sts.slim();
                sts
            }),
    };
    let Some(sts) = sts else {
        return Ok(None);
    };
    let replacement = replacement_step(obj, view, pods, previous, ctx).await?;
    let hold = replacement
        .status
        .as_ref()
        .map(|r| format!("member {} is being replaced", r.ordinal));
    obs.replacement = Some(replacement);
    obs.volumes = volumes::step(view, &sts, previous, ctx).await?;
    let roll = rollout::step(obj, view, pods, previous, &sts, hold, ctx).await?;
    obs.rollout = Some(roll.report);
    Ok(roll.desired_primary)
}

/// The replacement, reading the members' claims only while one is asked for.
async fn replacement_step<K: ClusterResource>(
    obj: &K,
    view: &ClusterView,
    pods: &BTreeMap<String, Pod>,
    previous: Option<&ClusterStatus>,
    ctx: &Context,
) -> Result<ReplacementReport, Error> {
    let asked = obj.annotations().contains_key(REPLACE_ANNOTATION)
        || previous.is_some_and(|s| s.replacement.is_some());
    let mut members = Vec::new();
    if asked {
        let primary = previous.and_then(|s| s.replication.primary);
        let max_lag = rollout::max_lag(obj, view);
        let claims: Api<PersistentVolumeClaim> =
            Api::namespaced(ctx.client.clone(), &view.namespace);
        for m in rollout::members(view, pods, previous) {
            let claim = format!("{DATA_VOLUME}-{}", view.pod_name(m.ordinal));
            let claim_uid = claims
                .get_opt(&claim)
                .await
                .context(format!("get PersistentVolumeClaim {claim}"))?
                .filter(|c| c.metadata.deletion_timestamp.is_none())
                .and_then(|c| c.metadata.uid);
            members.push(ReplaceMember {
                ordinal: m.ordinal,
                healthy: rollout::member_healthy(&m, primary, max_lag),
                pod_exists: m.pod.is_some(),
                claim_uid,
            });
        }
    }
    let plan = replace::step(obj, view, members, previous, ctx).await?;
    Ok(ReplacementReport {
        status: plan.status,
        condition: plan.condition,
    })
}
