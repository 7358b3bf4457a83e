//! Helpers every controller shares: the field manager, apply parameters,
//! Event publishing and object keys. A leaf module: it imports no other
//! reconciler module, so `cluster`, `restore`, `status`, `backup` and
//! `schedule` all depend on it and never on each other for these.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PatchParams};
use kube::runtime::events::{Event as KubeEvent, EventType as KubeEventType};
use kube::{Resource, ResourceExt};
use tracing::warn;

use super::context::{Context, Error, KubeContext};

/// Finalizer of cluster resources.
pub const FINALIZER: &str = "ordinal.dev/cleanup";
/// Field manager of every server-side apply Ordinal makes.
pub const FIELD_MANAGER: &str = "ordinal";

/// Server-side apply as Ordinal, taking over fields from other managers.
pub fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// `Kind/namespace/name`: the key of per-object state kept in memory.
pub fn key_of<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

/// Publish an Event about `obj`; a failure to publish is logged, never fatal.
pub async fn publish<K: Resource<DynamicType = ()>>(
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

/// Whether the kubelet reports the pod Ready.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        .unwrap_or(false)
}

/// The termination message of the Job's pod: a manifest on success, an error otherwise.
pub async fn job_report(job: &str, ns: &str, ctx: &Context) -> Result<Option<String>, Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .context(format!("list the pods of Job {job}"))?;
    Ok(list.items.iter().find_map(|p| {
        p.status
            .as_ref()?
            .container_statuses
            .as_ref()?
            .iter()
            .find_map(|c| c.state.as_ref()?.terminated.as_ref()?.message.clone())
    }))
}
