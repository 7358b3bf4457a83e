//! The last known primary and term, kept as an annotation on the cluster's
//! StatefulSet so it survives a lost status (`status: {}` after a restore of
//! the objects, an edit, a migration). It is read only while the status
//! records no primary, and the engines use it as a hint, never as truth:
//! adoption prefers it only among members whose data is equally complete.
//!
//! Written with its own field manager through a merge patch, so the
//! server-side apply of the StatefulSet (which does not list the annotation)
//! never removes it, and the pod template is untouched (no rollout).

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::api::ReplicationState;
use crate::engine::PrimaryHint;
use crate::resources::ClusterView;

/// Annotation on the StatefulSet: `primary=<ordinal>,term=<term>`.
pub const ANNOTATION: &str = "ordinal.dev/last-primary";
/// Field manager of the annotation (not the apply manager of the StatefulSet).
pub const FIELD_MANAGER: &str = "ordinal-hint";

/// The annotation's value for a hint.
pub fn format(hint: PrimaryHint) -> String {
    format!("primary={},term={}", hint.primary, hint.term)
}

/// Parse an annotation value; None when it is not one we wrote.
pub fn parse(value: &str) -> Option<PrimaryHint> {
    let mut primary = None;
    let mut term = None;
    for part in value.split(',') {
        match part.trim().split_once('=')? {
            ("primary", v) => primary = v.parse::<i32>().ok().filter(|p| *p >= 0),
            ("term", v) => term = v.parse::<i64>().ok().filter(|t| *t >= 0),
            _ => {}
        }
    }
    Some(PrimaryHint {
        primary: primary?,
        term: term?,
    })
}

/// The hint a StatefulSet carries, if any.
pub fn from_statefulset(sts: &StatefulSet) -> Option<PrimaryHint> {
    sts.metadata
        .annotations
        .as_ref()?
        .get(ANNOTATION)
        .and_then(|v| parse(v))
}

/// The hint to give the engine: read only while `state` records no primary
/// (a missing StatefulSet or a failed read is no hint, logged).
pub async fn read_if_unrecorded(
    client: &kube::Client,
    view: &ClusterView,
    state: &ReplicationState,
) -> Option<PrimaryHint> {
    if state.primary.is_some() {
        return None;
    }
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), &view.namespace);
    match api.get_opt(&view.name).await {
        Ok(sts) => sts.as_ref().and_then(from_statefulset),
        Err(e) => {
            tracing::warn!(error = %e, statefulset = %view.name, "reading the last-primary hint failed");
            None
        }
    }
}

/// Record the primary and term of `after` when they differ from `before`
/// (a bootstrap, an adoption, a failover, a switchover). Best effort: a
/// failure is logged and retried on the next change; the status stays the
/// source of truth.
pub async fn record_if_changed(
    client: &kube::Client,
    view: &ClusterView,
    before: &ReplicationState,
    after: &ReplicationState,
) {
    let Some(primary) = after.primary else { return };
    if (before.primary, before.term) == (after.primary, after.term) {
        return;
    }
    let hint = PrimaryHint {
        primary,
        term: after.term,
    };
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), &view.namespace);
    let patch = json!({ "metadata": { "annotations": { ANNOTATION: format(hint) } } });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    if let Err(e) = api.patch(&view.name, &params, &Patch::Merge(&patch)).await {
        tracing::warn!(error = %e, statefulset = %view.name, "recording the last-primary hint failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_round_trip_and_foreign_values_are_ignored() {
        let h = PrimaryHint {
            primary: 2,
            term: 7,
        };
        assert_eq!(format(h), "primary=2,term=7");
        assert_eq!(parse(&format(h)), Some(h));
        assert_eq!(parse("term=7, primary=2"), Some(h));
        for bad in [
            "",
            "primary=2",
            "primary=x,term=1",
            "primary=-1,term=1",
            "2",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        let mut sts = StatefulSet::default();
        assert_eq!(from_statefulset(&sts), None);
        sts.metadata.annotations = Some([(ANNOTATION.to_string(), format(h))].into());
        assert_eq!(from_statefulset(&sts), Some(h));
    }
}
